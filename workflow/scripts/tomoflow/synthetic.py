"""Synthetic γ-Al2O3 / Pt catalyst specimen and its misaligned HAADF-STEM tilt series.

The specimen imitates the one of the reference study: a plate-like γ-Al2O3 particle with a roughly
rhombic outline (in the y–x plane, broad faces normal to the beam at 0° tilt), whose broad faces carry
periodic ridge facets and small ledges, an internal network of elongated pores aligned with the facets,
and Pt nanoparticles of 1–4 nm diameter anchored on the faces, preferentially on facet apexes
(ridge crests).  Background is empty.

The tilt series is the ASTRA parallel-beam projection of a 2× supersampled density (so the
reconstruction does not commit the "inverse crime" of using the simulation's own discretisation),
scaled to counts at a configurable dose, misaligned, then corrupted by Poisson and Gaussian read noise.

Misalignment model (what :mod:`tomoflow.align` inverts).  For tilt ``i`` with ideal projection ``P_i``
(tilt axis along image y, projected rotation axis at ``x = n_x/2 + c``: the centre offset ``c``), the raw
image is::

    raw_i(p) = P_i(R_φ⁻¹ (p − o − s_i) + o),   p = (x, y) = (column, row),
    o = ((n_x − 1)/2, (n_y − 1)/2),  R_φ = [[cos φ, −sin φ], [sin φ, cos φ]],

with φ the in-plane tilt-axis angle (degrees) and ``s_i = (shift_x_px, shift_y_px)`` (``s = 0`` at the
tilt closest to 0°, the reference).  Shifts are independent Gaussian, std ``shift_sigma_px``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .projector import forward_project

log = logging.getLogger(__name__)

BACKGROUND, SUPPORT, PARTICLE = 0, 1, 2


@dataclass
class Specimen:
    """A voxelised catalyst specimen.

    Attributes
    ----------
    labels : ndarray, shape (n_y, n_z, n_x), uint8
        0 background/pores, 1 support, 2 particles (voxel-centre sampling).
    density : ndarray, shape (n_y, n_z, n_x), float32
        HAADF signal per voxel (support 1, Pt ``particle_contrast``), 2×2×2 box-averaged from the
        supersampled specimen (partial-volume values at interfaces).
    fine_density : ndarray, shape (n_y + 2m, s·n_z, s·n_x), float32
        Density supersampled s× in z and x (and box-averaged over s sub-slices in y, which is all a
        parallel projection of slice y needs), including ``margin_px`` extra slices on both ends of y
        (projected to make tilt images that stay filled after in-plane rotation).
    particles : list of dict
        Per particle: ``center_px`` (y, z, x), ``center_nm``, ``diameter_nm``, ``face`` (top/bottom),
        ``n_voxels`` (label voxels).
    pixel_size_nm : float
    margin_px : int
    supersample : int
    info : dict
        Geometry parameters and realised class fractions.
    """

    labels: npt.NDArray[np.uint8]
    density: npt.NDArray[np.float32]
    fine_density: npt.NDArray[np.float32]
    particles: list[dict[str, Any]]
    pixel_size_nm: float
    margin_px: int
    supersample: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TiltSeriesSim:
    """A simulated tilt series and its ground truth.

    Attributes
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x), float32
        Raw, misaligned, noisy images in counts.
    aligned : ndarray, shape (n_tilts, n_y, n_x), float32
        The same specimen perfectly aligned (centre offset 0, no shifts or rotation), with noise of
        the same dose (an independent realisation): the reference for alignment quality.
    angles_deg : ndarray, shape (n_tilts,)
    shifts_px : ndarray, shape (n_tilts, 2)
        True ``(shift_x, shift_y)`` applied to each raw image, px.
    tilt_axis_deg : float
    center_offset_px : float
    counts_per_unit : float
        Counts per (density × px) of projected path.
    """

    data: npt.NDArray[np.float32]
    aligned: npt.NDArray[np.float32]
    angles_deg: npt.NDArray[np.float64]
    shifts_px: npt.NDArray[np.float64]
    tilt_axis_deg: float
    center_offset_px: float
    counts_per_unit: float


# --------------------------------------------------------------------------- geometry
def _triangle(u: np.ndarray) -> np.ndarray:
    """Periodic triangle wave in [0, 1]: 1 on crests (u integer + 0.5 → 0)."""
    return 1.0 - np.abs(2.0 * (u - np.floor(u)) - 1.0)


@dataclass
class _Plate:
    cy: float
    cz: float
    cx: float
    a: float  # rhombus half-diagonal along its x' axis, px
    b: float  # half-diagonal along y', px
    psi: float  # in-plane rotation of the rhombus, rad
    half_t: float  # half base thickness, px
    ridge_dir: np.ndarray  # unit (y, x) direction across the ridges
    ridge_period: float
    ridge_amp: float
    ridge_phase: tuple[float, float]  # top, bottom
    ledges: list[tuple[np.ndarray, float, float]]  # (unit normal (y,x), offset, step height) per ledge

    def inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        dy, dx = y - self.cy, x - self.cx
        c, s = math.cos(self.psi), math.sin(self.psi)
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        return np.abs(xr) / self.a + np.abs(yr) / self.b <= 1.0

    def ridge(self, y: np.ndarray, x: np.ndarray, face: int) -> np.ndarray:
        u = ((y - self.cy) * self.ridge_dir[0] + (x - self.cx) * self.ridge_dir[1]) / self.ridge_period
        return _triangle(u + self.ridge_phase[face])

    def faces(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z of the bottom and top faces at (y, x) (z grows away from the top face's outside)."""
        top = self.cz + self.half_t + self.ridge_amp * self.ridge(y, x, 0)
        bot = self.cz - self.half_t - self.ridge_amp * self.ridge(y, x, 1)
        for normal, offset, step in self.ledges:
            side = ((y - self.cy) * normal[0] + (x - self.cx) * normal[1]) > offset
            top = top + np.where(side, step, 0.0)
            bot = bot - np.where(side, step * 0.5, 0.0)
        return bot, top


def _capsule_mask(
    yy: np.ndarray, zz: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float
) -> np.ndarray:
    d = p1 - p0
    L2 = float(d @ d)
    t = ((yy - p0[0]) * d[0] + (zz - p0[1]) * d[1] + (xx - p0[2]) * d[2]) / max(L2, 1e-12)
    t = np.clip(t, 0.0, 1.0)
    dist2 = (yy - p0[0] - t * d[0]) ** 2 + (zz - p0[1] - t * d[1]) ** 2 + (xx - p0[2] - t * d[2]) ** 2
    return dist2 <= radius * radius


def _grid(shape: tuple[int, int, int], step: float, y0: float) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates (px of the coarse grid) of a grid with spacing ``step``."""
    ny, nz, nx = shape
    y = y0 + (np.arange(ny) + 0.5) * step
    z = (np.arange(nz) + 0.5) * step
    x = (np.arange(nx) + 0.5) * step
    return y, z, x


def _rasterise(
    plate: _Plate,
    pores: list[tuple[np.ndarray, np.ndarray, float]],
    particles: list[dict[str, Any]],
    shape: tuple[int, int, int],
    step: float,
    y0: float,
) -> npt.NDArray[np.uint8]:
    """Label the grid of ``shape`` voxels of size ``step`` (coarse px), first slice at ``y0`` px."""
    y, z, x = _grid(shape, step, y0)
    Y2, X2 = np.meshgrid(y, x, indexing="ij")
    inside = plate.inside(Y2, X2)
    bot, top = plate.faces(Y2, X2)
    support = inside[:, None, :] & (z[None, :, None] >= bot[:, None, :]) & (z[None, :, None] <= top[:, None, :])
    labels = support.astype(np.uint8)

    def box(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...] | None:
        sl = []
        for axis, (l, h) in enumerate(zip(lo, hi)):
            origin = y0 if axis == 0 else 0.0
            i0 = max(int(math.floor((l - origin) / step - 0.5)), 0)
            i1 = min(int(math.ceil((h - origin) / step + 0.5)) + 1, shape[axis])
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
        return tuple(sl)

    for p0, p1, r in pores:
        sl = box(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r)
        if sl is None:
            continue
        yy, zz, xx = np.meshgrid(y[sl[0]], z[sl[1]], x[sl[2]], indexing="ij")
        m = _capsule_mask(yy, zz, xx, p0, p1, r)
        sub = labels[sl]
        sub[m & (sub == SUPPORT)] = BACKGROUND
    for part in particles:
        c = np.asarray(part["center_px"], dtype=np.float64)
        r = part["radius_px"]
        sl = box(c - r, c + r)
        if sl is None:
            continue
        yy, zz, xx = np.meshgrid(y[sl[0]], z[sl[1]], x[sl[2]], indexing="ij")
        m = (yy - c[0]) ** 2 + (zz - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        labels[sl][m] = PARTICLE
    return labels


def make_specimen(
    *,
    seed: int = 7,
    shape: Sequence[int] = (64, 128, 256),
    pixel_size_nm: float = 0.4,
    particle_diameter_nm: Sequence[float] = (1.0, 4.0),
    particle_fraction: float = 0.005,
    support_fraction: float = 0.21,
    particle_contrast: float = 5.0,
    margin_px: int = 16,
    supersample: int = 2,
) -> Specimen:
    """Generate the voxelised γ-Al2O3/Pt specimen.

    Parameters
    ----------
    seed : int
        Seed of every random choice (same seed ⇒ identical specimen).
    shape : (n_y, n_z, n_x)
        Voxels: n_y slices along the tilt axis, n_z thickness (beam at 0°), n_x width.
    pixel_size_nm : float
        Voxel size, nm.
    particle_diameter_nm : (min, max)
        Pt diameters, nm (log-normal, clipped to this range).
    particle_fraction, support_fraction : float
        Target fractions of the volume's voxels that are Pt / support.
    particle_contrast : float
        HAADF signal of Pt relative to γ-Al2O3 (per voxel).
    margin_px : int
        Extra slices simulated beyond both y ends (for the tilt series, see :func:`simulate_tilt_series`).
    supersample : int
        Supersampling factor of the density used for projection.

    Returns
    -------
    Specimen
    """
    ny, nz, nx = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    px = float(pixel_size_nm)
    y_lo, y_hi = -margin_px, ny + margin_px

    # ---- plate: rhombus in (y, x); the y extent is larger than the volume (a sub-volume of the particle)
    a = nx * rng.uniform(0.36, 0.40)
    b = max(ny, 0.5 * nx) * rng.uniform(0.95, 1.1)
    psi = math.radians(rng.uniform(-8, 8))
    cy = ny / 2 + rng.uniform(-0.1, 0.1) * ny
    cx = nx / 2 + rng.uniform(-0.04, 0.04) * nx
    cz = nz / 2 + rng.uniform(-0.03, 0.03) * nz
    edge_angle = math.atan2(b, a)  # rhombus edge direction relative to its x' axis
    ridge_angle = psi + (math.pi / 2 - edge_angle) * rng.choice([-1, 1])
    ridge_dir = np.array([math.sin(ridge_angle), math.cos(ridge_angle)])  # across ridges, (y, x)
    ridge_period = rng.uniform(5.0, 7.0) / px
    ridge_amp = rng.uniform(1.2, 1.8) / px
    ledges = []
    for _ in range(3):
        ang = rng.uniform(0, math.pi)
        ledges.append((np.array([math.sin(ang), math.cos(ang)]), rng.uniform(-0.3, 0.3) * nx, rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0) / px))

    # Solve the base thickness for the support fraction (coverage of the volume's y range).
    yv, _, xv = _grid((ny, 1, nx), 1.0, 0.0)
    Y2, X2 = np.meshgrid(yv, xv, indexing="ij")
    probe = _Plate(cy, cz, cx, a, b, psi, 0.0, ridge_dir, ridge_period, ridge_amp, (0.0, 0.0), ledges)
    inside = probe.inside(Y2, X2)
    bot0, top0 = probe.faces(Y2, X2)
    coverage = float(inside.mean())
    extra = float(((top0 - bot0)[inside]).mean())  # ridges + ledges at zero base thickness
    pore_allowance = 1.10
    half_t = max(0.5 * (support_fraction * pore_allowance * nz / max(coverage, 1e-3) - extra), 4.0)
    half_t = min(half_t, 0.3 * nz)
    plate = _Plate(cy, cz, cx, a, b, psi, half_t, ridge_dir, ridge_period, ridge_amp, (rng.uniform(0, 1), rng.uniform(0, 1)), ledges)

    # ---- pores: capsules elongated along the ridges (and a few cross-links), inside the plate
    along = np.array([ridge_dir[1], 0.0, -ridge_dir[0]])  # ridge line direction in (y, z, x)
    across = np.array([ridge_dir[0], 0.0, ridge_dir[1]])
    pores: list[tuple[np.ndarray, np.ndarray, float]] = []
    n_pores = int(round(coverage * (y_hi - y_lo) * nx / (9.0 / px) ** 2))
    tries = 0
    while len(pores) < n_pores and tries < 50 * n_pores + 100:
        tries += 1
        r = rng.uniform(0.5, 1.2) / px
        length = rng.uniform(4.0, 12.0) / px
        direction = along if rng.random() < 0.75 else across
        c = np.array([rng.uniform(y_lo, y_hi), 0.0, rng.uniform(0, nx)])
        if not plate.inside(np.array(c[0]), np.array(c[2])):
            continue
        bz, tz = plate.faces(np.array(c[0]), np.array(c[2]))
        if float(tz - bz) < 2 * r + 4:
            continue
        c[1] = rng.uniform(float(bz) + r + 2, float(tz) - r - 2)
        p0, p1 = c - 0.5 * length * direction, c + 0.5 * length * direction
        pores.append((p0, p1, r))

    # ---- Pt particles: log-normal diameters, anchored on the faces, preferring ridge crests
    dmin, dmax = (float(d) for d in particle_diameter_nm)
    target_voxels = particle_fraction * ny * nz * nx
    particles: list[dict[str, Any]] = []
    voxels = 0.0
    tries = 0
    while voxels < target_voxels and tries < 20000:
        tries += 1
        d_nm = float(np.clip(rng.lognormal(math.log(math.sqrt(dmin * dmax)), 0.35), dmin, dmax))
        r = 0.5 * d_nm / px
        y = rng.uniform(r + 1.5, ny - r - 1.5)  # whole particle inside the volume along y
        x = rng.uniform(0, nx)
        if not plate.inside(np.array(y), np.array(x)):
            continue
        face = int(rng.integers(2))
        crest = float(plate.ridge(np.array(y), np.array(x), face))
        if rng.random() < 0.9 and rng.random() > crest**6:
            continue  # mostly keep candidates near facet apexes
        bz, tz = (float(v) for v in plate.faces(np.array(y), np.array(x)))
        z = tz + 0.5 * r if face == 0 else bz - 0.5 * r
        if not (r + 1.5 <= z <= nz - r - 1.5 and r + 1.5 <= x <= nx - r - 1.5):
            continue
        c = np.array([y, z, x])
        if any(np.linalg.norm(c - np.asarray(p["center_px"])) < r + p["radius_px"] + 2.5 for p in particles):
            continue
        particles.append({"center_px": c.tolist(), "radius_px": r, "diameter_nm": d_nm, "face": "top" if face == 0 else "bottom", "crest": crest})
        voxels += 4.0 / 3.0 * math.pi * r**3

    # ---- rasterise: labels at voxel centres, density supersampled (with y margins)
    labels = _rasterise(plate, pores, particles, (ny, nz, nx), 1.0, 0.0)
    s = int(supersample)
    fine_shape = (s * (ny + 2 * margin_px), s * nz, s * nx)
    fine_labels = _rasterise(plate, pores, particles, fine_shape, 1.0 / s, float(-margin_px))
    lut = np.array([0.0, 1.0, particle_contrast], dtype=np.float32)
    fine_density = lut[fine_labels].reshape(ny + 2 * margin_px, s, s * nz, s * nx).mean(axis=1)
    del fine_labels
    core = fine_density[margin_px : margin_px + ny]
    density = core.reshape(ny, nz, s, nx, s).mean(axis=(2, 4)).astype(np.float32)

    # Particle label voxel counts (each particle is its own 26-connected component by construction).
    comp, n_comp = ndimage.label(labels == PARTICLE, structure=np.ones((3, 3, 3)))
    for p in particles:
        cy_, cz_, cx_ = (int(round(v - 0.5)) for v in p["center_px"])
        lab = comp[min(max(cy_, 0), ny - 1), min(max(cz_, 0), nz - 1), min(max(cx_, 0), nx - 1)]
        p["n_voxels"] = int((comp == lab).sum()) if lab else 0
        p["center_nm"] = [float(v) * px for v in p["center_px"]]
    particles = [p for p in particles if p["n_voxels"] > 0]

    counts = np.bincount(labels.ravel(), minlength=3) / labels.size
    info = {
        "seed": seed,
        "shape": [ny, nz, nx],
        "pixel_size_nm": px,
        "plate": {
            "center_px": [cy, cz, cx],
            "half_diagonals_px": [b, a],
            "rotation_deg": math.degrees(psi),
            "base_thickness_nm": 2 * half_t * px,
            "ridge_period_nm": ridge_period * px,
            "ridge_amplitude_nm": ridge_amp * px,
        },
        "n_pores": len(pores),
        "n_particles": len(particles),
        "n_particle_components": int(n_comp),
        "class_fractions": {"background": float(counts[0]), "support": float(counts[1]), "particles": float(counts[2])},
        "particle_contrast": particle_contrast,
    }
    log.info(
        "specimen seed=%d: %d particles, %d pores, fractions bg %.3f / support %.3f / Pt %.4f",
        seed, len(particles), len(pores), counts[0], counts[1], counts[2],
    )
    return Specimen(labels, density, fine_density, particles, px, margin_px, s, info)


# --------------------------------------------------------------------------- misalignment
def misalign_image(
    image: npt.NDArray[np.floating],
    shift_xy: Sequence[float],
    tilt_axis_deg: float,
    *,
    row_offset: float = 0.0,
    order: int = 3,
) -> npt.NDArray[np.float32]:
    """Apply the misalignment model of this module to one image.

    Parameters
    ----------
    image : ndarray, shape (n_rows, n_cols)
        Ideal projection.
    shift_xy : (float, float)
        ``s = (shift_x, shift_y)``, px.
    tilt_axis_deg : float
        In-plane rotation φ, degrees.
    row_offset : float
        Row index of the reference frame's row 0 inside ``image`` (an image simulated with extra
        rows at the top passes that margin so that the centre ``o`` is the cropped image's centre).
    order : int
        Spline interpolation order.

    Returns
    -------
    ndarray, shape (n_rows, n_cols), float32
        ``raw(p) = image(R_φ⁻¹ (p − o − s) + o)``, zero outside.
    """
    n_rows, n_cols = image.shape
    n_ref_rows = n_rows - 2 * row_offset
    phi = math.radians(tilt_axis_deg)
    c, s = math.cos(phi), math.sin(phi)
    # (row, col) = (y, x) form of R_φ⁻¹.
    M = np.array([[c, -s], [s, c]])
    o = np.array([row_offset + (n_ref_rows - 1) / 2.0, (n_cols - 1) / 2.0])
    shift = np.array([shift_xy[1], shift_xy[0]], dtype=np.float64)
    offset = o - M @ (o + shift)
    return ndimage.affine_transform(image.astype(np.float64), M, offset=offset, order=order, mode="constant", cval=0.0).astype(np.float32)


def remove_translation_gauge(
    shifts_px: npt.ArrayLike, angles_deg: npt.ArrayLike, tilt_axis_deg: float, ref: int
) -> npt.NDArray[np.float64]:
    """Remove from per-tilt shifts the part that a specimen translation would produce.

    Shifts across the tilt axis of the form ``dX (cos θ − cos θ_ref) + dZ (sin θ − sin θ_ref)`` are
    indistinguishable from moving the specimen by (dX, dZ): no alignment can recover them.  The truth is
    made unique by removing that component (least squares, in the frame of the tilt axis), the same
    gauge :mod:`tomoflow.align` fixes.  The reference tilt's shift stays 0.

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
    s = np.asarray(shifts_px, dtype=np.float64)
    phi = math.radians(tilt_axis_deg)
    c, sn = math.cos(phi), math.sin(phi)
    # t = R_φ⁻¹ s: components across (x) and along (y) the tilt axis
    t = np.stack([c * s[:, 0] + sn * s[:, 1], -sn * s[:, 0] + c * s[:, 1]], axis=1)
    th = np.radians(np.asarray(angles_deg, dtype=np.float64))
    B = np.column_stack([np.cos(th) - np.cos(th[ref]), np.sin(th) - np.sin(th[ref])])
    t[:, 0] -= B @ np.linalg.lstsq(B, t[:, 0], rcond=None)[0]
    return np.stack([c * t[:, 0] - sn * t[:, 1], sn * t[:, 0] + c * t[:, 1]], axis=1)


def required_margin_px(shift_sigma_px: float, n_x: int, tilt_axis_deg: float, pad: float = 4.0) -> float:
    """Extra slices to simulate beyond each y end so that tilt images stay filled after the drift
    (4 σ) and the in-plane rotation (``n_x / 2 · |sin φ|``) are applied, plus ``pad``, px."""
    return 4 * abs(shift_sigma_px) + 0.5 * n_x * abs(math.sin(math.radians(tilt_axis_deg))) + pad


def tilt_angles(tilt_range_deg: Sequence[float], tilt_step_deg: float) -> npt.NDArray[np.float64]:
    """Angles from ``tilt_range_deg[0]`` to ``[1]`` inclusive in steps of ``tilt_step_deg`` (degrees)."""
    lo, hi = (float(v) for v in tilt_range_deg)
    n = int(math.floor((hi - lo) / tilt_step_deg + 1e-9)) + 1
    return lo + tilt_step_deg * np.arange(n)


def simulate_tilt_series(
    specimen: Specimen,
    *,
    seed: int = 7,
    tilt_range_deg: Sequence[float] = (-68.0, 68.0),
    tilt_step_deg: float = 2.0,
    dose: float = 4000.0,
    read_noise: float = 2.0,
    shift_sigma_px: float = 3.0,
    tilt_axis_deg: float = 2.5,
    center_offset_px: float = 1.5,
    threads: int = 1,
) -> TiltSeriesSim:
    """Project, misalign and add noise.

    Parameters
    ----------
    specimen : Specimen
    seed : int
        Seed of shifts and noise (distinct stream from the specimen's).
    tilt_range_deg : (min, max)
        Tilt range, degrees (inclusive).
    tilt_step_deg : float
        Step, degrees.
    dose : float
        Mean counts per pixel behind the support's base thickness at 0° (sets the Poisson noise).
    read_noise : float
        Gaussian read noise std, counts.
    shift_sigma_px : float
        Std of the random per-tilt shifts, px (0 at the reference tilt).
    tilt_axis_deg : float
        In-plane tilt-axis rotation φ, degrees.
    center_offset_px : float
        Rotation-centre offset c along x, px.
    threads : int
        Projection threads.

    Returns
    -------
    TiltSeriesSim
    """
    rng = np.random.default_rng([int(seed), 1])
    angles = tilt_angles(tilt_range_deg, tilt_step_deg)
    ny, nz, nx = specimen.labels.shape
    s = specimen.supersample
    m = specimen.margin_px
    need = required_margin_px(shift_sigma_px, nx, tilt_axis_deg, pad=2.0)
    if need > m:
        raise ValueError(f"margin_px={m} too small for shifts/rotation (need ≥ {need:.0f}); raise margin_px")

    base_t = specimen.info["plate"]["base_thickness_nm"] / specimen.pixel_size_nm
    counts_per_unit = float(dose) / max(base_t, 1.0)
    fine = specimen.fine_density
    ideal_offset = forward_project_fine(fine, angles, nx, s, center_offset_px, threads) * counts_per_unit
    if center_offset_px != 0:
        core = np.ascontiguousarray(fine[m : m + ny])
        ideal_centered = forward_project_fine(core, angles, nx, s, 0.0, threads) * counts_per_unit
    else:
        ideal_centered = ideal_offset[:, m : m + ny]

    ref = int(np.argmin(np.abs(angles)))
    shifts = rng.normal(0.0, shift_sigma_px, size=(angles.size, 2))
    shifts[ref] = 0.0
    shifts = remove_translation_gauge(shifts, angles, tilt_axis_deg, ref)
    raw = np.empty((angles.size, ny, nx), dtype=np.float32)
    for i in range(angles.size):
        img = misalign_image(ideal_offset[i], shifts[i], tilt_axis_deg, row_offset=m)
        raw[i] = img[m : m + ny]
    aligned = ideal_centered.astype(np.float32)

    def noisy(expected: np.ndarray) -> np.ndarray:
        lam = np.clip(expected, 0, None).astype(np.float64)
        return (rng.poisson(lam) + rng.normal(0.0, read_noise, size=lam.shape)).astype(np.float32)

    return TiltSeriesSim(
        data=noisy(raw),
        aligned=noisy(aligned),
        angles_deg=angles,
        shifts_px=shifts,
        tilt_axis_deg=float(tilt_axis_deg),
        center_offset_px=float(center_offset_px),
        counts_per_unit=counts_per_unit,
    )


def forward_project_fine(
    fine_density: npt.NDArray[np.float32],
    angles_deg: npt.ArrayLike,
    n_det: int,
    supersample: int,
    center_offset_px: float,
    threads: int = 1,
) -> npt.NDArray[np.float32]:
    """Project a supersampled density onto a detector of coarse pixels.

    Parameters
    ----------
    fine_density : ndarray, shape (n_y', s·n_z, s·n_x)
    angles_deg : array_like, shape (n_tilts,)
    n_det : int
        Detector pixels (coarse px).
    supersample : int
        s.
    center_offset_px : float
        Centre offset, coarse px.
    threads : int

    Returns
    -------
    ndarray, shape (n_tilts, n_y', n_det)
        Line integrals in units of (density × coarse px).
    """
    s = int(supersample)
    # Project at fine resolution with a fine detector, then bin detector pixels by s: the same
    # geometry as a coarse detector, with exact area weighting.
    fine = forward_project(fine_density, angles_deg, n_det=n_det * s, center_offset_px=center_offset_px * s, projector="line", threads=threads)
    n_t, n_rows, _ = fine.shape
    return fine.reshape(n_t, n_rows, n_det, s).sum(axis=3) / (s * s)


def simulate(config: dict[str, Any], threads: int = 1) -> tuple[Specimen, TiltSeriesSim]:
    """Specimen and tilt series from a ``synthetic:`` config section (see config/README.md)."""
    c = dict(config)
    m = int(math.ceil(required_margin_px(c["shift_sigma_px"], c["shape"][2], c["tilt_axis_deg"])))
    spec = make_specimen(
        seed=c["seed"],
        shape=c["shape"],
        pixel_size_nm=c["pixel_size_nm"],
        particle_diameter_nm=c["particle_diameter_nm"],
        particle_fraction=c["particle_fraction"],
        support_fraction=c["support_fraction"],
        particle_contrast=c["particle_contrast"],
        margin_px=m,
    )
    ts = simulate_tilt_series(
        spec,
        seed=c["seed"],
        tilt_range_deg=c["tilt_range_deg"],
        tilt_step_deg=c["tilt_step_deg"],
        dose=c["dose"],
        read_noise=c["read_noise"],
        shift_sigma_px=c["shift_sigma_px"],
        tilt_axis_deg=c["tilt_axis_deg"],
        center_offset_px=c["center_offset_px"],
        threads=threads,
    )
    return spec, ts


def truth_tables(
    specimen: Specimen, ts: TiltSeriesSim, config: dict[str, Any]
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Ground truth as a per-tilt table and JSON-ready dicts.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``angle_deg, shift_x_px, shift_y_px`` (the ``s_i`` applied to each raw image).
    alignment : dict
        ``tilt_axis_deg``, ``center_offset_px``, ``reference_index``, per-tilt shifts, the config.
    specimen : dict
        Particles (``center_nm`` (y, z, x), ``diameter_nm``, ``face``, ``n_voxels``), class fractions,
        geometry parameters.
    """
    import pandas as pd

    table = pd.DataFrame({"angle_deg": ts.angles_deg, "shift_x_px": ts.shifts_px[:, 0], "shift_y_px": ts.shifts_px[:, 1]})
    alignment = {
        "tilt_axis_deg": ts.tilt_axis_deg,
        "center_offset_px": ts.center_offset_px,
        "reference_index": int(np.argmin(np.abs(ts.angles_deg))),
        "shift_convention": "raw_i(p) = P_i(R_phi^-1 (p - o - s_i) + o), p = (x, y); see tomoflow.synthetic",
        "counts_per_unit": ts.counts_per_unit,
        "config": config,
    }
    particles = [
        {k: p[k] for k in ("center_nm", "center_px", "diameter_nm", "face", "n_voxels")} for p in specimen.particles
    ]
    spec = dict(specimen.info)
    spec["particles"] = particles
    spec["mean_diameter_nm"] = float(np.mean([p["diameter_nm"] for p in particles])) if particles else 0.0
    return table, alignment, spec


def specimen_figure(specimen: Specimen, ts: TiltSeriesSim) -> Any:
    """Overview figure: raw 0° and highest-tilt images, a label slice and a label section in y–x.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    cmap = ListedColormap(["black", "lightgrey", "red"])
    px = specimen.pixel_size_nm
    ny, nz, nx = specimen.labels.shape
    ref = int(np.argmin(np.abs(ts.angles_deg)))
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 2)
    ext_img = (0, nx * px, ny * px, 0)
    axes[0, 0].imshow(ts.data[ref], cmap="gray", extent=ext_img)
    axes[0, 0].set_title(f"raw tilt image {ts.angles_deg[ref]:+.0f}° (counts)")
    axes[0, 1].imshow(ts.data[-1], cmap="gray", extent=ext_img)
    axes[0, 1].set_title(f"raw tilt image {ts.angles_deg[-1]:+.0f}°")
    axes[1, 0].imshow(specimen.labels[ny // 2], cmap=cmap, vmin=0, vmax=2, extent=(0, nx * px, nz * px, 0), interpolation="nearest")
    axes[1, 0].set_title(f"true labels, slice y = {ny // 2} (z–x)")
    axes[1, 1].imshow(specimen.labels.max(axis=1), cmap=cmap, vmin=0, vmax=2, extent=ext_img, interpolation="nearest")
    axes[1, 1].set_title("true labels, max along z (y–x)")
    for ax in axes.ravel():
        ax.set_xlabel("nm")
    return fig
