"""Figures of the evaluation: robust Hausdorff distance vs percentile (Fig. 4) and error maps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import InputError
from .tables import SET_LABELS

log = logging.getLogger(__name__)

_CLASS_COLORS = ("#000000", "#4a90d9", "#ffb000", "#d62728", "#2ca02c", "#9467bd")
_LINE_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")
#: RGB of true negative, true positive, false negative, false positive pixels in error maps.
ERROR_COLORS = {"TN": (1.0, 1.0, 1.0), "TP": (0.72, 0.72, 0.72), "FN": (0.84, 0.15, 0.16), "FP": (0.12, 0.47, 0.71)}


# --------------------------------------------------------------------------- figures
def rhd_figure(rhd: pd.DataFrame, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Robust Hausdorff distance vs percentile per class (Fig. 4), one panel per evaluation set.

    Parameters
    ----------
    rhd : DataFrame
        Output of :func:`rhd_table`.
    class_names : sequence of str
    title : str, optional

    Returns
    -------
    Figure
        Mean ± SE error bars; the legend gives the number of patches/slices with a finite value.
    """
    sets = list(dict.fromkeys(rhd["evaluation"])) or ["(none)"]
    fig = Figure(figsize=(4.6 * len(sets), 3.8), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, name in zip(axes, sets):
        part = rhd[rhd["evaluation"] == name]
        for c, cname in enumerate(class_names):
            d = part[part["label"] == c].sort_values("percentile")
            if d.empty or not np.isfinite(d["mean_nm"]).any():
                continue
            n_used, n = int(d["n_used"].min()), int(d["n"].max())
            label = cname if n == 1 else f"{cname} (n={n_used}/{n})"
            err = np.nan_to_num(d["sem_nm"].to_numpy(float), nan=0.0)
            ax.errorbar(d["percentile"], d["mean_nm"], yerr=err, marker="o", ms=3.5, capsize=2.5, lw=1.3, color=_LINE_COLORS[c % len(_LINE_COLORS)], label=label)
        ax.set_title(SET_LABELS.get(name, name) + ("" if name == "volume_3d" else " (mean ± SE)"), fontsize=10)
        ax.set_xlabel("percentile (%)")
        ax.set_ylabel("robust Hausdorff distance (nm)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _error_rgb(truth: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    t, p = truth == c, pred == c
    rgb = np.empty(truth.shape + (3,))
    rgb[:] = ERROR_COLORS["TN"]
    rgb[t & p] = ERROR_COLORS["TP"]
    rgb[t & ~p] = ERROR_COLORS["FN"]
    rgb[~t & p] = ERROR_COLORS["FP"]
    return rgb


def error_maps_figure(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    class_names: Sequence[str],
    *,
    images: npt.ArrayLike | None = None,
    titles: Sequence[str] | None = None,
    pixel_size_nm: float | None = None,
) -> Figure:
    """Ground truth, prediction and per-class false-negative/false-positive maps (Fig. 3).

    Parameters
    ----------
    truth, prediction : array_like of int, shape (m, H, W)
        A few label patches/slices (one row each).
    class_names : sequence of str
    images : array_like, shape (m, H, W), optional
        The raw images, shown first.
    titles : sequence of str, optional
        Row labels.
    pixel_size_nm : float, optional
        Adds the image width in nm to the first panel.

    Returns
    -------
    Figure
        Per class panel: false negatives red, false positives blue, true positives grey.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3 or len(t) == 0:
        raise InputError("error maps", f"need two equal non-empty (m, H, W) stacks, got {t.shape} and {p.shape}", "pass the patches to show")
    imgs = None if images is None else np.asarray(images, dtype=np.float64)
    n_cls = len(class_names)
    cols = (["image"] if imgs is not None else []) + ["ground truth", "prediction"] + [f"{c}: FN / FP" for c in class_names]
    m, (h, w) = len(t), t.shape[1:]
    pw = 2.1
    fig = Figure(figsize=(pw * len(cols), pw * h / w * m + 0.9), layout="constrained")
    axes = fig.subplots(m, len(cols), squeeze=False)
    cmap = ListedColormap([_CLASS_COLORS[i % len(_CLASS_COLORS)] for i in range(n_cls)])
    for r in range(m):
        panels: list[tuple[str, Any]] = []
        if imgs is not None:
            lo, hi = np.percentile(imgs[r], [0.5, 99.5])
            panels.append(("image", (imgs[r], dict(cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1))))
        kw = dict(cmap=cmap, vmin=-0.5, vmax=n_cls - 0.5)
        panels += [("truth", (t[r], kw)), ("prediction", (p[r], kw))]
        panels += [(f"class{c}", (_error_rgb(t[r], p[r], c), {})) for c in range(n_cls)]
        for k, (_, (arr, style)) in enumerate(panels):
            ax = axes[r, k]
            ax.imshow(arr, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[k], fontsize=9)
        if titles is not None:
            axes[r, 0].set_ylabel(str(titles[r]), fontsize=8)
    if pixel_size_nm:
        axes[-1, 0].set_xlabel(f"{w * pixel_size_nm:.0f} nm wide", fontsize=8)
    handles = [Patch(facecolor=_CLASS_COLORS[i % len(_CLASS_COLORS)], edgecolor="0.5", label=n) for i, n in enumerate(class_names)]
    handles += [Patch(facecolor=ERROR_COLORS[k], edgecolor="0.5", label=lab) for k, lab in (("TP", "true positive"), ("FN", "false negative"), ("FP", "false positive"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig
