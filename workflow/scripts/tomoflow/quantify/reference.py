"""The generator's particle list, matching measured particles to it, side-by-side numbers, size histogram."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from ..mesh import voxel_size_3
from .measure import _finite_or_none

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- ground truth comparison
def specimen_particles(specimen: Mapping[str, Any], voxel_size_nm: float | Sequence[float] | None = None) -> pd.DataFrame:
    """The generator's particle list as a table in this module's frame.

    Parameters
    ----------
    specimen : mapping
        Contents of ``specimen.json``: ``{"particles": [{"center_nm": [y, z, x], "diameter_nm": d}, …]}``
        (``center_px`` used where present).  The generator measures positions from the volume's outer
        corner (voxel ``i`` centre at ``(i + ½)·voxel``); they are shifted by half a voxel to voxel-centre
        coordinates when the voxel size is known.
    voxel_size_nm : float or (dy, dz, dx), optional
        Voxel size (default: ``specimen["info"]["pixel_size_nm"]`` or ``specimen["pixel_size_nm"]``).

    Returns
    -------
    pandas.DataFrame
        Columns ``diameter_nm``, ``center_y_nm``, ``center_z_nm``, ``center_x_nm``.
    """
    parts = specimen.get("particles") if isinstance(specimen, Mapping) else None
    if not isinstance(parts, list):
        raise InputError("specimen.json", "no 'particles' list", "regenerate it with the simulate_tilt_series rule")
    if voxel_size_nm is None:
        px = specimen.get("pixel_size_nm") or (specimen.get("info") or {}).get("pixel_size_nm")
        voxel_size_nm = px if px else None
    shift = 0.5 * np.asarray(voxel_size_3(voxel_size_nm)) if voxel_size_nm is not None else np.zeros(3)
    rows = []
    for p in parts:
        try:
            c = np.asarray(p["center_nm"], dtype=float) - shift
            rows.append({"diameter_nm": float(p["diameter_nm"]), "center_y_nm": c[0], "center_z_nm": c[1], "center_x_nm": c[2]})
        except (KeyError, TypeError, ValueError, IndexError):
            raise InputError("specimen.json", f"particle entry {p!r} lacks center_nm [y, z, x] or diameter_nm",
                             "regenerate it with the simulate_tilt_series rule") from None
    return pd.DataFrame(rows, columns=["diameter_nm", "center_y_nm", "center_z_nm", "center_x_nm"])


def match_specimen(table: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    """Match measured particles to the generator's: each reference particle to the nearest measured centroid
    within its radius (one-to-one, greedy by distance).

    Returns
    -------
    dict
        ``n_reference``, ``n_measured``, ``n_matched``, ``mean_reference_diameter_nm``,
        ``mean_diameter_error_nm`` (measured − reference, matched pairs), ``mean_abs_diameter_error_nm``,
        ``mean_centroid_error_nm``.
    """
    out: dict[str, Any] = {"n_reference": int(len(reference)), "n_measured": int(len(table)), "n_matched": 0,
                           "mean_reference_diameter_nm": _finite_or_none(reference["diameter_nm"].mean()) if len(reference) else None,
                           "mean_diameter_error_nm": None, "mean_abs_diameter_error_nm": None, "mean_centroid_error_nm": None}
    if len(reference) == 0 or len(table) == 0:
        return out
    rc = reference[["center_y_nm", "center_z_nm", "center_x_nm"]].to_numpy(float)
    mc = table[["centroid_y_nm", "centroid_z_nm", "centroid_x_nm"]].to_numpy(float)
    dist = np.linalg.norm(rc[:, None, :] - mc[None, :, :], axis=2)
    radius = reference["diameter_nm"].to_numpy(float) / 2
    pairs = sorted((dist[i, j], i, j) for i, j in zip(*np.nonzero(dist <= radius[:, None])))
    used_r: set[int] = set()
    used_m: set[int] = set()
    matched = []
    for dd, i, j in pairs:
        if i in used_r or j in used_m:
            continue
        used_r.add(i)
        used_m.add(j)
        matched.append((i, j, dd))
    if matched:
        i, j, dd = (np.array(v) for v in zip(*matched))
        err = table["equivalent_diameter_nm"].to_numpy(float)[j] - reference["diameter_nm"].to_numpy(float)[i]
        out.update(n_matched=len(matched), mean_diameter_error_nm=float(err.mean()),
                   mean_abs_diameter_error_nm=float(np.abs(err).mean()), mean_centroid_error_nm=float(dd.mean()))
    return out


COMPARED = ("n_particles", "mean_equivalent_diameter_nm", "median_equivalent_diameter_nm", "particle_volume_nm3",
            "n_touching_support", "support_volume_nm3", "support_surface_area_nm2", "support_external_surface_area_nm2",
            "pore_volume_fraction", "particle_density_per_external_area_nm2")


def compare(predicted: Mapping[str, Any], true: Mapping[str, Any] | None = None,
            specimen_match: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Side-by-side numbers: predicted labels, true labels, generator.

    Parameters
    ----------
    predicted : mapping
        :func:`quantify` summary of the predicted labels.
    true : mapping, optional
        Summary of the true labels.
    specimen_match : mapping, optional
        :func:`match_specimen` of the true-label table (its ``n_reference`` and ``mean_reference_diameter_nm``
        are the generator's count and mean diameter).

    Returns
    -------
    dict
        ``{quantity: {"predicted": v, "true": v, "generator": v, "predicted_rel_error": (p − t)/t}}``
        (keys present only where known).
    """
    out: dict[str, Any] = {}
    for key in COMPARED:
        row: dict[str, Any] = {"predicted": predicted.get(key)}
        if true is not None:
            row["true"] = true.get(key)
            p, t = row["predicted"], row["true"]
            if isinstance(p, (int, float)) and isinstance(t, (int, float)) and t:
                row["predicted_rel_error"] = (p - t) / t
        out[key] = row
    if specimen_match is not None:
        out["n_particles"]["generator"] = specimen_match.get("n_reference")
        out["mean_equivalent_diameter_nm"]["generator"] = specimen_match.get("mean_reference_diameter_nm")
    return out


# --------------------------------------------------------------------------- figure
def size_histogram(tables: Mapping[str, pd.DataFrame], reference_diameters_nm: npt.ArrayLike | None = None,
                   title: str = "") -> Figure:
    """Histogram of particle equivalent diameters, one step curve per table (and the generator's).

    Parameters
    ----------
    tables : mapping
        ``{name: particle table}``, e.g. ``{"predicted": …, "true": …}``; the first is drawn filled.
    reference_diameters_nm : array_like, optional
        The generator's diameters (nm).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    series = {name: t["equivalent_diameter_nm"].to_numpy(float) for name, t in tables.items()}
    if reference_diameters_nm is not None:
        series["generator"] = np.asarray(reference_diameters_nm, dtype=float).ravel()
    allv = np.concatenate([v for v in series.values() if v.size] or [np.zeros(0)])
    if allv.size == 0:
        ax.text(0.5, 0.5, "no particles", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        ax.set_xlim(0, 1)
    else:
        hi = float(allv.max())
        edges = np.histogram_bin_edges(allv, bins=max(10, min(40, int(np.sqrt(allv.size)) + 5)), range=(0.0, hi * 1.05)).tolist()
        styles: dict[str, dict[str, Any]] = {"predicted": {"color": "tab:red"}, "true": {"color": "black"},
                                             "generator": {"color": "tab:grey", "linestyle": "--"}}
        for k, (name, v) in enumerate(series.items()):
            st = styles.get(name, {})
            label = f"{name} (n = {v.size}" + (f", mean {v.mean():.2f} nm)" if v.size else ")")
            if k == 0:
                ax.hist(v, bins=edges, color=st.get("color", "tab:red"), alpha=0.45, label=label)
            else:
                ax.hist(v, bins=edges, histtype="step", linewidth=1.6, label=label, **st)
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("equivalent diameter (nm)")
    ax.set_ylabel("particles")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig

