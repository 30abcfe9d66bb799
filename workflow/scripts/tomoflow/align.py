"""Tilt-series alignment: translations, tilt-axis angle, rotation centre, projection matching.

Model (the one :mod:`tomoflow.synthetic` applies).  For tilt ``i`` with ideal projection ``P_i`` (an image
``(n_y, n_x)`` whose tilt axis runs along image y and projects to ``x = n_x/2 + c``), the raw image is::

    raw_i(p) = P_i(R_φ⁻¹ (p − o − s_i) + o),     p = (x, y) = (column, row),
    o = ((n_x − 1)/2, (n_y − 1)/2),   R_φ = [[cos φ, −sin φ], [sin φ, cos φ]],

with φ the in-plane tilt-axis angle (degrees), ``c`` the rotation-centre offset (px) and
``s_i = (shift_x_px, shift_y_px)`` the per-tilt translation in the raw frame, ``s = 0`` at the reference
tilt (the one closest to 0°).  The aligned image inverts it and also removes ``c``::

    A_i(q) = raw_i(R_φ (q + c e_x − o') + o + s_i),

so the written stack has the tilt axis along y *at the detector centre* (``o'`` is the centre of the
output image, whose shape is the input's with rows and columns swapped when ``|φ|`` is closer to 90°
than to 0°).  With ``t_i = R_φ⁻¹ s_i`` (the shift in the aligned frame), ``A_i(q) = P_i(q + c e_x)``
shifted by ``t_i``.

Gauge.  A translation ``(dX, dZ)`` of the specimen inside the reconstruction volume moves its projection
at tilt θ by ``dX cos θ + dZ sin θ`` along x; the data therefore determine ``c + t_x,i`` only up to such a
sinusoid.  Like every alignment package we must fix this freedom: here the aligned-frame shifts carry
no component along ``cos θ_i − cos θ_ref`` and ``sin θ_i − sin θ_ref`` (least-squares minimum-norm drift),
and ``c`` absorbs the constant.  The reconstruction is then the specimen, possibly translated by a
fraction of a pixel to a few pixels (truth with a drift that has such components cannot be told apart).

Pipeline (:func:`align_tilt_series`):

1. coarse: band-passed, tapered, cosine-stretched cross-correlation of neighbouring tilts
   (``skimage.registration.phase_cross_correlation`` with sub-pixel upsampling), accumulated outward
   from the reference tilt, in the frame rotated by the prior φ;
2. optional centre-of-mass alignment across the tilt axis (compact specimens fully in view);
3. rotation centre ``c`` and tilt-axis angle φ by minimising the projection-matching misfit
   (SIRT reconstruction → reprojection → normalised residual) of a block of rows, bounded Brent search;
4. projection matching: reconstruct → reproject → register every tilt against its reprojection, a few
   rounds, with ``c`` and φ re-estimated between rounds;
5. quality gate: the RMS of the last registration corrections (px) must stay below a limit.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from .errors import InputError
from .validate import MIN_IMAGE_PX, MIN_TILTS, check_tilt_series

log = logging.getLogger(__name__)

#: Median neighbour correlation (band-passed, after registration) below which the series is noise.
MIN_NEIGHBOUR_NCC = 0.15
#: Iterations of the tilt-axis estimate, and the largest change from the prior it may make (degrees).
MAX_AXIS_ITERATIONS = 12
MAX_AXIS_CHANGE_DEG = 5.0


class AlignmentQualityError(InputError):
    """The alignment residual is above the configured limit (the stack would be unusable)."""


@dataclass
class AlignParams:
    """Alignment settings (config section ``align``; see config/README.md).

    Attributes
    ----------
    coarse : bool
        Cross-correlate neighbouring tilts for the initial translations.
    cosine_stretch : bool
        Stretch the higher tilt by ``cos θ_inner / cos θ_outer`` across the axis before correlating.
    upsample : int
        Sub-pixel factor of the cross-correlation (1/upsample px).
    bandpass_px : (float, float)
        Gaussian band-pass before correlation: (low sigma, high sigma), px.  0 disables a side.
    center_of_mass : bool
        Replace the x translations by centre-of-mass alignment (specimen fully in view, empty background).
    estimate_tilt_axis : bool
        Refine φ from the data (else the prior is used).
    estimate_center : bool
        Estimate the rotation-centre offset ``c`` (else 0).
    projection_matching_rounds : int
        Rounds of reconstruct → reproject → register (0 disables refinement).
    projection_matching_iterations : int
        SIRT iterations per projection-matching reconstruction.
    max_residual_px : float
        Quality gate on the RMS residual translation, px.
    """

    coarse: bool = True
    cosine_stretch: bool = True
    upsample: int = 20
    bandpass_px: tuple[float, float] = (1.0, 30.0)
    center_of_mass: bool = False
    estimate_tilt_axis: bool = True
    estimate_center: bool = True
    projection_matching_rounds: int = 2
    projection_matching_iterations: int = 10
    max_residual_px: float = 1.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "AlignParams":
        """Build from a config ``align:`` mapping (unknown keys are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in dict(cfg).items() if k in names}
        if "bandpass_px" in kw:
            kw["bandpass_px"] = tuple(float(v) for v in kw["bandpass_px"])  # type: ignore[assignment]
        return cls(**kw)


@dataclass
class Alignment:
    """An alignment of one tilt series (everything needed to re-apply or export it).

    Attributes
    ----------
    angles_deg : ndarray, shape (n_tilts,)
        Tilt angles, degrees (order of the stack).
    shifts_px : ndarray, shape (n_tilts, 2)
        ``s_i = (shift_x, shift_y)`` in the raw frame, px (0 at the reference tilt).
    tilt_axis_deg : float
        In-plane tilt-axis angle φ, degrees.
    center_offset_px : float
        Rotation-centre offset ``c`` along x of the axis-vertical frame, px.
    reference_index : int
        Index of the reference tilt (closest to 0°).
    input_shape : (int, int)
        Raw image shape (n_y, n_x).
    output_shape : (int, int)
        Aligned image shape.
    residual_px : float
        RMS residual translation of the last consistency check, px (the quality-gate value).
    residuals : dict
        Diagnostics: ``per_tilt_px`` (n_tilts,), ``method``, ``misfit`` (relative reprojection residual),
        ``neighbour_ncc_raw``/``neighbour_ncc_aligned`` (median band-passed neighbour correlation),
        history of the estimates.
    """

    angles_deg: npt.NDArray[np.float64]
    shifts_px: npt.NDArray[np.float64]
    tilt_axis_deg: float
    center_offset_px: float
    reference_index: int
    input_shape: tuple[int, int]
    output_shape: tuple[int, int]
    residual_px: float = float("nan")
    residuals: dict[str, Any] = field(default_factory=dict)

    def aligned_frame_shifts(self) -> npt.NDArray[np.float64]:
        """``t_i = R_φ⁻¹ s_i``, shape (n_tilts, 2) as (x, y), px."""
        return _rot(-self.tilt_axis_deg, self.shifts_px)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (``alignment.json``)."""
        return {
            "tilt_axis_deg": float(self.tilt_axis_deg),
            "center_offset_px": float(self.center_offset_px),
            "reference_index": int(self.reference_index),
            "reference_angle_deg": float(self.angles_deg[self.reference_index]),
            "input_shape": [int(v) for v in self.input_shape],
            "output_shape": [int(v) for v in self.output_shape],
            "residual_px": float(self.residual_px),
            "residuals": self.residuals,
            "convention": (
                "raw_i(p) = P_i(R_phi^-1 (p - o - s_i) + o), p=(x,y)=(column,row), o=((nx-1)/2,(ny-1)/2); "
                "aligned A_i(q) = raw_i(R_phi (q + c e_x - o') + o + s_i); tilt axis along y at the detector centre"
            ),
        }


@dataclass
class AlignmentResult:
    """Output of :func:`align_tilt_series`.

    Attributes
    ----------
    alignment : Alignment
    aligned : ndarray, shape (n_tilts, n_y', n_x'), float32
        Shifted and rotated stack, tilt axis along y at the detector centre, vacuum background
        (``alignment.residuals['background_counts']``, 0 when the images have no vacuum) subtracted.
    """

    alignment: Alignment
    aligned: npt.NDArray[np.float32]


# --------------------------------------------------------------------------- geometry helpers
def _rot(phi_deg: float, v: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply R_φ to (x, y) vectors, shape (..., 2)."""
    a = math.radians(phi_deg)
    c, s = math.cos(a), math.sin(a)
    v = np.asarray(v, dtype=np.float64)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def output_shape_for(input_shape: Sequence[int], tilt_axis_deg: float) -> tuple[int, int]:
    """Aligned image shape: rows/columns swapped when |φ| is nearer 90° than 0° (or 180°)."""
    ny, nx = int(input_shape[0]), int(input_shape[1])
    a = math.radians(tilt_axis_deg)
    return (nx, ny) if abs(math.sin(a)) > abs(math.cos(a)) else (ny, nx)


def _warp_params(
    phi_deg: float, shift_xy: Sequence[float], center_px: float, in_shape: Sequence[int], out_shape: Sequence[int], row_start: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, offset)`` in (row, col) order for ``scipy.ndimage.affine_transform``.

    Output pixel (r, k) ↦ raw (row, col) = M (r + row_start − o'_y, k + c − o'_x) + o + s.
    """
    a = math.radians(phi_deg)
    c, s = math.cos(a), math.sin(a)
    M = np.array([[c, s], [-s, c]])  # R_φ acting on (y, x)
    o_in = np.array([(in_shape[0] - 1) / 2.0, (in_shape[1] - 1) / 2.0])
    o_out = np.array([(out_shape[0] - 1) / 2.0, (out_shape[1] - 1) / 2.0])
    u0 = np.array([row_start - o_out[0], center_px - o_out[1]])
    offset = M @ u0 + o_in + np.array([shift_xy[1], shift_xy[0]], dtype=np.float64)
    return M, offset


def _warp_stack(
    data: np.ndarray,
    phi_deg: float,
    shifts_xy: np.ndarray,
    center_px: float,
    out_shape: Sequence[int],
    rows: tuple[int, int] | None = None,
    order: int = 3,
    threads: int = 1,
) -> npt.NDArray[np.float32]:
    """Apply the alignment to every image (rows ``[r0, r1)`` of the output only, if given)."""
    n = data.shape[0]
    r0, r1 = rows if rows is not None else (0, int(out_shape[0]))
    out = np.empty((n, r1 - r0, int(out_shape[1])), dtype=np.float32)

    def one(i: int) -> None:
        M, off = _warp_params(phi_deg, shifts_xy[i], center_px, data.shape[1:], out_shape, r0)
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
    return _warp_stack(arr, alignment.tilt_axis_deg, alignment.shifts_px, alignment.center_offset_px, alignment.output_shape, threads=threads)


def imod_xf(alignment: Alignment) -> npt.NDArray[np.float64]:
    """IMOD ``.xf`` transforms (raw image → aligned image), one row ``A11 A12 A21 A22 DX DY`` per tilt.

    IMOD maps raw coordinates ``X`` (relative to the raw image centre) to aligned coordinates
    ``X' = A X + D`` (relative to the aligned image centre); with our model ``A = R_φ⁻¹`` and
    ``D = −R_φ⁻¹ s_i − c e_x``.  Apply with ``newstack -xform aligned.xf`` (output size = ``output_shape``).

    Returns
    -------
    ndarray, shape (n_tilts, 6)
    """
    a = math.radians(alignment.tilt_axis_deg)
    c, s = math.cos(a), math.sin(a)
    Ainv = np.array([[c, s], [-s, c]])  # R_φ⁻¹ on (x, y)
    t = alignment.aligned_frame_shifts()
    D = -t - np.array([alignment.center_offset_px, 0.0])
    n = t.shape[0]
    return np.column_stack([np.full(n, Ainv[0, 0]), np.full(n, Ainv[0, 1]), np.full(n, Ainv[1, 0]), np.full(n, Ainv[1, 1]), D[:, 0], D[:, 1]])


def format_xf(xf: npt.ArrayLike) -> str:
    """Text of an IMOD ``.xf`` file (IMOD's fixed-width ``%12.7f ×4 %12.3f ×2`` layout)."""
    lines = []
    for r in np.asarray(xf, dtype=np.float64):
        lines.append("".join(f"{v:12.7f}" for v in r[:4]) + "".join(f"{v:12.3f}" for v in r[4:]))
    return "\n".join(lines) + "\n"


def alignment_table(alignment: Alignment) -> Any:
    """Per-tilt table (``alignment.tsv``): angle_deg, shift_x_px, shift_y_px (raw-frame ``s_i``), residual_px."""
    import pandas as pd

    per = np.asarray(alignment.residuals.get("per_tilt_px", np.full(alignment.angles_deg.size, np.nan)), dtype=np.float64)
    return pd.DataFrame(
        {
            "angle_deg": alignment.angles_deg,
            "shift_x_px": alignment.shifts_px[:, 0],
            "shift_y_px": alignment.shifts_px[:, 1],
            "residual_px": per,
        }
    )


# --------------------------------------------------------------------------- image filters
def _taper(shape: Sequence[int], frac: float = 0.12) -> np.ndarray:
    """Separable cosine (Tukey) edge taper."""
    ws = []
    for n in shape:
        w = np.ones(n)
        m = max(1, int(round(frac * n)))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
        ws.append(w)
    return np.outer(ws[0], ws[1])


def _bandpass(img: np.ndarray, bandpass_px: Sequence[float], taper: np.ndarray | None = None) -> np.ndarray:
    """Gaussian band-pass (difference of Gaussians), mean removed, tapered at the edges."""
    lo, hi = float(bandpass_px[0]), float(bandpass_px[1])
    f = img.astype(np.float64)
    f = ndimage.gaussian_filter(f, lo, mode="nearest") if lo > 0 else f
    if hi > 0:
        f = f - ndimage.gaussian_filter(f, hi, mode="nearest")
    else:
        f = f - f.mean()
    if taper is not None:
        f = (f - f.mean()) * taper
    return f


def _register(ref: np.ndarray, mov: np.ndarray, upsample: int) -> tuple[np.ndarray, float]:
    """Displacement ``d = (dx, dy)`` of ``mov`` relative to ``ref`` (``mov(p) ≈ ref(p − d)``) and the peak NCC."""
    shift, err, _ = phase_cross_correlation(ref, mov, upsample_factor=max(1, int(upsample)), normalization=None)
    ncc = math.sqrt(max(0.0, 1.0 - float(err)))
    return np.array([-shift[1], -shift[0]], dtype=np.float64), ncc


def _stretch_x(img: np.ndarray, k: float, xc: float) -> np.ndarray:
    """``out(y, x) = img(y, xc + k (x − xc))`` (cubic spline, nearest fill)."""
    return ndimage.affine_transform(img, np.array([[1.0, 0.0], [0.0, k]]), offset=np.array([0.0, xc * (1.0 - k)]), order=3, mode="nearest")


# --------------------------------------------------------------------------- validation
def _validate(data: np.ndarray, angles: np.ndarray, where: str) -> None:
    check_tilt_series(data, angles, where=where, min_tilts=MIN_TILTS, min_image_px=MIN_IMAGE_PX)


# --------------------------------------------------------------------------- coarse alignment
def _neighbour_order(angles: np.ndarray, ref: int) -> list[tuple[int, int]]:
    """(inner, outer) pairs walking outward from the reference in angle order."""
    order = np.argsort(angles)
    pos = int(np.where(order == ref)[0][0])
    pairs = [(int(order[j - 1]), int(order[j])) for j in range(pos + 1, order.size)]
    pairs += [(int(order[j + 1]), int(order[j])) for j in range(pos - 1, -1, -1)]
    return pairs


def _pair_shift(
    a: np.ndarray, b: np.ndarray, theta_a: float, theta_b: float, xc: float, params: AlignParams, taper: np.ndarray
) -> tuple[np.ndarray, float]:
    """Displacement of image ``b`` (outer tilt) relative to ``a`` (inner tilt), px (x, y), and NCC."""
    k = 1.0
    if params.cosine_stretch:
        k = math.cos(math.radians(theta_b)) / max(math.cos(math.radians(theta_a)), 1e-3)
        b = _stretch_x(b, k, xc)
    d, ncc = _register(_bandpass(a, params.bandpass_px, taper), _bandpass(b, params.bandpass_px, taper), params.upsample)
    return np.array([k * d[0], d[1]]), ncc


def _chain(frames: np.ndarray, angles: np.ndarray, ref: int, params: AlignParams, center_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour cross-correlation chain outward from the reference (see :func:`coarse_shifts`)."""
    n, ny, nx = frames.shape
    taper = _taper((ny, nx))
    t = np.zeros((n, 2))
    ncc = np.ones(n)
    for inner, outer in _neighbour_order(angles, ref):
        xc = (nx - 1) / 2.0 + center_px + t[inner, 0]
        d, ncc[outer] = _pair_shift(frames[inner], frames[outer], float(angles[inner]), float(angles[outer]), xc, params, taper)
        # the displacement is measured in the inner image's frame
        t[outer] = t[inner] + d
    return t, ncc


def coarse_shifts(
    frames: np.ndarray, angles: np.ndarray, ref: int, params: AlignParams, center_px: float = 0.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
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
    center_px : float
        Current estimate of the rotation-centre offset (centre of the cosine stretch).

    Returns
    -------
    shifts : ndarray, shape (n_tilts, 2)
        ``t_i`` (x, y) in the frame of ``frames``, px: image i is displaced by ``t_i``.
    ncc : ndarray, shape (n_tilts,)
        Peak normalised correlation with the inner neighbour (1 for the reference).
    """
    return _chain(frames, angles, ref, params, center_px)


def _profile_1d(prof: np.ndarray, bandpass_px: Sequence[float]) -> np.ndarray:
    lo, hi = float(bandpass_px[0]), float(bandpass_px[1])
    f = ndimage.gaussian_filter1d(prof, lo, mode="nearest") if lo > 0 else prof.copy()
    f = f - (ndimage.gaussian_filter1d(f, hi, mode="nearest") if hi > 0 else f.mean())
    return f * _taper((1, f.size), 0.15)[0]


def tilt_axis_from_moments(
    frames: np.ndarray, angles: np.ndarray, ref: int, params: AlignParams, rows: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Tilt-axis angle error δ (degrees) by the common-line (y-profile) principle, and its standard error.

    Features move only across the tilt axis, so the y profile ``S_i(y) = Σ_x I_i(x, y)`` is the same for
    every tilt.  In a frame rotated by δ from the true axis (a feature at x appears at ``y + δ x``) it is
    ``S_i − δ ∂_y M_i`` to first order, with ``M_i(y) = Σ_x (x − o_x) I_i(x, y)``, which tilting changes.
    Hence ``S_i − S_ref = −δ ∂_y (M_i − M_ref)``, solved for δ by least squares over all tilts and rows
    after removing, per tilt, a residual y shift (``∂_y S_ref``) and an intensity scale (``S_ref``).
    The result is the correction to add to the frame's angle.

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
    S = f.sum(axis=2)
    M = f @ x
    lo, hi = float(params.bandpass_px[0]), float(params.bandpass_px[1])

    def filt(v: np.ndarray, order: int = 0) -> np.ndarray:
        out = ndimage.gaussian_filter1d(v, max(lo, 1.0), axis=-1, order=order, mode="nearest")
        if hi > 0:
            out = out - ndimage.gaussian_filter1d(out, hi, axis=-1, mode="nearest")
        return out

    w = _taper((1, r1 - r0), 0.15)[0]
    Sf = filt(S) * w
    dM = filt(M, order=1) * w
    dS_ref = filt(S[ref], order=1) * w
    num = den = 0.0
    resid: list[np.ndarray] = []
    pieces = []
    for i in range(n):
        if i == ref:
            continue
        N = np.column_stack([dS_ref, Sf[ref]])
        q, _ = np.linalg.qr(N)
        y = Sf[i] - Sf[ref]
        a = -(dM[i] - dM[ref])
        y = y - q @ (q.T @ y)
        a = a - q @ (q.T @ a)
        num += float(a @ y)
        den += float(a @ a)
        pieces.append((y, a))
    delta = num / max(den, 1e-30)
    rss = sum(float(((y - delta * a) ** 2).sum()) for y, a in pieces)
    dof = max(1, sum(y.size - 2 for y, _ in pieces) - 1)
    std = math.sqrt(rss / dof / max(den, 1e-30))
    return math.degrees(delta), math.degrees(std)


def center_of_mass_x(frames: np.ndarray, angles: np.ndarray, ref: int) -> npt.NDArray[np.float64]:
    """x translations that make the projected centre of mass follow ``X cos θ + Z sin θ``.

    Background (the 5th percentile of the stack) is removed first.  Returns ``t_x`` (n_tilts,), px, 0 at
    the reference, such that ``x_cm,i − t_x,i`` is the best-fitting sinusoid through the centroids.
    """
    n, ny, nx = frames.shape
    bg = float(np.percentile(frames, 5))
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0
    w = np.clip(frames.astype(np.float64) - bg, 0, None).sum(axis=1)
    xcm = (w * x).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    th = np.radians(angles)
    B = np.column_stack([np.cos(th), np.sin(th)])
    coef, *_ = np.linalg.lstsq(B, xcm, rcond=None)
    tx = xcm - B @ coef
    return tx - tx[ref]


# --------------------------------------------------------------------------- gauge
def _gauge_basis(angles: np.ndarray, ref: int) -> np.ndarray:
    th = np.radians(angles)
    return np.column_stack([np.cos(th) - np.cos(th[ref]), np.sin(th) - np.sin(th[ref])])


def fix_gauge(t: np.ndarray, center_px: float, angles: np.ndarray, ref: int) -> tuple[np.ndarray, float]:
    """Move translations that a specimen shift explains out of ``t`` (aligned frame) into ``c``.

    The total x offset ``T_i = c + t_x,i`` is defined up to ``a cos θ_i + b sin θ_i``.  Returns ``t'`` with
    ``t'_ref = 0`` and no least-squares component along ``cos θ − cos θ_ref``, ``sin θ − sin θ_ref``, and
    the matching ``c'``.

    Parameters
    ----------
    t : ndarray, shape (n_tilts, 2)
        Aligned-frame translations (x, y), px.
    center_px : float
        Centre offset ``c``, px.
    angles : ndarray, shape (n_tilts,)
        Degrees.
    ref : int

    Returns
    -------
    t_new : ndarray, shape (n_tilts, 2)
    center_new : float
    """
    t = np.array(t, dtype=np.float64)
    T = center_px + t[:, 0]
    th = np.radians(angles)
    rel = T - T[ref]
    B = _gauge_basis(angles, ref)
    coef, *_ = np.linalg.lstsq(B, rel, rcond=None)
    rel_new = rel - B @ coef
    # The removed sinusoid a cos θ + b sin θ also moves the reference: c' = T_ref − a cos θ_ref − b sin θ_ref.
    a, b = coef
    c_new = T[ref] - a * math.cos(th[ref]) - b * math.sin(th[ref])
    t[:, 0] = rel_new  # = T'_i − c' (zero at the reference)
    t[:, 1] -= t[ref, 1]
    return t, float(c_new)


# --------------------------------------------------------------------------- projection matching
Reconstructor = Callable[[np.ndarray, np.ndarray, int, int, int], np.ndarray]


def _default_reconstructor(stack: np.ndarray, angles: np.ndarray, thickness: int, iterations: int, threads: int) -> np.ndarray:
    """SIRT of ``stack`` (n_tilts, n_rows, n_det) → volume (n_rows, thickness, n_det) (:mod:`tomoflow.recon`)."""
    from .recon import reconstruct

    res = reconstruct(stack, angles, thickness_px=int(thickness), algorithm="sirt", iterations=int(iterations), threads=int(threads), signal_check=False, min_tilts=2)
    return np.asarray(res.volume, dtype=np.float32)


def _bin(data: np.ndarray, b: int) -> np.ndarray:
    """Bin images by ``b`` (mean); sizes are cropped symmetrically to multiples of ``b``."""
    if b <= 1:
        return data
    n, ny, nx = data.shape
    ey, ex = ny % b, nx % b
    d = data[:, ey // 2 : ny - (ey - ey // 2), ex // 2 : nx - (ex - ex // 2)]
    return d.reshape(n, ny // b, b, nx // b, b).mean(axis=(2, 4))


def _background(data: np.ndarray) -> float:
    """Vacuum level if the stack has one (a dense low mode of the histogram), else 0."""
    sub = data[:, :: max(1, data.shape[1] // 64), :: max(1, data.shape[2] // 64)]
    p1, p10, p99 = np.percentile(sub, [1, 10, 99.5])
    if p99 > p1 and (p10 - p1) < 0.03 * (p99 - p1) and p1 > 0:
        return float(np.percentile(sub, 5))
    return 0.0


def _margins(t: np.ndarray, shape: Sequence[int], rot_deg: float, scale: float = 1.0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rows/columns of the aligned frame not filled from outside the raw image (at binning ``scale``)."""
    ny, nx = int(shape[0]), int(shape[1])
    rot = abs(math.sin(math.radians(rot_deg))) * max(shape) / 2.0
    my = int(math.ceil(np.abs(t[:, 1]).max() / scale + rot + 2))
    mx = int(math.ceil(np.abs(t[:, 0]).max() / scale + 2))
    my = min(my, max(0, (ny - 16) // 2))
    mx = min(mx, max(0, (nx - 16) // 2))
    return (my, ny - my), (mx, nx - mx)


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
    max_rows: int = 96,
) -> tuple[np.ndarray, float]:
    """One round: align → reconstruct a block of rows → reproject → register each tilt.

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

    Returns
    -------
    corrections : ndarray, shape (n_tilts, 2)
        To add to ``t`` (x, y), px.
    misfit : float
        Relative reprojection residual ``‖FP(rec) − data‖² / ‖data‖²`` over the block.
    """
    rows, cols = _margins(t, out_shape, rot_margin_deg)
    if rows[1] - rows[0] > max_rows:
        mid = (rows[0] + rows[1]) // 2
        rows = (mid - max_rows // 2, mid + max_rows // 2)
    s = _rot(phi_deg, t)
    st = _warp_stack(data, phi_deg, s, center_px, out_shape, rows=rows, threads=threads)
    from .projector import forward_project

    vol = reconstructor(st, angles, int(thickness), int(iterations), int(threads))
    pr = forward_project(vol, angles, n_det=st.shape[2], threads=threads)
    c0, c1 = cols
    corr, _ = _match_shifts(st, pr, cols, params)
    r = (pr - st)[:, :, c0:c1].astype(np.float64)
    misfit = float(np.sum(r**2) / max(float(np.sum(st[:, :, c0:c1].astype(np.float64) ** 2)), 1e-30))
    return corr, misfit


def _fbp(stack: np.ndarray, angles: np.ndarray, thickness: int, threads: int) -> np.ndarray:
    from .recon import reconstruct

    res = reconstruct(stack, angles, thickness_px=int(thickness), algorithm="fbp", threads=int(threads), signal_check=False, min_tilts=2)
    return np.asarray(res.volume, dtype=np.float64)


def _smooth(data: np.ndarray, sigma: float = 1.0) -> np.ndarray:
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


def _scan_max(f: Callable[[float], float], x0: float, half_width: float, step: float, max_extend: int = 20) -> tuple[float, float, float, float]:
    """Maximise ``f`` on a grid ``x0 ± half_width`` (extended while the best value is at an end), then
    refine by a parabola through the best grid value and its neighbours.

    Returns ``(x_best, f_best_on_grid, grid_min, grid_max)``.
    """
    grid = list(x0 + np.arange(-half_width, half_width + 1e-9, step))
    vals = [f(x) for x in grid]
    for _ in range(max_extend):
        k = int(np.argmax(vals))
        if k == 0:
            grid.insert(0, grid[0] - step)
            vals.insert(0, f(grid[0]))
        elif k == len(grid) - 1:
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
    return float(best), float(max(vals)), float(grid[0]), float(grid[-1])


def _block_rows(t: np.ndarray, out_shape: tuple[int, int], rot_margin_deg: float, max_rows: int) -> tuple[int, int]:
    rows, _ = _margins(t, out_shape, rot_margin_deg)
    if rows[1] - rows[0] > max_rows:
        mid = (rows[0] + rows[1]) // 2
        rows = (mid - max_rows // 2, mid + max_rows // 2)
    return rows


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
    rows = _block_rows(t, out_shape, rot_margin_deg, max_rows)
    s = _rot(phi_deg, t)
    data = _smooth(data)

    def f(c: float) -> float:
        st = _warp_stack(data, phi_deg, s, c, out_shape, rows=rows, threads=threads)
        return sharpness(_fbp(st, angles, thickness, threads))

    best, val, lo, hi = _scan_max(f, center0, half_width, 0.5)
    log.info("centre offset %.2f px (sharpness %.4f; scanned %.1f..%.1f px)", best, val, lo, hi)
    return best


def refine_tilt_axis(
    data: np.ndarray,
    angles: np.ndarray,
    phi0: float,
    t: np.ndarray,
    center: float,
    out_shape: tuple[int, int],
    *,
    thickness: int,
    threads: int = 1,
    half_width: float = 0.75,
    step: float = 0.25,
    rot_margin_deg: float = 0.0,
    max_rows: int = 64,
) -> float:
    """Tilt-axis angle (degrees) that maximises the :func:`sharpness` of an FBP.

    A wrong in-plane axis mixes neighbouring slices differently at every tilt, which blurs the
    reconstruction; scanned over ``phi0 ± half_width`` and refined by a parabola like :func:`estimate_center`.
    The raw-frame drift ``s = R_φ0 t`` is kept while φ varies.
    """
    rows = _block_rows(t, out_shape, abs(rot_margin_deg) + half_width + 1.0, max_rows)
    s_phys = _rot(phi0, t)
    data = _smooth(data)

    def f(phi: float) -> float:
        st = _warp_stack(data, phi, s_phys, center, out_shape, rows=rows, threads=threads)
        return sharpness(_fbp(st, angles, thickness, threads))

    best, val, lo, hi = _scan_max(f, phi0, half_width, step, max_extend=12)
    log.info("tilt axis %.3f° by reconstruction sharpness %.4f (scanned %.2f..%.2f°)", best, val, lo, hi)
    return best


# --------------------------------------------------------------------------- main entry
def align_tilt_series(
    data: npt.ArrayLike,
    angles_deg: npt.ArrayLike,
    *,
    params: AlignParams | None = None,
    tilt_axis_prior_deg: float = 0.0,
    thickness_px: int | None = None,
    threads: int = 1,
    where: str = "tilt series",
    reconstructor: Reconstructor | None = None,
) -> AlignmentResult:
    """Align a raw tilt series (translations, tilt-axis angle, rotation centre).

    Parameters
    ----------
    data : array_like, shape (n_tilts, n_y, n_x)
        Raw images (counts; a vacuum background is detected and ignored for the reconstructions).
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees.
    params : AlignParams, optional
        Settings (defaults as in config/config.yaml).
    tilt_axis_prior_deg : float
        Prior φ (degrees): in-plane angle of the tilt axis from the image y axis (90 for a horizontal axis).
    thickness_px : int, optional
        Reconstruction thickness for projection matching, px (default: the aligned image width).
    threads : int
        Worker threads.
    where : str
        Name of the input for error messages (file path).
    reconstructor : callable, optional
        ``f(stack, angles, thickness, iterations, threads) -> volume`` used by projection matching;
        default SIRT of :func:`tomoflow.recon.reconstruct`.

    Returns
    -------
    AlignmentResult

    Raises
    ------
    InputError
        Too few tilts, angle count ≠ images, blank/NaN images, a series without correlated signal.
    AlignmentQualityError
        The residual exceeds ``params.max_residual_px``.
    """
    p = params or AlignParams()
    arr = np.asarray(data, dtype=np.float32)
    angles = np.asarray(angles_deg, dtype=np.float64).ravel()
    _validate(arr, angles, where)
    recon_fn = reconstructor or _default_reconstructor
    n = arr.shape[0]
    ref = int(np.argmin(np.abs(angles)))
    prior = float(tilt_axis_prior_deg)
    phi = prior
    out_shape = output_shape_for(arr.shape[1:], phi)
    bg = _background(arr)
    work = arr - np.float32(bg) if bg else arr
    log.info("aligning %d tilts of %dx%d px (reference %.1f°, prior φ %.2f°, background %.1f)", n, arr.shape[1], arr.shape[2], angles[ref], phi, bg)
    history: list[dict[str, float]] = []

    # ---- 1. coarse translations (and tilt axis) by the neighbour chain in the frame rotated by φ
    t = np.zeros((n, 2))
    frames = _warp_stack(work, phi, np.zeros((n, 2)), 0.0, out_shape, threads=threads)
    ncc_raw = _neighbour_ncc(frames, angles, ref, p)
    ncc = ncc_raw
    phi_err = float("nan")
    axis_status = "prior (not estimated)"
    if p.coarse or p.estimate_tilt_axis:
        t, ncc = _chain(frames, angles, ref, p)
        med = float(np.median(np.delete(ncc, ref)))
        log.info("neighbour chain: max |shift| %.1f px, median NCC %.3f", float(np.abs(t).max()), med)
        if p.estimate_tilt_axis and med >= MIN_NEIGHBOUR_NCC:
            s_phys = _rot(phi, t)  # the physical drift does not depend on φ
            converged = False
            prev_delta, flips = 0.0, 0
            for it in range(MAX_AXIS_ITERATIONS):
                frames = _warp_stack(work, phi, s_phys, 0.0, out_shape, threads=threads)
                rows, _ = _margins(_rot(-phi, s_phys), out_shape, phi - prior + 1.0)
                delta, phi_err = tilt_axis_from_moments(frames, angles, ref, p, rows)
                delta = float(np.clip(delta, -2.0, 2.0))
                phi += delta
                log.info("tilt axis %d: %.3f° (step %+.3f° ± %.3f°)", it + 1, phi, delta, phi_err)
                if abs(phi - prior) > MAX_AXIS_CHANGE_DEG:
                    break
                if abs(delta) < 0.01:
                    converged = True
                    break
                flips += int(delta * prev_delta < 0)
                if flips >= 2:  # oscillating about the answer: take the middle
                    phi -= 0.5 * delta
                    converged = True
                    break
                prev_delta = delta
            if converged:
                axis_status = f"estimated (common-line moments, ±{phi_err:.3f}°)"
            else:
                log.warning(
                    "tilt-axis estimate did not converge (reached %.2f° from the prior %.2f°): keeping the prior; "
                    "check the sample's tilt_axis_deg", phi, prior)
                axis_status = f"prior kept: estimate did not converge (drifted to {phi:.2f}°)"
                phi = prior
            t = _rot(-phi, s_phys)
            if p.coarse and abs(phi - prior) > 0.2:
                # redo the chain in the final frame (the y motion no longer mixes with x parallax)
                frames = _warp_stack(work, phi, np.zeros((n, 2)), 0.0, out_shape, threads=threads)
                t, ncc = _chain(frames, angles, ref, p)
        if not p.coarse:
            t = np.zeros((n, 2))
    med_ncc = float(np.median(np.delete(ncc, ref)))
    if med_ncc < MIN_NEIGHBOUR_NCC:
        raise InputError(
            where,
            f"neighbouring tilt images do not correlate (median correlation {med_ncc:.2f} < {MIN_NEIGHBOUR_NCC}): the series looks like noise",
            "check the file is the right tilt series and that the images contain the specimen",
        )
    if p.center_of_mass:
        fr = _warp_stack(work, phi, _rot(phi, t), 0.0, out_shape, threads=threads)
        t[:, 0] += center_of_mass_x(fr, angles, ref)
        t[:, 0] -= t[ref, 0]
    c = 0.0
    t, c = fix_gauge(t, c, angles, ref)
    if not p.estimate_center:
        c = 0.0
    thickness = int(thickness_px or out_shape[1])
    if p.estimate_center:
        b0 = 2 if max(out_shape) > 300 else 1
        c = b0 * estimate_center(_bin(work, b0), angles, phi, t / b0, c / b0, (out_shape[0] // b0, out_shape[1] // b0),
                                 thickness=max(8, thickness // b0), threads=threads, half_width=4.0 / b0, rot_margin_deg=phi - prior)
    if p.estimate_tilt_axis:
        b0 = 2 if max(out_shape) > 300 else 1
        wide = not axis_status.startswith("estimated")
        s_keep = _rot(phi, t)
        phi = refine_tilt_axis(_bin(work, b0), angles, phi, t / b0, c / b0, (out_shape[0] // b0, out_shape[1] // b0),
                                        thickness=max(8, thickness // b0), threads=threads, half_width=2.0 if wide else 0.75,
                                        step=0.5 if wide else 0.25, rot_margin_deg=phi - prior)
        t = _rot(-phi, s_keep)
        axis_status += "; refined by reconstruction sharpness"
    history.append({"step": "coarse", "tilt_axis_deg": phi, "center_offset_px": c})
    log.info("coarse alignment: φ %.3f°, centre %.2f px, max |shift| %.1f px", phi, c, float(np.abs(t).max()))

    # ---- 2. projection matching (binned first when the images are large)
    per_tilt = np.full(n, np.nan)
    misfit = float("nan")
    method = "neighbour cross-correlation"
    rounds = int(p.projection_matching_rounds)
    if rounds > 0:
        schedule: list[int] = []
        big = max(out_shape) > 300
        schedule = ([2] * rounds if big else []) + [1] * rounds
        for rnd, b in enumerate(schedule):
            wb = _bin(work, b) if b > 1 else work
            shp = (out_shape[0] // b, out_shape[1] // b)
            corr, misfit = projection_matching_round(
                wb, angles, phi, t / b, c / b, shp,
                thickness=max(8, thickness // b), iterations=p.projection_matching_iterations, params=p,
                reconstructor=recon_fn, threads=threads, rot_margin_deg=phi - prior,
            )
            corr *= b
            per_tilt = np.hypot(corr[:, 0], corr[:, 1])
            t_new, c_new = fix_gauge(t + corr, c, angles, ref)
            t = t_new
            c = c_new if p.estimate_center else 0.0
            if p.estimate_tilt_axis:
                s_keep = _rot(phi, t)
                phi = refine_tilt_axis(wb, angles, phi, t / b, c / b, shp, thickness=max(8, thickness // b), threads=threads,
                                       half_width=0.5, step=0.25, rot_margin_deg=phi - prior)
                t = _rot(-phi, s_keep)
            if p.estimate_center:
                c = b * estimate_center(wb, angles, phi, t / b, c / b, shp, thickness=max(8, thickness // b), threads=threads,
                                        half_width=1.0, rot_margin_deg=phi - prior)
            history.append({"step": f"projection matching {rnd + 1} (bin {b})", "tilt_axis_deg": phi, "center_offset_px": c, "rms_correction_px": float(np.sqrt(np.mean(per_tilt**2)))})
            log.info("projection matching %d/%d (bin %d): RMS correction %.3f px, centre %.2f px, misfit %.4f", rnd + 1, len(schedule), b, float(np.sqrt(np.mean(per_tilt**2))), c, misfit)
        # final check: register against the reprojection once more (measured, not applied)
        corr, misfit = projection_matching_round(
            work, angles, phi, t, c, out_shape, thickness=thickness, iterations=p.projection_matching_iterations,
            params=p, reconstructor=recon_fn, threads=threads, rot_margin_deg=phi - prior,
        )
        corr -= corr.mean(axis=0)  # a common shift is a specimen translation, not a misalignment
        per_tilt = np.hypot(corr[:, 0], corr[:, 1])
        method = "projection matching"

    s = _rot(phi, t)
    alignment = Alignment(
        angles_deg=angles.copy(),
        shifts_px=s,
        tilt_axis_deg=phi,
        center_offset_px=c,
        reference_index=ref,
        input_shape=(int(arr.shape[1]), int(arr.shape[2])),
        output_shape=out_shape,
    )
    aligned = apply_alignment(work, alignment, threads=threads)
    ncc_al = _neighbour_ncc(aligned, angles, ref, p)
    if rounds == 0:
        # residual = what the neighbour chain still finds along the axis (x carries genuine parallax)
        d = _neighbour_residual(aligned, angles, ref, p)
        per_tilt = np.abs(d[:, 1])
    residual = float(np.sqrt(np.nanmean(per_tilt**2)))
    alignment.residual_px = residual
    alignment.residuals = {
        "residual_px": residual,
        "method": method,
        "per_tilt_px": per_tilt,
        "relative_reprojection_misfit": misfit,
        "tilt_axis_std_deg": phi_err,
        "tilt_axis_status": axis_status,
        "neighbour_ncc_raw": float(np.median(np.delete(ncc_raw, ref))),
        "neighbour_ncc_aligned": float(np.median(np.delete(ncc_al, ref))),
        "sinogram_continuity_raw": sinogram_continuity(_warp_stack(arr, phi, np.zeros((n, 2)), 0.0, out_shape, order=1)[np.argsort(angles)]),
        "sinogram_continuity_aligned": sinogram_continuity(aligned[np.argsort(angles)]),
        "background_counts": bg,
        "history": history,
    }
    log.info("alignment: φ %.3f°, c %.2f px, residual %.3f px (%s), neighbour NCC %.3f → %.3f", phi, c, residual, method, alignment.residuals["neighbour_ncc_raw"], alignment.residuals["neighbour_ncc_aligned"])
    if not residual <= p.max_residual_px:
        raise AlignmentQualityError(
            where,
            f"alignment residual {residual:.2f} px (RMS, {method}) is above align.max_residual_px = {p.max_residual_px:g}",
            "check the tilt angles and the tilt_axis_deg prior, enable projection matching, or raise align.max_residual_px if the data are known to be poor",
        )
    return AlignmentResult(alignment=alignment, aligned=aligned)


def _register_1d(ref: np.ndarray, mov: np.ndarray, upsample: int) -> float:
    """Displacement of 1-D profile ``mov`` relative to ``ref`` (px)."""
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=max(1, int(upsample)), normalization=None)
    return -float(shift[0])


def _match_shifts(stack: np.ndarray, reproj: np.ndarray, cols: tuple[int, int], p: AlignParams) -> tuple[np.ndarray, np.ndarray]:
    """Register every aligned image against its reprojection: corrections ``(dx, dy)`` (n, 2) and |d|.

    Each direction is measured on 1-D profiles — y on the sum over x (the common line: immune to any
    mismatch across the axis), x on the sum over rows — so that oblique structures cannot turn a misfit in
    one direction into a false shift in the other (the aperture problem of 2-D correlation).
    """
    n, ny, _ = stack.shape
    c0, c1 = cols
    wy = _taper((ny, 1), 0.15)[:, 0]
    taper = _taper((ny, c1 - c0))
    up = max(p.upsample, 50)
    corr = np.zeros((n, 2))
    for i in range(n):
        a, b = reproj[i, :, c0:c1].astype(np.float64), stack[i, :, c0:c1].astype(np.float64)
        dy = _register_1d(_profile_1d(a.sum(axis=1), p.bandpass_px), _profile_1d(b.sum(axis=1), p.bandpass_px), up)
        b = ndimage.shift(b, (-dy, 0.0), order=3, mode="nearest")  # y settled first
        dx = float(_register(_bandpass(a, p.bandpass_px, taper), _bandpass(b, p.bandpass_px, taper), up)[0][0])
        corr[i] = (dx, dy)  # the image sits d further than its reprojection: t_true = t + d
    return corr, np.hypot(corr[:, 0], corr[:, 1])


def _neighbour_residual(aligned: np.ndarray, angles: np.ndarray, ref: int, p: AlignParams) -> np.ndarray:
    n, ny, nx = aligned.shape
    taper = _taper((ny, nx))
    d = np.zeros((n, 2))
    for inner, outer in _neighbour_order(angles, ref):
        d[outer], _ = _pair_shift(aligned[inner], aligned[outer], angles[inner], angles[outer], (nx - 1) / 2.0, p, taper)
    return d


def _neighbour_ncc(frames: np.ndarray, angles: np.ndarray, ref: int, p: AlignParams) -> np.ndarray:
    """Band-passed correlation of each tilt with its inner neighbour at zero shift (after stretching)."""
    n, ny, nx = frames.shape
    taper = _taper((ny, nx))
    out = np.ones(n)
    for inner, outer in _neighbour_order(angles, ref):
        b = frames[outer]
        if p.cosine_stretch:
            k = math.cos(math.radians(angles[outer])) / max(math.cos(math.radians(angles[inner])), 1e-3)
            b = _stretch_x(b, k, (nx - 1) / 2.0)
        fa, fb = _bandpass(frames[inner], p.bandpass_px, taper), _bandpass(b, p.bandpass_px, taper)
        out[outer] = float(np.sum(fa * fb) / max(math.sqrt(np.sum(fa * fa) * np.sum(fb * fb)), 1e-30))
    return out


# --------------------------------------------------------------------------- QC figure
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


def alignment_qc_figure(raw: npt.ArrayLike, aligned: npt.ArrayLike, alignment: Alignment, title: str = "") -> Figure:
    """QC figure: shifts vs angle, per-tilt residual, central-row sinogram before/after.

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
    rot_only = _warp_stack(raw, alignment.tilt_axis_deg, np.zeros((n, 2)), 0.0, alignment.output_shape, order=1)
    order = np.argsort(alignment.angles_deg)
    ang = alignment.angles_deg[order]
    row = aligned.shape[1] // 2
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    gs = fig.add_gridspec(2, 2)
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
    extent = [-0.5, aligned.shape[2] - 0.5, ang[-1], ang[0]]
    for k, (stack, name) in enumerate(((rot_only, "before (rotated only)"), (aligned, "after"))):
        axs = fig.add_subplot(gs[1, k])
        sino = stack[order, row, :]
        axs.imshow(sino, cmap="gray", aspect="auto", extent=extent, interpolation="nearest")
        axs.set_xlabel("detector x (px)")
        axs.set_ylabel("tilt angle (°)")
        axs.set_title(f"sinogram of row {row} {name}: continuity {sinogram_continuity(stack[order], row):.3f}")
    if title:
        fig.suptitle(title)
    return fig
