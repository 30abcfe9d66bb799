"""Models as artefacts (issue 14): metadata in the .keras file, class and pixel-size checks, resampling to
the model's pixel size, fine-tuning from a model (init_model, frozen encoder), the model comparison, and the
`models:` / `predict.model` configuration through the real snakemake CLI."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from scipy import ndimage  # noqa: E402

from tomoflow import io  # noqa: E402
from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io.models import METADATA_FIELDS, read_metadata, save_model  # noqa: E402
from tomoflow.models import (  # noqa: E402
    build_metadata,
    check_architecture,
    check_classes_metadata,
    check_models,
    model_settings,
    pixel_scale,
    segment_model,
)
from tomoflow.predict import predict_slab_file, predict_volume_slab  # noqa: E402
from tomoflow.predict.resample import resample_axis, resample_slices  # noqa: E402
from tomoflow.train import TrainSettings, export_model, train_unet  # noqa: E402
from tomoflow.train.loop import encoder_layers, initial_model  # noqa: E402
from tomoflow.unet import build_unet  # noqa: E402
from workflow_utils import TINY, make_workdir, planned_jobs, snakemake  # noqa: E402

CLASSES = ["background", "support", "particles"]


def _meta(**kw):
    base = dict(classes=CLASSES, pixel_size_nm=0.4, normalization={"mean": 1.5, "std": 2.0}, patch_size=[32, 32], depth=2,
                base_filters=2, focal_gamma=1.0, focal_alpha=[0.2, 0.3, 0.5], sources={"samples": ["demo"]})
    base.update(kw)
    return build_metadata(**base)


def _small_model(seed=0, depth=2, filters=2, n_classes=3, mean=1.5, var=4.0):
    keras.utils.set_random_seed(seed)
    m = build_unet(depth, filters, n_classes, mean, var)
    return export_model(m, [1.0 / n_classes] * n_classes, 1.0, 1e-3)


# --------------------------------------------------------------------------- metadata
def test_metadata_round_trip_and_plain_keras_load(tmp_path):
    model = _small_model()
    path = tmp_path / "m.keras"
    meta = _meta(model="focal", best_epoch=3)
    save_model(model, path, meta)
    got = read_metadata(path)
    assert got == json.loads(json.dumps(meta))
    assert set(METADATA_FIELDS) <= set(got)
    assert got["normalization"] == {"mean": 1.5, "std": 2.0} and got["tomoflow_version"]
    # the archive still loads with plain Keras (no custom objects) and predicts as before
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 1)).astype(np.float32)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    with zipfile.ZipFile(path) as z:
        assert {"config.json", "model.weights.h5", "tomoflow.json"} <= set(z.namelist())


def test_model_without_metadata_reads_none_and_is_checked_by_its_outputs(tmp_path, caplog):
    path = tmp_path / "old.keras"
    save_model(_small_model(), path)  # no metadata: an older or external model
    assert read_metadata(path) is None
    check_classes_metadata(None, CLASSES, str(path), n_outputs=3)  # accepted, with a warning
    assert "no tomoflow metadata" in caplog.text
    with pytest.raises(InputError, match="predicts 2 classes but config classes has 3"):
        check_classes_metadata(None, CLASSES, str(path), n_outputs=2)


def test_model_for_other_classes_is_refused_by_name():
    with pytest.raises(InputError) as e:
        check_classes_metadata(_meta(classes=["background", "pores", "pt"]), CLASSES, "ext.keras", n_outputs=3)
    msg = str(e.value)
    assert msg.startswith("ext.keras: the model was trained for classes ['background', 'pores', 'pt']") and "Fix:" in msg


def test_read_metadata_refuses_a_zip_that_is_no_keras_model(tmp_path):
    p = tmp_path / "x.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(InputError, match="not a Keras 3 .keras model"):
        read_metadata(p)
    (tmp_path / "t.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match="not a complete .keras archive"):
        read_metadata(tmp_path / "t.keras")


# --------------------------------------------------------------------------- pixel size
def test_pixel_scale_tolerance_auto_and_never():
    assert pixel_scale(0.4, 0.41, tolerance=0.03) == 1.0  # 2.5 % : within 3 %
    assert pixel_scale(0.4, 0.6, tolerance=0.03) == pytest.approx(1.5)
    assert pixel_scale(None, 0.6) == 1.0 and pixel_scale(0.4, None) == 1.0  # unknown: no check
    with pytest.raises(InputError) as e:
        pixel_scale(0.4, 0.6, tolerance=0.03, resample="never", where="ext.keras", what="sample 'demo'")
    msg = str(e.value)
    assert "ext.keras" in msg and "0.4 nm/px" in msg and "0.6 nm/px" in msg and "+50.0 %" in msg
    assert "predict.resample: auto" in msg


def test_linear_resampling_equals_a_hand_computed_case():
    # up 2 -> 4: centres map to -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
    np.testing.assert_allclose(resample_axis(np.array([0.0, 10.0]), 4, 0), [0.0, 2.5, 7.5, 10.0])
    # down 4 -> 2: centres map to 0.5 and 2.5
    np.testing.assert_allclose(resample_axis(np.array([0.0, 1.0, 2.0, 3.0]), 2, 0), [0.5, 2.5])
    # probabilities back from a 2-px model grid to a 3-px data grid: linear, then argmax
    p = np.array([[[[0.1, 0.9], [0.7, 0.3]]]])  # (n=1, h=1, w=2, C=2): class 1 then class 0
    back = resample_slices(p, (1, 3))
    # centres map to x = -1/6 (clamped 0), 1/2, 7/6 (clamped 1)
    np.testing.assert_allclose(back[0, 0, :, 1], [0.9, 0.6, 0.3], atol=1e-6)
    assert np.argmax(back[0, 0], axis=-1).tolist() == [1, 1, 0]


def test_resampling_matches_scipy_map_coordinates():
    a = np.random.default_rng(3).normal(size=(2, 13, 17)).astype(np.float64)
    out = resample_slices(a, (20, 9))
    ys = np.clip((np.arange(20) + 0.5) * 13 / 20 - 0.5, 0, 12)
    xs = np.clip((np.arange(9) + 0.5) * 17 / 9 - 0.5, 0, 16)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    for k in range(2):
        ref = ndimage.map_coordinates(a[k], [yy, xx], order=1, mode="nearest")
        np.testing.assert_allclose(out[k], ref, atol=1e-12)


def _stripes(shape=(2, 24, 36)):
    """An image whose value is the particle probability: thin stripes (1 px) and wide bands."""
    img = np.zeros(shape, np.float32)
    img[:, :, 5] = 1.0
    img[:, :, 20:28] = 1.0
    return img


def _pixelwise(batch):
    """A 'model' that maps intensity v to probabilities (1 - v, v): prediction = the image itself."""
    v = np.clip(batch[..., 0], 0, 1)
    return np.stack([1 - v, v], axis=-1)


def test_prediction_at_the_model_pixel_size_equals_resample_predict_resample_back():
    img = _stripes()
    scale = 0.5  # the data's pixels are half the model's: slices are shrunk to 12 x 18 px for the model
    labels, _ = predict_volume_slab(_pixelwise, img, 0, 2, patch_size=(8, 8), batch_size=4, mode="blended", scale=scale)
    small = resample_slices(img, (12, 18))
    back = resample_slices(np.stack([1 - small, small], axis=-1), (24, 36))
    np.testing.assert_array_equal(labels, np.argmax(back, axis=-1))
    assert labels.shape == img.shape
    # the wide band survives, the 1-px stripe is averaged away at the coarser grid (0.5 -> tie -> class 0)
    assert labels[0, 0, 20:28].tolist() == [1] * 8 and labels[0, 0, 5] == 0
    same, _ = predict_volume_slab(_pixelwise, img, 0, 2, patch_size=(8, 8), batch_size=4, mode="blended", scale=1.0)
    np.testing.assert_array_equal(same, (img > 0.5).astype(np.uint8))


def test_predict_slab_file_refuses_or_resamples_a_pixel_size_mismatch(tmp_path):
    model = _small_model(mean=0.0, var=1.0)
    path = tmp_path / "m.keras"
    save_model(model, path, _meta(pixel_size_nm=0.4, normalization={"mean": 0.0, "std": 1.0}))
    vol = tmp_path / "volume.mrc"
    io.write_volume(vol, np.random.default_rng(0).normal(size=(3, 20, 28)).astype(np.float32), 0.8)  # 0.8 nm voxels
    kw = dict(slab=0, n_slabs=1, classes=CLASSES, patch_size=[32, 32], batch_size=2, mode="whole")
    with pytest.raises(InputError, match="trained at 0.4 nm/px but volume .* has 0.8 nm/px"):
        predict_slab_file(str(vol), str(path), str(tmp_path / "a.tif"), resample="never", **kw)
    assert not (tmp_path / "a.tif").exists()
    predict_slab_file(str(vol), str(path), str(tmp_path / "b.tif"), resample="auto", **kw)
    labels, vs = io.read_labels(tmp_path / "b.tif", 3)
    assert labels.shape == (3, 20, 28) and vs == pytest.approx(0.8)
    with pytest.raises(InputError, match="trained for classes"):
        predict_slab_file(str(vol), str(path), str(tmp_path / "c.tif"), **{**kw, "classes": ["bg", "support", "pt"]})


# --------------------------------------------------------------------------- fine-tuning
def _patches(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    im = rng.normal(0, 0.2, (n, size, size)).astype(np.float32)
    lab = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        y, x = rng.integers(4, size - 12, 2)
        lab[k, y : y + 8, x : x + 8] = 1
        lab[k, y + 3 : y + 5, x + 3 : x + 5] = 2
    im += lab.astype(np.float32)
    return im, lab


def _settings(**kw):
    base = dict(depth=2, base_filters=2, epochs=1, batch_size=2, learning_rate=1e-2, seed=1)
    base.update(kw)
    return TrainSettings(**base)


def test_initial_model_carries_weights_and_normalisation_and_refuses_another_architecture():
    src = _small_model(seed=5, mean=3.0, var=9.0)
    model, mean, var = initial_model(src, 2, 2, 3)
    assert (mean, var) == (3.0, 9.0)
    for a, b in zip(model.get_weights(), src.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="do not fit the configured U-Net .depth 3"):
        initial_model(src, 3, 2, 3)
    with pytest.raises(InputError, match="network differs: depth 2 .configured 3."):
        check_architecture(_meta(), depth=3, base_filters=2, classes=CLASSES, where="m.keras")


def test_frozen_encoder_keeps_its_weights_during_the_frozen_epochs():
    ti, tl = _patches()
    vi, vl = _patches(2, seed=1)
    src = _small_model(seed=7, mean=0.3, var=0.5)
    enc = {lay.name: [w.copy() for w in lay.get_weights()] for lay in encoder_layers(src) if lay.get_weights()}
    dec = {lay.name: [w.copy() for w in lay.get_weights()] for lay in src.layers if lay.name.startswith("up") and lay.get_weights()}
    res = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=1, freeze_encoder_epochs=1, init_model="src"), init=src)
    assert enc and dec
    for lay in encoder_layers(res.model):
        for a, b in zip(lay.get_weights(), enc.get(lay.name, [])):
            np.testing.assert_array_equal(a, b)
    changed = [not np.array_equal(a, b) for lay in res.model.layers if lay.name in dec for a, b in zip(lay.get_weights(), dec[lay.name])]
    assert any(changed)  # the decoder learnt
    assert res.normalization["mean"] == pytest.approx(0.3)  # the init model's normalisation is kept
    # one frozen epoch, then one with every layer trainable: the encoder moves in the second
    res2 = train_unet(ti, tl, vi, vl, CLASSES, _settings(epochs=2, freeze_encoder_epochs=1, init_model="src"), init=src)
    moved = [not np.array_equal(a, b) for lay in encoder_layers(res2.model) for a, b in zip(lay.get_weights(), enc.get(lay.name, []))]
    assert any(moved) and len(res2.history) == 2
    assert all(lay.trainable for lay in res2.model.layers)


# --------------------------------------------------------------------------- configuration
def _config(**over):
    cfg = {
        "classes": CLASSES,
        "synthetic": {"pixel_size_nm": 0.4},
        "train": {"samples": ["demo"], "seed": 42, "depth": 2, "patch_size": [32, 32], "base_filters": 2, "focal_gamma": 1.0, "class_weights": "auto",
                  "augment": {"rotation_deg": 15.0, "flip": True, "zoom": 0.1, "shear_deg": 5.0}, "init_model": "",
                  "freeze_encoder_epochs": 0},
        "models": {"focal": {}, "ce": {"focal_gamma": 0, "class_weights": [1, 1, 1], "augment": {"zoom": 0.0}}},
        "predict": {"model": "", "resample": "auto", "pixel_size_tolerance": 0.03},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and k != "models" else v
    return cfg


def test_model_settings_merge_train_and_overrides():
    cfg = _config()
    ce = model_settings(cfg, "ce")
    assert ce["focal_gamma"] == 0 and ce["class_weights"] == [1, 1, 1] and ce["seed"] == 42
    assert ce["augment"] == {"rotation_deg": 15.0, "flip": True, "zoom": 0.0, "shear_deg": 5.0}
    assert model_settings(cfg, "focal")["focal_gamma"] == 1.0
    assert segment_model(cfg) == ("focal", "results/models/focal/unet.keras")
    assert segment_model(_config(predict={"model": "ce"})) == ("ce", "results/models/ce/unet.keras")
    assert segment_model(_config(predict={"model": "ext/m.keras"})) == (None, "ext/m.keras")
    assert segment_model(_config(train={"samples": []})) == (None, None)


@pytest.mark.parametrize("over,expect", [
    ({"predict": {"model": "nosuch"}}, "'nosuch' is neither a name in models"),
    ({"predict": {"model": "missing/m.keras"}}, "model file not found"),
    ({"models": {"a": {"init_model": "models/b"}, "b": {"init_model": "models/a"}}}, "would start from itself (a -> b -> a)"),
    ({"models": {"a": {"init_model": "models/zz"}}}, "'models/zz' names no model of this run"),
    ({"predict": {"model": "focal"}, "train": {"samples": []}}, "train.samples and annotations.table are empty"),
    ({"models": {"big": {"patch_size": [48, 48], "depth": 6}}}, "models.big`: patch_size [48, 48] is not divisible by 2^(depth−1) = 32"),
    ({"models": {"cw": {"class_weights": [1, 1]}}}, "2 weights for 3 classes"),
])
def test_check_models_refuses_bad_references(over, expect):
    with pytest.raises(InputError) as e:
        check_models(_config(**over))
    assert expect in str(e.value) and "Fix:" in str(e.value)


# --------------------------------------------------------------------------- the snakemake CLI
@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> Path:
    root = make_workdir(tmp_path_factory.mktemp("models"))
    model = _small_model(depth=6, filters=2)
    save_model(model, root / "ext_ok.keras", _meta(depth=6, patch_size=[64, 64]))
    save_model(model, root / "ext_classes.keras", _meta(depth=6, classes=["background", "pores", "pt"]))
    save_model(model, root / "ext_px.keras", _meta(depth=6, pixel_size_nm=0.8))
    return root


def _cli(root: Path, *config: str, dry: bool = False):
    args = (["-n"] if dry else []) + ["--cores", "1", "--configfile", TINY]
    if config:
        args += ["--config", *config]
    return snakemake(root, *args, timeout=300)


def test_two_named_models_plan_two_trainings_and_one_comparison(wd):
    jobs = planned_jobs(_cli(wd, dry=True).stdout)  # tiny.yaml: models focal and ce
    assert jobs["train_unet"] == 2 and jobs["compare_models"] == 1 and jobs["predict_slab"] == 2, jobs


def test_external_model_segments_without_training(wd):
    proc = _cli(wd, "predict={'model': 'ext_ok.keras'}", dry=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert "predict_slab" in jobs and "compare_models" in jobs  # the run's models still train and are compared
    proc = _cli(wd, "predict={'model': 'ext_ok.keras'}", "train={'samples': []}", dry=True)
    jobs = planned_jobs(proc.stdout)
    assert "train_unet" not in jobs and jobs["predict_slab"] == 2 and "quantify" in jobs, jobs


def test_fine_tuning_from_a_model_of_the_run_waits_for_it(wd):
    proc = _cli(wd, "models={'ft': {'init_model': 'models/focal', 'freeze_encoder_epochs': 1}}", dry=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_jobs(proc.stdout)["train_unet"] == 3  # focal, ce (tiny.yaml) and ft
    ft = proc.stdout[proc.stdout.index("output: results/models/ft/unet.keras") - 400:]
    assert "results/models/focal/unet.keras" in ft.split("output:")[0]  # focal's model is an input of ft's job
    proc = _cli(wd, "models={'ft': {'init_model': 'ext_ok.keras', 'depth': 5}}", dry=True)
    assert proc.returncode != 0 and "network differs: depth 6 (configured 5)" in proc.stderr


@pytest.mark.parametrize("config,expect", [
    (["predict={'model': 'ext_classes.keras'}"], ("predict.model", "ext_classes.keras", "trained for classes ['background', 'pores', 'pt']")),
    (["predict={'model': 'ext_px.keras', 'resample': 'never'}"], ("predict.model", "ext_px.keras", "0.8 nm/px", "0.4 nm/px", "predict.resample: auto")),
    (["predict={'model': 'nowhere/m.keras'}"], ("predict.model", "nowhere/m.keras", "model file not found")),
    (["predict={'model': 'cee'}"], ("predict.model", "'cee' is neither a name in models")),
    (["models={'bad name': {}}"], ("models", "does not match")),
    (["models={'ce': {'samples': []}}"], ("models.ce", "'samples' was unexpected")),
])
def test_bad_model_configuration_stops_before_any_job_with_one_line(wd, config, expect):
    case = wd / f"case_{abs(hash(tuple(config)))}"
    shutil.rmtree(case, ignore_errors=True)
    make_workdir(case)
    for f in wd.glob("*.keras"):
        shutil.copy(f, case / f.name)
    proc = _cli(case, *config)
    assert proc.returncode != 0
    assert "Building DAG of jobs" not in proc.stdout + proc.stderr
    assert not (case / "results").exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tomoflow: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert ". Fix: " in lines[0]
    for part in expect:
        assert part in lines[0], (part, lines[0])


def test_models_given_on_the_command_line_are_typed():
    from tomoflow.config_schema import coerce_value
    from tomoflow.io.probe import read_schema
    from workflow_utils import REPO

    schema = read_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    got = coerce_value({"models": {"ce": {"focal_gamma": "0", "class_weights": "[1, 1, 1]", "augment": {"flip": "false"}}}}, schema)
    assert got["models"]["ce"] == {"focal_gamma": 0, "class_weights": [1, 1, 1], "augment": {"flip": False}}


def test_pixel_size_mismatch_with_resample_auto_passes_start_up(wd):
    proc = _cli(wd, "predict={'model': 'ext_px.keras'}", dry=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


# --------------------------------------------------------------------------- comparison
def test_compare_models_scores_the_test_patches_of_each_model(tmp_path):
    import pandas as pd

    from tomoflow.evaluation import ModelFiles, compare_models, comparison_figure
    from tomoflow.metrics import DEFAULT_PERCENTILES
    from tomoflow.predict import predict_images
    from tomoflow.unet import dice_per_class

    rng = np.random.default_rng(4)
    im, lab = _patches(n=2, size=64, seed=3)
    io.write_volume(tmp_path / "images.tif", im, 0.4)
    io.write_labels(tmp_path / "labels.tif", lab, 0.4)
    rec = lambda i, y, x: {"sample": "demo", "index": i, "y0": y, "x0": x, "height": 32, "width": 32}  # noqa: E731
    split = {"seed": 1, "patch_size": [32, 32], "train": [rec(0, 0, 0)], "validation": [rec(0, 32, 32)],
             "test": [rec(1, 0, 0), rec(1, 0, 32), rec(1, 32, 0)]}
    files = []
    for k, name in enumerate(["focal", "ce"]):
        d = tmp_path / name
        d.mkdir()
        model = _small_model(seed=k, mean=0.3, var=0.5)
        save_model(model, d / "unet.keras", _meta(model=name))
        io.write_json(d / "split.json", split)
        hist = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.8, 0.7], "val_loss": [0.9, 0.5 + k, 0.6],
                             **{f"val_dsc_{c}": rng.uniform(size=3) for c in CLASSES}})
        io.write_tsv(d / "history.tsv", hist)
        io.write_json(d / "class_weights.json", {"best_epoch": 2, "monitor": "val_loss"})
        files.append(ModelFiles(name, d / "unet.keras", d / "history.tsv", d / "class_weights.json", d / "split.json"))
    table = compare_models(files, ["demo"], [tmp_path / "images.tif"], [tmp_path / "labels.tif"], CLASSES, batch_size=2)
    assert list(table["model"]) == ["focal", "ce"] and list(table["evaluated_on"]) == ["test", "test"]
    assert list(table["n_patches"]) == [3, 3] and list(table["best_epoch"]) == [2, 2]
    assert table["val_loss_best"].tolist() == [0.5, 1.5] and table["val_loss_min"].tolist() == [0.5, 0.6]
    for k, f in enumerate(files):
        model = keras.saving.load_model(f.model, compile=False)
        pred = np.argmax(predict_images(model, im[1:2], patch_size=(32, 32), batch_size=2)[0], axis=-1)
        cuts = [(0, 0), (0, 32), (32, 0)]
        d = np.array([dice_per_class(lab[1, y:y + 32, x:x + 32], pred[y:y + 32, x:x + 32], 3) for y, x in cuts])
        present = np.array([[((lab[1, y:y + 32, x:x + 32] == c) | (pred[y:y + 32, x:x + 32] == c)).any() for c in range(3)] for y, x in cuts])
        for c, name in enumerate(CLASSES):
            used = d[present[:, c], c]
            assert table[f"n_nan_{name}"][k] == int((~present[:, c]).sum())
            if used.size:
                assert table[f"dsc_mean_{name}"][k] == pytest.approx(used.mean(), abs=1e-9)
            # the RHD curve over the evaluation percentiles: one column each, non-decreasing, its 90th the RHD90 column
            curve = [table[f"rhd_p{p:g}_nm_{name}"][k] for p in DEFAULT_PERCENTILES]
            finite = [v for v in curve if np.isfinite(v)]
            assert finite == sorted(finite)
            if np.isfinite(table[f"rhd_p90_nm_{name}"][k]):
                assert table[f"rhd90_nm_{name}"][k].startswith(f"{table[f'rhd_p90_nm_{name}'][k]:.2f}")
    del split["test"]  # no test set: the validation patches, said so in the table
    for f in files:
        io.write_json(f.split, split)
    table = compare_models(files, ["demo"], [tmp_path / "images.tif"], [tmp_path / "labels.tif"], CLASSES, batch_size=2)
    assert set(table["evaluated_on"]) == {"validation (no test set)"} and list(table["n_patches"]) == [1, 1]
    fig = comparison_figure(table, {f.name: io.read_tsv(f.history) for f in files}, CLASSES)
    assert len(fig.axes) == 3  # validation loss, DSC per class, RHD curves
