"""The alignment pipeline: :func:`align_tilt_series` reads as the list of its steps."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..geometry import fix_gauge, frame_translation, output_shape_for, rot
from ..preprocess import remove_hot_pixels
from ..validate import MIN_IMAGE_PX, MIN_TILTS, check_signal, check_tilt_series
from .model import Alignment, AlignmentQualityError, AlignmentResult, AlignParams
from .qc import check_row_bands, sinogram_continuity
from .refine import (
    Reconstructor,
    band_energies,
    estimate_center,
    projection_matching_round,
    sirt_reconstructor,
)
from .registration import (
    background_level,
    center_of_mass_x,
    neighbour_chain,
    neighbour_ncc,
    neighbour_residual,
)
from .tilt_axis import (
    AxisSearch,
    axis_error_from_common_lines,
    axis_error_from_row_com,
    common_line_y_shifts,
    search_tilt_axis,
    specimen_in_view,
)
from .warp import (
    apply_alignment,
    bin_images,
    margins,
    residual_rotation,
    warp_stack,
    working_binning,
)

log = logging.getLogger("tomoflow.align")

#: Largest uncertainty (degrees) of a tilt-axis estimate that replaces the prior.
MAX_AXIS_STD_DEG = 1.0
#: Row bands of the quality gate, and the rows reconstructed per band.
N_BANDS = 4
ROWS_PER_BAND = 16
#: Bands whose data energy is below this fraction of the strongest band's are not judged by the gate.
MIN_BAND_SIGNAL = 0.1
#: Largest noise gain √(n (BᵀB)⁻¹₀₀) of the constant in ``x_cm = k + X cos θ + Z sin θ`` for which the row bands'
#: axis positions are measured (≈ 6 for ±58°; a narrower tilt range cannot tell k from X).
MAX_AXIS_LEVERAGE = 6.0


@dataclass
class _Run:
    """Inputs and running estimate of one alignment (aligned-frame shifts ``t``, axis ``phi``, centre ``c``)."""

    raw: np.ndarray
    work: np.ndarray
    angles: np.ndarray
    ref: int
    prior: float
    out_shape: tuple[int, int]
    thickness: int
    p: AlignParams
    threads: int
    where: str
    reconstructor: Reconstructor
    background: float = 0.0
    phi: float = 0.0
    t: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    c: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rot_margin(self) -> float:
        return residual_rotation(self.phi)

    def frames(self, data: np.ndarray | None = None, order: int = 3) -> np.ndarray:
        """The stack in the current alignment (without the centre offset)."""
        return warp_stack(self.work if data is None else data, self.phi, rot(self.phi, self.t), 0.0, self.out_shape, order=order, threads=self.threads)


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
    """Align a raw tilt series (translations, tilt-axis angle, rotation centre) into the documented frame.

    Parameters
    ----------
    data : array_like, shape (n_tilts, n_y, n_x)
        Raw images (counts; a vacuum background is detected and removed).
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
        Too few tilts, angle count ≠ images, blank/NaN images, a series without signal, no tilt axis
        found within ``max_tilt_axis_change_deg`` of the prior.
    AlignmentQualityError
        The residual exceeds ``max_residual_px`` or one row band's misfit is far above the others.
    """
    run = _prepare(data, angles_deg, params or AlignParams(), tilt_axis_prior_deg, thickness_px, threads, where, reconstructor)
    _coarse_translations(run)
    _tilt_axis(run)
    _centre(run)
    _projection_matching(run)
    _to_frame(run)
    result = _finish(run)
    _quality_gate(run, result.alignment)
    return result


def preprocess_raw_stack(arr: np.ndarray, angles: np.ndarray, p: AlignParams, where: str) -> tuple[np.ndarray, float, dict[str, Any]]:
    """PREPROCESS RAW STACK — the one place where raw images are cleaned before alignment.

    Hot pixels and X-ray spikes are replaced by their local median (:func:`tomoflow.preprocess.remove_hot_pixels`,
    when ``p.remove_hot_pixels``), the cleaned stack must show a specimen (:func:`tomoflow.validate.check_signal`),
    then the vacuum background level (if any) is subtracted.

    Returns
    -------
    work : ndarray, shape (n_tilts, n_y, n_x), float32
    background : float
        Subtracted level, counts.
    hot_pixels : dict
        What was replaced (``HotPixels.summary()``; ``{"enabled": False}`` when switched off).
    """
    hot: dict[str, Any] = {"enabled": False}
    if p.remove_hot_pixels:
        arr, found = remove_hot_pixels(arr, threshold_sigma=p.hot_pixel_threshold, where=where)
        hot = {"enabled": True} | found.summary()
        log.info("hot pixels / X-ray spikes: %d replaced in %d tilt(s) (threshold %.3g SD)", found.total,
                 len(hot["tilts_affected"]), p.hot_pixel_threshold)
    check_signal(arr, angles, where=where)
    bg = background_level(arr)
    return (arr - np.float32(bg) if bg else arr), bg, hot


def _prepare(data: npt.ArrayLike, angles_deg: npt.ArrayLike, p: AlignParams, prior: float, thickness_px: int | None,
             threads: int, where: str, reconstructor: Reconstructor | None) -> _Run:
    arr, angles = check_tilt_series(data, angles_deg, where=where, min_tilts=MIN_TILTS, min_image_px=MIN_IMAGE_PX)
    work, bg, hot = preprocess_raw_stack(arr, angles, p, where)
    out_shape = output_shape_for(arr.shape[1:], prior)
    ref = int(np.argmin(np.abs(angles)))
    run = _Run(arr, work, angles, ref, float(prior), out_shape, int(thickness_px or out_shape[1]), p, int(threads), str(where),
               reconstructor or sirt_reconstructor, bg, float(prior), np.zeros((angles.size, 2)))
    run.info["hot_pixels"] = hot
    log.info("aligning %d tilts of %dx%d px (reference %.1f°, prior φ %.2f°, background %.1f)", angles.size, arr.shape[1],
             arr.shape[2], angles[ref], prior, bg)
    return run


def _coarse_translations(run: _Run) -> None:
    """Step 1: neighbour cross-correlation chain in the frame rotated by the prior."""
    frames = run.frames()
    run.info["ncc_raw"] = neighbour_ncc(frames, run.angles, run.ref, run.p)
    if run.p.coarse:
        run.t, ncc = neighbour_chain(frames, run.angles, run.ref, run.p)
        log.info("neighbour chain: max |shift| %.1f px, median NCC %.3f", float(np.abs(run.t).max()), float(np.median(np.delete(ncc, run.ref))))


def _tilt_axis(run: _Run) -> None:
    """Step 2: tilt axis by a bracketed search of the row centre-of-mass criterion (common lines when the specimen
    leaves the view or the first criterion is undetermined); the prior is kept, and said so, when neither
    determines φ to ``MAX_AXIS_STD_DEG``."""
    p = run.p
    if not p.estimate_tilt_axis:
        run.info["tilt_axis"] = {"value_deg": run.phi, "prior_deg": run.prior, "status": "prior (not estimated)", "hit_bound": False}
        return
    b = working_binning(run.out_shape)
    wb = bin_images(run.work, b)
    shape_b = (run.out_shape[0] // b, run.out_shape[1] // b)
    s_phys = rot(run.phi, run.t) / b  # the physical drift does not depend on φ
    criteria = ["row centre of mass", "common line"]
    if not specimen_in_view(warp_stack(wb, run.phi, s_phys, 0.0, shape_b, order=1)):
        criteria = criteria[1:]
    searches = []
    for criterion in criteria:
        f = _axis_criterion(run, wb, s_phys, shape_b, criterion)
        searches.append(search_tilt_axis(f, run.prior, half_width=p.tilt_axis_search_deg, max_change=p.max_tilt_axis_change_deg,
                                         criterion=criterion))
        if not searches[-1].hit_bound and searches[-1].std_deg <= MAX_AXIS_STD_DEG:
            break
    ok = [s for s in searches if not s.hit_bound]
    if not ok:
        run.info["tilt_axis"] = _axis_summary(searches[0])
        raise InputError(run.where, f"tilt axis not found: {searches[0].status} {run.prior:g}°",
                         "check the sample's tilt_axis_deg (degrees from the image y axis; 90 for a horizontal axis), "
                         "raise align.max_tilt_axis_change_deg, or set align.estimate_tilt_axis: false")
    search = min(ok, key=lambda s: s.std_deg if np.isfinite(s.std_deg) else np.inf)
    run.info["tilt_axis"] = _axis_summary(search)
    if not search.std_deg <= MAX_AXIS_STD_DEG:
        log.warning("WARNING: the data do not determine the tilt axis (%s: %.2f ± %.2f°): keeping the prior %.2f°",
                    search.criterion, search.value_deg, search.std_deg, run.prior)
        run.info["tilt_axis"].update(value_deg=run.prior, change_from_prior_deg=0.0, estimate_deg=search.value_deg,
                                     status=f"prior kept: the data do not determine the tilt axis ({search.criterion} "
                                            f"{search.value_deg:.2f} ± {search.std_deg:.2f}°)")
        return
    run.phi = search.value_deg
    run.t = rot(-run.phi, s_phys * b)
    log.info("tilt axis %.3f ± %.3f° (%s; prior %.2f°, scanned %.2f..%.2f°)", run.phi, search.std_deg, search.criterion, run.prior,
             search.grid_deg[0], search.grid_deg[-1])
    if p.coarse and abs(run.phi - run.prior) > 0.2:  # redo the chain in the final frame
        run.t, _ = neighbour_chain(warp_stack(run.work, run.phi, np.zeros_like(run.t), 0.0, run.out_shape, threads=run.threads),
                                   run.angles, run.ref, p)


def _axis_criterion(run: _Run, wb: np.ndarray, s_phys: np.ndarray, shape_b: tuple[int, int], criterion: str) -> Callable[[float], tuple[float, float]]:
    """``φ -> (δ, σ)`` of one criterion on the binned stack ``wb`` with the physical drift ``s_phys`` (y re-registered
    on the common line at every φ)."""

    def f(phi: float) -> tuple[float, float]:
        t = rot(-phi, s_phys)
        t[:, 1] += common_line_y_shifts(warp_stack(wb, phi, s_phys, 0.0, shape_b, order=1, threads=run.threads), run.ref, run.p.bandpass_px)
        fr = warp_stack(wb, phi, rot(phi, t), 0.0, shape_b, order=1, threads=run.threads)
        rows, _ = margins(t, shape_b, residual_rotation(phi))
        if criterion == "row centre of mass":
            return axis_error_from_row_com(fr, run.angles, rows)
        return axis_error_from_common_lines(fr, run.angles, run.ref, run.p, rows)

    return f


def _axis_summary(search: AxisSearch) -> dict[str, Any]:
    out = search.to_json()
    if not search.hit_bound:
        moved = search.value_deg - search.prior_deg
        out["status"] = (f"estimated from the data by {search.criterion}: {search.value_deg:.3f} ± {search.std_deg:.3f}° "
                         f"({moved:+.3f}° from the prior {search.prior_deg:g}°)")
    return out


def _centre(run: _Run) -> None:
    """Step 3: optional centre-of-mass x alignment, gauge fix, rotation centre by reconstruction sharpness."""
    if run.p.center_of_mass:
        run.t[:, 0] += center_of_mass_x(run.frames(), run.angles, run.ref)
        run.t[:, 0] -= run.t[run.ref, 0]
    run.t, run.c = fix_gauge(run.t, 0.0, run.angles, run.ref)
    if not run.p.estimate_center:
        run.c = 0.0
        return
    b = working_binning(run.out_shape)
    run.c = b * estimate_center(bin_images(run.work, b), run.angles, run.phi, run.t / b, run.c / b,
                                (run.out_shape[0] // b, run.out_shape[1] // b), thickness=max(8, run.thickness // b),
                                threads=run.threads, half_width=4.0 / b, rot_margin_deg=run.rot_margin)
    run.history.append({"step": "coarse", "tilt_axis_deg": run.phi, "center_offset_px": run.c})
    log.info("coarse alignment: φ %.3f°, centre %.2f px, max |shift| %.1f px", run.phi, run.c, float(np.abs(run.t).max()))


def _projection_matching(run: _Run) -> None:
    """Step 4: rounds of reconstruct → reproject → register (binned first for large images), then one
    measured (not applied) round at full size for the residual."""
    p = run.p
    rounds = int(p.projection_matching_rounds)
    run.info["per_tilt"] = np.full(run.angles.size, np.nan)
    run.info["misfit"] = float("nan")
    if rounds == 0:
        return
    b0 = working_binning(run.out_shape)
    for k, b in enumerate(([b0] * rounds if b0 > 1 else []) + [1] * rounds):
        wb = bin_images(run.work, b)
        shp = (run.out_shape[0] // b, run.out_shape[1] // b)
        rnd = projection_matching_round(wb, run.angles, run.phi, run.t / b, run.c / b, shp, thickness=max(8, run.thickness // b),
                                        iterations=p.projection_matching_iterations, params=p, reconstructor=run.reconstructor,
                                        threads=run.threads, rot_margin_deg=run.rot_margin)
        corr = rnd.corrections * b
        t, c = fix_gauge(run.t + corr, run.c, run.angles, run.ref)
        run.t, run.c = t, (c if p.estimate_center else 0.0)
        if p.estimate_center:
            run.c = b * estimate_center(wb, run.angles, run.phi, run.t / b, run.c / b, shp, thickness=max(8, run.thickness // b),
                                        threads=run.threads, half_width=1.0, rot_margin_deg=run.rot_margin)
        rms = float(np.sqrt(np.mean(np.sum(corr**2, axis=1))))
        run.history.append({"step": f"projection matching {k + 1} (bin {b})", "tilt_axis_deg": run.phi, "center_offset_px": run.c,
                            "rms_correction_px": rms})
        log.info("projection matching %d (bin %d): RMS correction %.3f px, centre %.2f px, misfit %.4f", k + 1, b, rms, run.c, rnd.misfit)
    final = projection_matching_round(run.work, run.angles, run.phi, run.t, run.c, run.out_shape, thickness=run.thickness,
                                      iterations=p.projection_matching_iterations, params=p, reconstructor=run.reconstructor,
                                      threads=run.threads, rot_margin_deg=run.rot_margin)
    corr = final.corrections - final.corrections.mean(axis=0)  # a common shift is a specimen translation
    run.info["per_tilt"] = np.hypot(corr[:, 0], corr[:, 1])
    run.info["misfit"] = final.misfit


def frame_offsets(stack: np.ndarray, angles: np.ndarray) -> tuple[float, float, float]:
    """Specimen centre of mass ``(X, Z)`` (px from the rotation axis) of an aligned stack, and the constant
    ``k`` of the fit ``x_cm,i = k + X cos θ_i + Z sin θ_i``.

    Each image's background is the median of its outer 5 % columns; no clipping (zero-mean noise does not
    bias the moments).

    Parameters
    ----------
    stack : ndarray, shape (n_tilts, n_y, n_x)
        Aligned images, tilt axis along y at the detector centre.
    angles : ndarray, shape (n_tilts,)
        Degrees.
    """
    n, _, nx = stack.shape
    e = max(2, nx // 20)
    prof = stack.astype(np.float64).sum(axis=1)
    prof -= np.median(np.concatenate([prof[:, :e], prof[:, -e:]], axis=1), axis=1, keepdims=True)
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0
    xcm = (prof @ x) / np.maximum(prof.sum(axis=1), 1e-12)
    th = np.radians(angles)
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(n), np.cos(th), np.sin(th)]), xcm, rcond=None)
    return float(coef[1]), float(coef[2]), float(coef[0])


def _to_frame(run: _Run) -> None:
    """Step 5: move the specimen into the documented frame (see the package docstring): x as the reference
    (lowest-tilt) image shows it, z centre of mass on the rotation axis (the volume's centre)."""
    th_ref = math.radians(run.angles[run.ref])
    stack = warp_stack(run.work, run.phi, rot(run.phi, run.t), run.c, run.out_shape, order=1, threads=run.threads)
    in_view = specimen_in_view(stack)
    _, z_com, _ = frame_offsets(stack, run.angles) if in_view else (0.0, 0.0, 0.0)
    t_ref = run.c + run.t[run.ref, 0]
    a = -(t_ref + z_com * math.sin(th_ref)) / math.cos(th_ref)
    run.t[:, 0] += frame_translation(run.angles, a, z_com)
    run.info["frame"] = {
        "x": "the specimen sits across the tilt axis where the reference (lowest-tilt) raw image shows it",
        "z": ("the specimen's centre of mass is at the volume's centre (the rotation axis)" if in_view else
              "minimum-drift gauge (specimen not fully in view, centre of mass unusable): z = 0 on the rotation axis of that gauge"),
        "y": "as the reference image shows it (along the tilt axis)",
        "specimen_translation_from_min_drift_gauge_px": {"x": -a, "z": -z_com},
        "reference_angle_deg": float(run.angles[run.ref]),
    }
    log.info("frame: specimen moved by (x, z) = (%+.2f, %+.2f) px from the minimum-drift gauge", -a, -z_com)


def row_band_misfits(run: _Run, aligned: np.ndarray) -> dict[str, Any]:
    """Reprojection misfit of ``N_BANDS`` bands of usable rows (``ROWS_PER_BAND`` central rows of each).

    A band's misfit is its residual energy over its data energy; bands with less than ``MIN_BAND_SIGNAL`` of the
    strongest band's data energy (vacuum beyond a tip) are reported but not judged (their misfit is noise).
    When the specimen is in view, each band's rotation-axis position (the constant of its projected
    centre-of-mass sinusoid, px) is also reported: a wrong tilt axis puts the axis at different x in different
    bands (the crescents away from the central slice), which a misfit alone can miss.
    """
    rows, cols = margins(run.t, run.out_shape, run.rot_margin)
    edges = np.linspace(rows[0], rows[1], N_BANDS + 1).round().astype(int)
    from ..projector import forward_project

    res, sig, offset = np.zeros(N_BANDS), np.zeros(N_BANDS), np.full(N_BANDS, np.nan)
    th = np.radians(run.angles)
    design = np.column_stack([np.ones_like(th), np.cos(th), np.sin(th)])
    leverage = math.sqrt(th.size * float(np.linalg.inv(design.T @ design)[0, 0]))
    # the axis position is the constant of x_cm = k + X cos θ + Z sin θ: only separable from X over a wide range
    in_view = specimen_in_view(aligned) and leverage <= MAX_AXIS_LEVERAGE
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        mid, h = (a + b) // 2, max(1, min(ROWS_PER_BAND, b - a) // 2)
        st = aligned[:, mid - h : mid + h]
        vol = run.reconstructor(st, run.angles, run.thickness, run.p.projection_matching_iterations, run.threads)
        r, s = band_energies(st, forward_project(vol, run.angles, n_det=st.shape[2], threads=run.threads), cols, 1)
        res[k], sig[k] = r[0], s[0]
        if in_view:  # where this band's rotation axis is (constant of its centre-of-mass sinusoid), px
            offset[k] = frame_offsets(st, run.angles)[2]
    m = res / np.maximum(sig, 1e-30)
    held = np.flatnonzero(sig >= MIN_BAND_SIGNAL * sig.max())  # bands of vacuum (beyond a tip) are not judged
    worst = int(held[np.argmax(m[held])])
    return {"rows": [[int(a), int(b)] for a, b in zip(edges[:-1], edges[1:])], "misfit": m.tolist(),
            "relative_signal": (sig / max(float(sig.max()), 1e-30)).tolist(), "judged": held.tolist(), "worst_band": worst,
            "worst_to_median": float(m[worst] / max(float(np.median(m[held])), 1e-30)),
            "axis_offset_px": offset.tolist(), "axis_offset_spread_px": float(np.ptp(offset[held])) if in_view else float("nan")}


def _finish(run: _Run) -> AlignmentResult:
    """Step 6: the aligned stack and every diagnostic of ``alignment.json``."""
    alignment = Alignment(angles_deg=run.angles.copy(), shifts_px=rot(run.phi, run.t), tilt_axis_deg=run.phi, center_offset_px=run.c,
                          reference_index=run.ref, input_shape=(int(run.raw.shape[1]), int(run.raw.shape[2])),
                          output_shape=run.out_shape, frame=run.info["frame"])
    aligned = apply_alignment(run.work, alignment, threads=run.threads)
    per_tilt, method = run.info["per_tilt"], "projection matching"
    if run.p.projection_matching_rounds == 0:  # what the neighbour chain still finds along the axis (x has parallax)
        per_tilt, method = np.abs(neighbour_residual(aligned, run.angles, run.ref, run.p)[:, 1]), "neighbour cross-correlation"
    residual = float(np.sqrt(np.nanmean(per_tilt**2)))
    order = np.argsort(run.angles)
    ncc_al = neighbour_ncc(aligned, run.angles, run.ref, run.p)
    alignment.residual_px = residual
    alignment.residuals = {
        "residual_px": residual, "method": method, "per_tilt_px": per_tilt,
        "relative_reprojection_misfit": run.info["misfit"],
        "tilt_axis": run.info["tilt_axis"],
        "tilt_axis_std_deg": run.info["tilt_axis"].get("uncertainty_deg", float("nan")),
        "tilt_axis_status": run.info["tilt_axis"]["status"],
        "row_bands": row_band_misfits(run, aligned),
        "neighbour_ncc_raw": float(np.median(np.delete(run.info["ncc_raw"], run.ref))),
        "neighbour_ncc_aligned": float(np.median(np.delete(ncc_al, run.ref))),
        "sinogram_continuity_raw": sinogram_continuity(warp_stack(run.raw, run.phi, np.zeros_like(run.t), 0.0, run.out_shape, order=1)[order]),
        "sinogram_continuity_aligned": sinogram_continuity(aligned[order]),
        "background_counts": run.background,
        "hot_pixels": run.info["hot_pixels"],
        "history": run.history,
    }
    log.info("alignment: φ %.3f°, c %.2f px, residual %.3f px (%s), neighbour NCC %.3f → %.3f, band misfits %s", run.phi, run.c,
             residual, method, alignment.residuals["neighbour_ncc_raw"], alignment.residuals["neighbour_ncc_aligned"],
             ", ".join(f"{m:.4f}" for m in alignment.residuals["row_bands"]["misfit"]))
    return AlignmentResult(alignment=alignment, aligned=aligned)


def _quality_gate(run: _Run, alignment: Alignment) -> None:
    """Step 7: residual and row-band gates."""
    p = run.p
    if not alignment.residual_px <= p.max_residual_px:
        raise AlignmentQualityError(
            run.where,
            f"alignment residual {alignment.residual_px:.2f} px (RMS, {alignment.residuals['method']}) is above "
            f"align.max_residual_px = {p.max_residual_px:g}",
            "check the tilt angles and the tilt_axis_deg prior, enable projection matching, or raise align.max_residual_px "
            "if the data are known to be poor",
        )
    check_row_bands(alignment.residuals["row_bands"], p.max_band_misfit_ratio, run.where, p.max_band_axis_spread_px)
