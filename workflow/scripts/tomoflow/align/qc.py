"""Quality checks and the QC figure: sinogram continuity, the row-band misfit gate, the figure."""

from __future__ import annotations

import logging
import textwrap
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from .model import Alignment, AlignmentQualityError
from .warp import warp_stack

log = logging.getLogger("tomoflow.align")

#: Worst/median band misfit ratio above which a warning is logged (the rule fails above
#: ``AlignParams.max_band_misfit_ratio``).
WARN_BAND_RATIO = 2.0


def sinogram_continuity(stack: npt.ArrayLike, row: int | None = None) -> float:
    """Median correlation of neighbouring rows of the sinogram of one row (default: the central row).

    Parameters
    ----------
    stack : array_like, shape (n_tilts, n_y, n_x)
    row : int, optional

    Returns
    -------
    float
        Median over tilts of the Pearson correlation between sinogram lines ``i`` and ``i+1``, computed on
        a 3-row average around ``row`` with the line mean removed.
    """
    a = np.asarray(stack, dtype=np.float64)
    r = a.shape[1] // 2 if row is None else int(row)
    sino = a[:, max(0, r - 1) : r + 2, :].mean(axis=1)
    sino = sino - sino.mean(axis=1, keepdims=True)
    num = np.sum(sino[1:] * sino[:-1], axis=1)
    den = np.sqrt(np.sum(sino[1:] ** 2, axis=1) * np.sum(sino[:-1] ** 2, axis=1))
    return float(np.median(num / np.maximum(den, 1e-30)))


def check_row_bands(bands: dict[str, Any], max_ratio: float, where: str, max_axis_spread_px: float = float("inf")) -> None:
    """Quality gate on the row bands (``bands`` as in ``alignment.json["row_bands"]``): reprojection misfit and
    the rotation-axis position per band.

    Raises
    ------
    AlignmentQualityError
        The worst band's misfit exceeds ``max_ratio`` × the median band's, or the bands' rotation-axis
        positions spread over more than ``max_axis_spread_px`` (warnings above ``WARN_BAND_RATIO`` and half
        the spread).
    """
    ratio = float(bands.get("worst_to_median", float("nan")))
    spread = float(bands.get("axis_offset_spread_px", float("nan")))
    misfits = ", ".join(f"{m:.3g}" for m in bands.get("misfit", []))
    fix = ("check the sample's tilt_axis_deg prior and the alignment QC figure, or raise align.max_band_misfit_ratio / "
           "align.max_band_axis_spread_px if the data are known to differ along the axis")
    if np.isfinite(ratio) and ratio > max_ratio:
        raise AlignmentQualityError(
            where, f"reprojection misfit of row band {bands['worst_band']} is {ratio:.1f}× the median band's (misfits {misfits}; "
            f"align.max_band_misfit_ratio = {max_ratio:g}); a wrong tilt axis looks exactly like this", fix)
    if np.isfinite(spread) and spread > max_axis_spread_px:
        offsets = ", ".join(f"{v:+.2f}" for v in bands.get("axis_offset_px", []))
        raise AlignmentQualityError(
            where, f"the rotation axis sits at different x in different row bands (offsets {offsets} px, spread {spread:.2f} px > "
            f"align.max_band_axis_spread_px = {max_axis_spread_px:g}): the tilt-axis angle is wrong", fix)
    if np.isfinite(ratio) and ratio > WARN_BAND_RATIO:
        log.warning("WARNING: row band %d has %.1f× the median reprojection misfit (%s): check the tilt axis in the QC figure",
                    bands["worst_band"], ratio, misfits)
    if np.isfinite(spread) and spread > 0.5 * max_axis_spread_px:
        log.warning("WARNING: the rotation axis moves by %.2f px between row bands: check the tilt axis in the QC figure", spread)


def alignment_qc_figure(raw: npt.ArrayLike, aligned: npt.ArrayLike, alignment: Alignment, title: str = "") -> Figure:
    """QC figure: shifts vs angle, per-tilt residual, tilt-axis score curve, row-band misfits, central-row
    sinogram before/after.

    Parameters
    ----------
    raw : array_like, shape (n_tilts, n_y, n_x)
        Raw stack (the "before" sinogram is taken in the frame rotated by φ without shifts).
    aligned : array_like, shape (n_tilts, n_y', n_x')
    alignment : Alignment
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    raw = np.asarray(raw, dtype=np.float32)
    aligned = np.asarray(aligned, dtype=np.float32)
    n = raw.shape[0]
    rot_only = warp_stack(raw, alignment.tilt_axis_deg, np.zeros((n, 2)), 0.0, alignment.output_shape, order=1)
    order = np.argsort(alignment.angles_deg)
    ang = alignment.angles_deg[order]
    fig = Figure(figsize=(13, 10), layout="constrained")
    gs = fig.add_gridspec(3, 2)
    ax = fig.add_subplot(gs[0, 0])
    ax.plot(ang, alignment.shifts_px[order, 0], "o-", ms=3, label="shift x")
    ax.plot(ang, alignment.shifts_px[order, 1], "s-", ms=3, label="shift y")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("tilt angle (°)")
    ax.set_ylabel("shift (px, raw frame)")
    ax.legend(loc="best")
    ax.set_title(f"φ = {alignment.tilt_axis_deg:.2f}°, centre offset = {alignment.center_offset_px:+.2f} px")
    ax2 = fig.add_subplot(gs[0, 1])
    per = np.asarray(alignment.residuals.get("per_tilt_px", np.full(n, np.nan)), dtype=np.float64)
    ax2.bar(ang, per[order], width=1.5)
    ax2.set_xlabel("tilt angle (°)")
    ax2.set_ylabel("residual (px)")
    ax2.set_title(f"residual RMS {alignment.residual_px:.3f} px ({alignment.residuals.get('method', '')})")
    _axis_panel(fig.add_subplot(gs[1, 0]), alignment)
    _band_panel(fig.add_subplot(gs[1, 1]), alignment)
    row = aligned.shape[1] // 2
    extent = (-0.5, aligned.shape[2] - 0.5, float(ang[-1]), float(ang[0]))
    for k, (stack, name) in enumerate(((rot_only, "before (rotated only)"), (aligned, "after"))):
        axs = fig.add_subplot(gs[2, k])
        axs.imshow(stack[order, row, :], cmap="gray", aspect="auto", extent=extent, interpolation="nearest")
        axs.set_xlabel("detector x (px)")
        axs.set_ylabel("tilt angle (°)")
        axs.set_title(f"sinogram of row {row} {name}: continuity {sinogram_continuity(stack[order], row):.3f}")
    hot = alignment.residuals.get("hot_pixels") or {}
    if hot.get("enabled"):
        note = f"hot pixels / X-ray spikes replaced: {hot['replaced_pixels']} in {len(hot['tilts_affected'])} tilt(s)"
        title = f"{title} — {note}" if title else note
    if title:
        fig.suptitle(title)
    return fig


def _axis_panel(ax: Any, alignment: Alignment) -> None:
    info = alignment.residuals.get("tilt_axis", {})
    curve = info.get("score_curve", {})
    phi, err = np.asarray(curve.get("tilt_axis_deg", [])), np.asarray(curve.get("axis_error_deg", []))
    if phi.size:
        ax.plot(phi, err, "o-", ms=3, label=f"{info.get('criterion', '')} criterion")
        finite = err[np.isfinite(err)]
        if finite.size:  # far-off trial angles can give huge errors: keep the zero crossing readable
            ax.set_ylim(max(-8.0, float(finite.min()) - 0.5), min(8.0, float(finite.max()) + 0.5))
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(alignment.tilt_axis_deg, color="C3", lw=1, label=f"φ = {alignment.tilt_axis_deg:.2f} ± {info.get('uncertainty_deg', float('nan')):.2f}°")
    if "prior_deg" in info:
        ax.axvline(info["prior_deg"], color="0.4", ls="--", lw=1, label=f"prior {info['prior_deg']:.2f}°")
    ax.set_xlabel("trial tilt axis φ (°)")
    ax.set_ylabel("estimated error φ − φ_true (°)")
    ax.set_title("tilt-axis search" + (" — HIT BOUND" if info.get("hit_bound") else ""))
    ax.text(0.01, 0.02, textwrap.fill(str(info.get("status", "not estimated")), 70), transform=ax.transAxes, fontsize=7, va="bottom")
    ax.legend(loc="best", fontsize=8)


def _band_panel(ax: Any, alignment: Alignment) -> None:
    bands = alignment.residuals.get("row_bands", {})
    m = np.asarray(bands.get("misfit", []), dtype=np.float64)
    if m.size:
        judged = set(bands.get("judged", range(m.size)))
        ax.bar(np.arange(m.size), m, color=["C3" if k == bands.get("worst_band") else "C0" if k in judged else "0.7" for k in range(m.size)])
        ax.set_xticks(np.arange(m.size), [f"{a}–{b}" for a, b in bands.get("rows", [])], fontsize=7)
        for k, off in enumerate(bands.get("axis_offset_px", [])):
            if np.isfinite(off):
                ax.text(k, m[k], f"axis {off:+.2f} px", ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("row band (aligned rows, along the tilt axis)")
    ax.set_ylabel("relative reprojection misfit")
    ax.set_title(f"misfit per row band: worst/median {bands.get('worst_to_median', float('nan')):.2f}; rotation axis spread "
                 f"{bands.get('axis_offset_spread_px', float('nan')):.2f} px\n(grey: too little specimen to judge)", fontsize=9)
