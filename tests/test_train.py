"""tomoflow.train: registered augmentation, reproducible batches, deterministic training, best epoch."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from matplotlib.figure import Figure  # noqa: E402

from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io.models import save_model  # noqa: E402
from tomoflow.train import (  # noqa: E402
    AugmentSettings,
    PatchDataset,
    TrainSettings,
    augment_batch,
    export_model,
    random_affine,
    resolve_monitor,
    settings_from_params,
    train_from_files,
    train_unet,
    training_curves_figure,
)
from tomoflow.unet import dice_per_class  # noqa: E402

CLASSES = ["background", "support", "particles"]


def _square(n=64, y0=20, x0=12, size=14):
    im = np.zeros((1, n, n), np.float32)
    lab = np.zeros((1, n, n), np.uint8)
    im[0, y0 : y0 + size, x0 : x0 + size] = 1.0
    lab[0, y0 : y0 + size, x0 : x0 + size] = 2
    return im, lab


def test_identity_when_augmentation_off():
    t = random_affine(np.random.default_rng(0), (32, 48), AugmentSettings(0, False, 0, 0))
    np.testing.assert_allclose(t, [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-7)
    im, lab = _square()
    im2, lab2 = augment_batch(im, lab, t[None])
    np.testing.assert_array_equal(lab2, lab)
    np.testing.assert_allclose(im2, im, atol=1e-6)


def test_flips_move_square_exactly():
    im, lab = _square()
    flips = {(1, 1): im[0], (-1, 1): im[0, :, ::-1], (1, -1): im[0, ::-1, :], (-1, -1): im[0, ::-1, ::-1]}
    seen = set()
    for seed in range(12):
        t = random_affine(np.random.default_rng(seed), (64, 64), AugmentSettings(0, True, 0, 0))
        key = (int(np.sign(t[0])), int(np.sign(t[4])))
        seen.add(key)
        im2, lab2 = augment_batch(im, lab, t[None])
        np.testing.assert_allclose(im2[0], flips[key], atol=1e-5)
        np.testing.assert_array_equal(lab2[0], (flips[key] > 0.5) * 2)
    assert seen == set(flips)


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_square_registered(seed):
    im, lab = _square()
    aug = AugmentSettings(rotation_deg=30, flip=True, zoom=0.2, shear_deg=10)
    t = random_affine(np.random.default_rng(seed), (64, 64), aug)
    im2, lab2 = augment_batch(im, lab, t[None])
    assert set(np.unique(lab2)) <= {0, 2}
    inside = lab2[0] == 2
    # the labelled square stays on its pixels: the bilinear image is ~1 inside, ~0 outside; they may
    # differ only on the boundary ring (one interpolation pixel)
    disagree = inside != (im2[0] > 0.5)
    assert disagree.sum() <= 0.05 * inside.sum()
    assert im2[0][inside].mean() > 0.9 and im2[0][~inside].mean() < 0.02
    # area scales with the zoom determinant (a0*b1 - a1*b0 maps output to input)
    det = abs(t[0] * t[4] - t[1] * t[3])
    assert inside.sum() == pytest.approx(14 * 14 / det, rel=0.12)


def test_dataset_reproducible_and_one_hot():
    rng = np.random.default_rng(0)
    im = rng.random((5, 32, 32), dtype=np.float32)
    lab = rng.integers(0, 3, (5, 32, 32)).astype(np.uint8)
    a = PatchDataset(im, lab, 3, 2, AugmentSettings(), seed=1)
    b = PatchDataset(im, lab, 3, 2, AugmentSettings(), seed=1)
    assert len(a) == 3
    x1, y1 = a[1]
    x2, y2 = b[1]
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (2, 32, 32, 1) and y1.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(y1.sum(-1), 1)
    a.on_epoch_end()
    assert not np.array_equal(a[1][0], x1)  # new epoch: new order/augmentation
    c = PatchDataset(im, lab, 3, 2, None, seed=1, shuffle=False)
    np.testing.assert_array_equal(c[2][0][..., 0], im[4:5])
    np.testing.assert_array_equal(np.argmax(c[2][1], -1), lab[4:5])


def _toy(n, seed):
    """Images whose labels follow intensity: dark background, mid support blobs, bright small dots."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((n, 32, 32), np.uint8)
    yy, xx = np.mgrid[:32, :32]
    for k in range(n):
        cy, cx = rng.integers(8, 24, 2)
        lab[k][(yy - cy) ** 2 + (xx - cx) ** 2 < 60] = 1
        for _ in range(2):
            py, px = rng.integers(2, 30, 2)
            lab[k][(yy - py) ** 2 + (xx - px) ** 2 <= 2] = 2
    im = np.array([0.0, 50.0, 250.0], np.float32)[lab] + rng.normal(0, 10, lab.shape).astype(np.float32)
    return im, lab


def _settings(**kw):
    base = dict(depth=3, base_filters=4, epochs=2, batch_size=2, seed=5, augment=AugmentSettings())
    base.update(kw)
    return TrainSettings(**base)


def test_training_is_deterministic_and_keeps_best_epoch():
    ti, tl = _toy(6, 0)
    vi, vl = _toy(2, 1)
    r1 = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=3))
    r2 = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=3))
    for a, b in zip(r1.model.get_weights(), r2.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    h = r1.history
    assert list(h.columns[:3]) == ["epoch", "loss", "val_loss"]
    assert {"dsc_particles", "val_dsc_support", "seconds"} <= set(h.columns)
    assert r1.best_epoch == int(h["epoch"][h["val_loss"].idxmin()])
    # the kept weights are those of the best epoch: re-evaluating gives its validation loss
    y = np.eye(3, dtype=np.float32)[vl]
    val = r1.model.evaluate(vi[..., None], y, batch_size=2, verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(h["val_loss"][r1.best_epoch - 1], rel=1e-4)
    assert r1.normalization["mean"] == pytest.approx(float(ti.astype(np.float64).mean()))
    r3 = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=3, seed=6, monitor="val_dsc_particles"))
    assert not np.array_equal(r3.model.get_weights()[1], r1.model.get_weights()[1])
    h3 = r3.history
    assert r3.best_epoch == int(h3["epoch"][h3["val_dsc_particles"].idxmax()])


def test_training_learns_toy_task_and_exports(tmp_path):
    ti, tl = _toy(16, 2)
    vi, vl = _toy(4, 3)
    r = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=12, learning_rate=1e-2,
                                                       augment=AugmentSettings(0, True, 0, 0)))
    pred = np.argmax(keras.ops.convert_to_numpy(r.model(vi[..., None])), -1)
    dsc = dice_per_class(vl, pred, 3)
    assert dsc[1] > 0.9 and dsc[2] > 0.9, dsc
    export_model(r.model, r.alpha, 1.0, 5e-4)
    save_model(r.model, tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(vi[..., None])),
                               keras.ops.convert_to_numpy(r.model(vi[..., None])), atol=1e-6)
    fig = training_curves_figure(r.history, CLASSES, r.best_epoch)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_resolve_monitor():
    assert resolve_monitor("val_loss", CLASSES) == ("val_loss", "min")
    assert resolve_monitor("val_dsc_particles", CLASSES) == ("val_dsc_particles", "max")
    assert resolve_monitor("val_dsc_particles", ["bg", "al2o3", "pt"]) == ("val_dsc_pt", "max")
    with pytest.raises(ValueError):
        resolve_monitor("accuracy", CLASSES)


def _params(**kw):
    base = dict(samples=["toy"], classes=CLASSES, seed=1, patch_size=[32, 32], base_filters=2, depth=3, epochs=2,
                batch_size=2, learning_rate=5e-4, val_fraction=0.25, focal_gamma=1.0,
                class_weights=[0.2, 0.3, 0.5], monitor="val_loss",
                augment={"rotation_deg": 10.0, "flip": True, "zoom": 0.1, "shear_deg": 5.0})
    base.update(kw)
    return base


def test_settings_from_params_checks_patch_and_weights():
    s = settings_from_params(_params(), 3)
    assert (s.depth, s.base_filters, s.epochs, s.class_weights) == (3, 2, 2, [0.2, 0.3, 0.5])
    assert s.augment == AugmentSettings(10.0, True, 0.1, 5.0)
    with pytest.raises(InputError, match=r"train.patch_size: \[48, 40\] is not two multiples of 2\*\*\(depth-1\) = 16"):
        settings_from_params(_params(patch_size=[48, 40], depth=5), 3)
    with pytest.raises(InputError, match="train.class_weights: 2 weights for 3 classes"):
        settings_from_params(_params(class_weights=[0.5, 0.5]), 3)
    assert settings_from_params(_params(class_weights="auto"), 3).class_weights == "auto"


def test_train_from_files_writes_model_and_records(tmp_path):
    from tomoflow.io import read_json, read_tsv, write_labels, write_volume

    im, lab = _toy(4, 7)
    im = np.concatenate([im, im[:, :, ::-1]], axis=2)  # 32x64 slices -> two 32x32 patches each
    lab = np.concatenate([lab, lab[:, :, ::-1]], axis=2)
    write_volume(tmp_path / "images.tif", im, 0.4)
    write_labels(tmp_path / "labels.tif", lab, 0.4)
    m = tmp_path / "model"
    names = ["model", "history", "curves", "class_weights", "split", "normalization"]
    files = ["unet.keras", "history.tsv", "training_curves.png", "class_weights.json", "split.json",
             "normalization.json"]
    out = {n: str(m / f) for n, f in zip(names, files)}
    res = train_from_files([str(tmp_path / "images.tif")], [str(tmp_path / "labels.tif")], out, _params())
    split = read_json(out["split"])
    assert split["patch_size"] == [32, 32] and len(split["train"]) == 6 and len(split["validation"]) == 2
    assert read_json(out["class_weights"])["alpha"] == [0.2, 0.3, 0.5]
    hist = read_tsv(out["history"])
    assert len(hist) == 2 and "val_dsc_particles" in hist and res.best_epoch in (1, 2)
    norm = read_json(out["normalization"])
    train_px = np.concatenate([im[r["index"], :, r["x0"]:r["x0"] + 32] for r in split["train"]])
    assert norm["mean"] == pytest.approx(float(train_px.mean()), rel=1e-5)
    model = keras.saving.load_model(out["model"])
    assert model.output_shape[-1] == 3
    with pytest.raises(InputError, match="train.samples"):
        train_from_files([str(tmp_path / "images.tif")] * 2, [str(tmp_path / "labels.tif")], out, _params())
