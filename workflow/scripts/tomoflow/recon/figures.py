"""Reconstruction figures: orthogonal slices with nm scale bars, misfit per iteration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def orthoslices_figure(volume: npt.NDArray[np.floating], voxel_size_nm: float, *, position: Sequence[int] | None = None,
                       title: str = "", scale_bar_nm: float | None = None) -> Figure:
    """Three orthogonal slices through a volume with nm scale bars (like Fig. 2 of the paper).

    Parameters
    ----------
    volume : ndarray, shape (n_slices, n_z, n_x)
        Axes (y along the tilt axis, z along the beam, x).
    voxel_size_nm : float
        Cubic voxel edge, nm.
    position : (y, z, x), optional
        Voxel the three planes pass through; default the centre.
    title : str
    scale_bar_nm : float, optional
        Bar length; default a round number near 1/4 of the x extent.

    Returns
    -------
    matplotlib.figure.Figure
        Panels: x-z plane (slice ``volume[y]``), x-y plane (``volume[:, z]``, the view along the beam),
        y-z plane (``volume[:, :, x]``); grey scale clipped to the 0.5-99.5 percentiles.
    """
    from matplotlib.figure import Figure

    v = np.asarray(volume, dtype=np.float32)
    ny, nz, nx = v.shape
    py, pz, px = position if position is not None else (ny // 2, nz // 2, nx // 2)
    planes = [(f"x–z (slice y = {py})", v[py], "x", "z"),
              (f"x–y (z = {pz}, beam view)", v[:, pz, :], "x", "y"),
              (f"z–y (x = {px})", v[:, :, px], "z", "y")]
    finite = v[np.isfinite(v)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    if scale_bar_nm is None:
        target = nx * voxel_size_nm / 4
        mag = 10 ** math.floor(math.log10(target)) if target > 0 else 1.0
        scale_bar_nm = max(m * mag for m in (1, 2, 5) if m * mag <= target) if target >= mag else mag
    widths = [nx, nx, nz]
    inch_per_px = 12.0 / sum(widths)
    fig = Figure(figsize=(12.5, max(2.5, max(nz, ny) * inch_per_px + 1.3)), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=widths)
    for ax, (name, img, xl, yl) in zip(axes, planes):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", origin="upper")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"{xl} (px)", fontsize=8)
        ax.set_ylabel(f"{yl} (px)", fontsize=8)
        ax.tick_params(labelsize=7)
        bar_px = scale_bar_nm / voxel_size_nm
        h, w = img.shape
        x0, y0 = 0.05 * w, 0.92 * h
        ax.plot([x0, x0 + bar_px], [y0, y0], color="yellow", lw=3, solid_capstyle="butt")
        ax.text(x0 + bar_px / 2, y0 - 0.03 * h, f"{scale_bar_nm:g} nm", color="yellow", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def misfit_figure(table: Any, *, title: str = "") -> Figure:
    """Relative data misfit per iteration, one line per slab and the whole volume.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``slab`` (int, or ``"all"`` for the whole volume), ``iteration``, ``misfit``
        (:func:`gather_misfit`); iteration 0 (the start estimate) is not drawn.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    table = table[table["iteration"] > 0] if "iteration" in table else table
    for slab, grp in table.groupby(table["slab"].astype(str), sort=False):
        grp = grp.sort_values("iteration")
        style = {"color": "k", "lw": 2.0} if slab == "all" else {"lw": 0.8, "alpha": 0.7}
        ax.plot(grp["iteration"], grp["misfit"], label="whole volume" if slab == "all" else f"slab {slab}", **style)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("relative misfit ‖Ax − y‖ / ‖y‖")
    ax.grid(True, which="both", alpha=0.3)
    if len(ax.lines):
        ax.legend(fontsize=7)
    ax.set_title(title or "reconstruction convergence", fontsize=10)
    return fig
