"""Tests of tomoflow.align: the centre offset as the projector defines it, recovery of known shifts / tilt
axis / centre on synthetic catalysts (3 seeds), reconstruction in the documented frame, the tilt-axis
criteria, IMOD export and bad input.  The round trip with the generator is in tests/test_geometry.py, the
independent series in tests/test_align_independent.py, the real needle in tests/test_align_needle.py.

Gauge: a specimen translation (dX, dZ) moves its projection at tilt θ by dX cos θ + dZ sin θ, so the data fix
the centre offset c and the x shifts only up to that sinusoid.  The aligner reports c in the minimum-drift
gauge and carries the frame translation (x as the 0° image shows it, z centre of mass at the volume centre)
in its shifts; the shift comparisons below bring both truth and estimate into the minimum-drift gauge
(`fix_gauge`).  Since the frame change of issue 16 the generator writes its truth in the aligner's frame, so
the reconstruction test needs no registration any more (it checks the volumes line up).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tomoflow import align, geometry, synthetic
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
    t_true = geometry.rot(-ts.tilt_axis_deg, ts.shifts_px)
    return align.fix_gauge(t_true, ts.center_offset_px, ts.angles_deg, ref)


# --------------------------------------------------------------------------- geometry
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


@pytest.fixture(scope="module")
def straight_series():
    spec, ts = synthetic.simulate(dict(SMALL, seed=5, tilt_axis_deg=0.0, shift_sigma_px=0.0, center_offset_px=0.0), threads=2)
    return ts


@pytest.mark.parametrize("criterion", ["common_lines", "row_com"])
def test_tilt_axis_criteria_measure_a_known_rotation(straight_series, criterion):
    ts = straight_series
    ref = int(np.argmin(np.abs(ts.angles_deg)))
    # frames rotated by +1° (the axis appears at φ = +1° in them): a frame at φ = 0 is 1° short: δ = φ − φ_true ≈ −1°
    frames = np.stack([synthetic.misalign_image(im, (0, 0), 1.0) for im in ts.data])
    if criterion == "common_lines":
        delta, err = align.axis_error_from_common_lines(frames, ts.angles_deg, ref, align.AlignParams(), (12, 36))
        assert -1.2 < delta < -0.6 and err < 0.1
    else:
        # the criterion's scale depends on the specimen (rows of a rotated frame cut slanted lines through
        # it), its zero does not: bracket the true angle with trial frames at 0° and 2°
        n = frames.shape[0]
        d0, e0 = align.axis_error_from_row_com(align.warp_stack(frames, 0.0, np.zeros((n, 2)), 0.0, frames.shape[1:]), ts.angles_deg, (6, 42))
        d2, e2 = align.axis_error_from_row_com(align.warp_stack(frames, 2.0, np.zeros((n, 2)), 0.0, frames.shape[1:]), ts.angles_deg, (6, 42))
        assert d0 < 0 < d2, (d0, d2)
        zero = 2.0 * (-d0) / (d2 - d0)
        assert abs(zero - 1.0) < 0.2, (zero, d0, d2, e0, e2)


def test_search_finds_a_zero_inside_and_reports_a_bound():
    found = align.search_tilt_axis(lambda phi: (0.9 * (phi - 7.3), 0.05), 0.0, half_width=3.0, max_change=10.0, criterion="test")
    assert found.value_deg == pytest.approx(7.3, abs=0.01) and not found.hit_bound
    assert min(found.grid_deg) < 7.3 < max(found.grid_deg)  # widened, not stopped at the first edge (3°)
    lost = align.search_tilt_axis(lambda phi: (phi - 30.0, 0.05), 0.0, half_width=3.0, max_change=10.0, criterion="test")
    assert lost.hit_bound and lost.value_deg == 0.0 and "not found" in lost.status


# --------------------------------------------------------------------------- acceptance on synthetic data
def test_recovers_shifts_axis_and_centre(aligned_sim):
    spec, ts, res = aligned_sim
    a = res.alignment
    ref = a.reference_index
    t_true, c_true = _truth_in_gauge(ts, ref)
    t_frame = a.aligned_frame_shifts()
    t_est, c_est = align.fix_gauge(t_frame, a.center_offset_px, ts.angles_deg, ref)
    assert c_est == pytest.approx(a.center_offset_px, abs=1e-6)  # c is reported in the minimum-drift gauge
    rms = float(np.sqrt(np.mean(np.sum((t_est - t_true) ** 2, axis=1))))
    assert rms < 0.5, f"shift RMS error {rms:.3f} px"
    assert abs(a.tilt_axis_deg - ts.tilt_axis_deg) < 0.3
    assert abs(a.center_offset_px - c_true) < 0.5
    # the frame: the reference image is not shifted across the axis (T_ref = c + t_x,ref = 0), nor along it
    assert a.center_offset_px + t_frame[ref, 0] == pytest.approx(0.0, abs=1e-6) and t_frame[ref, 1] == pytest.approx(0.0, abs=1e-9)
    # the raw-frame shifts are the estimate rotated back: compare in the generator's own (raw) frame too
    s_true_gauge = geometry.rot(ts.tilt_axis_deg, t_true)
    assert float(np.sqrt(np.mean(np.sum((geometry.rot(a.tilt_axis_deg, t_est) - s_true_gauge) ** 2, axis=1)))) < 0.5
    info = a.residuals["tilt_axis"]
    assert not info["hit_bound"] and info["status"].startswith("estimated") and info["uncertainty_deg"] < 1.0
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
    # the generator's truth is in the aligner's frame: the volumes line up without registration
    shift, _, _ = phase_cross_correlation(perfect, ours, upsample_factor=20, normalization=None)
    assert np.all(np.abs(shift) < 1.0), shift
    shift_truth, _, _ = phase_cross_correlation(spec.density, ours, upsample_factor=20, normalization=None)
    assert np.all(np.abs(shift_truth) < 1.0), shift_truth
    dens = spec.density

    def corr(v):
        return float(np.corrcoef(v[4:-4].ravel(), dens[4:-4].ravel())[0, 1])

    assert corr(ours) >= corr(perfect) - 0.02, (corr(ours), corr(perfect), shift)


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
    with pytest.raises(InputError, match="like pure noise"):
        align.align_tilt_series(noise, np.linspace(-60, 60, 31))


def test_quality_gate_fails_with_a_clear_message():
    ts = _small_series(21)
    p = align.AlignParams(max_residual_px=1e-4, projection_matching_rounds=1)
    with pytest.raises(align.AlignmentQualityError, match="max_residual_px"):
        align.align_tilt_series(ts.data, ts.angles_deg, params=p, thickness_px=48)


def test_hot_pixel_is_removed_before_aligning():
    """One 1e30 spike (issue 11) is replaced before alignment: same alignment as the clean series, counted in
    alignment.json's record; with the step switched off the same spike wrecks the alignment."""
    ts = _small_series(21)
    p = align.AlignParams(projection_matching_rounds=1, projection_matching_iterations=5)
    clean = align.align_tilt_series(ts.data, ts.angles_deg, params=p, thickness_px=48)
    spiked = ts.data.copy()
    spiked[13, 10, 20] = 1e30
    res = align.align_tilt_series(spiked, ts.angles_deg, params=p, thickness_px=48)
    hot = res.alignment.residuals["hot_pixels"]
    assert hot["enabled"] and 13 in hot["tilts_affected"] and hot["per_tilt"][13] >= 1
    assert np.abs(res.alignment.shifts_px - clean.alignment.shifts_px).max() < 0.05
    assert res.alignment.tilt_axis_deg == pytest.approx(clean.alignment.tilt_axis_deg, abs=0.02)
    assert np.isfinite(res.aligned).all() and res.aligned.max() < 10 * clean.aligned.max()
    off = align.AlignParams(projection_matching_rounds=1, projection_matching_iterations=5, remove_hot_pixels=False)
    with pytest.raises(InputError):
        align.align_tilt_series(spiked, ts.angles_deg, params=off, thickness_px=48)


def test_align_sample_gives_every_rule_output(tmp_path):
    """What the rule align_tilt_series writes comes from one library call (align_sample) plus tomoflow.io writers."""
    from tomoflow import io

    ts_sim = _small_series(21)
    io.write_volume(tmp_path / "ts.mrc", ts_sim.data, 0.4)
    io.write_angles(tmp_path / "ts.rawtlt", ts_sim.angles_deg)
    ts = io.read_tilt_series(tmp_path / "ts.mrc", angles=tmp_path / "ts.rawtlt", pixel_size_nm=0.4)
    cfg = dict(projection_matching_rounds=1, projection_matching_iterations=10, max_residual_px=1.0)
    res = align.align_sample(ts, cfg, tilt_axis_prior_deg=0.0, thickness_px=48, threads=1, name="t")
    assert list(res.table.columns[:3]) == ["angle_deg", "shift_x_px", "shift_y_px"] and len(res.table) == 21
    assert {"tilt_axis_deg", "center_offset_px", "residual_px", "residuals", "pixel_size_nm"} <= set(res.summary)
    assert res.summary["params"]["projection_matching_rounds"] == 1
    assert res.aligned.shape == ts_sim.data.shape and res.figure.axes
    align.write_imod_xf(tmp_path / "aligned.xf", res.alignment)
    assert len((tmp_path / "aligned.xf").read_text().splitlines()) == 21


def test_row_band_gate_fails_warns_and_passes_on_hand_computed_bands(caplog):
    bands = {"misfit": [0.02, 0.03, 0.2, 0.025], "worst_band": 2, "rows": [[0, 4], [4, 8], [8, 12], [12, 16]]}
    # median of the four = 0.0275: 0.2 / 0.0275 = 7.3 > 3 -> fails, naming the band and its misfit
    with pytest.raises(align.AlignmentQualityError, match=r"row band 2 is 7\.3×"):
        align.check_row_bands(dict(bands, worst_to_median=0.2 / 0.0275), 3.0, "ts.mrc")
    # 0.06 / 0.0275 = 2.2: above the warning level (2), below the limit -> a loud warning, no failure
    with caplog.at_level("WARNING", logger="tomoflow.align"):
        align.check_row_bands(dict(bands, misfit=[0.02, 0.03, 0.06, 0.025], worst_to_median=0.06 / 0.0275), 3.0, "ts.mrc")
    assert "row band 2 has 2.2×" in caplog.text
    align.check_row_bands(dict(bands, misfit=[0.02, 0.03, 0.035, 0.025], worst_to_median=0.035 / 0.0275), 3.0, "ts.mrc")
