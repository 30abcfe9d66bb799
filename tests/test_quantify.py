"""Catalyst quantification (tomoflow.quantify) against analytic shapes, brute force and the generator."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import ndimage

from tomoflow.errors import InputError
from tomoflow.quantify import (
    PARTICLE_COLUMNS,
    QuantifySettings,
    compare,
    match_specimen,
    min_particle_voxels,
    particle_table,
    quantify,
    quantify_sample,
    remove_specks,
    size_histogram,
    specimen_particles,
    support_envelope,
)


def ball(shape, vs, centre_nm, r_nm):
    g = [np.arange(n) * d - c for n, d, c in zip(shape, vs, centre_nm)]
    y, z, x = np.meshgrid(*g, indexing="ij")
    return y**2 + z**2 + x**2 <= r_nm**2


def brute_gap(particle, support, vs):
    """Smallest box-to-box gap (nm) between any particle voxel and any support voxel (all pairs of boundary
    voxels: the minimum distance between two disjoint sets is attained on their boundaries)."""
    p = np.argwhere(particle & ~ndimage.binary_erosion(particle))
    s = np.argwhere(support & ~ndimage.binary_erosion(support))
    d = np.maximum(np.abs(p[:, None, :] - s[None, :, :]) - 1, 0) * np.asarray(vs)
    return float(np.sqrt((d**2).sum(axis=2)).min())


@pytest.fixture(scope="module")
def scene():
    """Support slab through the whole y and x range; particle A resting on it, B floating, C cut by the border."""
    vs = (0.4, 0.3, 0.5)  # anisotropic (dy, dz, dx)
    shape = (40, 60, 44)
    lab = np.zeros(shape, np.uint8)
    lab[:, 30:40, :] = 1  # z in voxels [30, 40): support faces at z = 29.5 and 39.5 voxels
    a = ball(shape, vs, (8.0, 29.5 * 0.3 - 4.0, 10.0), 4.0)  # r = 10 dx-voxels, touches the top face
    b = ball(shape, vs, (7.0, 39.5 * 0.3 + 1.2 + 1.5, 12.0), 1.5)  # gap ≈ 1.2 nm below the bottom face
    c = ball(shape, vs, (14.0, 3.0, 0.0), 1.4)  # centre on the x = 0 border
    for m in (a, b, c):
        lab[m & (lab == 0)] = 2
    return lab, vs, a & (lab == 2), b, c


def test_particle_table_analytic(scene):
    lab, vs, a, b, c = scene
    t = particle_table(lab, vs, contact_distance_nm=0.5)
    assert list(t.columns) == PARTICLE_COLUMNS
    assert len(t) == 3
    vvox = float(np.prod(vs))
    for mask, r, centre in ((a, 4.0, (8.0, 29.5 * 0.3 - 4.0, 10.0)), (b, 1.5, (7.0, 39.5 * 0.3 + 2.7, 12.0))):
        cen = np.argwhere(mask).mean(axis=0) * vs
        got = t[["centroid_y_nm", "centroid_z_nm", "centroid_x_nm"]].to_numpy()
        row = t.iloc[int(np.argmin(np.linalg.norm(got - cen, axis=1)))]
        assert row.n_voxels == mask.sum()  # hand count
        assert row.volume_nm3 == pytest.approx(mask.sum() * vvox)
        assert row.equivalent_diameter_nm == pytest.approx(2 * r, rel=0.03)
        np.testing.assert_allclose([row.centroid_y_nm, row.centroid_z_nm, row.centroid_x_nm], centre, atol=0.06)
        assert row.distance_to_support_nm == pytest.approx(brute_gap(mask, lab == 1, vs), abs=1e-9)
    big = t.loc[t.n_voxels.idxmax()]
    assert big.surface_area_nm2 == pytest.approx(4 * math.pi * 4.0**2, rel=0.02)
    assert 0.95 < big.sphericity <= 1.0
    assert big.distance_to_support_nm == 0.0 and big.touches_support and not big.touches_border
    floating = t.loc[(t.centroid_z_nm - 14.55).abs().idxmin()]
    assert 0.9 < floating.distance_to_support_nm < 1.5 and not floating.touches_support
    assert particle_table(lab, vs, contact_distance_nm=1.5).touches_support.sum() == 2
    cut = t.loc[t.centroid_x_nm.idxmin()]
    assert cut.touches_border and cut.centroid_x_nm < 0.6


def test_connectivity_counts():
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[1, 1, 1] = lab[2, 2, 2] = 2  # corner contact only
    lab[4, 4, 1] = lab[4, 4, 2] = 2  # face contact
    assert len(particle_table(lab, 0.4, connectivity=3)) == 2
    assert len(particle_table(lab, 0.4, connectivity=2)) == 3
    assert len(particle_table(lab, 0.4, connectivity=1)) == 3
    assert particle_table(lab, 0.4).distance_to_support_nm.isna().all()  # no support at all
    with pytest.raises(InputError):
        particle_table(lab, 0.4, connectivity=4)


def test_support_areas_pores_and_density(scene):
    lab, vs, *_ = scene
    lab = lab.copy()
    cavity = ball(lab.shape, vs, (12.0, 35 * 0.3, 15.0), 1.0)  # closed pore inside the slab (z 9–12 nm)
    assert not (cavity & (lab == 2)).any()
    lab[cavity] = 0
    slit = (slice(35, 36), slice(30, 33), slice(5, 40))  # 1-voxel (0.4 nm) wide slit open to the top face
    lab[slit] = 0
    table, s = quantify(lab, vs, envelope_closing_nm=1.0)
    ly, lx = lab.shape[0] * vs[0], lab.shape[2] * vs[2]
    # the volume border cuts the slab: its cut faces are not surface; the envelope is two flat faces 2·Ly·Lx;
    # the support surface adds the cavity (≈ 4π·1²) and the slit walls
    assert s["support_external_surface_area_nm2"] == pytest.approx(2 * ly * lx, rel=0.01)
    assert s["support_surface_area_nm2"] > s["support_external_surface_area_nm2"] + 0.9 * 4 * math.pi
    n_sup = int((lab == 1).sum())
    assert s["support_volume_nm3"] == pytest.approx(n_sup * np.prod(vs))
    n_pore = int(cavity.sum()) + 3 * 35
    assert s["pore_volume_nm3"] == pytest.approx(n_pore * np.prod(vs))
    assert s["pore_volume_fraction"] == pytest.approx(n_pore / (n_pore + n_sup))
    assert s["n_particles"] == 3
    assert s["particle_density_per_external_area_nm2"] == pytest.approx(3 / s["support_external_surface_area_nm2"])
    # without closing only the enclosed cavity is a pore; the open slit is outside the envelope
    _, s0 = quantify(lab, vs, envelope_closing_nm=0.0)
    assert s0["pore_volume_nm3"] == pytest.approx(cavity.sum() * np.prod(vs))


def test_envelope_does_not_fill_wide_grooves():
    vs = (0.4, 0.4, 0.4)
    sup = np.zeros((20, 30, 30), bool)
    sup[:, 5:20, 3:27] = True
    sup[:, 5:10, 10:20] = False  # 4 nm wide, 2 nm deep groove open to the outside
    env = support_envelope(sup, vs, closing_nm=1.0)
    assert (env & ~sup).sum() < 0.05 * (~sup[:, 5:10, 10:20]).sum()  # only rounded groove corners
    assert not env[:, 5:8, 12:18].any()


def test_empty_particles_give_zero_not_crash():
    lab = np.zeros((12, 14, 16), np.uint8)
    lab[:, 4:9, :] = 1
    table, s = quantify(lab, 0.4)
    assert len(table) == 0 and list(table.columns) == PARTICLE_COLUMNS
    assert s["n_particles"] == 0 and s["particle_volume_nm3"] == 0.0
    assert s["mean_equivalent_diameter_nm"] is None and s["particle_density_per_external_area_nm2"] == 0.0
    c = compare(s, s, match_specimen(table, specimen_particles({"particles": []}, 0.4)))
    assert c["n_particles"] == {"predicted": 0, "true": 0, "generator": 0}
    fig = size_histogram({"predicted": table, "true": table})
    assert isinstance(fig, Figure)
    # nothing at all: zeros and None, no crash
    t0, s0 = quantify(np.zeros((8, 8, 8), np.uint8), 0.4)
    assert len(t0) == 0 and s0["support_volume_nm3"] == 0.0 and s0["support_external_surface_area_nm2"] == 0.0
    assert s0["pore_volume_fraction"] is None and s0["particle_density_per_support_area_nm2"] is None


def test_deterministic(scene):
    lab, vs, *_ = scene
    t1, s1 = quantify(lab, vs)
    t2, s2 = quantify(lab, vs)
    pd.testing.assert_frame_equal(t1, t2)
    assert s1 == s2


def test_generator_comparison_and_histogram():
    vs = (0.4, 0.4, 0.4)
    shape = (30, 30, 40)
    lab = np.zeros(shape, np.uint8)
    spec = []
    for centre, d in (((4.0, 4.0, 4.0), 2.4), ((6.0, 8.0, 10.0), 3.2), ((8.0, 4.4, 12.0), 1.6)):
        lab[ball(shape, vs, centre, d / 2)] = 2
        # the generator's frame: voxel i centre at (i + 1/2)·voxel
        spec.append({"center_nm": [c + 0.2 for c in centre], "diameter_nm": d})
    table = particle_table(lab, vs)
    ref = specimen_particles({"particles": spec, "info": {"pixel_size_nm": 0.4}})
    np.testing.assert_allclose(ref[["center_y_nm", "center_z_nm", "center_x_nm"]].to_numpy()[0], [4.0, 4.0, 4.0])
    m = match_specimen(table, ref)
    assert m["n_matched"] == 3 and m["n_reference"] == 3
    assert m["mean_centroid_error_nm"] < 0.05
    assert abs(m["mean_diameter_error_nm"]) < 0.1
    assert m["mean_reference_diameter_nm"] == pytest.approx(2.4)
    pred = table.iloc[:2]
    c = compare({"n_particles": 2, "mean_equivalent_diameter_nm": pred.equivalent_diameter_nm.mean()},
                {"n_particles": 3, "mean_equivalent_diameter_nm": table.equivalent_diameter_nm.mean()}, m)
    assert c["n_particles"]["predicted_rel_error"] == pytest.approx(-1 / 3)
    assert c["n_particles"]["generator"] == 3
    fig = size_histogram({"predicted": pred, "true": table}, ref.diameter_nm)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("predicted (n = 2") and labels[2].startswith("generator (n = 3")
    with pytest.raises(InputError):
        specimen_particles({"particles": [{"diameter_nm": 1.0}]}, 0.4)


def test_demo_specimen_count_and_diameter():
    """Acceptance: on the synthetic catalyst's true labels, count = generator's, mean diameter within 10 %."""
    synthetic = pytest.importorskip("tomoflow.synthetic")
    spec = synthetic.make_specimen(seed=3, shape=(32, 64, 128), particle_fraction=0.006)
    table, s = quantify(spec.labels, spec.pixel_size_nm)
    ref = specimen_particles({"particles": spec.particles}, spec.pixel_size_nm)
    assert s["n_particles"] == len(ref) > 10
    d_ref = ref.diameter_nm.mean()
    assert abs(s["mean_equivalent_diameter_nm"] / d_ref - 1) < 0.10
    m = match_specimen(table, ref)
    assert m["n_matched"] == len(ref)
    assert s["fraction_touching_support"] == 1.0  # the generator anchors every particle on the support
    assert isinstance(pd.DataFrame(table), pd.DataFrame)


# --------------------------------------------------------------------------- minimum size and clean-up
def test_min_particle_voxels_by_hand():
    # π d³ / 6 / V: 0.5 nm at 0.4 nm voxels = 0.0654 / 0.064 = 1.02 -> 2 voxels; 1 nm -> 8.18 -> 9
    assert min_particle_voxels(0.5, 0.4) == 2
    assert min_particle_voxels(1.0, 0.4) == 9
    assert min_particle_voxels(0.0, 0.4) == 1
    # a particle of exactly the minimum volume is kept: d = (6·3·V/π)^(1/3) needs 3 voxels, not 4
    vs = (0.4, 0.3, 0.5)
    d3 = (6 * 3 * 0.4 * 0.3 * 0.5 / math.pi) ** (1 / 3)
    assert min_particle_voxels(d3, vs) == 3
    with pytest.raises(InputError, match="min_particle_diameter_nm"):
        min_particle_voxels(-1.0, 0.4)


def speck_scene():
    """Support slab; one real particle on it (27 voxels); specks: 1 voxel in the support, 1 in a pore,
    2 voxels (edge contact) floating in the background; a 1-voxel speck touching the real particle at a corner
    belongs to it (connectivity 3)."""
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[:, 8:, :] = 1
    lab[4:7, 5:8, 4:7] = 2  # real particle resting on the support (z 5..7, support from z 8)
    lab[12, 12, 12] = 2  # speck inside the support
    lab[3, 2, 12] = 2  # speck in the background
    lab[10, 2, 2] = lab[11, 3, 2] = 2  # two voxels joined at an edge: one component of 2 voxels
    lab[7, 4, 7] = 2  # corner contact with the real particle: part of it
    return lab


def test_remove_specks_drops_and_counts_small_objects_keeps_particles():
    lab = speck_scene()
    before = lab.copy()
    out, n = remove_specks(lab, 0.4, 0.5)  # min 2 voxels: the two 1-voxel specks go
    np.testing.assert_array_equal(lab, before)  # input untouched
    assert n == 2
    assert out[12, 12, 12] == 1  # surrounded by support -> support
    assert out[3, 2, 12] == 0  # in the background -> background
    assert out[10, 2, 2] == out[11, 3, 2] == 2  # 2 voxels = 0.625 nm: a particle
    assert (out[4:7, 5:8, 4:7] == 2).all() and out[7, 4, 7] == 2  # the real particle, with its corner voxel
    assert sorted(map(tuple, np.argwhere(out != before).tolist())) == [(3, 2, 12), (12, 12, 12)]  # nothing else
    # 1 nm minimum (9 voxels): the 2-voxel object goes too, the 28-voxel particle stays
    out1, n1 = remove_specks(lab, 0.4, 1.0)
    assert n1 == 3 and (out1 == 2).sum() == 28
    # with face connectivity the corner voxel is its own 1-voxel speck
    _, n_face = remove_specks(lab, 0.4, 0.5, connectivity=1)
    assert n_face == 2 + 1 + 2  # the edge-joined pair splits into two 1-voxel specks as well
    assert remove_specks(lab, 0.4, 0.0)[1] == 0


def test_quantify_min_size_counts_and_keeps_ids():
    lab = speck_scene()
    t_all, s_all = quantify(lab, 0.4)
    assert s_all["n_particles"] == 4 and s_all["n_below_min_size"] == 0
    t, s = quantify(lab, 0.4, min_particle_diameter_nm=0.5)
    assert s["n_particles"] == 2 and s["n_below_min_size"] == 2
    assert s["settings"]["min_particle_diameter_nm"] == 0.5
    # surviving rows keep the component numbers of the unfiltered table (= mesh component_id)
    kept = t_all[t_all.n_voxels >= 2]
    assert t.particle_id.tolist() == kept.particle_id.tolist()
    pd.testing.assert_frame_equal(t.reset_index(drop=True), kept.reset_index(drop=True))
    assert sorted(t.n_voxels) == [2, 28]
    # cleaning first gives the same table (the specks were never particles)
    tc, sc = quantify(remove_specks(lab, 0.4, 0.5)[0], 0.4, min_particle_diameter_nm=0.5)
    assert sc["n_particles"] == 2 and sc["n_below_min_size"] == 0
    np.testing.assert_allclose(tc.volume_nm3.to_numpy(), t.volume_nm3.to_numpy())


def test_quantify_sample_files_clean_up_and_generator(tmp_path):
    from tomoflow import io

    vs = 0.4
    shape = (24, 24, 32)
    truth = np.zeros(shape, np.uint8)
    truth[:, 14:, :] = 1
    spec = []
    for centre, d in (((4.0, 3.6, 4.0), 2.4), ((5.0, 3.2, 9.0), 2.0)):
        truth[ball(shape, (vs,) * 3, centre, d / 2) & (truth == 0)] = 2
        spec.append({"center_nm": [c + vs / 2 for c in centre], "diameter_nm": d})
    pred = truth.copy()
    rng = np.random.default_rng(0)
    for p in rng.choice(np.argwhere(truth == 0), 6, replace=False):
        if not ndimage.binary_dilation(truth == 2, iterations=2)[tuple(p)]:
            pred[tuple(p)] = 2  # isolated one-voxel false positives in the background
    n_specks = int((pred != truth).sum())
    assert n_specks >= 4
    io.write_labels(tmp_path / "seg.tif", pred, vs)
    io.write_labels(tmp_path / "labels.tif", truth, vs)
    io.write_json(tmp_path / "specimen.json", {"particles": spec, "pixel_size_nm": vs})
    res = quantify_sample("s", ["background", "support", "particles"], tmp_path / "seg.tif", QuantifySettings(),
                          true_labels=tmp_path / "labels.tif", specimen=tmp_path / "specimen.json")
    s = res.summary
    assert s["n_specks_removed"] == n_specks and s["predicted"]["n_particles"] == 2
    assert s["comparison"]["n_particles"] == {"predicted": 2, "true": 2, "generator": 2, "predicted_rel_error": 0.0}
    assert s["settings"]["remove_specks"] is True and s["settings"]["min_particle_diameter_nm"] == 0.5
    assert list(res.particles["labels"]) == ["predicted"] * 2 + ["true"] * 2
    # without the clean-up the specks stay in the labels but are still not counted
    res0 = quantify_sample("s", ["background", "support", "particles"], tmp_path / "seg.tif",
                           QuantifySettings(remove_specks=False), true_labels=tmp_path / "labels.tif")
    assert res0.summary["n_specks_removed"] == 0 and res0.summary["predicted"]["n_particles"] == 2
    assert res0.summary["predicted"]["n_below_min_size"] == n_specks
    # and without the minimum every speck is a particle
    res_all = quantify_sample("s", ["background", "support", "particles"], tmp_path / "seg.tif",
                              QuantifySettings(min_particle_diameter_nm=0.0))
    assert res_all.summary["predicted"]["n_particles"] == 2 + n_specks
    with pytest.raises(InputError, match="classes"):
        quantify_sample("s", ["background", "particles"], tmp_path / "seg.tif", QuantifySettings())
