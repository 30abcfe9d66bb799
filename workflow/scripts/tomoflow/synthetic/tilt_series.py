"""The misaligned, noisy HAADF tilt series of a synthetic specimen and its truth tables (see :mod:`tomoflow.synthetic`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ..geometry import frame_translation, misalign_params, remove_translation_gauge, rot
from ..projector import forward_project
from .specimen import PAPER_TEXTURE, Specimen, make_specimen

log = logging.getLogger("tomoflow.synthetic")


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
    M, offset = misalign_params(tilt_axis_deg, shift_xy, image.shape, row_offset)
    return ndimage.affine_transform(image.astype(np.float64), M, offset=offset, order=order, mode="constant", cval=0.0).astype(np.float32)


def frame_shifts(shifts_px: npt.ArrayLike, angles_deg: npt.ArrayLike, tilt_axis_deg: float, center_offset_px: float, ref: int) -> npt.NDArray[np.float64]:
    """Raw-frame shifts (n_tilts, 2), px, plus the specimen translation that puts the truth in the frame of
    :mod:`tomoflow.align`: the reference raw image shows the specimen where the volume has it across the axis
    (``c + t_x,ref = 0``; a pure ``a cos θ`` term, so nothing along the beam changes)."""
    t = rot(-tilt_axis_deg, shifts_px)
    th_ref = math.radians(float(np.asarray(angles_deg)[ref]))
    t[:, 0] += frame_translation(angles_deg, -(center_offset_px + t[ref, 0]) / math.cos(th_ref), 0.0)
    return rot(tilt_axis_deg, t)


def required_margin_px(shift_sigma_px: float, n_x: int, tilt_axis_deg: float, pad: float = 4.0) -> float:
    """Extra slices to simulate beyond each y end so that tilt images stay filled after the drift
    (4 σ) and the in-plane rotation (``n_x / 2 · |sin φ|``) are applied, plus ``pad``, px."""
    return 4 * abs(shift_sigma_px) + 0.5 * n_x * abs(math.sin(math.radians(tilt_axis_deg))) + pad


def tilt_angles(tilt_range_deg: Sequence[float], tilt_step_deg: float) -> npt.NDArray[np.float64]:
    """Angles from ``tilt_range_deg[0]`` to ``[1]`` inclusive in steps of ``tilt_step_deg`` (degrees)."""
    lo, hi = (float(v) for v in tilt_range_deg)
    n = int(math.floor((hi - lo) / tilt_step_deg + 1e-9)) + 1
    return lo + tilt_step_deg * np.arange(n, dtype=np.float64)


def _ideal_projections(
    specimen: Specimen, angles: npt.NDArray[np.float64], center_offset_px: float, counts_per_unit: float, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free projections (counts) of the specimen's fine density.

    Returns
    -------
    ideal_offset : ndarray, shape (n_tilts, n_y + 2 margin_px, n_x)
        With the y margins, rotation centre offset by ``center_offset_px`` (px along x).
    ideal_centered : ndarray, shape (n_tilts, n_y, n_x)
        Without margins, centred rotation (the aligned series).
    """
    ny, _, nx = specimen.labels.shape
    s, m = specimen.supersample, specimen.margin_px
    fine = specimen.fine_density
    ideal_offset = forward_project_fine(fine, angles, nx, s, center_offset_px, threads) * counts_per_unit
    if center_offset_px != 0:
        core = np.ascontiguousarray(fine[m : m + ny])
        ideal_centered = forward_project_fine(core, angles, nx, s, 0.0, threads) * counts_per_unit
    else:
        ideal_centered = ideal_offset[:, m : m + ny]
    return ideal_offset, ideal_centered


def _noisy(rng: np.random.Generator, expected: np.ndarray, read_noise: float) -> np.ndarray:
    """Poisson counts of ``expected`` (clipped at 0) plus Gaussian read noise (std ``read_noise``), float32."""
    lam = np.clip(expected, 0, None).astype(np.float64)
    return (rng.poisson(lam) + rng.normal(0.0, read_noise, size=lam.shape)).astype(np.float32)


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
    m = specimen.margin_px
    need = required_margin_px(shift_sigma_px, nx, tilt_axis_deg, pad=2.0)
    if need > m:
        raise ValueError(f"margin_px={m} too small for shifts/rotation (need ≥ {need:.0f}); raise margin_px")

    base_t = specimen.info["plate"]["base_thickness_nm"] / specimen.pixel_size_nm
    counts_per_unit = float(dose) / max(base_t, 1.0)
    ideal_offset, ideal_centered = _ideal_projections(specimen, angles, center_offset_px, counts_per_unit, threads)

    ref = int(np.argmin(np.abs(angles)))
    shifts = rng.normal(0.0, shift_sigma_px, size=(angles.size, 2))
    shifts[ref] = 0.0
    shifts = frame_shifts(remove_translation_gauge(shifts, angles, tilt_axis_deg, ref), angles, tilt_axis_deg, center_offset_px, ref)
    raw = np.empty((angles.size, ny, nx), dtype=np.float32)
    for i in range(angles.size):
        img = misalign_image(ideal_offset[i], shifts[i], tilt_axis_deg, row_offset=m)
        raw[i] = img[m : m + ny]
    aligned = ideal_centered.astype(np.float32)
    return TiltSeriesSim(
        data=_noisy(rng, raw, read_noise),
        aligned=_noisy(rng, aligned, read_noise),
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
    """Specimen and tilt series from a ``synthetic:`` config section (see config/README.md).

    ``preset: paper`` (optional key, default ``none``) gives the support the paper-like texture
    :data:`tomoflow.synthetic.specimen.PAPER_TEXTURE` (grains, diffuse boundaries); the other keys are used as given.
    """
    c = dict(config)
    preset = str(c.get("preset", "none"))
    if preset not in ("none", "paper"):
        raise ValueError(f"synthetic.preset {preset!r} is not 'none' or 'paper'")
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
        texture=PAPER_TEXTURE if preset == "paper" else None,
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
        "shift_convention": "raw_i(p) = P_i(R_phi^-1 (p - o - s_i) + o), p = (x, y); see tomoflow.geometry",
        "frame": "labels/density in the frame of tomoflow.align: x as the reference image shows it, density centre of mass at the centre of z",
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


@dataclass
class SimulationOutputs:
    """Everything the rule ``simulate_tilt_series`` writes: the specimen, the tilt series, the truth tables
    (per-tilt DataFrame, alignment and specimen dicts) and the overview figure."""

    specimen: Specimen
    tilt_series: TiltSeriesSim
    table: Any
    alignment: dict[str, Any]
    specimen_info: dict[str, Any]
    figure: Any


def simulate_outputs(config: dict[str, Any], threads: int = 1) -> SimulationOutputs:
    """:func:`simulate`, :func:`truth_tables` and :func:`specimen_figure` of a ``synthetic:`` config section."""
    cfg = dict(config)
    specimen, ts = simulate(cfg, threads=threads)
    table, truth, spec = truth_tables(specimen, ts, cfg)
    log.info("simulated %d tilts of %s px, %d particles", ts.data.shape[0], ts.data.shape[1:], len(specimen.particles))
    return SimulationOutputs(specimen, ts, table, truth, spec, specimen_figure(specimen, ts))
