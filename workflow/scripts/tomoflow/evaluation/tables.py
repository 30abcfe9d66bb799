"""Table 1, the robust-Hausdorff table and the ``metrics.json`` document."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

#: Human-readable names of the evaluation sets.
SET_LABELS = {
    "validation_patches": "validation patches",
    "volume_slices": "volume, slice by slice",
    "volume_3d": "volume, 3-D",
}


# --------------------------------------------------------------------------- tables
def class_columns(class_names: Sequence[str]) -> list[tuple[int, str]]:
    """Table columns as ``(label, header)``: foreground classes first, then background/pores (label 0)."""
    cols = [(i, str(n)) for i, n in enumerate(class_names) if i != 0]
    if class_names:
        name = str(class_names[0])
        cols.append((0, f"{name}/pores" if name == "background" else name))
    return cols


def _fmt(s: Mapping[str, Any], key: str, digits: int) -> str:
    mean, spread = s["mean"], s[key]
    if not math.isfinite(mean):
        text = "n/a"
    elif math.isfinite(spread):
        text = f"{mean:.{digits}f} ± {spread:.{digits}f}"
    else:
        text = f"{mean:.{digits}f}"
    if s["n_used"] < s["n"]:
        parts = [f"{s['n_used']}/{s['n']} used"]
        if s["n_nan"]:
            parts.append(f"{s['n_nan']} NaN")
        if s["n_inf"]:
            parts.append(f"{s['n_inf']} inf")
        text += f" ({', '.join(parts)})"
    return text


def table1(sets: Mapping[str, Mapping[int, Mapping[str, Any]]], class_names: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """Table 1: precision, recall and DSC per class as "mean ± 95 % CI".

    Parameters
    ----------
    sets : mapping set name -> :func:`~tomoflow.metrics.aggregate_metrics` output
        In the order the rows should appear (e.g. validation patches first).
    class_names : sequence of str
        Name of each label value.
    digits : int

    Returns
    -------
    DataFrame
        Columns ``evaluation, metric, <classes...>``; three rows (precision, recall, DSC) per set.  A cell
        is ``"mean ± ci95"`` (just the mean where the CI is undefined) with ``"(k/n used, … NaN, … inf)"``
        appended when some patches/slices were undefined.
    """
    cols = class_columns(class_names)
    rows = []
    for name, agg in sets.items():
        for key, label in (("precision", "precision"), ("recall", "recall"), ("dsc", "DSC")):
            row = {"evaluation": name, "metric": label}
            for c, header in cols:
                row[header] = _fmt(agg[c][key], "ci95", digits) if c in agg else "n/a"
            rows.append(row)
    return pd.DataFrame(rows, columns=["evaluation", "metric"] + [h for _, h in cols])


def rhd_table(sets: Mapping[str, Mapping[int, Mapping[str, Any]]], class_names: Sequence[str]) -> pd.DataFrame:
    """Robust Hausdorff distance per set, class and percentile (Fig. 4 data), long format.

    Returns
    -------
    DataFrame
        Columns ``evaluation, class, label, percentile, mean_nm, sem_nm, ci95_nm, n, n_used, n_nan,
        n_inf``; mean and spread over the finite values.
    """
    rows = []
    for name, agg in sets.items():
        for c, a in agg.items():
            for p, s in zip(a["percentiles"], a["rhd_nm"]):
                rows.append(
                    {
                        "evaluation": name,
                        "class": class_names[c] if c < len(class_names) else str(c),
                        "label": int(c),
                        "percentile": float(p),
                        "mean_nm": s["mean"],
                        "sem_nm": s["sem"],
                        "ci95_nm": s["ci95"],
                        "n": s["n"],
                        "n_used": s["n_used"],
                        "n_nan": s["n_nan"],
                        "n_inf": s["n_inf"],
                    }
                )
    cols = ["evaluation", "class", "label", "percentile", "mean_nm", "sem_nm", "ci95_nm", "n", "n_used", "n_nan", "n_inf"]
    return pd.DataFrame(rows, columns=cols)


def _named(d: Mapping[int, Any], class_names: Sequence[str]) -> dict[str, Any]:
    return {(class_names[c] if c < len(class_names) else str(c)): v for c, v in d.items()}


def metrics_document(
    *,
    sample: str,
    class_names: Sequence[str],
    percentiles: Sequence[float],
    pixel_size_nm: float,
    validation: Mapping[str, Any] | None = None,
    volume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything for ``metrics.json``, keyed by class *name*.

    Parameters
    ----------
    sample : str
    class_names : sequence of str
    percentiles : sequence of float
    pixel_size_nm : float
    validation : mapping, optional
        ``{"records": [...], "per_patch": [result...], "aggregate": agg}``.
    volume : mapping, optional
        ``{"shape": [...], "per_slice": [result...], "aggregate": agg, "volume_3d": result}``.

    Returns
    -------
    dict
        JSON-ready (NaN/inf stay floats).
    """
    doc: dict[str, Any] = {
        "sample": sample,
        "classes": list(class_names),
        "percentiles": [float(p) for p in percentiles],
        "pixel_size_nm": float(pixel_size_nm),
        "conventions": {
            "hausdorff": "surface-distance method (Nikolov et al. 2021): surface elements on voxel corners weighted by "
            "contour length/area; per direction the inverse weighted CDF at the percentile; the larger direction; p100 = HD",
            "empty": "one mask empty: HD inf, DSC 0; both empty: DSC/precision/recall/HD NaN; 0/0 ratios NaN",
            "aggregate": "mean over finite values; ci95 = Student-t 95% half-width; sem = sd/sqrt(n_used); "
            "n_nan/n_inf count the values left out",
            "units": "distances nm, contour length nm (2-D), surface area nm^2 (3-D)",
        },
    }
    if validation is not None:
        doc["validation_patches"] = {
            "n": len(validation["per_patch"]),
            "records": list(validation["records"]),
            "aggregate": _named(validation["aggregate"], class_names),
            "per_patch": [_named(r, class_names) for r in validation["per_patch"]],
        }
    if volume is not None:
        doc["volume_slices"] = {
            "shape": list(volume["shape"]),
            "n": len(volume["per_slice"]),
            "aggregate": _named(volume["aggregate"], class_names),
            "per_slice": [_named(r, class_names) for r in volume["per_slice"]],
        }
        doc["volume_3d"] = _named(volume["volume_3d"], class_names)
    return doc
