"""tomoflow.synthetic: class fractions, particle sizes in nm, projections, misalignment, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy import ndimage

from tomoflow import synthetic
from tomoflow.projector import forward_project

PAPER_FRACTIONS = {"background": 0.78, "support": 0.21, "particles": 0.005}


@pytest.fixture(scope="module")
def demo_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["synthetic"]


def _specimen_kwargs(cfg):
    keys = ("seed", "shape", "pixel_size_nm", "particle_diameter_nm", "particle_fraction", "support_fraction", "particle_contrast")
    return {k: cfg[k] for k in keys}


@pytest.fixture(scope="module")
def demo_specimen(demo_config):
    return synthetic.make_specimen(**_specimen_kwargs(demo_config), margin_px=8)


def test_class_fractions_match_the_paper_within_factor_1_5(demo_specimen):
    labels = demo_specimen.labels
    counts = np.bincount(labels.ravel(), minlength=3) / labels.size
    for value, name in enumerate(("background", "support", "particles")):
        ratio = counts[value] / PAPER_FRACTIONS[name]
        assert 1 / 1.5 <= ratio <= 1.5, (name, counts[value])


def test_particle_sizes_in_nm_and_one_component_each(demo_specimen):
    px = demo_specimen.pixel_size_nm
    parts = demo_specimen.particles
    assert len(parts) >= 30
    d = np.array([p["diameter_nm"] for p in parts])
    assert d.min() >= 1.0 and d.max() <= 4.0
    assert d.std() > 0.3  # a distribution, not one size
    comp, n = ndimage.label(demo_specimen.labels == synthetic.PARTICLE, structure=np.ones((3, 3, 3)))
    assert n == len(parts)  # separated by construction: counts match exactly
    # Equivalent diameters of the voxelised particles agree with the nominal ones (large ones tightly).
    sizes = ndimage.sum_labels(np.ones_like(comp), comp, index=np.arange(1, n + 1))
    d_eq = (6 * sizes / math.pi) ** (1 / 3) * px
    assert abs(d_eq.mean() - d.mean()) / d.mean() < 0.08
    big = d > 2.5
    by_voxels = np.sort(d_eq)[-big.sum():]
    np.testing.assert_allclose(by_voxels.mean(), np.sort(d)[-big.sum():].mean(), rtol=0.05)


def test_particles_anchored_on_support_preferring_facet_apexes(demo_specimen):
    labels = demo_specimen.labels
    support = labels == synthetic.SUPPORT
    comp, n = ndimage.label(labels == synthetic.PARTICLE, structure=np.ones((3, 3, 3)))
    touching = 0
    for i, sl in enumerate(ndimage.find_objects(comp), 1):
        grown = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in sl)
        mask = ndimage.binary_dilation(comp[grown] == i, iterations=2)
        touching += bool((mask & support[grown]).any())
    assert touching >= 0.95 * n
    crest = np.array([p.get("crest", np.nan) for p in demo_specimen.particles])
    assert np.nanmean(crest) > 0.65  # uniform placement would give 0.5


def test_pt_much_brighter_than_support(demo_specimen):
    dens, labels = demo_specimen.density, demo_specimen.labels
    interior_pt = ndimage.binary_erosion(labels == 2)
    interior_support = ndimage.binary_erosion(labels == 1, iterations=2)
    assert dens[interior_pt].mean() / dens[interior_support].mean() == pytest.approx(5.0, rel=0.02)
    assert dens[ndimage.binary_erosion(labels == 0, iterations=2)].max() == 0.0


def test_zero_degree_projection_integrates_density_along_beam(demo_specimen):
    s, m = demo_specimen.supersample, demo_specimen.margin_px
    proj = synthetic.forward_project_fine(demo_specimen.fine_density, [0.0], demo_specimen.labels.shape[2], s, 0.0)[0]
    np.testing.assert_allclose(proj[m:-m], demo_specimen.density.sum(axis=1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("angle", [-68.0, -30.0, 45.0])
def test_projection_conserves_mass_at_every_tilt(demo_specimen, angle):
    s = demo_specimen.supersample
    fine = demo_specimen.fine_density[:8]
    proj = synthetic.forward_project_fine(fine, [angle], demo_specimen.labels.shape[2], s, 0.0)[0]
    total = fine.sum(axis=(1, 2)) / s**2  # density × coarse px² per slice
    np.testing.assert_allclose(proj.sum(axis=1), total, rtol=2e-3)


def test_center_offset_moves_projection_along_x():
    vol = np.zeros((1, 32, 32), np.float32)
    vol[0, 10:14, 20:22] = 1.0
    p0 = forward_project(vol, [0.0, 90.0])
    p1 = forward_project(vol, [0.0, 90.0], center_offset_px=2.0)
    for t in range(2):
        c0 = ndimage.center_of_mass(p0[t, 0])[0]
        c1 = ndimage.center_of_mass(p1[t, 0])[0]
        assert c1 - c0 == pytest.approx(2.0, abs=1e-4)


def _small_config(demo_config, **over):
    cfg = dict(demo_config, shape=[16, 48, 96], tilt_range_deg=[-60.0, 60.0], tilt_step_deg=4.0)
    cfg.update(over)
    return cfg


def test_simulated_series_truth_and_noise(demo_config):
    cfg = _small_config(demo_config, dose=2000.0, read_noise=3.0)
    spec, ts = synthetic.simulate(cfg)
    n = ts.angles_deg.size
    assert ts.data.shape == (n, 16, 96) and ts.aligned.shape == (n, 16, 96)
    np.testing.assert_allclose(ts.angles_deg, np.arange(-60, 61, 4.0))
    ref = int(np.argmin(np.abs(ts.angles_deg)))
    # Frame of tomoflow.align (intentional change, issue 16): the reference image shows the specimen where the
    # volume has it, so its shift across the axis cancels the centre offset: c + t_x,ref = 0, t_y,ref = 0.
    phi = np.radians(cfg["tilt_axis_deg"])
    across = np.cos(phi) * ts.shifts_px[:, 0] + np.sin(phi) * ts.shifts_px[:, 1]
    along = -np.sin(phi) * ts.shifts_px[:, 0] + np.cos(phi) * ts.shifts_px[:, 1]
    assert cfg["center_offset_px"] + across[ref] == pytest.approx(0.0, abs=1e-9) and along[ref] == 0.0
    # apart from that specimen translation (−c cos θ / cos θ_ref) no component a specimen translation could
    # explain (the gauge the aligner fixes)
    th = np.radians(ts.angles_deg)
    drift = across + cfg["center_offset_px"] * np.cos(th) / np.cos(th[ref])
    B = np.column_stack([np.cos(th) - np.cos(th[ref]), np.sin(th) - np.sin(th[ref])])
    np.testing.assert_allclose(B.T @ drift, 0.0, atol=1e-9)
    assert 0.5 * cfg["shift_sigma_px"] < drift.std() < 1.6 * cfg["shift_sigma_px"]
    # and the specimen's centre of mass is at the centre of the thickness (voxel index (n_z − 1)/2)
    prof = spec.density.sum(axis=(0, 2))
    assert float(prof @ np.arange(prof.size) / prof.sum()) == pytest.approx((prof.size - 1) / 2, abs=0.05)
    # Empty background: only read noise (std 3 counts) around zero.
    bg = ts.aligned[:, :, :3]
    assert abs(bg.mean()) < 0.5 and bg.std() == pytest.approx(3.0, rel=0.15)
    # Deterministic: the same config gives the same noisy series.
    _, ts2 = synthetic.simulate(dict(cfg, seed=cfg["seed"]))
    np.testing.assert_array_equal(ts.data, ts2.data)


def test_same_seed_same_output_other_seed_other_specimen(demo_config):
    a = synthetic.make_specimen(**_specimen_kwargs(_small_config(demo_config)), margin_px=4)
    b = synthetic.make_specimen(**_specimen_kwargs(_small_config(demo_config)), margin_px=4)
    c = synthetic.make_specimen(**_specimen_kwargs(_small_config(demo_config, seed=8)), margin_px=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.density, b.density)
    assert (a.labels != c.labels).mean() > 0.01


def test_poisson_statistics_of_counts(demo_config):
    cfg = _small_config(demo_config, dose=500.0, read_noise=0.0, shift_sigma_px=0.0, tilt_axis_deg=0.0, center_offset_px=0.0)
    spec = synthetic.make_specimen(**_specimen_kwargs(cfg), margin_px=4)
    runs = [synthetic.simulate_tilt_series(spec, seed=k, tilt_range_deg=[-4, 4], tilt_step_deg=4.0, dose=500.0, read_noise=0.0, shift_sigma_px=0.0, tilt_axis_deg=0.0, center_offset_px=0.0) for k in (1, 2)]
    a, b = runs[0].data, runs[1].data
    mean = 0.5 * (a + b)
    sel = mean > 200
    # var(a - b) = 2 λ for independent Poisson counts
    ratio = np.var((a - b)[sel]) / (2 * mean[sel].mean())
    assert ratio == pytest.approx(1.0, rel=0.1)
