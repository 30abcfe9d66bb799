"""Checks of tilt series and tilt angles, with one set of named thresholds.

Every stage that takes a tilt series (``tomoflow.io`` when reading files, ``tomoflow.align``,
``tomoflow.recon``) validates it here, so that the same stack is accepted or refused for the same
reason everywhere.  Each check raises :class:`~tomoflow.errors.InputError` with a one-line
"where: problem. Fix: fix" message.

Thresholds
----------
``MIN_TILTS``
    Fewest tilt images accepted for a tomogram (alignment and reconstruction).
``MIN_TILT_RANGE_DEG``
    Smallest tilt range (degrees).
``MAX_ABS_ANGLE_DEG``
    Largest |tilt| (degrees); ±90° is allowed (full-range rod/needle specimens).
``MIN_IMAGE_PX``
    Smallest image side (pixels) that can be aligned.
``MIN_NEIGHBOUR_CORRELATION``
    Median correlation of neighbouring (blurred) tilt images below which a series is "pure noise".
"""

from __future__ import annotations

import math
from os import PathLike

import numpy as np
import numpy.typing as npt

from .errors import InputError

MIN_TILTS = 10
MIN_TILT_RANGE_DEG = 20.0
MAX_ABS_ANGLE_DEG = 90.0
MIN_IMAGE_PX = 16
MIN_NEIGHBOUR_CORRELATION = 0.2

Where = str | PathLike[str]


def check_angles(
    where: Where,
    angles_deg: npt.ArrayLike,
    n_images: int | None = None,
    *,
    monotonic: bool = False,
    max_abs_deg: float | None = MAX_ABS_ANGLE_DEG,
) -> npt.NDArray[np.float64]:
    """Validate tilt angles (degrees).

    Parameters
    ----------
    where : str or path-like
        The file or input named in error messages.
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees.
    n_images : int, optional
        Number of images the angles belong to (the count must match).
    monotonic : bool
        Require strictly increasing or decreasing angles (the order of a file on disk); otherwise
        only repeated angles are refused.

    Returns
    -------
    ndarray, shape (n_tilts,), float64

    Raises
    ------
    InputError
        No angles, NaN/Inf, |angle| > ``MAX_ABS_ANGLE_DEG``, angles that look like radians, repeated or
        (with ``monotonic``) unsorted angles, a count different from ``n_images``.  Positions in
        messages count from 1 (the line of an IMOD ``.tlt`` file).
    """
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    if a.size == 0:
        raise InputError(where, "no tilt angles", "give one angle (degrees) per image")
    if not np.all(np.isfinite(a)):
        i = int(np.argmax(~np.isfinite(a)))
        raise InputError(where, f"tilt angle {i + 1} is NaN/Inf", "give one finite angle (degrees) per image")
    if max_abs_deg is not None and np.any(np.abs(a) > max_abs_deg):
        raise InputError(
            where,
            f"tilt angles must lie within ±{max_abs_deg:g}°, found {a.min():g}..{a.max():g}",
            "give angles in degrees (not scaled values)",
        )
    if a.size >= 3 and float(np.ptp(a)) <= math.pi + 1e-6 and np.all(np.abs(a) <= math.pi / 2 + 1e-6):
        raise InputError(
            where,
            f"tilt angles span only {float(np.ptp(a)):.3g} (max |angle| {np.abs(a).max():.3g}); they look like radians",
            "give the angles in degrees (multiply radians by 180/π)",
        )
    if monotonic and a.size > 1:
        d = np.diff(a)
        if not (np.all(d > 0) or np.all(d < 0)):
            i = int(np.argmax(~((d > 0) if d[0] > 0 else (d < 0))))
            raise InputError(
                where,
                f"tilt angles are not strictly monotonic (angle {i + 2} = {a[i + 1]:g}° after angle {i + 1} = {a[i]:g}°)",
                "sort the images by tilt angle (use the .rawtlt order of the stack) and remove duplicates",
            )
    _, first, counts = np.unique(a, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = float(a[first[np.argmax(counts > 1)]])
        raise InputError(where, f"repeated tilt angle {dup:g}°", "remove duplicate images and their angles")
    if n_images is not None and a.size != n_images:
        raise InputError(
            where,
            f"{a.size} tilt angles for {n_images} images",
            "give exactly one angle per image (check the .tlt/.rawtlt file belongs to this stack)",
        )
    return a


def check_tilt_series(
    tilt_series: npt.ArrayLike,
    angles_deg: npt.ArrayLike,
    *,
    where: Where = "tilt series",
    min_tilts: int = MIN_TILTS,
    min_image_px: int = 1,
    max_abs_deg: float | None = MAX_ABS_ANGLE_DEG,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Check shape, values and angles of a tilt series.

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)
        Tilt images, (tilt, y, x).
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees.
    where : str or path-like
        Name of the input in error messages (file name).
    min_tilts : int
        Fewest tilts accepted (``MIN_TILTS`` for real work; lower only for internal sub-problems).
    min_image_px : int
        Smallest accepted image side, pixels (``MIN_IMAGE_PX`` for alignment).
    max_abs_deg : float or None
        Largest accepted |angle|, see :func:`check_angles`.

    Returns
    -------
    data : ndarray, shape (n_tilts, n_slices, n_det), float32, C-contiguous
    angles : ndarray, shape (n_tilts,), float64

    Raises
    ------
    InputError
        Not 3-D, empty, too small, NaN/Inf pixels, constant (blank) images, fewer than ``min_tilts``
        tilts, a tilt range under ``MIN_TILT_RANGE_DEG``, bad angles (see :func:`check_angles`).
    """
    data = np.ascontiguousarray(tilt_series, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 1:
        raise InputError(where, f"expected a 3-D tilt series (n_tilts, n_slices, n_det), got shape {data.shape}",
                         "pass all tilt images as one stack")
    n_tilts, n_y, n_det = data.shape
    angles = check_angles(where, angles_deg, n_tilts, max_abs_deg=max_abs_deg)
    if n_tilts < min_tilts:
        raise InputError(where, f"only {n_tilts} tilt images; at least {min_tilts} are needed for a tomogram",
                         "acquire/keep more tilts (typically 2° steps over ±60-70°)")
    span = float(np.ptp(angles))
    if n_tilts > 1 and span < MIN_TILT_RANGE_DEG:
        raise InputError(where, f"tilt range is only {span:.3g}°", f"use a tilt series covering at least {MIN_TILT_RANGE_DEG:g}°")
    if n_det < 2 or min(n_y, n_det) < min_image_px:
        raise InputError(where, f"images of {n_y}×{n_det} px are too small",
                         f"use images of at least {max(min_image_px, 2)} px on each side")
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(where, f"{int(bad.sum())} NaN/Inf pixel(s), first at (tilt, y, x) = {first}",
                         "replace them (e.g. by the local background) before running tomoflow")
    flat = constant_images(data)
    if flat.size:
        raise InputError(where, f"{flat.size} blank (constant) image(s), first at tilt index {int(flat[0])} "
                         f"(angle {angles[flat[0]]:g}°)", "remove blank images and their angles")
    return data, angles


def constant_images(tilt_series: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Indices of images whose pixels are all equal (an exact test, no tolerance).

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)

    Returns
    -------
    ndarray of int, shape (n_constant,)
    """
    data = np.asarray(tilt_series)
    flat = data.reshape(data.shape[0], -1)
    return np.flatnonzero(np.all(flat == flat[:, :1], axis=1))


def neighbour_correlation(
    tilt_series: npt.ArrayLike, angles_deg: npt.ArrayLike, *, sigma_px: float = 2.0, max_slices: int = 64
) -> float:
    """Median Pearson correlation of angularly neighbouring tilt images (a signal-presence score).

    Each image is Gaussian-blurred (``sigma_px``) to suppress shot noise; images of a real specimen
    taken a few degrees apart then correlate strongly (> 0.8 for HAADF series), whereas pure noise
    gives ≈ 0 (independent between tilts).  An image that is exactly constant (tested on the raw
    pixels, before blurring, so rounding in the blur cannot decide) correlates 0 with everything.

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)
    angles_deg : array_like, shape (n_tilts,)
    sigma_px : float
        Blur, pixels.
    max_slices : int
        At most this many evenly spaced slices (axis 1) are used.

    Returns
    -------
    float
        Median correlation over the ``n_tilts - 1`` neighbouring pairs (0 for constant images).
    """
    from scipy.ndimage import gaussian_filter

    data = np.asarray(tilt_series)
    order = np.argsort(np.asarray(angles_deg, dtype=np.float64))
    rows = np.unique(np.linspace(0, data.shape[1] - 1, min(max_slices, data.shape[1])).round().astype(int))
    sub = np.asarray(data[:, rows, :], dtype=np.float64)[order]
    constant = np.zeros(sub.shape[0], bool)
    constant[constant_images(sub)] = True
    sig = (0.0, sigma_px if sub.shape[1] > 1 else 0.0, sigma_px)
    sub = gaussian_filter(sub, sig, mode="nearest")
    flat = sub.reshape(sub.shape[0], -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    flat[constant] = 0.0
    norm = np.sqrt((flat * flat).sum(axis=1))
    num = (flat[:-1] * flat[1:]).sum(axis=1)
    den = norm[:-1] * norm[1:]
    corr = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return float(np.median(corr))


def check_signal(
    tilt_series: npt.ArrayLike,
    angles_deg: npt.ArrayLike,
    *,
    where: Where = "tilt series",
    min_correlation: float = MIN_NEIGHBOUR_CORRELATION,
) -> float:
    """Raise :class:`InputError` when a tilt series shows no specimen (all noise, blank or constant).

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)
    angles_deg : array_like, shape (n_tilts,)
    where : str or path-like
        Name of the input in the message.
    min_correlation : float
        Threshold on :func:`neighbour_correlation`.

    Returns
    -------
    float
        The neighbour correlation.
    """
    data = np.asarray(tilt_series)
    if not np.any(data > 0):
        raise InputError(where, "no positive signal (all pixels ≤ 0)",
                         "check the stack: counts stored as signed int16 need +32768; the background must be ≈ 0")
    if constant_images(data).size == data.shape[0]:
        raise InputError(where, "every tilt image is constant (no specimen)", "check that the file holds the tilt series")
    c = neighbour_correlation(data, angles_deg)
    if c < min_correlation:
        raise InputError(where, f"tilt images look like pure noise (median correlation of neighbouring tilts {c:.3f} "
                         f"< {min_correlation:g})", "check that the stack holds the specimen and is aligned")
    return c
