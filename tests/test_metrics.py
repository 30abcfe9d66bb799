"""tomoflow.metrics against the cited reference implementation (DeepMind surface-distance 0.1),
analytic distances and hand-computed confusion counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from tomoflow.errors import InputError
from tomoflow.metrics import (
    DEFAULT_PERCENTILES,
    aggregate_metrics,
    contour_length_table,
    robust_hausdorff,
    segmentation_metrics,
    summarize,
    surface_area_table,
    surface_distances,
)

# The reference package uses np.Inf / np.NaN, removed in NumPy 2.
np.Inf, np.NaN = np.inf, np.nan  # type: ignore[attr-defined]
sdref = pytest.importorskip("surface_distance")
from surface_distance import lookup_tables as reftables  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")

PS = list(DEFAULT_PERCENTILES) + [0.0, 33.3, 97.5]


def disk(shape, centre, r):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def ball(shape, centre, r):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


def _cases():
    rng = np.random.default_rng(1)
    s2 = (48, 40)
    s3 = (20, 24, 18)
    cases = {}
    d = disk(s2, (20, 18), 9)
    cases["identical_disks"] = (d, d.copy(), 0.4)
    cases["empty_prediction"] = (d, np.zeros(s2, bool), 0.4)
    cases["empty_truth"] = (np.zeros(s2, bool), d, 0.4)
    a = np.zeros(s2, bool)
    a[10, 12] = True
    b = np.zeros(s2, bool)
    b[13, 16] = True
    cases["single_pixels"] = (a, b, 0.4)
    cases["single_pixel_in_disk"] = (a, disk(s2, (10, 12), 6), 0.4)
    cases["shifted_disks"] = (d, disk(s2, (23, 21), 8.5), 0.4)
    cases["anisotropic_2d"] = (d, disk(s2, (22, 17), 10), (0.3, 0.9))
    border = np.zeros(s2, bool)
    border[:15, :] = True
    cases["touching_border"] = (border, disk(s2, (0, 0), 14) | (np.arange(s2[1]) < 5)[None, :], 0.4)
    cases["holes"] = (d & ~disk(s2, (20, 18), 4), d, 0.4)
    outlier = d.copy()
    outlier[45, 38] = True
    cases["far_outlier"] = (d, outlier, 0.4)
    tiny_t = rng.random(s2) < 0.01
    tiny_p = tiny_t & (rng.random(s2) < 0.7) | (rng.random(s2) < 0.004)
    cases["tiny_particles"] = (tiny_t, tiny_p, 0.4)
    cases["checkerboard_saddles"] = ((np.indices(s2).sum(0) % 2 == 0), (np.indices(s2).sum(0) % 2 == 0) & (rng.random(s2) < 0.8), 0.25)
    cases["full_images"] = (np.ones(s2, bool), np.ones(s2, bool) & ~disk(s2, (24, 20), 3), 0.4)
    noisy = ndimage.binary_opening(rng.random(s2) < 0.55)
    cases["noisy_random"] = (noisy, ndimage.binary_dilation(noisy) ^ (rng.random(s2) < 0.03), (0.5, 0.7))
    b3 = ball(s3, (9, 11, 8), 6)
    cases["3d_shifted_balls"] = (b3, ball(s3, (10, 12, 9), 5.5), 0.4)
    cases["3d_anisotropic"] = (b3, ball(s3, (9, 13, 8), 6.5), (1.2, 0.4, 0.4))
    slab = np.zeros(s3, bool)
    slab[:, :6, :] = True
    cases["3d_touching_border"] = (slab, ball(s3, (0, 0, 0), 8), 0.4)
    cases["3d_hollow_ball"] = (b3 & ~ball(s3, (9, 11, 8), 3), b3, 0.4)
    cases["3d_empty_prediction"] = (b3, np.zeros(s3, bool), 0.4)
    t3 = rng.random(s3) < 0.01
    cases["3d_tiny_particles_outlier"] = (t3, (t3 & (rng.random(s3) < 0.6)) | (rng.random(s3) < 0.003), (0.4, 0.5, 0.6))
    return cases


CASES = _cases()


def _reference_rhd(truth, pred, spacing, percentiles):
    sp = [spacing] * truth.ndim if np.ndim(spacing) == 0 else list(spacing)
    dist = sdref.compute_surface_distances(truth.astype(bool), pred.astype(bool), sp)
    return dist, np.array([sdref.compute_robust_hausdorff(dist, p) for p in percentiles])


@pytest.mark.parametrize("method", ["edt", "kdtree", "auto"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_robust_hausdorff_matches_surface_distance_package(name, method):
    truth, pred, spacing = CASES[name]
    dist, ref = _reference_rhd(truth, pred, spacing, PS)
    sd = surface_distances(truth, pred, pixel_size_nm=spacing, method=method)
    ours = robust_hausdorff(sd, PS)["rhd"]
    assert ours.shape == ref.shape
    assert np.all(np.isinf(ours) == np.isinf(ref)), (ours, ref)
    fin = np.isfinite(ref)
    np.testing.assert_allclose(ours[fin], ref[fin], rtol=0, atol=1e-6)
    # the surface elements themselves: same multiset of (distance, weight) pairs
    for d, w, rd, rw in [
        (sd.truth_to_prediction_nm, sd.truth_weights, dist["distances_gt_to_pred"], dist["surfel_areas_gt"]),
        (sd.prediction_to_truth_nm, sd.prediction_weights, dist["distances_pred_to_gt"], dist["surfel_areas_pred"]),
    ]:
        assert d.shape == np.asarray(rd).shape
        np.testing.assert_allclose(np.sort(w), np.sort(np.asarray(rw, float)), atol=1e-9)
        if np.isfinite(rd).all():
            np.testing.assert_allclose(d, rd, atol=1e-9)  # both sorted by distance


@pytest.mark.parametrize("name", sorted(CASES))
def test_segmentation_metrics_wrapper_matches_reference(name):
    truth, pred, spacing = CASES[name]
    labels_t, labels_p = truth.astype(np.uint8), pred.astype(np.uint8)
    res = segmentation_metrics(labels_t, labels_p, pixel_size_nm=spacing, classes=(1,), percentiles=PS)[1]
    dist, ref = _reference_rhd(truth, pred, spacing, PS)
    ours = np.array(res["rhd_nm"])
    assert np.all(np.isinf(ours) == np.isinf(ref))
    np.testing.assert_allclose(ours[np.isfinite(ref)], ref[np.isfinite(ref)], atol=1e-6)
    assert res["hausdorff_nm"] == pytest.approx(sdref.compute_robust_hausdorff(dist, 100), abs=1e-6)
    ref_dsc = sdref.compute_dice_coefficient(truth, pred)
    if math.isnan(ref_dsc):
        assert math.isnan(res["dsc"])
    else:
        assert res["dsc"] == pytest.approx(ref_dsc, abs=1e-12)
    if truth.any() and pred.any():
        gt2p, p2gt = sdref.compute_average_surface_distance(dist)
        a_gt, a_p = np.sum(dist["surfel_areas_gt"]), np.sum(dist["surfel_areas_pred"])
        assert res["mean_surface_distance_nm"] == pytest.approx((gt2p * a_gt + p2gt * a_p) / (a_gt + a_p), abs=1e-9)
        assert res["surface_truth"] == pytest.approx(a_gt, rel=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.4, 0.4, 0.4), (0.3, 0.7, 1.9), (2.0, 0.5, 0.25)])
def test_surface_area_table_equals_reference(spacing):
    np.testing.assert_allclose(surface_area_table(spacing), reftables.create_table_neighbour_code_to_surface_area(spacing), rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        contour_length_table(spacing[:2]), reftables.create_table_neighbour_code_to_contour_length(spacing[:2]), rtol=1e-12, atol=0
    )


def test_analytic_distances():
    # two single pixels (3, 4) px apart.  Each has 4 corner elements of equal weight; the nearest
    # corners of the other pixel are sqrt(13), sqrt(18), sqrt(20) and 5 px away (25 % each), the
    # same in both directions.  Inverse CDF: p <= 25 -> sqrt(13), p <= 50 -> sqrt(18), ...
    a = np.zeros((20, 20), np.uint8)
    b = np.zeros_like(a)
    a[5, 5] = 1
    b[8, 9] = 1
    ps = (10, 25, 30, 50, 55, 75, 80, 100)
    m = segmentation_metrics(a, b, pixel_size_nm=0.4, classes=(1,), percentiles=ps)[1]
    px = [13, 13, 18, 18, 20, 20, 25, 25]
    np.testing.assert_allclose(m["rhd_nm"], 0.4 * np.sqrt(px), atol=1e-12)
    assert m["hausdorff_nm"] == pytest.approx(2.0, abs=1e-12)
    # concentric squares 10 px and 14 px wide: HD = outer corner to inner corner = 2·√2 px;
    # truth -> prediction is 2 px everywhere
    t = np.zeros((30, 30), np.uint8)
    p = np.zeros_like(t)
    t[10:20, 10:20] = 1
    p[8:22, 8:22] = 1
    m = segmentation_metrics(t, p, pixel_size_nm=0.5, classes=(1,), percentiles=(50, 100))[1]
    assert m["hausdorff_nm"] == pytest.approx(2 * math.sqrt(2) * 0.5, abs=1e-12)
    np.testing.assert_allclose(m["rhd_truth_to_prediction_nm"], [1.0, 1.0], atol=1e-12)
    assert m["surface_truth"] == pytest.approx(4 * 10 * 0.5 - 4 * (2 - math.sqrt(2)) / 2 * 0.5, abs=1e-12)
    # anisotropic: shift by 2 rows at 1.5 nm/row -> 3 nm everywhere
    t = np.zeros((20, 20), np.uint8)
    t[5:9, 5:12] = 1
    m = segmentation_metrics(t, np.roll(t, 2, axis=0), pixel_size_nm=(1.5, 0.2), classes=(1,))[1]
    assert m["hausdorff_nm"] == pytest.approx(3.0, abs=1e-12)


def test_confusion_counts_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 1, 0], [2, 0, 0, 0]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 1, 1, 0], [0, 0, 0, 2]], np.uint8)
    m = segmentation_metrics(truth, pred, pixel_size_nm=1.0)
    hand = {0: (5, 2, 2), 1: (5, 2, 1), 2: (1, 1, 2)}  # (TP, FP, FN) counted on paper
    for c, (tp, fp, fn) in hand.items():
        assert (m[c]["tp"], m[c]["fp"], m[c]["fn"], m[c]["tn"]) == (tp, fp, fn, 16 - tp - fp - fn)
        assert m[c]["dsc"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert m[c]["precision"] == pytest.approx(tp / (tp + fp))
        assert m[c]["recall"] == pytest.approx(tp / (tp + fn))
    assert m[1]["dsc"] == pytest.approx(10 / 13) and m[2]["dsc"] == pytest.approx(2 / 5)


def test_empty_mask_conventions():
    t = np.zeros((16, 16), np.uint8)
    t[4:8, 4:8] = 1
    p = np.zeros_like(t)
    m = segmentation_metrics(t, p, pixel_size_nm=0.4, classes=(1, 2))
    one = m[1]  # prediction empty
    assert np.isinf(one["rhd_nm"]).all() and math.isinf(one["hausdorff_nm"])
    assert one["dsc"] == 0.0 and one["recall"] == 0.0 and math.isnan(one["precision"])
    assert one["empty_prediction"] and not one["empty_truth"] and not one["both_empty"]
    both = m[2]  # class absent from both
    assert both["both_empty"]
    assert all(math.isnan(v) for v in both["rhd_nm"]) and math.isnan(both["hausdorff_nm"])
    assert math.isnan(both["dsc"]) and math.isnan(both["precision"]) and math.isnan(both["recall"])
    rev = segmentation_metrics(p, t, pixel_size_nm=0.4, classes=(1,))[1]  # truth empty
    assert rev["dsc"] == 0.0 and rev["precision"] == 0.0 and math.isnan(rev["recall"]) and math.isinf(rev["hausdorff_nm"])


def test_summarize_counts_and_interval():
    vals = [0.9, 0.8, math.nan, math.inf, 0.7, 0.85]
    s = summarize(vals)
    finite = np.array([0.9, 0.8, 0.7, 0.85])
    assert (s["n"], s["n_used"], s["n_nan"], s["n_inf"]) == (6, 4, 1, 1)
    assert s["mean"] == pytest.approx(finite.mean())
    assert s["sem"] == pytest.approx(stats.sem(finite))
    lo, hi = stats.t.interval(0.95, len(finite) - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert s["ci95"] == pytest.approx((hi - lo) / 2)
    one = summarize([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["sem"]) and math.isnan(one["ci95"])
    same = summarize([0.4] * 7)
    assert same["sd"] == 0.0 and same["ci95"] == 0.0 and same["mean"] == pytest.approx(0.4)
    none = summarize([math.nan, math.inf])
    assert none["n_used"] == 0 and math.isnan(none["mean"])


def test_aggregate_counts_empty_cases():
    t = np.zeros((3, 16, 16), np.uint8)
    p = np.zeros_like(t)
    t[0, 2:6, 2:6] = 2  # slice 0: particle missed  -> HD inf, precision NaN
    t[1, 2:6, 2:6] = 2  # slice 1: found, shifted
    p[1, 3:7, 2:6] = 2
    # slice 2: no particle in either -> both empty
    per = [segmentation_metrics(t[i], p[i], pixel_size_nm=0.5) for i in range(3)]
    agg = aggregate_metrics(per)[2]
    assert (agg["n_items"], agg["n_empty_prediction"], agg["n_both_empty"]) == (3, 2, 1)
    assert (agg["hausdorff_nm"]["n_inf"], agg["hausdorff_nm"]["n_nan"], agg["hausdorff_nm"]["n_used"]) == (1, 1, 1)
    assert agg["hausdorff_nm"]["mean"] == pytest.approx(0.5)
    assert (agg["dsc"]["n_used"], agg["dsc"]["n_nan"]) == (2, 1)
    assert agg["dsc"]["mean"] == pytest.approx((0.0 + 0.75) / 2)
    assert agg["precision"]["n_nan"] == 2 and agg["precision"]["mean"] == pytest.approx(0.75)
    assert (agg["tp"], agg["fp"], agg["fn"]) == (12, 4, 20)
    assert agg["dsc_pooled"] == pytest.approx(24 / (24 + 4 + 20))
    assert len(agg["rhd_nm"]) == len(DEFAULT_PERCENTILES) and agg["rhd_nm"][-1]["n_inf"] == 1


def test_bad_input_raises_input_error():
    a = np.zeros((8, 8), np.uint8)
    with pytest.raises(InputError, match="shape"):
        segmentation_metrics(a, np.zeros((8, 9), np.uint8), pixel_size_nm=1.0)
    with pytest.raises(InputError, match="voxel sizes"):
        segmentation_metrics(a, a, pixel_size_nm=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        segmentation_metrics(a, a, pixel_size_nm=0.0)
    with pytest.raises(InputError, match="percentiles"):
        segmentation_metrics(a, a, pixel_size_nm=1.0, percentiles=(50, 101))
    with pytest.raises(InputError, match="2-D image or 3-D"):
        segmentation_metrics(np.zeros(8), np.zeros(8), pixel_size_nm=1.0)
