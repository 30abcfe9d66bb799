"""Image filters and registration: band-pass, cross-correlation, the neighbour chain, centre of mass."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from .model import AlignParams


def taper(shape: Sequence[int], frac: float = 0.12) -> np.ndarray:
    """Separable cosine (Tukey) edge taper, shape ``shape``."""
    ws = []
    for n in shape:
        w = np.ones(n)
        m = max(1, int(round(frac * n)))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
        ws.append(w)
    return np.outer(ws[0], ws[1])


def bandpass(img: np.ndarray, bandpass_px: Sequence[float], window: np.ndarray | None = None) -> np.ndarray:
    """Gaussian band-pass (difference of Gaussians, sigmas in px), mean removed, tapered by ``window``."""
    lo, hi = float(bandpass_px[0]), float(bandpass_px[1])
    f = img.astype(np.float64)
    f = ndimage.gaussian_filter(f, lo, mode="nearest") if lo > 0 else f
    f = f - ndimage.gaussian_filter(f, hi, mode="nearest") if hi > 0 else f - f.mean()
    if window is not None:
        f = (f - f.mean()) * window
    return f


def profile_1d(prof: np.ndarray, bandpass_px: Sequence[float]) -> np.ndarray:
    """1-D version of :func:`bandpass` with a 15 % taper."""
    lo, hi = float(bandpass_px[0]), float(bandpass_px[1])
    f = ndimage.gaussian_filter1d(prof, lo, mode="nearest") if lo > 0 else prof.copy()
    f = f - (ndimage.gaussian_filter1d(f, hi, mode="nearest") if hi > 0 else f.mean())
    return f * taper((1, f.size), 0.15)[0]


def register(ref: np.ndarray, mov: np.ndarray, upsample: int) -> tuple[np.ndarray, float]:
    """Displacement ``d = (dx, dy)`` of ``mov`` relative to ``ref`` (``mov(p) ≈ ref(p − d)``), px, and the peak NCC."""
    shift, err, _ = phase_cross_correlation(ref, mov, upsample_factor=max(1, int(upsample)), normalization=None)
    ncc = math.sqrt(max(0.0, 1.0 - float(err)))
    return np.array([-shift[1], -shift[0]], dtype=np.float64), ncc


def register_1d(ref: np.ndarray, mov: np.ndarray, upsample: int) -> float:
    """Displacement of 1-D profile ``mov`` relative to ``ref``, px."""
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=max(1, int(upsample)), normalization=None)
    return -float(shift[0])


def stretch_x(img: np.ndarray, k: float, xc: float) -> np.ndarray:
    """``out(y, x) = img(y, xc + k (x − xc))`` (cubic spline, nearest fill)."""
    return ndimage.affine_transform(img, np.array([[1.0, 0.0], [0.0, k]]), offset=np.array([0.0, xc * (1.0 - k)]), order=3, mode="nearest")


def neighbour_order(angles: np.ndarray, ref: int) -> list[tuple[int, int]]:
    """(inner, outer) index pairs walking outward from the reference in angle order."""
    order = np.argsort(angles)
    pos = int(np.where(order == ref)[0][0])
    pairs = [(int(order[j - 1]), int(order[j])) for j in range(pos + 1, order.size)]
    pairs += [(int(order[j + 1]), int(order[j])) for j in range(pos - 1, -1, -1)]
    return pairs


def _stretch_factor(theta_inner: float, theta_outer: float) -> float:
    return math.cos(math.radians(theta_outer)) / max(math.cos(math.radians(theta_inner)), 1e-3)


def pair_shift(
    a: np.ndarray, b: np.ndarray, theta_a: float, theta_b: float, xc: float, params: AlignParams, window: np.ndarray
) -> tuple[np.ndarray, float]:
    """Displacement of image ``b`` (outer tilt) relative to ``a`` (inner tilt), px (x, y), and NCC."""
    k = 1.0
    if params.cosine_stretch:
        k = _stretch_factor(theta_a, theta_b)
        b = stretch_x(b, k, xc)
    d, ncc = register(bandpass(a, params.bandpass_px, window), bandpass(b, params.bandpass_px, window), params.upsample)
    return np.array([k * d[0], d[1]]), ncc


def neighbour_chain(frames: np.ndarray, angles: np.ndarray, ref: int, params: AlignParams) -> tuple[np.ndarray, np.ndarray]:
    """Translations by neighbour cross-correlation, accumulated outward from the reference.

    Parameters
    ----------
    frames : ndarray, shape (n_tilts, n_y, n_x)
        Images already rotated so that the tilt axis is (nearly) along y.
    angles : ndarray, shape (n_tilts,)
        Degrees.
    ref : int
        Reference tilt (its shift is 0).
    params : AlignParams

    Returns
    -------
    shifts : ndarray, shape (n_tilts, 2)
        ``t_i`` (x, y) in the frame of ``frames``, px: image i is displaced by ``t_i``.
    ncc : ndarray, shape (n_tilts,)
        Peak normalised correlation with the inner neighbour (1 for the reference).
    """
    n, ny, nx = frames.shape
    window = taper((ny, nx))
    t = np.zeros((n, 2))
    ncc = np.ones(n)
    for inner, outer in neighbour_order(angles, ref):
        xc = (nx - 1) / 2.0 + t[inner, 0]
        d, ncc[outer] = pair_shift(frames[inner], frames[outer], float(angles[inner]), float(angles[outer]), xc, params, window)
        t[outer] = t[inner] + d  # the displacement is measured in the inner image's frame
    return t, ncc


def neighbour_residual(aligned: np.ndarray, angles: np.ndarray, ref: int, p: AlignParams) -> np.ndarray:
    """Displacement of every aligned image from its inner neighbour, shape (n_tilts, 2), px."""
    n, ny, nx = aligned.shape
    window = taper((ny, nx))
    d = np.zeros((n, 2))
    for inner, outer in neighbour_order(angles, ref):
        d[outer], _ = pair_shift(aligned[inner], aligned[outer], angles[inner], angles[outer], (nx - 1) / 2.0, p, window)
    return d


def neighbour_ncc(frames: np.ndarray, angles: np.ndarray, ref: int, p: AlignParams) -> np.ndarray:
    """Band-passed correlation of each tilt with its inner neighbour at zero shift (after stretching), (n_tilts,)."""
    n, ny, nx = frames.shape
    window = taper((ny, nx))
    out = np.ones(n)
    for inner, outer in neighbour_order(angles, ref):
        b = frames[outer]
        if p.cosine_stretch:
            b = stretch_x(b, _stretch_factor(angles[inner], angles[outer]), (nx - 1) / 2.0)
        fa, fb = bandpass(frames[inner], p.bandpass_px, window), bandpass(b, p.bandpass_px, window)
        out[outer] = float(np.sum(fa * fb) / max(math.sqrt(np.sum(fa * fa) * np.sum(fb * fb)), 1e-30))
    return out


def center_of_mass_x(frames: np.ndarray, angles: np.ndarray, ref: int) -> npt.NDArray[np.float64]:
    """x translations that make the projected centre of mass follow ``X cos θ + Z sin θ``.

    Background (the 5th percentile of the stack) is removed first.  Returns ``t_x`` (n_tilts,), px, 0 at
    the reference, such that ``x_cm,i − t_x,i`` is the best-fitting sinusoid through the centroids.
    """
    xcm = projected_com_x(frames)
    th = np.radians(angles)
    B = np.column_stack([np.cos(th), np.sin(th)])
    coef, *_ = np.linalg.lstsq(B, xcm, rcond=None)
    tx = xcm - B @ coef
    return tx - tx[ref]


def projected_com_x(frames: np.ndarray) -> npt.NDArray[np.float64]:
    """x of the centre of mass of every image relative to the image centre, px, (n_tilts,), after removing
    the stack's 5th-percentile background and clipping at 0."""
    nx = frames.shape[2]
    bg = float(np.percentile(frames, 5))
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0
    w = np.clip(frames.astype(np.float64) - bg, 0, None).sum(axis=1)
    return (w * x).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)


def background_level(data: np.ndarray) -> float:
    """Vacuum level if the stack has one (a dense low mode of the histogram), else 0."""
    sub = data[:, :: max(1, data.shape[1] // 64), :: max(1, data.shape[2] // 64)]
    p1, p10, p99 = np.percentile(sub, [1, 10, 99.5])
    if p99 > p1 and (p10 - p1) < 0.03 * (p99 - p1) and p1 > 0:
        return float(np.percentile(sub, 5))
    return 0.0
