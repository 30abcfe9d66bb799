"""tomoflow.annotations: slice choice, validation, patch tiling and the seeded by-slice split."""

import numpy as np
import pytest

from tomoflow.annotations import (
    choose_slices,
    extract_slices,
    make_split,
    pair_files,
    patch_origins,
    split_records,
    stack_pairs,
    validate_annotations,
)
from tomoflow.errors import InputError

CLASSES = ["background", "support", "particles"]


def test_choose_slices_spread_and_seeded():
    idx = choose_slices(64, 30, 11)
    assert len(idx) == 30 and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 64
    edges = np.linspace(0, 64, 31)
    assert np.all(idx >= np.floor(edges[:-1])) and np.all(idx < np.ceil(edges[1:]))  # one per bin
    np.testing.assert_array_equal(idx, choose_slices(64, 30, 11))
    assert not np.array_equal(idx, choose_slices(64, 30, 12))
    np.testing.assert_array_equal(choose_slices(5, 30, 0), np.arange(5))


def test_extract_slices_axis0():
    vol = np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5)
    lab = (vol % 3).astype(np.uint8)
    im, lb = extract_slices(vol, lab, [1, 3])
    np.testing.assert_array_equal(im, vol[[1, 3]])
    assert lb.dtype == np.uint8 and im.dtype == np.float32
    with pytest.raises(InputError, match="differ"):
        extract_slices(vol, lab[:, :2], [0])


def test_patch_origins():
    assert patch_origins((512, 1024), (512, 512)) == [(0, 0), (0, 512)]  # the paper: 1024x512 -> two
    assert patch_origins((128, 256), (128, 128)) == [(0, 0), (0, 128)]
    assert patch_origins((130, 256), (128, 128)) == [(0, 0), (0, 128), (2, 0), (2, 128)]  # edge-aligned
    with pytest.raises(InputError, match="larger"):
        patch_origins((100, 256), (128, 128))


def test_split_by_slice_seeded():
    split = make_split({"demo": (30, 128, 256)}, (128, 128), 0.25, 42)
    assert split["seed"] == 42 and split["patch_size"] == [128, 128]
    assert len(split["train"]) == 44 and len(split["validation"]) == 16  # 22/8 slices x 2 patches
    tr = {r["index"] for r in split["train"]}
    va = {r["index"] for r in split["validation"]}
    assert not tr & va and tr | va == set(range(30))
    assert set(split["train"][0]) == {"sample", "index", "y0", "x0", "height", "width"}
    assert make_split({"demo": (30, 128, 256)}, (128, 128), 0.25, 42) == split
    assert make_split({"demo": (30, 128, 256)}, (128, 128), 0.25, 43)["validation"] != split["validation"]
    two = make_split({"a": (3, 64, 64), "b": (1, 64, 64)}, (64, 64), 0.25, 0)
    assert len(two["validation"]) == 1 and len(two["train"]) == 3
    with pytest.raises(InputError):
        make_split({"a": (1, 64, 64)}, (64, 64), 0.25, 0)
    with pytest.raises(InputError, match="val_fraction"):
        make_split({"a": (4, 64, 64)}, (64, 64), 1.0, 0)


def test_split_records_cut_the_named_pixels():
    stack = np.arange(2 * 6 * 8).reshape(2, 6, 8)
    recs = [{"sample": "s", "index": 1, "y0": 2, "x0": 4, "height": 4, "width": 4}]
    np.testing.assert_array_equal(split_records({"s": stack}, recs)[0], stack[1, 2:6, 4:8])


def test_validate_annotations():
    im = np.zeros((2, 4, 4), np.float32)
    lab = np.zeros((2, 4, 4), np.uint8)
    lab[0, :2] = 1
    lab[1, 0, 0] = 2
    np.testing.assert_array_equal(validate_annotations(im, lab, CLASSES), [23, 8, 1])
    with pytest.raises(InputError, match="differ"):
        validate_annotations(im, lab[:1], CLASSES)
    bad = lab.copy()
    bad[0, 3, 3] = 7
    with pytest.raises(InputError, match=r"\[7\] outside"):
        validate_annotations(im, bad, CLASSES)
    with pytest.raises(InputError, match="not integers"):
        validate_annotations(im, lab + np.float32(0.5), CLASSES)
    with pytest.warns(UserWarning, match="particles"):
        validate_annotations(im, np.minimum(lab, 1), CLASSES)
    im_nan = im.copy()
    im_nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        validate_annotations(im_nan, lab, CLASSES)


def test_pairing_and_stacking():
    pairs = pair_files(["d/img_02.tif", "d/img_01.tif"], ["l/lab_01.tif", "l/lab_02.tif"], "d")
    assert pairs == [("d/img_01.tif", "l/lab_01.tif"), ("d/img_02.tif", "l/lab_02.tif")]
    with pytest.raises(InputError, match="2 image files but 1 label"):
        pair_files(["a", "b"], ["c"], "d")
    a, b = np.ones((4, 5)), np.zeros((4, 5), np.uint8)
    im, lab = stack_pairs([a, a[None]], [b, b], ["x", "y"])
    assert im.shape == (2, 4, 5) and im.dtype == np.float32
    with pytest.raises(InputError, match="differ"):
        stack_pairs([a], [b[:3]], ["x"])


class _Named(list):
    """Minimal stand-in for Snakemake's Namedlist (list + attributes)."""

    def __init__(self, **kw):
        super().__init__(kw.values())
        self.__dict__.update(kw)


def _run_script(repo_root, name, **smk):
    import runpy
    from types import SimpleNamespace

    obj = SimpleNamespace(rule=name, threads=1, **smk)
    runpy.run_path(str(repo_root / "workflow" / "scripts" / f"{name}.py"), init_globals={"snakemake": obj})


def test_extract_annotations_rule_volume_and_folders(tmp_path, repo_root):
    tifffile = pytest.importorskip("tifffile")
    from tomoflow.io import read_json, read_volume, write_volume

    rng = np.random.default_rng(0)
    vol = rng.random((20, 16, 24), dtype=np.float32)
    lab = rng.integers(0, 3, (20, 16, 24)).astype(np.uint8)
    write_volume(tmp_path / "volume.mrc", vol, 0.4)
    write_volume(tmp_path / "labels.tif", lab, 0.4)
    out = tmp_path / "ann"
    outputs = _Named(images=str(out / "images.tif"), labels=str(out / "labels.tif"), slices=str(out / "slices.json"))
    params = dict(n_slices=6, seed=3, classes=CLASSES, pixel_size_nm=None)
    _run_script(repo_root, "extract_annotations",
                input=_Named(volume=str(tmp_path / "volume.mrc"), labels=str(tmp_path / "labels.tif")),
                output=outputs, params=_Named(mode="volume", **params), log=[str(tmp_path / "a.log")],
                wildcards=_Named(sample="demo"))
    info = read_json(outputs.slices)
    np.testing.assert_array_equal(info["indices"], choose_slices(20, 6, 3))
    im, vs = read_volume(outputs.images)
    np.testing.assert_array_equal(im, vol[info["indices"]])
    assert vs == pytest.approx(0.4)
    np.testing.assert_array_equal(read_volume(outputs.labels)[0], lab[info["indices"]])

    # user annotations: two folders of paired single-slice TIFFs (napari/Fiji export), matched by name
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k in (2, 0, 1):
        tifffile.imwrite(tmp_path / "img" / f"slice_{k:02d}.tif", vol[k])
        tifffile.imwrite(tmp_path / "lab" / f"slice_{k:02d}_labels.tif", lab[k])
    out2 = tmp_path / "ann2"
    outputs2 = _Named(images=str(out2 / "images.tif"), labels=str(out2 / "labels.tif"),
                      slices=str(out2 / "slices.json"))
    _run_script(repo_root, "extract_annotations",
                input=_Named(images=str(tmp_path / "img"), labels=str(tmp_path / "lab")), output=outputs2,
                params=_Named(mode="user", **{**params, "pixel_size_nm": 0.5}), log=[str(tmp_path / "b.log")],
                wildcards=_Named(sample="user"))
    np.testing.assert_array_equal(read_volume(outputs2.images)[0], vol[:3])
    np.testing.assert_array_equal(read_volume(outputs2.labels)[0], lab[:3])

    # a label value outside the classes: one-line error in the log, non-zero exit, no outputs left
    bad = lab[3].copy()
    bad[0, 0] = 5
    tifffile.imwrite(tmp_path / "lab" / "slice_03_labels.tif", bad)
    tifffile.imwrite(tmp_path / "img" / "slice_03.tif", vol[3])
    out3 = tmp_path / "ann3"
    with pytest.raises(SystemExit):
        _run_script(repo_root, "extract_annotations",
                    input=_Named(images=str(tmp_path / "img"), labels=str(tmp_path / "lab")),
                    output=_Named(images=str(out3 / "images.tif"), labels=str(out3 / "labels.tif"),
                                  slices=str(out3 / "slices.json")),
                    params=_Named(mode="user", **{**params, "pixel_size_nm": 0.5}),
                    log=[str(tmp_path / "c.log")], wildcards=_Named(sample="user"))
    assert "label values [5] outside the classes" in (tmp_path / "c.log").read_text()
    assert not (out3 / "images.tif").exists()
