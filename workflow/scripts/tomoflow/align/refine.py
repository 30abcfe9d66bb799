"""Refinement by reconstruction: projection matching, reprojection misfit per row band, and 1-D scans of
the rotation centre by reconstruction sharpness."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ..geometry import rot
from .model import AlignParams
from .registration import bandpass, profile_1d, register, register_1d, taper
from .warp import block_rows, margins, warp_stack

log = logging.getLogger("tomoflow.align")

#: ``f(stack, angles, thickness, iterations, threads) -> volume``: the reconstruction used by projection matching.
Reconstructor = Callable[[np.ndarray, np.ndarray, int, int, int], np.ndarray]


def sirt_reconstructor(stack: np.ndarray, angles: np.ndarray, thickness: int, iterations: int, threads: int) -> np.ndarray:
    """SIRT of ``stack`` (n_tilts, n_rows, n_det) → volume (n_rows, thickness, n_det) (:mod:`tomoflow.recon`)."""
    from ..recon import reconstruct

    res = reconstruct(stack, angles, thickness_px=int(thickness), algorithm="sirt", iterations=int(iterations), threads=int(threads),
                      signal_check=False, min_tilts=2)
    return np.asarray(res.volume, dtype=np.float32)


def fbp(stack: np.ndarray, angles: np.ndarray, thickness: int, threads: int) -> np.ndarray:
    """Filtered back-projection of ``stack`` (n_tilts, n_rows, n_det) → volume (n_rows, thickness, n_det)."""
    from ..recon import reconstruct

    res = reconstruct(stack, angles, thickness_px=int(thickness), algorithm="fbp", threads=int(threads), signal_check=False, min_tilts=2)
    return np.asarray(res.volume, dtype=np.float64)


def band_energies(stack: np.ndarray, reprojection: np.ndarray, cols: tuple[int, int], n_bands: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Residual energy ``‖FP(rec) − data‖²`` and data energy ``‖data‖²`` of ``n_bands`` equal bands of rows.

    Parameters
    ----------
    stack, reprojection : ndarray, shape (n_tilts, n_rows, n_det)
    cols : (int, int)
        Detector columns used.
    n_bands : int

    Returns
    -------
    residual, signal : ndarray, shape (n_bands,)
    """
    c0, c1 = cols
    res, sig = [], []
    for rows in np.array_split(np.arange(stack.shape[1]), n_bands):
        d = stack[:, rows, c0:c1].astype(np.float64)
        res.append(float(np.sum((reprojection[:, rows, c0:c1].astype(np.float64) - d) ** 2)))
        sig.append(float(np.sum(d**2)))
    return np.array(res), np.array(sig)


def band_misfits(stack: np.ndarray, reprojection: np.ndarray, cols: tuple[int, int], n_bands: int) -> npt.NDArray[np.float64]:
    """Relative reprojection misfit ``‖FP(rec) − data‖² / ‖data‖²`` of ``n_bands`` equal bands of rows, shape (n_bands,)."""
    res, sig = band_energies(stack, reprojection, cols, n_bands)
    return res / np.maximum(sig, 1e-30)


def match_shifts(stack: np.ndarray, reproj: np.ndarray, cols: tuple[int, int], p: AlignParams) -> np.ndarray:
    """Register every aligned image against its reprojection: corrections ``(dx, dy)``, shape (n_tilts, 2), px.

    Each direction is measured on 1-D profiles — y on the sum over x (the common line: immune to any
    mismatch across the axis), x on the sum over rows — so that oblique structures cannot turn a misfit in
    one direction into a false shift in the other (the aperture problem of 2-D correlation).
    """
    n, ny, _ = stack.shape
    c0, c1 = cols
    window = taper((ny, c1 - c0))
    up = max(p.upsample, 50)
    corr = np.zeros((n, 2))
    for i in range(n):
        a, b = reproj[i, :, c0:c1].astype(np.float64), stack[i, :, c0:c1].astype(np.float64)
        dy = register_1d(profile_1d(a.sum(axis=1), p.bandpass_px), profile_1d(b.sum(axis=1), p.bandpass_px), up)
        b = ndimage.shift(b, (-dy, 0.0), order=3, mode="nearest")  # y settled first
        dx = float(register(bandpass(a, p.bandpass_px, window), bandpass(b, p.bandpass_px, window), up)[0][0])
        corr[i] = (dx, dy)  # the image sits d further than its reprojection: t_true = t + d
    return corr


@dataclass
class MatchRound:
    """One projection-matching round: corrections to add to ``t`` (n_tilts, 2) px, the misfit of the block and
    per row band, and the rows used."""

    corrections: npt.NDArray[np.float64]
    misfit: float
    bands: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    rows: tuple[int, int] = (0, 0)


def projection_matching_round(
    data: np.ndarray,
    angles: np.ndarray,
    phi_deg: float,
    t: np.ndarray,
    center_px: float,
    out_shape: tuple[int, int],
    *,
    thickness: int,
    iterations: int,
    params: AlignParams,
    reconstructor: Reconstructor,
    threads: int = 1,
    rot_margin_deg: float = 0.0,
    max_rows: int | None = 96,
    n_bands: int = 4,
) -> MatchRound:
    """Align → reconstruct a block of rows → reproject → register each tilt against its reprojection.

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x)
        Raw (possibly binned) images, background removed.
    angles : ndarray, shape (n_tilts,)
    phi_deg, center_px : float
        Current tilt axis (degrees) and centre offset (px of ``data``).
    t : ndarray, shape (n_tilts, 2)
        Current aligned-frame translations (px of ``data``).
    out_shape : (int, int)
        Aligned frame shape (of ``data``).
    thickness, iterations : int
        Reconstruction thickness (px of ``data``) and SIRT iterations.
    max_rows : int or None
        Central rows reconstructed (None: every usable row).
    n_bands : int
        Row bands of the misfit table.

    Returns
    -------
    MatchRound
    """
    rows, cols = margins(t, out_shape, rot_margin_deg)
    if max_rows is not None:
        rows = block_rows(t, out_shape, rot_margin_deg, max_rows)
    st = warp_stack(data, phi_deg, rot(phi_deg, t), center_px, out_shape, rows=rows, threads=threads)
    from ..projector import forward_project

    vol = reconstructor(st, angles, int(thickness), int(iterations), int(threads))
    pr = forward_project(vol, angles, n_det=st.shape[2], threads=threads)
    corr = match_shifts(st, pr, cols, params)
    misfit = float(band_misfits(st, pr, cols, 1)[0])
    return MatchRound(corr, misfit, band_misfits(st, pr, cols, n_bands), rows)


def smooth(data: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian-smoothed images: removes the frequencies where resampling blur depends on the sub-pixel
    position/rotation, which would otherwise bias sharpness towards integer shifts and zero rotation."""
    return ndimage.gaussian_filter(data, (0, sigma, sigma), mode="nearest").astype(np.float32)


def sharpness(volume: npt.ArrayLike) -> float:
    """Normalised fourth moment ``⟨v⁴⟩ / ⟨v²⟩²`` of a reconstruction (higher = sparser, sharper).

    A wrong rotation centre smears every feature into arcs, which lowers it; it peaks at the
    consistent centre.
    """
    v = np.asarray(volume, dtype=np.float64)
    m2 = float(np.mean(v**2))
    return float(np.mean(v**4) / max(m2 * m2, 1e-300))


@dataclass
class Scan:
    """A 1-D scan: grid, values, best (parabola-refined) position, whether it ended on a bound."""

    grid: list[float]
    values: list[float]
    best: float
    hit_bound: bool

    @property
    def best_value(self) -> float:
        return float(max(self.values))


def scan_max(
    f: Callable[[float], float],
    x0: float,
    half_width: float,
    step: float,
    *,
    bounds: Sequence[float] = (-np.inf, np.inf),
    max_extend: int = 20,
) -> Scan:
    """Maximise ``f`` on a grid ``x0 ± half_width`` (step ``step``), extended while the best value is at an
    end (at most ``max_extend`` points, never past ``bounds``), then refined by a parabola through the
    best grid value and its neighbours.  ``hit_bound`` is True when the best grid point is still an end.
    """
    grid = [float(x) for x in x0 + np.arange(-half_width, half_width + 1e-9, step) if bounds[0] <= x <= bounds[1]]
    vals = [f(x) for x in grid]
    for _ in range(max_extend):
        k = int(np.argmax(vals))
        if k == 0 and grid[0] - step >= bounds[0]:
            grid.insert(0, grid[0] - step)
            vals.insert(0, f(grid[0]))
        elif k == len(grid) - 1 and grid[-1] + step <= bounds[1]:
            grid.append(grid[-1] + step)
            vals.append(f(grid[-1]))
        else:
            break
    k = int(np.argmax(vals))
    best = grid[k]
    if 0 < k < len(grid) - 1:
        y0, y1, y2 = vals[k - 1], vals[k], vals[k + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            best = grid[k] + float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) * step
    return Scan(grid, vals, float(best), k in (0, len(grid) - 1))


def estimate_center(
    data: np.ndarray,
    angles: np.ndarray,
    phi_deg: float,
    t: np.ndarray,
    center0: float,
    out_shape: tuple[int, int],
    *,
    thickness: int,
    threads: int = 1,
    half_width: float = 3.0,
    rot_margin_deg: float = 0.0,
    max_rows: int = 64,
) -> float:
    """Rotation-centre offset (px) that maximises the :func:`sharpness` of an FBP of a block of rows.

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x)
        Raw images (background removed).
    angles : ndarray, shape (n_tilts,)
    phi_deg : float
        Tilt-axis angle, degrees.
    t : ndarray, shape (n_tilts, 2)
        Aligned-frame translations (gauge-fixed), px.
    center0 : float
        Start value, px; scanned in 0.5 px steps over ``± half_width`` (extended while the best value is at
        an end), then refined by a parabola.
    out_shape : (int, int)
    thickness : int
        FBP thickness, px.

    Returns
    -------
    float
        Centre offset, px.
    """
    rows = block_rows(t, out_shape, rot_margin_deg, max_rows)
    s = rot(phi_deg, t)
    data = smooth(data)

    def f(c: float) -> float:
        return sharpness(fbp(warp_stack(data, phi_deg, s, c, out_shape, rows=rows, threads=threads), angles, thickness, threads))

    sc = scan_max(f, center0, half_width, 0.5)
    log.info("centre offset %.2f px (sharpness %.4f; scanned %.1f..%.1f px)", sc.best, sc.best_value, sc.grid[0], sc.grid[-1])
    return sc.best
