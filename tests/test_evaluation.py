"""tomoflow.evaluation (patches, volumes, tables, figures) and evaluate_sample (the evaluate_segmentation rule's call)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from tomoflow import evaluation as ev
from tomoflow.errors import InputError
from tomoflow.metrics import aggregate_metrics, segmentation_metrics

NAMES = ["background", "support", "particles"]


def threshold_labels(images: np.ndarray) -> np.ndarray:
    """The 'true' segmentation used by the stand-in model: < 0.3 background, < 0.7 support, else particles."""
    return np.digitize(images, [0.3, 0.7]).astype(np.uint8)


def threshold_model(batch: np.ndarray) -> np.ndarray:
    """A pixel-wise stand-in for the U-Net: one-hot probabilities of :func:`threshold_labels`."""
    lab = threshold_labels(batch[..., 0])
    return np.eye(3, dtype=np.float32)[lab]


def annotation_stack(seed: int = 0, n: int = 3, shape: tuple[int, int] = (32, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    imgs = np.full((n,) + shape, 0.1, np.float32)
    for i in range(n):
        imgs[i, : shape[0] // 2] = 0.5  # support band
        for _ in range(3):
            cy, cx = rng.integers(4, shape[0] - 4), rng.integers(4, shape[1] - 4)
            imgs[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = 0.9  # particles
    return imgs


SPLIT = {
    "seed": 1,
    "patch_size": [16, 16],
    "train": [{"sample": "demo", "index": 0, "y0": 0, "x0": 0, "height": 16, "width": 16}],
    "validation": [
        {"sample": "demo", "index": 1, "y0": 0, "x0": 0, "height": 16, "width": 16},
        {"sample": "other", "index": 0, "y0": 0, "x0": 0, "height": 16, "width": 16},
        {"sample": "demo", "index": 2, "y0": 16, "x0": 32, "height": 16, "width": 16},
        {"sample": "demo", "index": 2, "y0": 8, "x0": 16, "height": 16, "width": 16},
    ],
}


def test_validation_records_and_cut_patches():
    recs = ev.validation_records(SPLIT, "demo")
    assert [(r["index"], r["y0"], r["x0"]) for r in recs] == [(1, 0, 0), (2, 16, 32), (2, 8, 16)]
    assert ev.validation_records(SPLIT, "nobody") == []
    stack = np.arange(3 * 32 * 48).reshape(3, 32, 48)
    patches = ev.cut_patches(stack, recs)
    assert patches.shape == (3, 16, 16)
    np.testing.assert_array_equal(patches[1], stack[2, 16:32, 32:48])
    assert patches[2, 0, 0] == stack[2, 8, 16]
    with pytest.raises(InputError, match="outside the stack"):
        ev.cut_patches(stack, [{"index": 2, "y0": 20, "x0": 0, "height": 16, "width": 16}])
    with pytest.raises(InputError, match="outside the stack"):
        ev.cut_patches(stack, [{"index": 3, "y0": 0, "x0": 0, "height": 16, "width": 16}])
    with pytest.raises(InputError, match="validation"):
        ev.validation_records({"train": []}, "demo")
    with pytest.raises(InputError, match="lacks"):
        ev.validation_records({"validation": [{"sample": "demo"}]}, "demo")


def test_predict_validation_patches_with_pixelwise_model():
    imgs = annotation_stack()
    recs = ev.validation_records(SPLIT, "demo")
    pred = ev.predict_validation_patches(threshold_model, imgs, recs, n_classes=3, patch_size=(16, 16), batch_size=4)
    # a pixel-wise model is unchanged by the blending: patches equal the thresholded slices
    np.testing.assert_array_equal(pred, ev.cut_patches(threshold_labels(imgs), recs))
    with pytest.raises(InputError, match="classes"):
        ev.predict_validation_patches(threshold_model, imgs, recs, n_classes=4, patch_size=(16, 16))


def test_evaluate_volume_anisotropic_voxels():
    truth = np.zeros((6, 20, 24), np.uint8)
    truth[:, :8] = 1  # support: full slab of rows 0..7 in z
    truth[2:4, 12:16, 6:10] = 2  # one particle in slices 2, 3
    pred = truth.copy()
    pred[pred == 2] = 0
    pred[2:4, 12:16, 8:12] = 2  # particle shifted by 2 px along x
    vox = (1.0, 0.5, 0.25)  # (dy, dz, dx) nm
    per_slice, vol = ev.evaluate_volume(truth, pred, voxel_size_nm=vox, percentiles=(95, 100))
    assert len(per_slice) == 6
    for y in (2, 3):  # in-slice pixel (dz, dx): the shift is 2·0.25 nm
        assert per_slice[y][2]["hausdorff_nm"] == pytest.approx(0.5, abs=1e-12)
        assert per_slice[y][2]["dsc"] == pytest.approx(0.5)
    for y in (0, 1, 4, 5):
        assert per_slice[y][2]["both_empty"]
    assert vol[2]["hausdorff_nm"] == pytest.approx(0.5, abs=1e-12)
    assert vol[1]["hausdorff_nm"] == 0.0 and vol[1]["dsc"] == 1.0
    agg = aggregate_metrics(per_slice)
    assert agg[2]["n_both_empty"] == 4 and agg[2]["hausdorff_nm"]["n_nan"] == 4 and agg[2]["hausdorff_nm"]["mean"] == pytest.approx(0.5)
    # a shift along the slice axis: 3-D HD is one slice (1 nm); in 2-D the particle appears/disappears
    pred2 = truth.copy()
    pred2[pred2 == 2] = 0
    pred2[3:5, 12:16, 6:10] = 2
    per_slice2, vol2 = ev.evaluate_volume(truth, pred2, voxel_size_nm=vox, percentiles=(100,))
    assert vol2[2]["hausdorff_nm"] == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(per_slice2[2][2]["hausdorff_nm"]) and math.isinf(per_slice2[4][2]["hausdorff_nm"])
    assert per_slice2[3][2]["hausdorff_nm"] == 0.0
    with pytest.raises(InputError, match="shape"):
        ev.evaluate_volume(truth, pred[:, :10], voxel_size_nm=0.4)


def test_select_examples():
    t = np.zeros((5, 4, 4), np.uint8)
    t[1, :2] = 2  # 8 px
    t[3, 0] = 2  # 4 px
    t[4, :3] = 2  # 12 px
    assert ev.select_examples(t, 2, 2) == [1, 4]
    assert ev.select_examples(t, 4, 2) == [0, 1, 3, 4]  # slices 0 and 2 tie at 0: lower index first


def _aggregates():
    t = np.zeros((3, 16, 16), np.uint8)
    t[:, 8:] = 1
    p = t.copy()
    t[0, 2:6, 2:6] = 2  # missed particle
    t[1, 2:6, 2:6] = 2
    p[1, 3:7, 2:6] = 2
    p[2, 0, 0:2] = 1  # support over-segmented by 2 px
    per = [segmentation_metrics(t[i], p[i], pixel_size_nm=0.5) for i in range(3)]
    return per, aggregate_metrics(per)


def test_table1_and_rhd_table():
    per, agg = _aggregates()
    sets = {"validation_patches": agg, "volume_3d": aggregate_metrics(per[1:2])}
    t1 = ev.table1(sets, NAMES)
    assert list(t1.columns) == ["evaluation", "metric", "support", "particles", "background/pores"]
    assert list(t1["metric"]) == ["precision", "recall", "DSC"] * 2
    dsc_sup = [per[i][1]["dsc"] for i in range(3)]
    from scipy import stats

    ci = stats.t.ppf(0.975, 2) * stats.sem(dsc_sup)
    assert t1.loc[2, "support"] == f"{np.mean(dsc_sup):.3f} ± {ci:.3f}"
    # particles: precision NaN in slices 0 and 2 (nothing predicted), DSC NaN in slice 2 (both empty)
    assert t1.loc[0, "particles"] == "0.750 (1/3 used, 2 NaN)"
    assert t1.loc[2, "particles"] == f"{0.375:.3f} ± {stats.t.ppf(0.975, 1) * stats.sem([0.0, 0.75]):.3f} (2/3 used, 1 NaN)"
    assert t1.loc[5, "particles"] == "0.750"  # a single 3-D value: no interval
    rhd = ev.rhd_table(sets, NAMES)
    assert len(rhd) == 2 * 3 * 12
    row = rhd[(rhd.evaluation == "validation_patches") & (rhd["class"] == "particles") & (rhd.percentile == 100)].iloc[0]
    assert (row.n, row.n_used, row.n_nan, row.n_inf) == (3, 1, 1, 1)
    assert row.mean_nm == pytest.approx(0.5)


def test_metrics_document_roundtrip(tmp_path):
    from tomoflow import io

    per, agg = _aggregates()
    doc = ev.metrics_document(
        sample="demo", class_names=NAMES, percentiles=per[0][0]["percentiles"], pixel_size_nm=0.5,
        validation={"records": SPLIT["validation"][:3], "per_patch": per, "aggregate": agg},
    )
    io.write_json(tmp_path / "m.json", doc)
    back = json.loads((tmp_path / "m.json").read_text())
    assert back["validation_patches"]["n"] == 3
    assert set(back["validation_patches"]["aggregate"]) == set(NAMES)
    assert math.isinf(back["validation_patches"]["per_patch"][0]["particles"]["hausdorff_nm"])
    assert math.isnan(back["validation_patches"]["per_patch"][2]["particles"]["dsc"])
    assert back["validation_patches"]["aggregate"]["particles"]["n_both_empty"] == 1


def test_figures(tmp_path):
    per, agg = _aggregates()
    rhd = ev.rhd_table({"validation_patches": agg, "volume_3d": aggregate_metrics(per[1:2])}, NAMES)
    fig = ev.rhd_figure(rhd, NAMES, title="demo")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    lines = fig.axes[0].get_lines()
    assert len(fig.axes[0].containers) == 3  # one error-bar series per class
    assert any(np.allclose(ln.get_ydata()[-1:], 0.5) for ln in lines)
    fig.savefig(tmp_path / "rhd.png")
    t = np.zeros((2, 8, 10), np.uint8)
    p = t.copy()
    t[:, 2:4, 2:4] = 2
    p[:, 3:5, 2:4] = 2
    efig = ev.error_maps_figure(t, p, NAMES, images=np.random.default_rng(0).random(t.shape), titles=["a", "b"], pixel_size_nm=0.4)
    axes = np.array(efig.axes[: 2 * 6]).reshape(2, 6)
    rgb = axes[0, 5].images[0].get_array()  # particles panel
    assert tuple(rgb[2, 2]) == ev.ERROR_COLORS["FN"]
    assert tuple(rgb[4, 2]) == ev.ERROR_COLORS["FP"]
    assert tuple(rgb[3, 3]) == ev.ERROR_COLORS["TP"]
    assert tuple(rgb[0, 0]) == ev.ERROR_COLORS["TN"]
    efig.savefig(tmp_path / "errors.png")
    assert (tmp_path / "errors.png").stat().st_size > 1000


SETTINGS = ev.EvaluationSettings(percentiles=(50.0, 95.0, 100.0), patch_size=(16, 16), batch_size=4, error_examples=2)


def test_evaluate_sample_volume_only(tmp_path):
    from tomoflow import io

    truth = np.zeros((4, 24, 32), np.uint8)
    truth[:, 12:] = 1
    truth[1:3, 4:8, 4:8] = 2
    pred = truth.copy()
    pred[1:3, 4:8, 4:8] = 0
    pred[1:3, 5:9, 4:8] = 2  # the particles shifted by one voxel (0.4 nm) along z
    io.write_labels(tmp_path / "labels.tif", truth, 0.4)
    io.write_labels(tmp_path / "seg.tif", pred, 0.4)
    res = ev.evaluate_sample("demo", NAMES, SETTINGS, true_labels=tmp_path / "labels.tif", segmentation=tmp_path / "seg.tif")
    doc = json.loads(json.dumps(res.metrics))  # JSON-ready
    assert "validation_patches" not in doc and doc["volume_slices"]["n"] == 4
    assert doc["volume_3d"]["particles"]["hausdorff_nm"] == pytest.approx(0.4)
    assert doc["volume_3d"]["particles"]["dsc"] == pytest.approx(0.75)  # 2·24 / (32 + 32)
    assert doc["pixel_size_nm"] == 0.4
    assert list(res.table1["evaluation"].unique()) == ["volume_slices", "volume_3d"]
    assert isinstance(res.rhd_figure, Figure) and isinstance(res.errors_figure, Figure)
    assert set(res.rhd["evaluation"]) == {"volume_slices", "volume_3d"}


def test_evaluate_sample_nothing_to_evaluate(tmp_path):
    with pytest.raises(InputError, match="nothing to evaluate"):
        ev.evaluate_sample("demo", NAMES, SETTINGS)
    # a split without patches of this sample is nothing either (no model is loaded)
    from tomoflow import io

    io.write_json(tmp_path / "split.json", SPLIT)
    with pytest.raises(InputError, match="nothing to evaluate"):
        ev.evaluate_sample("nobody", NAMES, SETTINGS, split=tmp_path / "split.json", images=tmp_path / "x.tif",
                           labels=tmp_path / "y.tif", model=tmp_path / "missing.keras")


def test_evaluate_sample_validation_patches_with_keras_model(tmp_path):
    keras = pytest.importorskip("keras")
    from tomoflow import io

    # a real saved Keras model equal to a pixel-wise threshold classifier
    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(3, 1, activation="softmax")(inp)
    model = keras.Model(inp, x)
    # logits 0, 20·v - 6, 40·v - 20: background below 0.3, support to 0.7, particles above
    model.layers[1].set_weights([np.array([[[[0.0, 20.0, 40.0]]]], np.float32), np.array([0.0, -6.0, -20.0], np.float32)])
    model.save(tmp_path / "unet.keras")
    imgs = annotation_stack()
    labels = threshold_labels(imgs)
    labels[2, 16:20, 32:36] = 2  # an annotated particle the model cannot see
    io.write_volume(tmp_path / "images.tif", imgs, 0.4)
    io.write_labels(tmp_path / "labels.tif", labels, 0.4)
    io.write_json(tmp_path / "split.json", SPLIT)
    res = ev.evaluate_sample("demo", NAMES, SETTINGS, model=tmp_path / "unet.keras", split=tmp_path / "split.json",
                             images=tmp_path / "images.tif", labels=tmp_path / "labels.tif")
    doc = res.metrics
    vp = doc["validation_patches"]
    assert vp["n"] == 3
    per = vp["per_patch"]
    assert per[0]["support"]["dsc"] == 1.0 and per[0]["support"]["hausdorff_nm"] == 0.0
    # patch 2 (slice 2, y 16:32, x 32:48) holds the unseen 4×4 particle: 16 false negatives
    assert per[1]["particles"]["fn"] >= 16
    assert per[1]["particles"]["recall"] < 1.0
    t1 = res.table1
    assert list(t1["evaluation"]) == ["validation_patches"] * 3
