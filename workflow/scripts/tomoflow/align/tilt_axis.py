"""The in-plane tilt-axis angle φ from the data, with an uncertainty and a bracketed search.

Two criteria give the signed angle error ``δ = φ − φ_true`` of a trial frame φ (degrees):

* :func:`axis_error_from_row_com` (default; the centre-of-mass tracking of ETSpy's ``tilt_com``, Sanders
  et al. 2015).  In a frame rotated by δ from the true axis, the feature at height y is displaced by ``−δ y``
  across the axis, so for every row the x centre of mass over the tilts follows ``r_y + X_y cos θ + Z_y sin θ``
  with ``r_y = r_0 + tan δ · y`` (measured: the slope's zero is ETSpy's axis on its needle).  Per-tilt x shifts add the same amount to every row and cancel in the
  slope; it needs a specimen fully in view across the axis at every tilt, on an empty background.
* :func:`axis_error_from_common_lines` (fallback when the specimen leaves the field of view): the y profile
  ``Σ_x I_i(x, y)`` is the same for every tilt at the true axis (the common line); to first order its change
  is ``−δ ∂_y M_i`` with ``M_i`` the first x moment, solved for δ by least squares.

:func:`search_tilt_axis` evaluates δ(φ) on a coarse grid over ``prior ± half_width``, widens the range
while no sign change (a zero of δ) has been found, up to ``max_change``, and then refines inside the
bracket by the secant/bisection method.  A zero is a fixed point of the criterion, not the edge of a
scan: a search that finds no bracket fails (``hit_bound``) instead of returning the edge.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .model import AlignParams
from .registration import profile_1d, register_1d, taper

log = logging.getLogger("tomoflow.align")

#: Fraction of a tilt image's column-sum peak above which its edge columns count as "specimen in view
#: is cut off" (the centre-of-mass criterion then cannot be used).
EDGE_MASS_FRACTION = 0.08
#: Rows whose mean mass is below this fraction of the heaviest row are ignored by the row-COM criterion.
MIN_ROW_MASS_FRACTION = 0.2
#: Row blocks of the jackknife uncertainty.
JACKKNIFE_BLOCKS = 8


def specimen_in_view(frames: np.ndarray, edge_px: int = 3) -> bool:
    """True when the specimen stays inside the images across the axis (empty edge columns) at ≥ 90 % of tilts.

    Parameters
    ----------
    frames : ndarray, shape (n_tilts, n_y, n_x)
        Images with the tilt axis near y, background removed.
    """
    cols = np.clip(frames.astype(np.float64), 0, None).sum(axis=1)
    peak = np.maximum(cols.max(axis=1), 1e-12)
    edge = np.maximum(cols[:, :edge_px].mean(axis=1), cols[:, -edge_px:].mean(axis=1))
    return bool(np.mean(edge < EDGE_MASS_FRACTION * peak) >= 0.9)


def common_line_y_shifts(frames: np.ndarray, ref: int, bandpass_px: tuple[float, float], upsample: int = 50) -> npt.NDArray[np.float64]:
    """Displacement along the axis (y, px) of every image relative to the reference by its common line (the
    profile ``Σ_x I_i(x, y)``, which is the same for every tilt in the true frame), shape (n_tilts,).
    ``t_y`` corrected by adding it."""
    prof = frames.astype(np.float64).sum(axis=2)
    ref_p = profile_1d(prof[ref], bandpass_px)
    return np.array([0.0 if i == ref else register_1d(ref_p, profile_1d(prof[i], bandpass_px), upsample) for i in range(prof.shape[0])])


def _support_columns(w: np.ndarray, frac: float = 0.02, pad: int = 4) -> np.ndarray:
    """Per tilt, 1 on the columns between the first and last where the smoothed column sum exceeds ``frac`` of
    its peak (widened by ``pad``), else 0; shape (n_tilts, n_x)."""
    cols = ndimage.gaussian_filter1d(w.sum(axis=1), 2.0, axis=1, mode="nearest")
    out = np.zeros(cols.shape)
    for i, c in enumerate(cols):
        idx = np.flatnonzero(c > frac * c.max())
        if idx.size:
            out[i, max(0, idx[0] - pad) : idx[-1] + pad + 1] = 1.0
        else:
            out[i] = 1.0
    return out


def _row_axis_positions(frames: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the constant term ``r_y`` (px) of the centre-of-mass sinusoid and the row's mean mass."""
    n, ny, nx = frames.shape
    e = max(2, nx // 20)
    w = frames.astype(np.float64)
    # per-tilt vacuum level from the outer columns; no clipping (zero-mean noise leaves the moments unbiased)
    w -= np.median(np.concatenate([w[:, :, :e], w[:, :, -e:]], axis=2).reshape(n, -1), axis=1)[:, None, None]
    w *= _support_columns(w)[:, None, :]  # empty columns only add noise (with the largest lever arm)
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0
    m = w.sum(axis=2)
    xc = (w @ x) / np.where(np.abs(m) > 1e-12, m, 1e-12)
    th = np.radians(angles)
    B = np.column_stack([np.ones(n), np.cos(th), np.sin(th)])
    coef, *_ = np.linalg.lstsq(B, xc, rcond=None)
    return coef[0], m.mean(axis=0)


def _slope_deg(y: np.ndarray, r: np.ndarray, w: np.ndarray) -> float:
    return math.degrees(math.atan(np.polyfit(y, r, 1, w=np.sqrt(w))[0]))


def axis_error_from_row_com(frames: np.ndarray, angles: np.ndarray, rows: tuple[int, int] | None = None) -> tuple[float, float]:
    """Signed tilt-axis error ``δ = φ − φ_true`` (degrees) of the frame of ``frames`` by row centre-of-mass
    tracking, and its jackknife standard error over row blocks.

    Parameters
    ----------
    frames : ndarray, shape (n_tilts, n_y, n_x)
        Translated images, tilt axis near y, background removed (vacuum ≈ 0).
    angles : ndarray, shape (n_tilts,)
        Degrees.
    rows : (int, int), optional
        Rows to use (default all).

    Returns
    -------
    delta_deg, std_deg : float
    """
    r0, r1 = rows if rows is not None else (0, frames.shape[1])
    r, mass = _row_axis_positions(frames[:, r0:r1], angles)
    y = np.arange(r0, r1, dtype=np.float64) - (frames.shape[1] - 1) / 2.0
    good = np.flatnonzero(mass > MIN_ROW_MASS_FRACTION * mass.max())
    if good.size < 4:
        return float("nan"), float("nan")
    delta = _slope_deg(y[good], r[good], mass[good])
    blocks = np.array_split(good, min(JACKKNIFE_BLOCKS, good.size // 2))
    jk = [_slope_deg(y[keep], r[keep], mass[keep]) for keep in (np.setdiff1d(good, b) for b in blocks)]
    k = len(jk)
    std = math.sqrt((k - 1) / k * float(np.sum((np.array(jk) - np.mean(jk)) ** 2))) if k > 1 else float("nan")
    return float(delta), float(std)


def axis_error_from_common_lines(
    frames: np.ndarray, angles: np.ndarray, ref: int, params: AlignParams, rows: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Signed tilt-axis error ``δ = φ − φ_true`` (degrees) by the common-line (y-profile) principle, and its
    standard error.

    ``S_i − S_ref = δ ∂_y (M_i − M_ref)`` (``S`` the y profile, ``M`` the first x moment per row), solved for δ
    by least squares over all tilts and rows after removing, per tilt, a residual y shift (``∂_y S_ref``) and
    an intensity scale (``S_ref``).

    Parameters
    ----------
    frames : ndarray, shape (n_tilts, n_y, n_x)
        Translated images, tilt axis near y, background removed.
    angles : ndarray, shape (n_tilts,)
    ref : int
    params : AlignParams
        ``bandpass_px`` filters the profiles along y.
    rows : (int, int), optional
        Rows to use (default all, tapered at both ends).

    Returns
    -------
    delta_deg, std_deg : float
    """
    n, ny, nx = frames.shape
    r0, r1 = rows if rows is not None else (0, ny)
    f = frames[:, r0:r1, :].astype(np.float64)
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0
    lo, hi = float(params.bandpass_px[0]), float(params.bandpass_px[1])

    def filt(v: np.ndarray, order: int = 0) -> np.ndarray:
        out = ndimage.gaussian_filter1d(v, max(lo, 1.0), axis=-1, order=order, mode="nearest")
        return out - ndimage.gaussian_filter1d(out, hi, axis=-1, mode="nearest") if hi > 0 else out

    w = taper((1, r1 - r0), 0.15)[0]
    S, dM = filt(f.sum(axis=2)) * w, filt(f @ x, order=1) * w
    q, _ = np.linalg.qr(np.column_stack([filt(f[ref].sum(axis=1), order=1) * w, S[ref]]))
    pieces = []
    for i in range(n):
        if i != ref:
            yv, a = S[i] - S[ref], -(dM[i] - dM[ref])
            pieces.append((yv - q @ (q.T @ yv), a - q @ (q.T @ a)))
    num = sum(float(a @ yv) for yv, a in pieces)
    den = max(sum(float(a @ a) for _, a in pieces), 1e-30)
    corr = num / den
    rss = sum(float(((yv - corr * a) ** 2).sum()) for yv, a in pieces)
    dof = max(1, sum(yv.size - 2 for yv, _ in pieces) - 1)
    return -math.degrees(corr), math.degrees(math.sqrt(rss / dof / den))


@dataclass
class AxisSearch:
    """Result of :func:`search_tilt_axis` (JSON-ready through :meth:`to_json`)."""

    value_deg: float
    std_deg: float
    prior_deg: float
    criterion: str
    hit_bound: bool
    grid_deg: list[float] = field(default_factory=list)
    error_deg: list[float] = field(default_factory=list)
    status: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "value_deg": self.value_deg, "uncertainty_deg": self.std_deg, "prior_deg": self.prior_deg,
            "change_from_prior_deg": self.value_deg - self.prior_deg, "criterion": self.criterion,
            "hit_bound": self.hit_bound, "status": self.status,
            "score_curve": {"tilt_axis_deg": self.grid_deg, "axis_error_deg": self.error_deg},
        }


def _bracket(f: Callable[[float], float], prior: float, half_width: float, max_change: float, cache: dict[float, float]) -> tuple[float, float] | None:
    """Coarse grid over ``prior ± half_width``, widened by ``half_width`` at a time up to ``± max_change``
    until δ changes sign between neighbours; returns the bracket nearest the prior, or None."""
    step = max(0.25, half_width / 6.0)
    lo, hi = prior - half_width, prior + half_width
    while True:
        grid = np.arange(lo, hi + 1e-9, step)
        vals = [cache.setdefault(round(float(g), 6), f(float(g))) for g in grid]
        ok = [k for k in range(len(grid) - 1) if np.isfinite(vals[k]) and np.isfinite(vals[k + 1]) and vals[k] <= 0 <= vals[k + 1]]
        if ok:
            k = min(ok, key=lambda k: abs(grid[k] - prior))
            return float(grid[k]), float(grid[k + 1])
        if lo <= prior - max_change and hi >= prior + max_change:
            return None
        lo, hi = max(lo - half_width, prior - max_change), min(hi + half_width, prior + max_change)


def search_tilt_axis(
    f: Callable[[float], tuple[float, float]],
    prior: float,
    *,
    half_width: float,
    max_change: float,
    criterion: str,
    tol: float = 0.01,
) -> AxisSearch:
    """Find φ with ``δ(φ) = 0`` (δ = φ − φ_true from ``f(φ) -> (δ, std)``), coarse to fine.

    Parameters
    ----------
    f : callable
        Criterion: trial angle (degrees) → (signed error δ, its standard error), degrees.
    prior : float
        Prior φ, degrees.
    half_width : float
        Half-width of the first coarse grid, degrees.
    max_change : float
        Largest |φ − prior| searched, degrees.
    criterion : str
        Name recorded in the result.
    tol : float
        Convergence of the refinement, degrees.

    Returns
    -------
    AxisSearch
        ``hit_bound`` True (and ``value_deg`` the prior) when δ has no zero within ``prior ± max_change``.
    """
    cache: dict[float, float] = {}
    stds: dict[float, float] = {}

    def g(phi: float) -> float:
        d, s = f(phi)
        stds[round(phi, 6)] = s
        return d

    br = _bracket(g, prior, half_width, max_change, cache)
    if br is None:
        grid = sorted(cache)
        return AxisSearch(prior, float("nan"), prior, criterion, True, grid, [cache[k] for k in grid],
                          f"not found: the {criterion} criterion has no zero within ±{max_change:g}° of the prior")
    a, b = br
    fa, fb = cache[round(a, 6)], cache[round(b, 6)]
    x = a
    for _ in range(30):
        x = a - fa * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        if not a < x < b:
            x = 0.5 * (a + b)
        fx = cache.setdefault(round(x, 6), g(x))
        if not np.isfinite(fx) or abs(fx) < tol or b - a < tol:
            break
        if fx < 0:
            a, fa = x, fx
        else:
            b, fb = x, fx
    # the uncertainty of δ propagates to φ through the criterion's slope at the zero (a flat criterion is unsure)
    fx = cache[round(x, 6)]
    slope = (fb - fa) / (b - a) if b > a else float("nan")
    value = x - fx / slope if np.isfinite(fx) and slope > 0 else x
    std = stds.get(round(x, 6), float("nan")) / slope if slope > 0 else float("inf")
    grid = sorted(cache)
    return AxisSearch(value, float(std), prior, criterion, False, grid, [cache[k] for k in grid], "estimated")
