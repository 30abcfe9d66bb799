"""The one in-plane geometry model shared by :mod:`tomoflow.align` (which inverts it) and
:mod:`tomoflow.synthetic` (which applies it).

Model.  For tilt ``i`` with ideal projection ``P_i`` (an image ``(n_y, n_x)`` whose tilt axis runs along
image y and projects to ``x = (n_x − 1)/2 + c``), the raw image is::

    raw_i(p) = P_i(R_φ⁻¹ (p − o − s_i) + o),     p = (x, y) = (column, row),
    o = ((n_x − 1)/2, (n_y − 1)/2),   R_φ = [[cos φ, −sin φ], [sin φ, cos φ]],

with φ the in-plane tilt-axis angle (degrees), ``c`` the rotation-centre offset (px) and
``s_i = (shift_x_px, shift_y_px)`` the per-tilt translation in the raw frame.  The aligned image inverts it
and also removes ``c``::

    A_i(q) = raw_i(R_φ (q + c e_x − o') + o + s_i),

so an aligned stack has the tilt axis along y *at the detector centre* (``o'`` is the centre of the output
image, whose shape is the input's with rows and columns swapped when ``|φ|`` is closer to 90° than to 0°).
With ``t_i = R_φ⁻¹ s_i`` (the shift in the aligned frame), ``A_i(q) = P_i(q + c e_x + t_i)``.

Gauge.  A translation ``(dX, dZ)`` of the specimen moves its projection at tilt θ by ``dX cos θ + dZ sin θ``
along x, so the data fix the total x offset ``T_i = c + t_x,i`` only up to such a sinusoid.
:func:`fix_gauge` picks the minimum-norm drift (no least-squares component of ``t_x`` along
``cos θ − cos θ_ref`` and ``sin θ − sin θ_ref``, ``t_ref = 0``, ``c`` takes the constant);
:func:`frame_translation` moves the result to any chosen specimen position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def rot(phi_deg: float, v: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply ``R_φ`` to (x, y) vectors.

    Parameters
    ----------
    phi_deg : float
        Rotation angle, degrees (counter-clockwise in (x, y)).
    v : array_like, shape (..., 2)
        Vectors (x, y), px.

    Returns
    -------
    ndarray, shape (..., 2), float64
    """
    a = math.radians(phi_deg)
    c, s = math.cos(a), math.sin(a)
    v = np.asarray(v, dtype=np.float64)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def output_shape_for(input_shape: Sequence[int], tilt_axis_deg: float) -> tuple[int, int]:
    """Aligned image shape ``(n_y', n_x')``: rows/columns swapped when |φ| is nearer 90° than 0° (or 180°)."""
    ny, nx = int(input_shape[0]), int(input_shape[1])
    a = math.radians(tilt_axis_deg)
    return (nx, ny) if abs(math.sin(a)) > abs(math.cos(a)) else (ny, nx)


def _centre(shape: Sequence[int], row_offset: float = 0.0) -> npt.NDArray[np.float64]:
    """Image centre ``o`` in (row, col) order; ``row_offset`` rows of margin on each side are not counted."""
    return np.array([row_offset + (shape[0] - 2 * row_offset - 1) / 2.0, (shape[1] - 1) / 2.0])


def warp_params(
    phi_deg: float,
    shift_xy: Sequence[float],
    center_px: float,
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    row_start: float = 0.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(matrix, offset)`` in (row, col) order for ``scipy.ndimage.affine_transform`` that *aligns* a raw image.

    Output pixel (r, k) ↦ raw (row, col) = M (r + row_start − o'_y, k + c − o'_x) + o + s, i.e.
    ``A(q) = raw(R_φ (q + c e_x − o') + o + s)``.

    Parameters
    ----------
    phi_deg : float
        Tilt-axis angle φ, degrees.
    shift_xy : (float, float)
        Raw-frame shift ``s = (shift_x, shift_y)``, px.
    center_px : float
        Centre offset ``c``, px.
    in_shape, out_shape : (int, int)
        Raw and aligned image shapes (rows, cols).
    row_start : float
        First output row computed (for blocks of rows).

    Returns
    -------
    matrix : ndarray, shape (2, 2)
    offset : ndarray, shape (2,)
    """
    a = math.radians(phi_deg)
    c, s = math.cos(a), math.sin(a)
    M = np.array([[c, s], [-s, c]])  # R_φ acting on (y, x)
    u0 = np.array([row_start - (out_shape[0] - 1) / 2.0, center_px - (out_shape[1] - 1) / 2.0])
    offset = M @ u0 + _centre(in_shape) + np.array([shift_xy[1], shift_xy[0]], dtype=np.float64)
    return M, offset


def misalign_params(
    phi_deg: float, shift_xy: Sequence[float], shape: Sequence[int], row_offset: float = 0.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(matrix, offset)`` in (row, col) order for ``scipy.ndimage.affine_transform`` that *misaligns* an ideal
    projection: ``raw(p) = P(R_φ⁻¹ (p − o − s) + o)`` (the forward model; inverse of :func:`warp_params`
    with ``c = 0`` and equal shapes).

    Parameters
    ----------
    phi_deg : float
        Tilt-axis angle φ, degrees.
    shift_xy : (float, float)
        ``s = (shift_x, shift_y)``, px.
    shape : (int, int)
        Image shape (rows, cols), the same for ``P`` and ``raw``.
    row_offset : float
        Rows of margin at each end of ``P`` beyond the reference frame (the centre ``o`` is the cropped
        image's centre).

    Returns
    -------
    matrix : ndarray, shape (2, 2)
    offset : ndarray, shape (2,)
    """
    a = math.radians(phi_deg)
    c, s = math.cos(a), math.sin(a)
    M = np.array([[c, -s], [s, c]])  # R_φ⁻¹ acting on (y, x)
    o = _centre(shape, row_offset)
    shift = np.array([shift_xy[1], shift_xy[0]], dtype=np.float64)
    return M, o - M @ (o + shift)


def gauge_basis(angles_deg: npt.ArrayLike, ref: int) -> npt.NDArray[np.float64]:
    """Columns ``cos θ − cos θ_ref`` and ``sin θ − sin θ_ref``, shape (n_tilts, 2): the x shifts a specimen
    translation produces relative to the reference tilt."""
    th = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return np.column_stack([np.cos(th) - np.cos(th[ref]), np.sin(th) - np.sin(th[ref])])


def fix_gauge(
    t: npt.ArrayLike, center_px: float, angles_deg: npt.ArrayLike, ref: int
) -> tuple[npt.NDArray[np.float64], float]:
    """Move translations that a specimen shift explains out of ``t`` (aligned frame) into ``c``.

    The total x offset ``T_i = c + t_x,i`` is defined up to ``a cos θ_i + b sin θ_i``.  Returns ``t'`` with
    ``t'_ref = 0`` and no least-squares component along ``cos θ − cos θ_ref``, ``sin θ − sin θ_ref``, and
    the matching ``c'`` (the minimum-drift gauge).

    Parameters
    ----------
    t : array_like, shape (n_tilts, 2)
        Aligned-frame translations (x, y), px.
    center_px : float
        Centre offset ``c``, px.
    angles_deg : array_like, shape (n_tilts,)
        Degrees.
    ref : int
        Reference tilt.

    Returns
    -------
    t_new : ndarray, shape (n_tilts, 2)
    center_new : float
    """
    t = np.array(t, dtype=np.float64)
    th = np.radians(np.asarray(angles_deg, dtype=np.float64))
    T = center_px + t[:, 0]
    rel = T - T[ref]
    B = gauge_basis(angles_deg, ref)
    coef, *_ = np.linalg.lstsq(B, rel, rcond=None)
    a, b = coef
    # The removed sinusoid a cos θ + b sin θ also moves the reference: c' = T_ref − a cos θ_ref − b sin θ_ref.
    c_new = T[ref] - a * math.cos(th[ref]) - b * math.sin(th[ref])
    t[:, 0] = rel - B @ coef  # = T'_i − c' (zero at the reference)
    t[:, 1] -= t[ref, 1]
    return t, float(c_new)


def frame_translation(angles_deg: npt.ArrayLike, dx_px: float, dz_px: float) -> npt.NDArray[np.float64]:
    """x offsets ``ΔT_i = dX cos θ_i + dZ sin θ_i`` (px, shape (n_tilts,)) that, added to the aligned-frame x
    shifts, move the reconstructed specimen by ``(−dX, −dZ)`` (x, z) voxels."""
    th = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return dx_px * np.cos(th) + dz_px * np.sin(th)


def remove_translation_gauge(
    shifts_px: npt.ArrayLike, angles_deg: npt.ArrayLike, tilt_axis_deg: float, ref: int
) -> npt.NDArray[np.float64]:
    """Raw-frame shifts without the part a specimen translation would produce (least squares, in the frame of
    the tilt axis, as :func:`fix_gauge`); the reference shift is left as given.

    Parameters
    ----------
    shifts_px : array_like, shape (n_tilts, 2)
        ``(shift_x, shift_y)`` in the raw image frame, px.
    angles_deg : array_like, shape (n_tilts,)
    tilt_axis_deg : float
        In-plane rotation φ of the raw frame, degrees.
    ref : int
        Index of the reference tilt.

    Returns
    -------
    ndarray, shape (n_tilts, 2)
    """
    t = rot(-tilt_axis_deg, shifts_px)
    B = gauge_basis(angles_deg, ref)
    t[:, 0] -= B @ np.linalg.lstsq(B, t[:, 0], rcond=None)[0]
    return rot(tilt_axis_deg, t)
