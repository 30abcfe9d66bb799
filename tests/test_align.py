"""Tests of tomoflow.align: geometry against the generator's own misalignment code, recovery of known
shifts / tilt axis / centre on synthetic catalysts (3 seeds), reconstruction quality, the real ETSpy needle,
IMOD export and bad input.

Gauge: a specimen translation (dX, dZ) moves its projection at tilt θ by dX cos θ + dZ sin θ, so the data fix
the centre offset c and the x shifts only up to that sinusoid (tomoflow.align docstring).  The generator draws
i.i.d. shifts, which have such a component; the comparisons below therefore bring the *truth* into the gauge
the aligner reports (least-squares, `fix_gauge`) before comparing — the shifts stay those of the generator up
to an exact specimen translation, which the reconstruction test checks by registering the volumes.
"""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from tomoflow import align, synthetic
from tomoflow.errors import InputError

SMALL = dict(
    seed=7, shape=[48, 96, 192], pixel_size_nm=0.4, tilt_range_deg=[-68.0, 68.0], tilt_step_deg=2.0, dose=4000.0,
    read_noise=2.0, shift_sigma_px=3.0, tilt_axis_deg=2.5, center_offset_px=1.5, particle_diameter_nm=[1.0, 4.0],
    particle_fraction=0.005, support_fraction=0.21, particle_contrast=5.0,
)


@pytest.fixture(scope="module", params=[3, 11, 23])
def aligned_sim(request):
    spec, ts = synthetic.simulate(dict(SMALL, seed=request.param), threads=2)
    res = align.align_tilt_series(ts.data, ts.angles_deg, thickness_px=spec.density.shape[1], threads=2)
    return spec, ts, res


def _truth_in_gauge(ts, ref):
    t_true = align._rot(-ts.tilt_axis_deg, ts.shifts_px)
    return align.fix_gauge(t_true, ts.center_offset_px, ts.angles_deg, ref)


# --------------------------------------------------------------------------- geometry
def test_apply_alignment_inverts_the_generator_model():
    rng = np.random.default_rng(0)
    ideal = ndimage.gaussian_filter(rng.random((80, 120)), 2.0).astype(np.float32)
    s, phi = (3.3, -2.1), 4.0
    raw = synthetic.misalign_image(ideal, s, phi)
    al = align.Alignment(angles_deg=np.zeros(1), shifts_px=np.array([s]), tilt_axis_deg=phi, center_offset_px=0.0,
                         reference_index=0, input_shape=(80, 120), output_shape=(80, 120))
    back = align.apply_alignment(raw[None], al)[0]
    inner = (slice(15, -15), slice(15, -15))
    err = np.abs(back[inner] - ideal[inner]).max() / np.ptp(ideal)
    assert err < 0.02


def test_centre_offset_is_removed_like_the_projector_defines_it():
    # A projection made with centre offset c, aligned with c, equals the one made with offset 0.
    from tomoflow.projector import forward_project

    vol = np.zeros((4, 64, 96), np.float32)
    vol[:, 20:30, 30:45] = 1.0
    vol[:, 40:44, 60:70] = 2.0
    vol = ndimage.gaussian_filter(vol, (0, 3, 3))  # smooth: sub-pixel interpolation is then exact enough
    angles = np.array([-30.0, 0.0, 25.0])
    c = 2.6
    shifted = forward_project(vol, angles, center_offset_px=c, projector="strip")
    centred = forward_project(vol, angles, center_offset_px=0.0, projector="strip")
    al = align.Alignment(angles_deg=angles, shifts_px=np.zeros((3, 2)), tilt_axis_deg=0.0, center_offset_px=c,
                         reference_index=1, input_shape=(4, 96), output_shape=(4, 96))
    out = align.apply_alignment(shifted, al)
    assert np.abs(out[:, :, 10:-10] - centred[:, :, 10:-10]).max() < 0.01 * centred.max()
    wrong = align.apply_alignment(shifted, align.Alignment(**{**vars(al), "center_offset_px": -c}))
    assert np.abs(wrong[:, :, 10:-10] - centred[:, :, 10:-10]).max() > 0.1 * centred.max()


def test_imod_xf_maps_a_raw_point_to_its_aligned_position():
    ny, nx = 70, 110
    p_raw = np.array([71.3, 22.6])  # (x, y)
    yy, xx = np.mgrid[0:ny, 0:nx]
    raw = np.exp(-((xx - p_raw[0]) ** 2 + (yy - p_raw[1]) ** 2) / (2 * 2.0**2)).astype(np.float32)
    al = align.Alignment(angles_deg=np.zeros(1), shifts_px=np.array([[4.2, -3.1]]), tilt_axis_deg=7.0,
                         center_offset_px=1.7, reference_index=0, input_shape=(ny, nx), output_shape=(ny, nx))
    out = align.apply_alignment(raw[None], al)[0]
    w = np.clip(out, 0, None)
    found = np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    a11, a12, a21, a22, dx, dy = align.imod_xf(al)[0]
    o = np.array([(nx - 1) / 2, (ny - 1) / 2])
    pred = np.array([[a11, a12], [a21, a22]]) @ (p_raw - o) + np.array([dx, dy]) + o
    assert np.allclose(found, pred, atol=0.05)
    text = align.format_xf(align.imod_xf(al))
    assert len(text.splitlines()) == 1 and len(text.split()) == 6


def test_output_shape_swaps_for_a_horizontal_axis():
    assert align.output_shape_for((100, 60), 90.0) == (60, 100)
    assert align.output_shape_for((100, 60), 3.0) == (100, 60)


def test_fix_gauge_removes_a_specimen_translation_exactly():
    angles = np.arange(-60.0, 61.0, 3.0)
    ref = int(np.argmin(np.abs(angles)))
    rng = np.random.default_rng(1)
    t = rng.normal(0, 2, (angles.size, 2))
    t[ref] = 0
    t0, c0 = align.fix_gauge(t, 0.7, angles, ref)
    th = np.radians(angles)
    # the same data explained with the specimen moved by (dX, dZ) = (3, -2)
    t2 = t0.copy()
    t2[:, 0] += 3 * (np.cos(th) - 1) - 2 * np.sin(th)
    t3, c3 = align.fix_gauge(t2, c0 + 3, angles, ref)
    assert np.allclose(t3, t0, atol=1e-9) and math.isclose(c3, c0, abs_tol=1e-9)
    assert np.allclose(t0[ref], 0)


def test_tilt_axis_moments_measure_a_known_rotation():
    spec, ts = synthetic.simulate(dict(SMALL, seed=5, tilt_axis_deg=0.0, shift_sigma_px=0.0, center_offset_px=0.0), threads=2)
    ref = int(np.argmin(np.abs(ts.angles_deg)))
    # frames rotated by −1° from the true axis: the correction must be about +1°
    frames = np.stack([synthetic.misalign_image(im, (0, 0), 1.0) for im in ts.data])
    delta, err = align.tilt_axis_from_moments(frames, ts.angles_deg, ref, align.AlignParams(), (12, 36))
    assert 0.6 < delta < 1.2 and err < 0.1


# --------------------------------------------------------------------------- acceptance on synthetic data
def test_recovers_shifts_axis_and_centre(aligned_sim):
    spec, ts, res = aligned_sim
    a = res.alignment
    ref = a.reference_index
    t_true, c_true = _truth_in_gauge(ts, ref)
    t_est = a.aligned_frame_shifts()
    rms = float(np.sqrt(np.mean(np.sum((t_est - t_true) ** 2, axis=1))))
    assert rms < 0.5, f"shift RMS error {rms:.3f} px"
    assert abs(a.tilt_axis_deg - ts.tilt_axis_deg) < 0.3
    assert abs(a.center_offset_px - c_true) < 0.5
    assert np.allclose(a.shifts_px[ref], 0.0)
    # the raw-frame shifts are the estimate rotated back: compare in the generator's own (raw) frame too
    s_true_gauge = align._rot(ts.tilt_axis_deg, t_true)
    assert float(np.sqrt(np.mean(np.sum((a.shifts_px - s_true_gauge) ** 2, axis=1)))) < 0.5
    assert a.residual_px < 0.5
    assert a.residuals["neighbour_ncc_aligned"] > a.residuals["neighbour_ncc_raw"] + 0.1


def test_reconstruction_of_aligned_stack_matches_perfect_alignment(aligned_sim, request):
    from skimage.registration import phase_cross_correlation

    from tomoflow.recon import reconstruct

    if request.node.callspec.params["aligned_sim"] != 3:
        pytest.skip("one seed is enough for the reconstruction check (runtime)")
    spec, ts, res = aligned_sim
    thick = spec.density.shape[1]
    ours = reconstruct(res.aligned, ts.angles_deg, thickness_px=thick, algorithm="sirt", iterations=20, threads=2).volume
    perfect = reconstruct(ts.aligned, ts.angles_deg, thickness_px=thick, algorithm="sirt", iterations=20, threads=2).volume
    # undo the specimen translation of the gauge (sub-voxel registration in z, x only)
    shift, _, _ = phase_cross_correlation(perfect, ours, upsample_factor=20, normalization=None)
    ours = ndimage.shift(ours, (0.0, shift[1], shift[2]), order=3, mode="nearest")
    dens = spec.density

    def corr(v):
        return float(np.corrcoef(v[4:-4].ravel(), dens[4:-4].ravel())[0, 1])

    assert corr(ours) >= corr(perfect) - 0.02, (corr(ours), corr(perfect), shift)


# --------------------------------------------------------------------------- real data
def test_real_needle_aligns_with_continuous_sinogram(needle_dir):
    from tomoflow import io

    ts = io.read_tilt_series(needle_dir / "HAADF.mrc", angles=needle_dir / "HAADF.rawtlt", pixel_size_nm=3.36)
    data = align._bin(ts.data, 2)  # 128×128: keeps the test short
    p = align.AlignParams(projection_matching_rounds=1)
    res = align.align_tilt_series(data, ts.angles_deg, params=p, tilt_axis_prior_deg=90.0, threads=2, where=str(needle_dir))
    a = res.alignment
    assert np.all(np.isfinite(res.aligned))
    raw_rot = align._warp_stack(data, a.tilt_axis_deg, np.zeros((data.shape[0], 2)), 0.0, a.output_shape)
    before = align.sinogram_continuity(raw_rot)
    after = align.sinogram_continuity(res.aligned)
    assert after > 0.99 and after > before + 0.05, (before, after)
    assert a.residuals["neighbour_ncc_aligned"] > 0.95
    assert a.residual_px < 0.5
    # drift of tens of px along the raw y (across the horizontal tilt axis) is found
    assert np.abs(a.shifts_px[:, 1]).max() > 5


# --------------------------------------------------------------------------- bad input
def _small_series(n=9):
    spec, ts = synthetic.simulate(dict(SMALL, shape=[32, 48, 96], tilt_range_deg=[-40.0, 40.0], tilt_step_deg=80.0 / (n - 1)), threads=2)
    return ts


def test_too_few_tilts():
    ts = _small_series(9)
    with pytest.raises(InputError, match="at least"):
        align.align_tilt_series(ts.data[:3], ts.angles_deg[:3])


def test_angles_do_not_match_images():
    ts = _small_series(9)
    with pytest.raises(InputError, match="8 tilt angles for 9 images"):
        align.align_tilt_series(ts.data, ts.angles_deg[:8])


def test_all_noise_is_refused():
    rng = np.random.default_rng(3)
    noise = rng.poisson(1000.0, size=(31, 48, 96)).astype(np.float32)
    with pytest.raises(InputError, match="looks like noise"):
        align.align_tilt_series(noise, np.linspace(-60, 60, 31))


def test_quality_gate_fails_with_a_clear_message():
    ts = _small_series(21)
    p = align.AlignParams(max_residual_px=1e-4, projection_matching_rounds=1)
    with pytest.raises(align.AlignmentQualityError, match="max_residual_px"):
        align.align_tilt_series(ts.data, ts.angles_deg, params=p, thickness_px=48)


class _Named(SimpleNamespace):
    """Snakemake-like named list: attribute access and iteration over the paths."""

    def __iter__(self):
        return iter(str(v) for v in vars(self).values())


def _run_rule(tmp_path: Path, data: np.ndarray, angles: np.ndarray) -> dict[str, str]:
    """Run workflow/scripts/align_tilt_series.py as Snakemake would (duck-typed ``snakemake`` object)."""
    from tomoflow import io

    io.write_volume(tmp_path / "ts.mrc", data, 0.4)
    io.write_angles(tmp_path / "ts.rawtlt", angles)
    names = dict(aligned="aligned.mrc", table="alignment.tsv", summary="alignment.json", xf="aligned.xf", tlt="aligned.tlt",
                 figure="figures/alignment_qc.png")
    out = {k: str(tmp_path / "out" / v) for k, v in names.items()}
    cfg = dict(coarse=True, cosine_stretch=True, upsample=20, bandpass_px=[1.0, 30.0], center_of_mass=False, estimate_tilt_axis=True,
               estimate_center=True, projection_matching_rounds=1, projection_matching_iterations=10, max_residual_px=1.0)
    smk = SimpleNamespace(
        input=_Named(tilt_series=str(tmp_path / "ts.mrc"), angles=str(tmp_path / "ts.rawtlt")),
        output=_Named(**out),
        params=SimpleNamespace(align=cfg, tilt_axis_deg=0.0, thickness_px=48, pixel_size_nm=0.4),
        threads=1, log=[str(tmp_path / "align.log")], wildcards=SimpleNamespace(sample="t"), rule="align_tilt_series",
    )
    script = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "align_tilt_series.py"
    runpy.run_path(str(script), init_globals={"snakemake": smk})
    return out


def test_rule_writes_all_outputs(tmp_path):
    from tomoflow import io

    ts = _small_series(21)
    out = _run_rule(tmp_path, ts.data, ts.angles_deg)
    for p in out.values():
        assert Path(p).is_file(), p
    table = io.read_tsv(out["table"])
    assert list(table.columns[:3]) == ["angle_deg", "shift_x_px", "shift_y_px"] and len(table) == 21
    summary = io.read_json(out["summary"])
    assert {"tilt_axis_deg", "center_offset_px", "residual_px", "residuals"} <= set(summary)
    assert np.allclose(io.read_angles(out["tlt"]), ts.angles_deg, atol=1e-3)
    assert len(Path(out["xf"]).read_text().splitlines()) == 21
    vol, vs = io.read_volume(out["aligned"])
    assert vol.shape == ts.data.shape and math.isclose(vs, 0.4, rel_tol=1e-4)


def test_rule_failure_leaves_no_output(tmp_path):
    rng = np.random.default_rng(4)
    noise = rng.poisson(1000.0, size=(21, 32, 96)).astype(np.float32)
    with pytest.raises(SystemExit):
        _run_rule(tmp_path, noise, np.linspace(-40, 40, 21))
    assert not (tmp_path / "out").exists() or not [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert "looks like noise" in (tmp_path / "align.log").read_text()
