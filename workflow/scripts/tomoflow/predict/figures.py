"""The prediction figure: reconstructed slices beside their predicted labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import InputError

#: Class colours of the prediction figure (index = label value): pores black, support blue, Pt orange.
DEFAULT_CLASS_COLORS: tuple[str, ...] = ("#000000", "#4a90d9", "#ffb000", "#d62728", "#2ca02c", "#9467bd")


def figure_positions(n_slices: int, count: int = 4) -> list[int]:
    """``count`` slice numbers spread evenly along a stack: centres of ``count`` equal parts."""
    if n_slices < 1:
        return []
    count = max(1, min(int(count), n_slices))
    return sorted({int(math.floor((i + 0.5) * n_slices / count)) for i in range(count)})


def prediction_figure(
    volume: Any,
    labels: Any,
    positions: Sequence[int],
    class_names: Sequence[str],
    *,
    colors: Sequence[str] | None = None,
    voxel_size_nm: float | None = None,
    title: str | None = None,
) -> Figure:
    """Reconstructed slices beside their predicted labels (the paper's Fig. 5 layout).

    Parameters
    ----------
    volume : array-like or mapping, indexed by slice number -> ndarray (n_z, n_x)
        Raw intensities; only ``volume[p]`` for ``p`` in ``positions`` is used (a dict of slices works).
    labels : array-like or mapping, indexed by slice number -> uint8 ndarray (n_z, n_x)
        Predicted labels ``0 … len(class_names) - 1``.
    positions : sequence of int
        Slice numbers (axis 0) to show, one row each.
    class_names : sequence of str
        Name of every label value (legend).
    colors : sequence of str, optional
        Colour of every class; default :data:`DEFAULT_CLASS_COLORS`.
    voxel_size_nm : float, optional
        Axes in nm instead of px.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    positions = [int(p) for p in positions]
    if not positions:
        raise InputError("prediction figure", "no slice positions to show", "give at least one position")
    n_classes = len(class_names)
    cols = list(colors) if colors is not None else list(DEFAULT_CLASS_COLORS)
    if len(cols) < n_classes:
        cols += [f"C{i}" for i in range(len(cols), n_classes)]
    cmap = ListedColormap(cols[:n_classes])
    first = np.asarray(volume[positions[0]])
    h, w = first.shape
    panel_w = 4.0
    panel_h = max(1.2, panel_w * h / w)
    fig = Figure(figsize=(2 * panel_w + 0.4, panel_h * len(positions) + 1.1), layout="constrained")
    axes = fig.subplots(len(positions), 2, squeeze=False)
    unit = " (nm)" if voxel_size_nm else " (px)"
    extent = (0.0, w * voxel_size_nm, h * voxel_size_nm, 0.0) if voxel_size_nm else None
    for row, p in enumerate(positions):
        img = np.asarray(volume[p], dtype=np.float32)
        lab = np.asarray(labels[p])
        lo, hi = np.percentile(img, [1.0, 99.5])
        ax_i, ax_l = axes[row]
        ax_i.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", extent=extent)
        ax_l.imshow(lab, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest", extent=extent)
        ax_i.set_ylabel(f"slice {p}\nz{unit}", fontsize=8)
        for ax in (ax_i, ax_l):
            ax.tick_params(labelsize=7)
        if row == 0:
            ax_i.set_title("reconstruction", fontsize=9)
            ax_l.set_title("prediction", fontsize=9)
        if row == len(positions) - 1:
            ax_i.set_xlabel(f"x{unit}", fontsize=8)
            ax_l.set_xlabel(f"x{unit}", fontsize=8)
    handles = [Patch(facecolor=cols[i], edgecolor="0.5", label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="outside lower center", ncols=n_classes, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
