"""The voxelised γ-Al2O3/Pt catalyst specimen (see :mod:`tomoflow.synthetic`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

log = logging.getLogger("tomoflow.synthetic")

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


@dataclass(frozen=True)
class SupportTexture:
    """Appearance of a paper-like support (``synthetic.preset: paper``); labels are unaffected.

    The support's density becomes ``ramp · (1 + grain_contrast·g + texture_amp·t)`` and Pt voxels
    ``particle_contrast · (1 + texture_amp·t)``, where ``g`` is one standard-normal value per Voronoi grain,
    ``t`` unit-variance Gaussian-correlated noise, and ``ramp`` the indicator of support ∪ Pt smoothed by a
    3-D Gaussian (a diffuse support/pore/vacuum boundary whose 0.5 level is the geometric surface, where the
    labels are).  Labels stay the exact geometry (voxel-centre sampling).

    Attributes
    ----------
    grain_size_nm : float
        Mean spacing of the Voronoi grain seeds (polycrystalline γ-Al2O3 crystallites), nm.
    grain_contrast : float
        Standard deviation of the per-grain density, relative to the mean support density.
    texture_amp : float
        Standard deviation of the fine texture, relative.
    texture_nm : float
        Correlation length (Gaussian σ) of the fine texture, nm.
    boundary_sigma_nm : float
        Gaussian σ of the support boundary ramp, nm (10-90 % width = 2.56 σ).
    """

    grain_size_nm: float = 6.0
    grain_contrast: float = 0.2
    texture_amp: float = 0.1
    texture_nm: float = 0.25
    boundary_sigma_nm: float = 0.3


#: The paper-like support appearance (``synthetic.preset: paper``).
PAPER_TEXTURE = SupportTexture()


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
        for axis, (low, h) in enumerate(zip(lo, hi)):
            origin = y0 if axis == 0 else 0.0
            i0 = max(int(math.floor((low - origin) / step - 0.5)), 0)
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


def _move_z(plate: _Plate, pores: list[tuple[np.ndarray, np.ndarray, float]], particles: list[dict[str, Any]], dz: float) -> tuple[_Plate, list[tuple[np.ndarray, np.ndarray, float]], list[dict[str, Any]]]:
    """The specimen geometry translated by ``dz`` px along z."""
    from dataclasses import replace

    step = np.array([0.0, dz, 0.0])
    parts = [dict(p, center_px=(np.asarray(p["center_px"]) + step).tolist()) for p in particles]
    return replace(plate, cz=plate.cz + dz), [(a + step, b + step, r) for a, b, r in pores], parts


def _make_plate(rng: np.random.Generator, shape: tuple[int, int, int], px: float, support_fraction: float) -> tuple[_Plate, float]:
    """The rhombic plate (base thickness solved for ``support_fraction``) and its coverage of the y–x plane."""
    ny, nz, nx = shape
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

    return plate, coverage


def _make_pores(rng: np.random.Generator, plate: _Plate, coverage: float, y_range: tuple[float, float], nx: int, px: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Capsule pores ``(p0, p1, radius)`` (px, (y, z, x)) inside the plate."""
    y_lo, y_hi = y_range
    ridge_dir = plate.ridge_dir
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

    return pores


def _place_particles(rng: np.random.Generator, plate: _Plate, shape: tuple[int, int, int], px: float,
                     particle_diameter_nm: Sequence[float], particle_fraction: float) -> list[dict[str, Any]]:
    """Pt particles anchored on the plate's faces (dicts with ``center_px`` (y, z, x), ``radius_px``, ...)."""
    ny, nz, nx = shape
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
        if ny < 2 * r + 3:
            continue  # too few slices for a whole particle of this size
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

    return particles


def _count_particle_voxels(labels: np.ndarray, particles: list[dict[str, Any]], px: float) -> tuple[list[dict[str, Any]], int]:
    """Label voxel count and ``center_nm`` of every particle; particles without a voxel are dropped."""
    ny, nz, nx = labels.shape
    # Particle label voxel counts (each particle is its own 26-connected component by construction).
    comp, n_comp = ndimage.label(labels == PARTICLE, structure=np.ones((3, 3, 3)))
    for p in particles:
        cy_, cz_, cx_ = (int(round(v - 0.5)) for v in p["center_px"])
        lab = comp[min(max(cy_, 0), ny - 1), min(max(cz_, 0), nz - 1), min(max(cx_, 0), nx - 1)]
        p["n_voxels"] = int((comp == lab).sum()) if lab else 0
        p["center_nm"] = [float(v) * px for v in p["center_px"]]
    particles = [p for p in particles if p["n_voxels"] > 0]

    return particles, int(n_comp)


def _smooth_noise(seed: int, y_range: tuple[int, int], nz: int, nx: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-correlated noise on coarse slices ``y_range`` (shape (n, nz, nx), float32).

    Slice ``y`` of the white noise is drawn from its own stream ``(seed, y)``, and the filter sees a halo of
    4σ slices, so any chunking of y gives the same field (seamless, deterministic).
    """
    y0, y1 = y_range
    h = int(math.ceil(4 * sigma)) + 1
    white = np.stack([np.random.default_rng([seed, 3, y + 100000]).standard_normal((nz, nx), dtype=np.float32)
                      for y in range(y0 - h, y1 + h)])
    out = ndimage.gaussian_filter(white, sigma, mode="reflect")[h : h + y1 - y0]
    # Variance of unit white noise after a 3-D Gaussian of σ per axis: (2σ√π)^-3.
    return (out * (2 * sigma * math.sqrt(math.pi)) ** 1.5).astype(np.float32)


def _grain_seeds(rng: np.random.Generator, shape: tuple[int, int, int], margin_px: int, grain_px: float) -> np.ndarray:
    """Voronoi seeds (y, z, x) px covering the volume with its y margins, one per ``grain_px``³, plus values."""
    ny, nz, nx = shape
    lo = np.array([-margin_px - grain_px, -grain_px, -grain_px])
    hi = np.array([ny + margin_px + grain_px, nz + grain_px, nx + grain_px])
    n = max(int(round(float(np.prod(hi - lo)) / grain_px**3)), 1)
    pts = lo + rng.random((n, 3)) * (hi - lo)
    return np.column_stack([pts, rng.standard_normal(n)])


def _support_field(texture: SupportTexture, seeds: np.ndarray, seed: int, y_range: tuple[int, int], nz: int, nx: int,
                   px: float) -> tuple[np.ndarray, np.ndarray]:
    """Relative support density (grains + texture) and the texture alone on coarse slices ``y_range``."""
    from scipy.spatial import cKDTree

    y0, y1 = y_range
    t = _smooth_noise(seed, y_range, nz, nx, max(texture.texture_nm / px, 0.5))
    yy, zz, xx = np.meshgrid(np.arange(y0, y1) + 0.5, np.arange(nz) + 0.5, np.arange(nx) + 0.5, indexing="ij")
    _, idx = cKDTree(seeds[:, :3]).query(np.column_stack([yy.ravel(), zz.ravel(), xx.ravel()]))
    g = seeds[idx, 3].reshape(yy.shape).astype(np.float32)
    return (1.0 + texture.grain_contrast * g + texture.texture_amp * t).astype(np.float32), t


def _textured_densities(
    plate: _Plate,
    pores: list[tuple[np.ndarray, np.ndarray, float]],
    particles: list[dict[str, Any]],
    shape: tuple[int, int, int],
    particle_contrast: float,
    margin_px: int,
    s: int,
    texture: SupportTexture,
    seeds: np.ndarray,
    seed: int,
    px: float,
    chunk: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_densities` for a :class:`SupportTexture`, computed in chunks of ``chunk`` slices along y."""
    ny, nz, nx = shape
    sig = texture.boundary_sigma_nm / px * s  # fine px
    halo = int(math.ceil(3 * sig / s)) + 1  # coarse slices
    fine_density = np.empty((ny + 2 * margin_px, s * nz, s * nx), np.float32)
    for c0 in range(-margin_px, ny + margin_px, chunk):
        c1 = min(c0 + chunk, ny + margin_px)
        lab = _rasterise(plate, pores, particles, (s * (c1 - c0 + 2 * halo), s * nz, s * nx), 1.0 / s,
                         float(c0 - halo))
        ramp = (lab != BACKGROUND).astype(np.float32)
        if sig > 0:
            ramp = ndimage.gaussian_filter(ramp, sig, mode="nearest", truncate=3.0)
        core = slice(s * halo, s * (halo + c1 - c0))
        lab, ramp = lab[core], ramp[core]
        rel, t = _support_field(texture, seeds, seed, (c0, c1), nz, nx, px)
        up = (lambda a: a.repeat(s, 0).repeat(s, 1).repeat(s, 2))  # noqa: E731
        dens = ramp * up(rel)
        pt = lab == PARTICLE
        dens[pt] = (particle_contrast * (1.0 + texture.texture_amp * up(t)))[pt]
        fine_density[c0 + margin_px : c1 + margin_px] = dens.reshape(c1 - c0, s, s * nz, s * nx).mean(axis=1)
    core_d = fine_density[margin_px : margin_px + ny]
    density = core_d.reshape(ny, nz, s, nx, s).mean(axis=(2, 4)).astype(np.float32)
    return fine_density, density


def _densities(
    plate: _Plate,
    pores: list[tuple[np.ndarray, np.ndarray, float]],
    particles: list[dict[str, Any]],
    shape: tuple[int, int, int],
    lut: np.ndarray,
    margin_px: int,
    s: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled density with ``margin_px`` extra slices at both y ends, shape
    (n_y + 2 margin_px, s n_z, s n_x), and its voxel-averaged core, shape (n_y, n_z, n_x) float32.

    ``lut`` maps labels to density; ``s`` is the supersampling factor.
    """
    ny, nz, nx = shape
    fine_shape = (s * (ny + 2 * margin_px), s * nz, s * nx)
    fine_labels = _rasterise(plate, pores, particles, fine_shape, 1.0 / s, float(-margin_px))
    fine_density = lut[fine_labels].reshape(ny + 2 * margin_px, s, s * nz, s * nx).mean(axis=1)
    del fine_labels
    core = fine_density[margin_px : margin_px + ny]
    density = core.reshape(ny, nz, s, nx, s).mean(axis=(2, 4)).astype(np.float32)
    return fine_density, density


def _specimen_info(
    seed: int,
    shape: tuple[int, int, int],
    px: float,
    plate: _Plate,
    dz: float,
    n_pores: int,
    n_particles: int,
    n_comp: int,
    counts: np.ndarray,
    particle_contrast: float,
) -> dict[str, Any]:
    """The ``info`` record of :class:`Specimen` (plate geometry in px/nm, counts, class fractions)."""
    ny, nz, nx = shape
    return {
        "seed": seed,
        "shape": [ny, nz, nx],
        "pixel_size_nm": px,
        "plate": {
            "center_px": [plate.cy, plate.cz, plate.cx],
            "half_diagonals_px": [plate.b, plate.a],
            "rotation_deg": math.degrees(plate.psi),
            "base_thickness_nm": 2 * plate.half_t * px,
            "ridge_period_nm": plate.ridge_period * px,
            "ridge_amplitude_nm": plate.ridge_amp * px,
        },
        "z_shift_to_frame_px": dz,
        "n_pores": n_pores,
        "n_particles": n_particles,
        "n_particle_components": n_comp,
        "class_fractions": {"background": float(counts[0]), "support": float(counts[1]), "particles": float(counts[2])},
        "particle_contrast": particle_contrast,
    }


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
    center_mass_z: bool = True,
    texture: SupportTexture | None = None,
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
    center_mass_z : bool
        Move the specimen along z (sub-voxel) so that the density's centre of mass is at the centre of the
        thickness (the frame of :mod:`tomoflow.align`).
    texture : SupportTexture, optional
        Paper-like appearance (grains, fine texture, diffuse boundaries; see :class:`SupportTexture`);
        ``None`` (default) keeps the flat demo specimen (support 1, Pt ``particle_contrast``) unchanged.

    Returns
    -------
    Specimen
    """
    ny, nz, nx = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    px = float(pixel_size_nm)
    y_lo, y_hi = -margin_px, ny + margin_px

    plate, coverage = _make_plate(rng, (ny, nz, nx), px, support_fraction)
    pores = _make_pores(rng, plate, coverage, (y_lo, y_hi), nx, px)
    particles = _place_particles(rng, plate, (ny, nz, nx), px, particle_diameter_nm, particle_fraction)

    lut = np.array([0.0, 1.0, particle_contrast], dtype=np.float32)
    dz = 0.0
    if center_mass_z:  # the frame of tomoflow.align: density centre of mass at the centre of the thickness
        prof = lut[_rasterise(plate, pores, particles, (ny, nz, nx), 1.0, 0.0)].sum(axis=(0, 2))
        dz = nz / 2.0 - float(prof @ (np.arange(nz) + 0.5)) / max(float(prof.sum()), 1e-12)
        plate, pores, particles = _move_z(plate, pores, particles, dz)

    # ---- rasterise: labels at voxel centres, density supersampled (with y margins)
    labels = _rasterise(plate, pores, particles, (ny, nz, nx), 1.0, 0.0)
    s = int(supersample)
    if texture is None:
        fine_density, density = _densities(plate, pores, particles, (ny, nz, nx), lut, margin_px, s)
    else:  # own stream after every geometric draw, so the geometry is the same as without texture
        trng = np.random.default_rng([seed, 2])
        seeds = _grain_seeds(trng, (ny, nz, nx), margin_px, texture.grain_size_nm / px)
        fine_density, density = _textured_densities(plate, pores, particles, (ny, nz, nx), particle_contrast,
                                                    margin_px, s, texture, seeds, seed, px)

    particles, n_comp = _count_particle_voxels(labels, particles, px)

    counts = np.bincount(labels.ravel(), minlength=3) / labels.size
    info = _specimen_info(seed, (ny, nz, nx), px, plate, dz, len(pores), len(particles), n_comp, counts, particle_contrast)
    if texture is not None:
        info["texture"] = asdict(texture)
    log.info(
        "specimen seed=%d: %d particles, %d pores, fractions bg %.3f / support %.3f / Pt %.4f",
        seed, len(particles), len(pores), counts[0], counts[1], counts[2],
    )
    return Specimen(labels, density, fine_density, particles, px, margin_px, s, info)


