"""Applying the geometry model of :mod:`tomoflow.geometry` to stacks: warping, binning, usable margins."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ..geometry import warp_params
from .model import Alignment

#: Images whose larger aligned side exceeds this (px) are worked on binned by 2 in the scans and the first
#: projection-matching rounds.
BIN_ABOVE_PX = 300


def working_binning(out_shape: Sequence[int]) -> int:
    """Binning factor of the scans and of the first projection-matching rounds (1 or 2)."""
    return 2 if max(int(v) for v in out_shape) > BIN_ABOVE_PX else 1


def warp_stack(
    data: np.ndarray,
    phi_deg: float,
    shifts_xy: np.ndarray,
    center_px: float,
    out_shape: Sequence[int],
    rows: tuple[int, int] | None = None,
    order: int = 3,
    threads: int = 1,
) -> npt.NDArray[np.float32]:
    """Align every raw image (rows ``[r0, r1)`` of the output only, if given).

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x)
        Raw images.
    phi_deg, center_px : float
        Tilt-axis angle (degrees) and centre offset (px).
    shifts_xy : ndarray, shape (n_tilts, 2)
        Raw-frame shifts ``s_i``, px.
    out_shape : (int, int)
        Aligned image shape.

    Returns
    -------
    ndarray, shape (n_tilts, r1 − r0, out_shape[1]), float32
        Spline-resampled images; pixels from outside the raw image take the nearest edge value.
    """
    n = data.shape[0]
    r0, r1 = rows if rows is not None else (0, int(out_shape[0]))
    out = np.empty((n, r1 - r0, int(out_shape[1])), dtype=np.float32)

    def one(i: int) -> None:
        M, off = warp_params(phi_deg, shifts_xy[i], center_px, data.shape[1:], out_shape, r0)
        out[i] = ndimage.affine_transform(
            data[i], M, offset=off, output_shape=out.shape[1:], order=order, mode="nearest", prefilter=order > 1
        )

    if threads > 1 and n > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    else:
        for i in range(n):
            one(i)
    return out


def apply_alignment(data: npt.ArrayLike, alignment: Alignment, *, threads: int = 1) -> npt.NDArray[np.float32]:
    """Shift and rotate a raw stack into the aligned frame.

    Parameters
    ----------
    data : array_like, shape (n_tilts, n_y, n_x)
        Raw images (any units).
    alignment : Alignment
    threads : int
        Worker threads over images.

    Returns
    -------
    ndarray, shape (n_tilts,) + alignment.output_shape, float32
        Cubic-spline resampled images, tilt axis along y at the detector centre; pixels that come from
        outside the raw image take the nearest edge value.
    """
    arr = np.asarray(data, dtype=np.float32)
    return warp_stack(arr, alignment.tilt_axis_deg, alignment.shifts_px, alignment.center_offset_px, alignment.output_shape, threads=threads)


def bin_images(data: np.ndarray, b: int) -> np.ndarray:
    """Bin images by ``b`` (mean); sizes are cropped symmetrically to multiples of ``b``.

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x)
    b : int

    Returns
    -------
    ndarray, shape (n_tilts, n_y // b, n_x // b)
    """
    if b <= 1:
        return data
    n, ny, nx = data.shape
    ey, ex = ny % b, nx % b
    d = data[:, ey // 2 : ny - (ey - ey // 2), ex // 2 : nx - (ex - ex // 2)]
    return d.reshape(n, ny // b, b, nx // b, b).mean(axis=(2, 4))


def margins(t: np.ndarray, shape: Sequence[int], rot_deg: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rows/columns of the aligned frame not filled from outside the raw image.

    Parameters
    ----------
    t : ndarray, shape (n_tilts, 2)
        Aligned-frame shifts, px.
    shape : (int, int)
        Aligned image shape.
    rot_deg : float
        In-plane rotation between the raw and aligned frames beyond a multiple of 90°, degrees.

    Returns
    -------
    rows, cols : (int, int)
        Half-open index ranges.
    """
    ny, nx = int(shape[0]), int(shape[1])
    rot = abs(math.sin(math.radians(rot_deg))) * max(shape) / 2.0
    my = int(math.ceil(np.abs(t[:, 1]).max() + rot + 2))
    mx = int(math.ceil(np.abs(t[:, 0]).max() + 2))
    my = min(my, max(0, (ny - 16) // 2))
    mx = min(mx, max(0, (nx - 16) // 2))
    return (my, ny - my), (mx, nx - mx)


def block_rows(t: np.ndarray, out_shape: Sequence[int], rot_margin_deg: float, max_rows: int) -> tuple[int, int]:
    """At most ``max_rows`` central rows inside :func:`margins`."""
    rows, _ = margins(t, out_shape, rot_margin_deg)
    if rows[1] - rows[0] > max_rows:
        mid = (rows[0] + rows[1]) // 2
        rows = (mid - max_rows // 2, mid + max_rows // 2)
    return rows


def residual_rotation(phi_deg: float) -> float:
    """Rotation of the aligned frame relative to the nearest multiple of 90° of the raw frame, degrees."""
    return float((phi_deg + 45.0) % 90.0 - 45.0)
