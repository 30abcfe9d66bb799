"""Preprocessing of raw tilt series: removal of hot pixels and X-ray spikes.

A hot pixel (a defective detector element) or an X-ray/cosmic-ray hit is one pixel, or two touching
pixels, far brighter than everything around it; a single such value (say 1e30) dominates every
cross-correlation of the alignment and every sum of the reconstruction.  IMOD's ``ccderaser -find``
removes them by comparing each pixel with its surroundings in units of the local noise (its
``PeakCriterion``, default 10 SDs, and ``DiffCriterion``), growing the patch to at most a few pixels
(``MaxPixelsInDiffPatch`` 2 by default, "to avoid erasing gold particles") and replacing it by values
interpolated from the surrounding annulus.  :func:`remove_hot_pixels` follows that scheme with robust
statistics:

1. ``r = x - median3(x)``, the excess of every pixel over the median of its 3×3 neighbourhood.
2. The pixel noise ``σ`` is estimated robustly (``1.4826 × MAD`` of second differences along rows
   and columns, / √1.5, which vanish on ramps and edges) as a function of the local intensity
   ``median3(x)`` (``NOISE_BINS`` quantile bins, interpolated): shot noise grows with the signal, so
   a bright specimen is judged against its own noise; never below ``SIGMA_FLOOR`` × the whole
   image's σ.
3. Candidates are pixels with ``r > threshold_sigma × σ``; they are grouped into 8-connected patches.
4. A patch is a spike when it has at most ``max_spike_px`` pixels **and** its brightest pixel exceeds
   every pixel bordering the patch by more than ``threshold_sigma × σ`` **and** by at least
   ``1 − NEIGHBOUR_FRACTION`` of its height above the local background (the 5×5 median).  A real
   particle, even a compact one 3 px wide, is blurred by the probe: its neighbours carry a large part
   of its height (≥ 30 % for a Gaussian blur of FWHM ≥ 1.5 px), so it is never taken for a spike however
   bright it is.  Larger bright patches are structure and are never touched.
5. Spike pixels, and every NaN/±Inf pixel, are replaced by the median of the valid (finite,
   non-spike) pixels of their 5×5 neighbourhood (a wider window where that has none).

What cannot be repaired (more than ``max_fraction`` of one image's pixels are spikes or non-finite,
e.g. an image full of Inf) raises :class:`~tomoflow.errors.InputError` naming the tilt index (counted
from 0, the position in the stack).

Arrays follow the package conventions: tilt series ``(n_tilts, ny, nx)`` = (tilt, y, x), float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "HOT_PIXEL_SIGMA",
    "MAX_HOT_FRACTION",
    "MAX_SPIKE_PX",
    "HotPixels",
    "find_hot_pixels",
    "remove_hot_pixels",
]

#: Default detection threshold, in robust SDs of the local noise (ccderaser's PeakCriterion default).
HOT_PIXEL_SIGMA = 10.0
#: Largest patch (pixels) taken for a spike (ccderaser's MaxPixelsInDiffPatch default).
MAX_SPIKE_PX = 2
#: Largest fraction of one image's pixels that may be replaced; more is an error.
MAX_HOT_FRACTION = 0.01
#: A spike's neighbours carry less than this fraction of its height above the local background.
NEIGHBOUR_FRACTION = 0.3
#: Number of intensity bins of the noise model (noise SD as a function of the local median).
NOISE_BINS = 16
#: At most this many second differences (a regular subsample) fit the noise model.
NOISE_SAMPLES = 1 << 17
#: The local noise estimate is never below this fraction of the whole image's.
SIGMA_FLOOR = 0.25
_MAD_TO_SD = 1.4826

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class HotPixels:
    """Where :func:`remove_hot_pixels` replaced pixels.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_tilts,)
        Replaced pixels per tilt image (spikes plus non-finite pixels).
    positions : ndarray of int64, shape (n_replaced, 3)
        ``(tilt index, y, x)`` of every replaced pixel, sorted.
    values : ndarray of float64, shape (n_replaced,)
        The original values of those pixels (NaN/±Inf kept as they were).
    shape : tuple of int
        ``(n_tilts, ny, nx)`` of the stack.
    threshold_sigma : float
        The detection threshold used (robust SDs).
    max_spike_px : int
        The largest patch taken for a spike.
    non_finite : ndarray of int64, shape (n_tilts,)
        NaN/±Inf pixels per tilt (included in ``counts``).
    """

    counts: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    shape: tuple[int, int, int]
    threshold_sigma: float
    max_spike_px: int = MAX_SPIKE_PX
    non_finite: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def total(self) -> int:
        """Number of replaced pixels in the whole stack."""
        return int(self.counts.sum())

    def mask(self) -> npt.NDArray[np.bool_]:
        """Boolean mask of the replaced pixels, shape ``(n_tilts, ny, nx)``."""
        m = np.zeros(self.shape, dtype=bool)
        if len(self.positions):
            m[tuple(self.positions.T)] = True
        return m

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (for ``alignment.json`` and the log)."""
        tilts = np.flatnonzero(self.counts)
        return {
            "method": "3x3-median excess > threshold x local robust SD, patches <= max_spike_px, "
            "replaced by the 5x5 median of valid neighbours",
            "threshold_sigma": float(self.threshold_sigma),
            "max_spike_px": int(self.max_spike_px),
            "replaced_pixels": self.total,
            "non_finite_pixels": int(self.non_finite.sum()) if self.non_finite.size else 0,
            "tilts_affected": [int(t) for t in tilts],
            "per_tilt": [int(c) for c in self.counts],
        }


def _robust_sd(values: npt.NDArray[np.float64]) -> float:
    """1.4826 × median absolute deviation; a trimmed SD where the MAD is 0 (quantised data)."""
    if values.size == 0:
        return 0.0
    med = np.median(values)
    sd = _MAD_TO_SD * float(np.median(np.abs(values - med)))
    if sd > 0:
        return sd
    lo, hi = np.percentile(values, [0.5, 99.5])
    core = values[(values >= lo) & (values <= hi)]
    return float(core.std()) if core.size else 0.0


def _noise_sd(img: npt.NDArray[np.float64], level: npt.NDArray[np.float64], n_bins: int) -> npt.NDArray[np.float64]:
    """Pixel noise SD as a function of the local intensity ``level`` (shot noise grows with the signal).

    The noise is measured from second differences along rows and columns, ``x_i − (x_{i−1} +
    x_{i+1})/2`` (SD ``√1.5 σ`` for white noise; zero on any linear ramp, so edges of the specimen
    inflate it little), as ``1.4826 × MAD / √1.5`` in ``n_bins`` quantile bins of ``level``,
    interpolated to every pixel and floored at ``SIGMA_FLOOR`` × the whole image's SD.
    """
    ny, nx = img.shape
    parts, levels = [], []
    if nx >= 3:
        parts.append((img[:, 1:-1] - 0.5 * (img[:, 2:] + img[:, :-2])).ravel())
        levels.append(level[:, 1:-1].ravel())
    if ny >= 3:
        parts.append((img[1:-1, :] - 0.5 * (img[2:, :] + img[:-2, :])).ravel())
        levels.append(level[1:-1, :].ravel())
    if not parts:  # an image under 3 px on both sides: no noise estimate, nothing is a spike
        return np.full(img.shape, np.inf)
    step = max(1, -(-sum(p.size for p in parts) // NOISE_SAMPLES))  # a regular subsample is plenty
    diffs = np.concatenate([p[::step] for p in parts]) / np.sqrt(1.5)
    pair_level = np.concatenate([lv[::step] for lv in levels])
    g = _robust_sd(diffs)
    if g <= 0:  # an exactly constant image: any departure is an outlier
        g = 1e-12 * max(1.0, float(np.max(np.abs(img))))
    order = np.argsort(pair_level, kind="stable")
    chunks = np.array_split(order, max(1, min(n_bins, pair_level.size // 64)))
    centres = np.array([np.median(pair_level[c]) for c in chunks])
    sds = np.array([_robust_sd(diffs[c]) for c in chunks])
    return np.maximum(np.interp(level, centres, sds), SIGMA_FLOOR * g)


def _window_medians(
    img: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_], ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp],
    half: int,
) -> npt.NDArray[np.float64]:
    """Median of the ``valid`` pixels in the (2·half+1)² window around each ``(ys, xs)``; NaN where none."""
    from numpy.lib.stride_tricks import sliding_window_view

    w = 2 * half + 1
    vals = np.pad(np.where(valid, img, np.nan), half, mode="constant", constant_values=np.nan)
    win = sliding_window_view(vals, (w, w))[ys, xs].reshape(len(ys), -1)
    out = np.full(len(ys), np.nan)
    has = np.any(np.isfinite(win), axis=1)
    if has.any():
        out[has] = np.nanmedian(win[has], axis=1)
    return out


def find_hot_pixels(
    image: npt.ArrayLike,
    *,
    threshold_sigma: float = HOT_PIXEL_SIGMA,
    max_spike_px: int = MAX_SPIKE_PX,
    noise_bins: int = NOISE_BINS,
) -> npt.NDArray[np.bool_]:
    """Mask of the spike pixels of one image (steps 1-4 of the module docstring).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        One tilt image (any real dtype; counts).  NaN/±Inf pixels are not part of the mask (they are
        always replaced by :func:`remove_hot_pixels`) and do not disturb the detection.
    threshold_sigma : float
        Detection threshold, robust SDs of the local noise (> 0).
    max_spike_px : int
        Largest 8-connected patch taken for a spike (≥ 1).
    noise_bins : int
        Intensity bins of the noise model.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(img)
    if not finite.any():
        return np.zeros(img.shape, dtype=bool)
    filled = np.where(finite, img, np.median(img[finite]))
    med3 = ndimage.median_filter(filled, size=3, mode="mirror")
    r = filled - med3
    sd = _noise_sd(filled, med3, noise_bins)
    cand = (r > threshold_sigma * sd) & finite
    out = np.zeros(img.shape, dtype=bool)
    if not cand.any():
        return out
    lab, n = ndimage.label(cand, structure=_EIGHT)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = np.flatnonzero(sizes[1:] <= max_spike_px) + 1
    if small.size == 0:
        return out
    slices = ndimage.find_objects(lab)
    ny, nx = img.shape
    for k in small:
        sl = slices[k - 1]
        y0, y1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, ny)
        x0, x1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, nx)
        patch = lab[y0:y1, x0:x1] == k
        ring = ndimage.binary_dilation(patch, structure=_EIGHT) & ~patch & finite[y0:y1, x0:x1]
        if not ring.any():
            continue
        sub = filled[y0:y1, x0:x1]
        peak_at = np.unravel_index(np.argmax(np.where(patch, sub, -np.inf)), sub.shape)
        peak = sub[peak_at]
        py, px = peak_at[0] + y0, peak_at[1] + x0
        around = img[max(py - 2, 0) : py + 3, max(px - 2, 0) : px + 3]
        background = float(np.median(around[np.isfinite(around)]))  # 5x5, the peak included
        rise = peak - float(sub[ring].max())  # above every bordering pixel
        height = peak - background  # above the local background
        if rise > threshold_sigma * sd[py, px] and rise >= (1.0 - NEIGHBOUR_FRACTION) * height:
            out[y0:y1, x0:x1] |= patch
    return out


def _repair(img: npt.NDArray[np.float64], replace: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """``img`` with the ``replace`` pixels set to the median of the valid pixels of their 5×5 window
    (9×9, 17×17, 33×33 where a window holds none; the image median as a last resort)."""
    out = img.copy()
    if not replace.any():
        return out
    ys, xs = np.nonzero(replace)
    valid = ~replace
    fill = np.full(len(ys), np.nan)
    for half in (2, 4, 8, 16):
        todo = np.isnan(fill)
        if not todo.any():
            break
        fill[todo] = _window_medians(img, valid, ys[todo], xs[todo], half)
    fill[np.isnan(fill)] = np.median(img[valid])
    out[ys, xs] = fill
    return out


def _pixels_to_replace(
    img: npt.NDArray[np.float64],
    t: int,
    limit: int,
    threshold_sigma: float,
    max_spike_px: int,
    max_fraction: float,
    where: str | PathLike[str],
) -> tuple[npt.NDArray[np.bool_], int]:
    """Mask of the spikes and NaN/Inf pixels of tilt image ``t``, shape (ny, nx), and the NaN/Inf count.

    Raises :class:`InputError` when more than ``limit`` pixels (``max_fraction`` of the image) would be replaced.
    """
    finite = np.isfinite(img)
    bad_n = int(img.size - finite.sum())
    if bad_n > limit:
        raise InputError(where, f"tilt index {t} has {bad_n} NaN/Inf pixels ({100 * bad_n / img.size:.3g} % "
                         f"of the image, at most {100 * max_fraction:g} % can be repaired)",
                         f"remove tilt index {t} and its angle from the stack, or re-export the image")
    spikes = find_hot_pixels(img, threshold_sigma=threshold_sigma, max_spike_px=max_spike_px)
    replace = spikes | ~finite
    n = int(replace.sum())
    if n > limit:
        raise InputError(where, f"tilt index {t} has {n} hot/spike pixels ({100 * n / img.size:.3g} % of the "
                         f"image, at most {100 * max_fraction:g} % can be repaired)",
                         f"remove tilt index {t} and its angle from the stack, or raise "
                         "align.hot_pixel_threshold if these are real features")
    return replace, bad_n


def remove_hot_pixels(
    stack: npt.ArrayLike,
    *,
    threshold_sigma: float = HOT_PIXEL_SIGMA,
    max_spike_px: int = MAX_SPIKE_PX,
    max_fraction: float = MAX_HOT_FRACTION,
    where: str | PathLike[str] = "tilt series",
) -> tuple[npt.NDArray[np.float32], HotPixels]:
    """Replace hot pixels, X-ray spikes and NaN/±Inf pixels of a tilt series by their local median.

    See the module docstring for the method (IMOD ``ccderaser -find``-like).  Pixels that are not
    replaced keep their exact value.

    Parameters
    ----------
    stack : array_like, shape (n_tilts, ny, nx)
        Raw tilt series (counts; any real dtype).
    threshold_sigma : float
        Detection threshold in robust SDs of the local noise (default 10, as ccderaser); > 0.
    max_spike_px : int
        Largest patch of touching pixels taken for one spike (default 2, as ccderaser); ≥ 1.
    max_fraction : float
        Largest fraction of one image's pixels that may be replaced (default 0.01).
    where : str or path-like
        The file named in error messages.

    Returns
    -------
    clean : ndarray, shape (n_tilts, ny, nx), float32
        The stack with the replaced pixels.
    hot : HotPixels
        Per-tilt counts, positions and original values of the replaced pixels.

    Raises
    ------
    InputError
        Not a 3-D stack; a bad threshold; a tilt image (named by its tilt index, counted from 0) in
        which more than ``max_fraction`` of the pixels are spikes or NaN/Inf (e.g. an image of Inf),
        which cannot be repaired.
    """
    data = np.asarray(stack)
    if data.ndim != 3 or min(data.shape) < 1:
        raise InputError(where, f"expected a tilt series (n_tilts, ny, nx), got shape {data.shape}",
                         "pass all tilt images as one 3-D stack")
    if not threshold_sigma > 0 or not max_spike_px >= 1 or not 0 < max_fraction < 1:
        raise InputError("align.hot_pixel_threshold", f"threshold {threshold_sigma!r}, patch {max_spike_px!r}, "
                         f"fraction {max_fraction!r} out of range", "use a threshold > 0 (default 10 SDs)")
    n_tilts, ny, nx = data.shape
    limit = max(1, int(max_fraction * ny * nx))
    clean = np.empty(data.shape, dtype=np.float32)
    counts = np.zeros(n_tilts, dtype=np.int64)
    non_finite = np.zeros(n_tilts, dtype=np.int64)
    positions, values = [], []
    for t in range(n_tilts):
        img = np.asarray(data[t], dtype=np.float64)
        replace, bad_n = _pixels_to_replace(img, t, limit, threshold_sigma, max_spike_px, max_fraction, where)
        n = int(replace.sum())
        out = _repair(img, replace)
        if n:
            ys, xs = np.nonzero(replace)
            positions.append(np.column_stack([np.full(n, t), ys, xs]))
            values.append(img[ys, xs])
            log.info("tilt index %d: %d pixel(s) replaced (%d spike, %d NaN/Inf)", t, n, n - bad_n, bad_n)
        counts[t] = n
        non_finite[t] = bad_n
        clean[t] = out
    pos = np.concatenate(positions).astype(np.int64) if positions else np.zeros((0, 3), np.int64)
    vals = np.concatenate(values) if values else np.zeros(0)
    hot = HotPixels(counts=counts, positions=pos, values=vals, shape=(n_tilts, ny, nx),
                    threshold_sigma=float(threshold_sigma), max_spike_px=int(max_spike_px), non_finite=non_finite)
    log.info("hot pixels: %d replaced in %d of %d tilts (threshold %g robust SDs)", hot.total,
             int(np.count_nonzero(counts)), n_tilts, threshold_sigma)
    return clean, hot
