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


# ----------------------------------------------------------------------------- paper-like preset (issue #15)
@pytest.fixture(scope="module")
def paper_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "paper_like.yaml").read_text())["synthetic"]


def _paper_specimen(cfg, texture=synthetic.PAPER_TEXTURE, seed=None):
    # the preset's voxel size and particle sizes on a smaller volume (40 slices fit a 4 nm = 33 px particle)
    kw = dict(_specimen_kwargs(cfg), shape=(40, 128, 256))
    if seed is not None:
        kw["seed"] = seed
    return synthetic.make_specimen(**kw, margin_px=2, texture=texture)


@pytest.fixture(scope="module")
def paper_specimen(paper_config):
    return _paper_specimen(paper_config)


def test_paper_preset_config_values(paper_config):
    assert paper_config["preset"] == "paper"
    assert paper_config["pixel_size_nm"] == 0.12 and paper_config["shape"][2] == 1024
    d_px = np.array(paper_config["particle_diameter_nm"]) / paper_config["pixel_size_nm"]
    np.testing.assert_allclose(d_px, [8.33, 33.3], rtol=0.01)  # 1-4 nm = 8-33 px
    assert 1.5 <= paper_config["particle_contrast"] <= 3.0


def test_paper_specimen_particles_fraction_and_contrast(paper_config, paper_specimen):
    spec = paper_specimen
    lab, dens = spec.labels, spec.density
    d_px = np.array([p["diameter_nm"] for p in spec.particles]) / spec.pixel_size_nm
    assert len(d_px) >= 3 and d_px.min() >= 8.3 and d_px.max() <= 33.4
    frac = (lab == synthetic.PARTICLE).mean()
    assert 0.005 / 1.5 <= frac <= 0.005 * 1.5, frac
    # Pt / support contrast measured on the density, away from interfaces: the configured 2.0 (range 1.5-3)
    pt = ndimage.binary_erosion(lab == synthetic.PARTICLE, iterations=2)
    sup = ndimage.binary_erosion(lab == synthetic.SUPPORT, iterations=4)
    ratio = dens[pt].mean() / dens[sup].mean()
    assert 1.5 <= ratio <= 3.0 and ratio == pytest.approx(paper_config["particle_contrast"], rel=0.08), ratio
    # grainy support: per-voxel spread of grains + texture (0.2 and 0.1 -> ~0.22 relative)
    assert 0.14 < dens[sup].std() / dens[sup].mean() < 0.30


def test_paper_specimen_has_diffuse_boundaries_and_exact_labels(paper_config, paper_specimen):
    flat = _paper_specimen(paper_config, texture=None)
    # the texture changes the appearance only: the labels are the same geometry
    np.testing.assert_array_equal(flat.labels, paper_specimen.labels)
    lab = flat.labels
    solid = lab != synthetic.BACKGROUND
    dist_out = ndimage.distance_transform_edt(~solid)
    dist_in = ndimage.distance_transform_edt(solid)
    near_pt = ndimage.binary_dilation(lab == synthetic.PARTICLE, iterations=4)
    ring_out = (dist_out >= 1.5) & (dist_out < 2.5) & ~near_pt  # background 2 voxels outside the support
    ring_in = (dist_in >= 1.5) & (dist_in < 2.5) & ~near_pt  # support 2 voxels inside
    assert ring_out.sum() > 1000 and ring_in.sum() > 1000
    # flat specimen: a binary edge (2x2x2 partial volume reaches < 1 voxel); preset: a ramp of σ = 0.3 nm
    # = 2.5 px, so 2 px outside the surface is at Φ(-2/2.5) ≈ 0.21 of the support, 2 px inside at ≈ 0.79
    assert flat.density[ring_out].max() == 0.0 and flat.density[ring_in].min() == 1.0
    assert 0.12 < paper_specimen.density[ring_out].mean() < 0.30
    assert 0.70 < paper_specimen.density[ring_in].mean() < 0.88


def test_paper_specimen_is_deterministic(paper_config, paper_specimen):
    again = _paper_specimen(paper_config)
    np.testing.assert_array_equal(again.density, paper_specimen.density)
    np.testing.assert_array_equal(again.fine_density, paper_specimen.fine_density)
    other = _paper_specimen(paper_config, seed=8)
    assert (other.labels != paper_specimen.labels).mean() > 0.01
    with pytest.raises(ValueError, match="preset"):
        synthetic.simulate(dict(paper_config, preset="glossy"))


def test_annotated_slices_reconstruct_the_specimen(demo_config):
    cfg = dict(_small_config(demo_config), preset="paper", shape=[16, 48, 96], tilt_step_deg=2.0)
    res = synthetic.annotated_slices(cfg, n_slices=3, slice_seed=1, iterations=20)
    assert res.images.shape == res.labels.shape == res.density.shape == (3, 48, 96) and res.index.size == 3
    spec = synthetic.make_specimen(**_specimen_kwargs(cfg), margin_px=4, texture=synthetic.PAPER_TEXTURE)
    np.testing.assert_array_equal(res.labels, spec.labels[res.index])  # the generator's labels of those slices
    np.testing.assert_array_equal(res.density, spec.density[res.index])
    # the MLEM slices follow the density (missing wedge and noise aside)
    r = np.corrcoef(res.images.ravel(), res.density.ravel())[0, 1]
    assert r > 0.85, r
