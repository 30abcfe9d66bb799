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


# ----------------------------------------------------------------------------- fast-convergence recipe
def test_cosine_and_constant_learning_rates_match_hand_computed_values():
    from tomoflow.train import learning_rate_at

    s = _settings(epochs=5, learning_rate=1e-3, lr_schedule="cosine")
    # lr * (0.01 + 0.99 * (1 + cos(pi * e / 4)) / 2)
    expected = [1e-3, 1e-3 * (0.01 + 0.99 * (1 + 2**-0.5) / 2), 5.05e-4, 1e-3 * (0.01 + 0.99 * (1 - 2**-0.5) / 2), 1e-5]
    np.testing.assert_allclose([learning_rate_at(e, s) for e in range(5)], expected, rtol=1e-12)
    assert learning_rate_at(7, s) == pytest.approx(1e-5)  # past the end: the final value
    for sched in ("constant", "plateau"):
        assert learning_rate_at(3, _settings(epochs=5, learning_rate=1e-3, lr_schedule=sched)) == 1e-3


def test_early_stopping_epoch_on_scripted_histories():
    from tomoflow.train import early_stop_epoch

    losses = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77, 0.6]
    assert early_stop_epoch(losses, "min", 3) == 8  # best at 5, three epochs without improvement
    assert early_stop_epoch(losses, "min", 2) == 4  # best at 2; 3 and 4 are worse
    assert early_stop_epoch(losses, "min", 4) is None
    assert early_stop_epoch(losses, "min", 0) is None  # off
    dsc = [0.1, 0.5, float("nan"), 0.5, 0.4]  # equal is not better; NaN never is
    assert early_stop_epoch(dsc, "max", 3) == 5
    assert early_stop_epoch([float("nan")] * 3, "max", 2) == 2


def test_early_stopping_and_plateau_in_training():
    ti, tl = _toy(4, 0)
    vi, vl = _toy(2, 1)
    # learning rate 0: the validation loss never improves after epoch 1 -> patience 2 stops after epoch 3
    r = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=8, learning_rate=0.0, early_stopping_patience=2))
    assert len(r.history) == 3 and r.best_epoch == 1
    assert r.stop_reason.startswith("early stopping: val_loss")
    # plateau: a negligible learning rate gives no improvement above ReduceLROnPlateau's min_delta 1e-4, so the
    # rate halves after 3 such epochs (epochs 2-4) and is lower from epoch 5 on
    r = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=5, learning_rate=1e-9, lr_schedule="plateau"))
    np.testing.assert_allclose(r.history["learning_rate"], [1e-9] * 4 + [5e-10], rtol=1e-6)
    assert r.stop_reason == "all epochs"


def _crop_data():
    rng = np.random.default_rng(3)
    ims = [rng.random((64, 96), dtype=np.float32), rng.random((48, 80), dtype=np.float32)]
    labs = [np.zeros((64, 96), np.uint8), np.zeros((48, 80), np.uint8)]
    labs[0][40:43, 5:8] = 2  # 9 Pt pixels near an edge of image 0, none in image 1
    labs[1][10:30, 10:60] = 1
    return ims, labs


def test_crop_dataset_oversamples_particles_at_the_set_rate():
    from tomoflow.train import CropDataset

    ims, labs = _crop_data()
    for p in (0.0, 0.3, 1.0):
        ds = CropDataset(ims, labs, (32, 32), 3, 4, 10, p, None, seed=2)
        draws = []
        for e in range(25):
            ds.epoch = e
            draws += [o for i in range(len(ds)) for o in ds.crop_origins(i)]
        flags = np.array([d[3] for d in draws])
        # 1000 draws: the measured fraction is within 4 binomial standard deviations of p
        assert abs(flags.mean() - p) <= 4 * np.sqrt(p * (1 - p) / flags.size) + 1e-12, (p, flags.mean())
        for k, y0, x0, on_pt in draws:
            assert 0 <= y0 <= ims[k].shape[0] - 32 and 0 <= x0 <= ims[k].shape[1] - 32
            if on_pt:  # centred on a Pt pixel, moved inside the image: the crop holds Pt
                assert k == 0 and (labs[0][y0 : y0 + 32, x0 : x0 + 32] == 2).any()
    x, y = ds[0]
    assert x.shape == (4, 32, 32, 1) and y.shape == (4, 32, 32, 3)
    k, y0, x0, _ = ds.crop_origins(0)[1]
    np.testing.assert_array_equal(x[1, ..., 0], ims[k][y0 : y0 + 32, x0 : x0 + 32])  # no augmentation: exact crop
    np.testing.assert_array_equal(np.argmax(y[1], -1), labs[k][y0 : y0 + 32, x0 : x0 + 32])


def test_crop_dataset_is_deterministic_per_seed_epoch_and_batch():
    from tomoflow.train import CropDataset

    ims, labs = _crop_data()
    a = CropDataset(ims, labs, (32, 32), 3, 2, 3, 0.5, AugmentSettings(), seed=7)
    b = CropDataset(ims, labs, (32, 32), 3, 2, 3, 0.5, AugmentSettings(), seed=7)
    for i in (2, 0, 1):  # any order
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    x0 = a[1][0]
    a.on_epoch_end()
    assert not np.array_equal(a[1][0], x0)
    c = CropDataset(ims, labs, (32, 32), 3, 2, 3, 0.5, AugmentSettings(), seed=8)
    assert not np.array_equal(c[1][0], x0)
    with pytest.raises(ValueError, match="at least"):
        CropDataset(ims, labs, (64, 64), 3, 2, 3, 0.5, None, seed=7)


def test_crop_sources_are_the_whole_training_slices():
    from tomoflow.train import crop_sources

    ims = {"a": np.arange(3 * 4 * 8, dtype=np.float32).reshape(3, 4, 8)}
    labs = {"a": (ims["a"] % 3).astype(np.uint8)}
    recs = [{"sample": "a", "index": 2, "x0": 0}, {"sample": "a", "index": 2, "x0": 4}, {"sample": "a", "index": 0, "x0": 0}]
    im, lab = crop_sources(ims, labs, recs)
    assert len(im) == 2
    np.testing.assert_array_equal(im[0], ims["a"][2])
    np.testing.assert_array_equal(lab[1], labs["a"][0])


def test_training_on_random_crops_is_deterministic():
    ti, tl = _toy(4, 0)
    big = [np.concatenate([a, a[:, ::-1]], 1) for a in ti]
    bigl = [np.concatenate([a, a[:, ::-1]], 1) for a in tl]
    vi, vl = _toy(2, 1)
    s = _settings(epochs=2, particle_oversampling=0.5, steps_per_epoch=2)
    r1 = train_unet(big, bigl, vi, vl, CLASSES, s)
    r2 = train_unet(big, bigl, vi, vl, CLASSES, s)
    for a, b in zip(r1.model.get_weights(), r2.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # normalisation from all pixels of the crop sources
    assert r1.normalization["mean"] == pytest.approx(float(np.mean(np.concatenate([a.ravel() for a in big]))), rel=1e-6)


def test_precision_policy_stays_float32_on_cpu():
    from tomoflow.train import configure_precision, gpu_visible

    before = keras.mixed_precision.dtype_policy().name
    try:
        if not gpu_visible():
            assert configure_precision("auto") == "float32"
            assert keras.mixed_precision.dtype_policy().name == "float32"
        assert configure_precision("float32") == "float32"
        assert configure_precision("mixed_float16") == "mixed_float16"
        assert keras.mixed_precision.dtype_policy().name == "mixed_float16"
        with pytest.raises(ValueError):
            configure_precision("bfloat8")
    finally:
        keras.mixed_precision.set_dtype_policy(before)
    if not gpu_visible():  # a CPU training run builds a float32 model and leaves the global policy as it was
        ti, tl = _toy(2, 0)
        r = train_unet(ti, tl, ti, tl, CLASSES, _settings(epochs=1))
        assert {w.dtype for w in r.model.weights} == {"float32"}
        assert keras.mixed_precision.dtype_policy().name == before


def test_settings_from_params_recipe_keys():
    s = settings_from_params(_params(), 3)
    assert (s.lr_schedule, s.early_stopping_patience, s.particle_oversampling, s.random_crops) == ("constant", 0, 0.0, False)
    s = settings_from_params(_params(lr_schedule="cosine", early_stopping_patience=5, particle_oversampling=0.5,
                                     steps_per_epoch=20, max_minutes=30.0, precision="float32"), 3)
    assert (s.lr_schedule, s.early_stopping_patience, s.steps_per_epoch, s.max_minutes) == ("cosine", 5, 20, 30.0)
    assert s.random_crops and s.crop_size == (32, 32)
    with pytest.raises(InputError, match="train.lr_schedule"):
        settings_from_params(_params(lr_schedule="step"), 3)
    with pytest.raises(InputError, match="train.particle_oversampling"):
        settings_from_params(_params(particle_oversampling=1.5), 3)
