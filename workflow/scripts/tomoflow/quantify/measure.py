"""Measurements of one label volume: particle table, support envelope and areas, summary (definitions:
:mod:`tomoflow.quantify`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import ndimage

from ..errors import InputError
from ..mesh import isosurface, object_surfaces, voxel_size_3

log = logging.getLogger(__name__)

SUPPORT, PARTICLES = 1, 2

PARTICLE_COLUMNS = [
    "particle_id", "n_voxels", "volume_nm3", "equivalent_diameter_nm", "centroid_y_nm", "centroid_z_nm",
    "centroid_x_nm", "surface_area_nm2", "sphericity", "distance_to_support_nm", "touches_support", "touches_border",
]


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2, 3):
        raise InputError("quantify.connectivity", f"must be 1, 2 or 3, got {connectivity!r}",
                         "use 1 (faces, 6-neighbourhood), 2 (edges, 18) or 3 (vertices, 26)")
    return ndimage.generate_binary_structure(3, connectivity)


def _check_labels(labels: np.ndarray) -> None:
    if labels.ndim != 3:
        raise InputError("labels", f"expected a 3-D label volume (n_slices, n_z, n_x), got shape {labels.shape}",
                         "pass the segmentation volume")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise InputError("labels", f"labels must be integers, got {labels.dtype}", "save labels as uint8")


def min_particle_voxels(min_diameter_nm: float, voxel_size_nm: float | Sequence[float]) -> int:
    """Fewest voxels a particle of equivalent diameter >= ``min_diameter_nm`` can have.

    Parameters
    ----------
    min_diameter_nm : float
        Minimum equivalent diameter (nm); 0 keeps every particle.
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size (nm).

    Returns
    -------
    int
        ``ceil(π d³ / (6 V_voxel))`` (at least 1), with a relative tolerance of 1e-9 so that a particle of
        exactly the minimum diameter is kept.
    """
    if not (min_diameter_nm >= 0 and math.isfinite(min_diameter_nm)):
        raise InputError("quantify.min_particle_diameter_nm", f"must be a number >= 0, got {min_diameter_nm!r}",
                         "use e.g. 0.5 (nm), or 0 to keep every particle")
    vvox = float(np.prod(voxel_size_3(voxel_size_nm)))
    need = math.pi * min_diameter_nm**3 / (6.0 * vvox)
    return max(1, math.ceil(need * (1 - 1e-9)))


def support_gap_nm(support: npt.NDArray[np.bool_], points_yzx: npt.NDArray[np.integer],
                   voxel_size_nm: float | Sequence[float]) -> npt.NDArray[np.float64]:
    """Gap (nm) between each given voxel and the support voxel with the nearest centre, voxels as boxes.

    Parameters
    ----------
    support : ndarray of bool, shape (n_y, n_z, n_x)
    points_yzx : ndarray of int, shape (n, 3)
        Voxel indices (iy, iz, ix).
    voxel_size_nm : float or (dy, dz, dx)

    Returns
    -------
    ndarray, shape (n,)
        0 where the voxel touches the support (shares a face, edge or corner), NaN when there is no support.
    """
    pts = np.asarray(points_yzx, dtype=np.int64).reshape(-1, 3)
    if not support.any():
        return np.full(len(pts), np.nan)
    vs = np.asarray(voxel_size_3(voxel_size_nm))
    if len(pts) == 0:
        return np.zeros(0)
    inds = ndimage.distance_transform_edt(~support, sampling=vs, return_distances=False, return_indices=True)
    nearest = inds[:, pts[:, 0], pts[:, 1], pts[:, 2]].T.astype(np.int64)
    gap = np.maximum(np.abs(pts - nearest) - 1, 0) * vs
    return np.sqrt((gap**2).sum(axis=1))


def _kept_components(mask: np.ndarray, connectivity: int, n_min: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of ``mask`` with at least ``n_min`` voxels.

    Returns
    -------
    comp : ndarray of int, shape of ``mask``
        ``scipy.ndimage.label`` numbers, 0 where a component is too small (numbers of the rest unchanged).
    keep_id : ndarray of int, shape (k,)
        The numbers kept, ascending.
    counts : ndarray of int, shape (k,)
        Their voxel counts.
    """
    comp, n = ndimage.label(mask, structure=_structure(connectivity))
    counts = np.bincount(comp.ravel(), minlength=n + 1)
    keep_id = np.flatnonzero(counts >= n_min)
    keep_id = keep_id[keep_id > 0]
    if keep_id.size < n:
        comp = np.where(counts[comp] >= n_min, comp, 0)
    return comp, keep_id, counts[keep_id]


def particle_table(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float], *, particle_label: int = PARTICLES,
                   support_label: int = SUPPORT, connectivity: int = 3, contact_distance_nm: float = 0.5,
                   smoothing_iterations: int = 20, pass_band: float = 0.05, min_diameter_nm: float = 0.0) -> pd.DataFrame:
    """One row per particle (3-D connected component of ``particle_label``); columns :data:`PARTICLE_COLUMNS`.

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x), integer
        Label volume.
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm.
    particle_label, support_label : int
        Label values of particles and support.
    connectivity : {1, 2, 3}
        Neighbourhood joining voxels into one particle (faces / edges / vertices).
    contact_distance_nm : float
        A particle ``touches_support`` when its gap to the support is at most this (nm).
    smoothing_iterations, pass_band : float
        Surface smoothing for the surface areas (as in :func:`tomoflow.mesh.isosurface`).
    min_diameter_nm : float
        Components with an equivalent diameter below this (nm) are not particles and get no row
        (:func:`min_particle_voxels`); 0 keeps all.

    Returns
    -------
    pandas.DataFrame
        Units in the column names (nm, nm², nm³); ``particle_id`` = the component's number in label-scan
        order (``scipy.ndimage.label``, = ``component_id`` of the meshes; gaps where components are below
        the minimum size).  Empty (with the columns) when there are no particles.
    """
    lab = np.asarray(labels)
    _check_labels(lab)
    vs3 = voxel_size_3(voxel_size_nm)
    vs = np.asarray(vs3)
    if contact_distance_nm < 0:
        raise InputError("quantify.contact_distance_nm", f"must be >= 0, got {contact_distance_nm}", "use e.g. 0.5")
    comp, keep_id, counts = _kept_components(lab == particle_label, connectivity, min_particle_voxels(min_diameter_nm, vs3))
    if keep_id.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in PARTICLE_COLUMNS}).astype(
            {"particle_id": int, "n_voxels": int, "touches_support": bool, "touches_border": bool})
    n = int(keep_id[-1])
    pts = np.argwhere(comp > 0)
    ids = comp[pts[:, 0], pts[:, 1], pts[:, 2]]
    cen = np.stack([np.bincount(ids, weights=pts[:, k], minlength=n + 1)[keep_id] for k in range(3)], axis=1) / counts[:, None]
    volume = counts * float(np.prod(vs))
    eqd = np.cbrt(6.0 * volume / math.pi)
    support = lab == support_label
    dist = np.full(n + 1, np.inf if support.any() else np.nan)
    if support.any():
        np.minimum.at(dist, ids, support_gap_nm(support, pts, vs3))
    dist = dist[keep_id]
    objects = ndimage.find_objects(comp, max_label=n)
    border = np.array([any(s.start == 0 or s.stop == size for s, size in zip(objects[i - 1], lab.shape)) for i in keep_id])
    log.info("meshing %d particles for their surface areas", keep_id.size)
    # object_surfaces numbers the kept components 1…K in the same scan order
    _, area = object_surfaces(comp > 0, vs3, connectivity=connectivity,
                              smoothing_iterations=smoothing_iterations, pass_band=pass_band)
    with np.errstate(divide="ignore", invalid="ignore"):
        sphericity = np.where(area > 0, math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area, np.nan)
    return pd.DataFrame({
        "particle_id": keep_id,
        "n_voxels": counts.astype(int),
        "volume_nm3": volume,
        "equivalent_diameter_nm": eqd,
        "centroid_y_nm": cen[:, 0] * vs[0],
        "centroid_z_nm": cen[:, 1] * vs[1],
        "centroid_x_nm": cen[:, 2] * vs[2],
        "surface_area_nm2": area,
        "sphericity": sphericity,
        "distance_to_support_nm": dist,
        "touches_support": np.isfinite(dist) & (dist <= contact_distance_nm),
        "touches_border": border,
    })


def support_envelope(support: npt.NDArray[np.bool_], voxel_size_nm: float | Sequence[float],
                     closing_nm: float = 1.0) -> npt.NDArray[np.bool_]:
    """Support with its pores filled: closing with a ball of radius ``closing_nm``, then 3-D hole filling.

    Parameters
    ----------
    support : ndarray of bool, shape (n_y, n_z, n_x)
    voxel_size_nm : float or (dy, dz, dx)
    closing_nm : float
        Radius (nm) of the closing ball; 0 = hole filling only (enclosed cavities).

    Returns
    -------
    ndarray of bool, shape (n_y, n_z, n_x)
        A superset of ``support``.
    """
    vs = np.asarray(voxel_size_3(voxel_size_nm))
    sup = np.asarray(support, dtype=bool)
    if closing_nm < 0:
        raise InputError("quantify.envelope_closing_nm", f"must be >= 0, got {closing_nm}", "use e.g. 1.0")
    if not sup.any():
        return sup.copy()
    closed = sup
    if closing_nm > 0:
        pad = [int(math.ceil(closing_nm / d)) + 1 for d in vs]
        p = np.pad(sup, [(k, k) for k in pad], mode="edge")
        # Closing via exact Euclidean distances (any radius, anisotropic voxels, linear time):
        # dilation = within R of the support; erosion of that = farther than R from its complement.
        dil = ndimage.distance_transform_edt(~p, sampling=vs) <= closing_nm
        ero = ndimage.distance_transform_edt(dil, sampling=vs) > closing_nm
        closed = ero[pad[0]:pad[0] + sup.shape[0], pad[1]:pad[1] + sup.shape[1], pad[2]:pad[2] + sup.shape[2]] | sup
    return ndimage.binary_fill_holes(closed) | sup


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def label_summary(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float], table: pd.DataFrame, *,
                  support_label: int = SUPPORT, particle_label: int = PARTICLES, envelope_closing_nm: float = 1.0,
                  smoothing_iterations: int = 20, pass_band: float = 0.05) -> dict[str, Any]:
    """Summary numbers of one label volume (support, pores, particle statistics).

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x)
    voxel_size_nm : float or (dy, dz, dx)
    table : DataFrame
        :func:`particle_table` of the same labels.
    support_label, particle_label : int
    envelope_closing_nm : float
        See :func:`support_envelope`.
    smoothing_iterations, pass_band
        Surface smoothing (see :func:`tomoflow.mesh.isosurface`).

    Returns
    -------
    dict
        JSON-ready; undefined statistics (mean of no particles) are ``None``, counts of nothing are 0.
    """
    lab = np.asarray(labels)
    _check_labels(lab)
    vs = voxel_size_3(voxel_size_nm)
    vvox = float(np.prod(vs))
    support = lab == support_label
    n_sup = int(support.sum())
    log.info("support: %d voxels; meshing the support surface", n_sup)
    sup_area = isosurface(support, vs, smoothing_iterations=smoothing_iterations, pass_band=pass_band, closed=False).area if n_sup else 0.0
    env = support_envelope(support, vs, envelope_closing_nm)
    n_env = int(env.sum())
    n_pore = int((env & (lab == 0)).sum())
    log.info("envelope: %d voxels (%d pore voxels); meshing the external surface", n_env, n_pore)
    ext_area = isosurface(env, vs, smoothing_iterations=smoothing_iterations, pass_band=pass_band, closed=False).area if n_env else 0.0
    n = int(len(table))
    d = table["equivalent_diameter_nm"].to_numpy(float) if n else np.zeros(0)
    out: dict[str, Any] = {
        "shape": [int(s) for s in lab.shape],
        "voxel_size_nm": list(vs),
        "n_particles": n,
        "particle_volume_nm3": float(table["volume_nm3"].sum()) if n else 0.0,
        "particle_volume_fraction": float((lab == particle_label).mean()),
        "mean_equivalent_diameter_nm": _finite_or_none(d.mean()) if n else None,
        "median_equivalent_diameter_nm": _finite_or_none(np.median(d)) if n else None,
        "std_equivalent_diameter_nm": _finite_or_none(d.std(ddof=1)) if n > 1 else None,
        "min_equivalent_diameter_nm": _finite_or_none(d.min()) if n else None,
        "max_equivalent_diameter_nm": _finite_or_none(d.max()) if n else None,
        "volume_weighted_mean_diameter_nm": _finite_or_none(np.average(d, weights=table["volume_nm3"])) if n else None,
        "particle_surface_area_nm2": float(table["surface_area_nm2"].sum()) if n else 0.0,
        "n_touching_support": int(table["touches_support"].sum()) if n else 0,
        "fraction_touching_support": _finite_or_none(table["touches_support"].mean()) if n else None,
        "n_touching_border": int(table["touches_border"].sum()) if n else 0,
        "median_distance_to_support_nm": _finite_or_none(table["distance_to_support_nm"].median()) if n else None,
        "support_volume_nm3": n_sup * vvox,
        "support_volume_fraction": n_sup / lab.size,
        "support_surface_area_nm2": float(sup_area),
        "support_external_surface_area_nm2": float(ext_area),
        "envelope_volume_nm3": n_env * vvox,
        "pore_volume_nm3": n_pore * vvox,
        "pore_volume_fraction": n_pore / n_env if n_env else None,
        "particle_density_per_external_area_nm2": n / ext_area if ext_area > 0 else None,
        "particle_density_per_support_area_nm2": n / sup_area if sup_area > 0 else None,
    }
    return out


def quantify(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float], *, connectivity: int = 3,
             contact_distance_nm: float = 0.5, envelope_closing_nm: float = 1.0, support_label: int = SUPPORT,
             particle_label: int = PARTICLES, smoothing_iterations: int = 20, pass_band: float = 0.05,
             min_particle_diameter_nm: float = 0.0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Particle table and summary of one label volume (see the module docstring for definitions).

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x), integer
    voxel_size_nm : float or (dy, dz, dx)
    connectivity, contact_distance_nm
        See :func:`particle_table`.
    envelope_closing_nm
        See :func:`support_envelope`.
    support_label, particle_label : int
    smoothing_iterations, pass_band
        Surface smoothing (see :func:`tomoflow.mesh.isosurface`).
    min_particle_diameter_nm : float
        Minimum equivalent diameter (nm) of a particle (see :func:`particle_table`).

    Returns
    -------
    table : pandas.DataFrame
        :func:`particle_table`.
    summary : dict
        :func:`label_summary`, plus ``n_below_min_size`` (particle-label components not counted) and the
        settings used.
    """
    table = particle_table(labels, voxel_size_nm, particle_label=particle_label, support_label=support_label,
                           connectivity=connectivity, contact_distance_nm=contact_distance_nm,
                           smoothing_iterations=smoothing_iterations, pass_band=pass_band,
                           min_diameter_nm=min_particle_diameter_nm)
    n_components = ndimage.label(np.asarray(labels) == particle_label, structure=_structure(connectivity))[1]
    log.info("%d particles (%d components below %.3g nm not counted)", len(table), n_components - len(table),
             min_particle_diameter_nm)
    summary = label_summary(labels, voxel_size_nm, table, support_label=support_label, particle_label=particle_label,
                            envelope_closing_nm=envelope_closing_nm, smoothing_iterations=smoothing_iterations,
                            pass_band=pass_band)
    summary["n_below_min_size"] = int(n_components - len(table))
    summary["settings"] = {"connectivity": int(connectivity), "contact_distance_nm": float(contact_distance_nm),
                           "envelope_closing_nm": float(envelope_closing_nm),
                           "min_particle_diameter_nm": float(min_particle_diameter_nm)}
    return table, summary

