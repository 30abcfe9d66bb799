"""tomoflow.annotations and tomoflow.io.annotations: slice choice, validation, pairing by name, RGB checks,
true-label registration, patch tiling and the seeded by-slice split."""

import re

import numpy as np
import pytest

from tomoflow.annotations import (
    AnnotationSource,
    check_label_registration,
    choose_slices,
    extract_slices,
    make_split,
    measure_label_offset,
    pair_files,
    pairing_keys,
    patch_origins,
    prepare_annotations,
    split_records,
    stack_pairs,
    validate_annotations,
)
from tomoflow.errors import InputError
from tomoflow.io import preflight_annotation_pairs, read_annotation_pairs

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


def test_pairing_by_slice_number_not_sorted_name():
    # the case: sorted names would pair img_10 with lab_02 (11 of 12 wrong)
    imgs = [f"d/img_{i}.tif" for i in range(1, 13)]
    labs = [f"l/lab_{i:02d}.tif" for i in range(1, 13)]
    assert sorted(imgs)[1] == "d/img_10.tif" and sorted(labs)[1] == "l/lab_02.tif"
    pairs = pair_files(imgs[::-1], labs, "d / l")
    assert pairs == [(f"d/img_{i}.tif", f"l/lab_{i:02d}.tif") for i in range(1, 13)]
    # a common word kept on both sides, role words in the suffix, .tiff/.TIF suffixes
    assert pair_files(["a/slice_12_image.tif", "a/slice_3_image.TIF"], ["b/slice_03_label.tiff", "b/slice_12_label.tif"],
                      "a / b") == [("a/slice_3_image.TIF", "b/slice_03_label.tiff"),
                                   ("a/slice_12_image.tif", "b/slice_12_label.tif")]
    # distinguishing words stay in the key: two samples in one folder
    assert pair_files(["s/A_1.tif", "s/B_1.tif"], ["t/B_1_mask.tif", "t/A_1_mask.tif"], "s / t") == [
        ("s/A_1.tif", "t/A_1_mask.tif"), ("s/B_1.tif", "t/B_1_mask.tif")]
    # one file per folder: its numbers (none here) are the key
    assert pair_files(["x/needle.tif"], ["y/needle_Simple Segmentation.tif"], "x / y") == [
        ("x/needle.tif", "y/needle_Simple Segmentation.tif")]
    assert pairing_keys(["t0001_z02.tif", "t0001_z03.tif"]) == [(1, 2), (1, 3)]


def test_pairing_errors_list_the_unpaired_and_ambiguous_files():
    imgs = [f"d/img_{i}.tif" for i in range(1, 14)]
    labs = [f"l/lab_{i:02d}.tif" for i in range(1, 13)] + ["l/lab_99.tif"]
    with pytest.raises(InputError) as err:
        pair_files(imgs, labs, "d / l")
    msg = str(err.value)
    assert msg.startswith("d / l: 1 of 13 image file(s) and 1 of 13 label file(s) have no partner")
    assert "images: img_13.tif; labels: lab_99.tif" in msg and "Fix:" in msg and "\n" not in msg
    many = [f"l/lab_{i}.tif" for i in range(20, 30)]
    with pytest.raises(InputError, match=r"lab_20.tif, lab_21.tif, lab_22.tif \(\+7 more\)"):
        pair_files([f"d/img_{i}.tif" for i in range(10)], many, "d / l")
    with pytest.raises(InputError, match=r"2 image files share a pairing key, e.g. img_01.tif, img_1.tif"):
        pair_files(["d/img_1.tif", "d/img_01.tif"], ["l/a.tif", "l/b.tif"], "d / l")
    with pytest.raises(InputError, match="no label TIFFs"):
        pair_files(["a"], [], "d")


def test_stack_pairs():
    a, b = np.ones((4, 5)), np.zeros((4, 5), np.uint8)
    im, lab = stack_pairs([a, a[None]], [b, b], ["x", "y"])
    assert im.shape == (2, 4, 5) and im.dtype == np.float32
    np.testing.assert_array_equal(lab, np.zeros((2, 4, 5)))
    with pytest.raises(InputError, match="differ"):
        stack_pairs([a], [b[:3]], ["x"])


# --------------------------------------------------------------------------- files (tomoflow.io.annotations)
def _write(path, arr, **kw):
    import tifffile

    tifffile.imwrite(path, arr, **kw)
    return path


def test_read_annotation_pairs_folders_record_every_pair(tmp_path):
    pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    vol = rng.random((12, 16, 24), dtype=np.float32)
    lab = rng.integers(0, 3, (12, 16, 24)).astype(np.uint8)
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k in range(12):  # img_1 ... img_12 against lab_01 ... lab_12 (sorted names would mis-pair them)
        _write(tmp_path / "img" / f"img_{k + 1}.tif", vol[k])
        _write(tmp_path / "lab" / f"lab_{k + 1:02d}.tif", lab[k])
    (tmp_path / "img" / "._img_1.tif").write_bytes(b"")  # macOS resource fork: ignored
    (tmp_path / "lab" / "notes.txt").write_text("ignored")
    src = read_annotation_pairs(tmp_path / "img", tmp_path / "lab", pixel_size_nm=0.5)
    np.testing.assert_array_equal(src.images, vol)
    np.testing.assert_array_equal(src.labels, lab)
    assert src.voxel_size_nm == 0.5 and src.mode == "user" and len(src.pairs) == 12
    assert src.pairs[9] == {"image": str(tmp_path / "img" / "img_10.tif"), "label": str(tmp_path / "lab" / "lab_10.tif"),
                            "page": 0, "shape": [16, 24]}
    assert preflight_annotation_pairs(tmp_path / "img", tmp_path / "lab") == src.pairs  # headers only, same pairs
    # slices.json (the record) names every pair
    out = prepare_annotations(src, classes=CLASSES, sample="user")
    assert out.info["source"] == "user" and [p["label"] for p in out.info["pairs"]][:2] == [
        str(tmp_path / "lab" / "lab_01.tif"), str(tmp_path / "lab" / "lab_02.tif")]
    assert out.info["shape"] == [12, 16, 24] and sum(out.info["class_pixels"].values()) == lab.size
    # a label value outside the classes: one line naming both folders
    bad = lab[3].copy()
    bad[0, 0] = 5
    _write(tmp_path / "lab" / "lab_04.tif", bad)
    with pytest.raises(InputError, match=r"img / .*lab: label values \[5\] outside the classes"):
        prepare_annotations(read_annotation_pairs(tmp_path / "img", tmp_path / "lab", pixel_size_nm=0.5),
                            classes=CLASSES, sample="user")
    # an extra label file without an image: one line naming it
    _write(tmp_path / "lab" / "lab_13.tif", lab[0])
    for check in (preflight_annotation_pairs, read_annotation_pairs):
        with pytest.raises(InputError, match=r"0 of 12 image file\(s\) and 1 of 13 label file\(s\).*lab_13.tif"):
            check(tmp_path / "img", tmp_path / "lab")


def test_rgb_tiffs_are_not_read_as_thin_slices(tmp_path):
    pytest.importorskip("tifffile")
    rng = np.random.default_rng(1)
    grey = (rng.random((64, 128)) * 255).astype(np.uint8)
    labels = rng.integers(0, 3, (64, 128)).astype(np.uint8)
    colour = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    # RGB labels: refused, whatever the image
    rgb_lab = _write(tmp_path / "lab_rgb.tif", np.stack([labels * 100] * 3, axis=-1), photometric="rgb")
    img = _write(tmp_path / "img.tif", grey)
    for check in (preflight_annotation_pairs, read_annotation_pairs):
        with pytest.raises(InputError, match=r"lab_rgb.tif: label image is RGB colour \(3 samples per pixel"):
            check(img, rgb_lab)
    # a colour image: refused (not the measured intensities), never 64 slices of 128x3 px
    lab = _write(tmp_path / "lab.tif", labels)
    rgb_img = _write(tmp_path / "img_rgb.tif", colour, photometric="rgb")
    with pytest.raises(InputError, match="image is RGB colour with different channels"):
        read_annotation_pairs(rgb_img, lab, pixel_size_nm=1.0)
    # a greyscale image saved as RGB (equal channels): read as that one channel
    grey_rgb = _write(tmp_path / "img_grey_rgb.tif", np.stack([grey] * 3, axis=-1), photometric="rgb")
    src = read_annotation_pairs(grey_rgb, lab, pixel_size_nm=1.0)
    assert src.images.shape == (1, 64, 128)
    np.testing.assert_array_equal(src.images[0], grey)
    assert src.pairs == [{"image": str(grey_rgb), "label": str(lab), "page": 0, "shape": [64, 128]}]
    # the same refusals in folder mode
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "img_1.tif", grey)
    _write(tmp_path / "b" / "lab_1.tif", np.stack([labels] * 3, axis=-1), photometric="rgb")
    for check in (preflight_annotation_pairs, read_annotation_pairs):
        with pytest.raises(InputError, match="label image is RGB colour"):
            check(tmp_path / "a", tmp_path / "b")


def test_read_annotation_stacks_and_shape_errors(tmp_path):
    pytest.importorskip("tifffile")
    rng = np.random.default_rng(2)
    im = rng.random((3, 8, 9)).astype(np.float32)
    lab = rng.integers(0, 3, (3, 8, 9)).astype(np.uint8)
    grey = {"photometric": "minisblack"}  # tifffile would store a 3-slice stack as planar RGB by default
    a, b = _write(tmp_path / "im.tif", im, **grey), _write(tmp_path / "lab.tif", lab, **grey)
    src = read_annotation_pairs(a, b, pixel_size_nm=0.3)
    np.testing.assert_array_equal(src.images, im)
    assert [p["page"] for p in src.pairs] == [0, 1, 2]
    c = _write(tmp_path / "lab2.tif", lab[:2], **grey)
    assert preflight_annotation_pairs(a, b) == src.pairs
    for check in (preflight_annotation_pairs, read_annotation_pairs):
        with pytest.raises(InputError, match=r"image stack shape \(3, 8, 9\) and label stack shape \(2, 8, 9\) differ"):
            check(a, c)
    (tmp_path / "f").mkdir()
    with pytest.raises(InputError, match="one of annotation_images/annotation_labels is a folder"):
        read_annotation_pairs(a, tmp_path / "f", pixel_size_nm=0.3)
    with pytest.raises(InputError, match="folder holds no .tif"):
        read_annotation_pairs(tmp_path / "f", tmp_path / "f", pixel_size_nm=0.3)
    # pages of different shapes, a truncated file: named, never "2-D"
    import tifffile

    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(im[0], photometric="minisblack")
        tw.write(im[1, :6], photometric="minisblack")
    with pytest.raises(InputError, match=r"mixed.tif: TIFF pages of different shapes"):
        read_annotation_pairs(tmp_path / "mixed.tif", b, pixel_size_nm=0.3)
    (tmp_path / "cut.tif").write_bytes(a.read_bytes()[:100])
    with pytest.raises(InputError, match=r"cut.tif: not a readable TIFF"):
        preflight_annotation_pairs(tmp_path / "cut.tif", b)
    # a stack in a folder of single slices
    (tmp_path / "g").mkdir()
    (tmp_path / "h").mkdir()
    _write(tmp_path / "g" / "img_1.tif", im, **grey)
    _write(tmp_path / "h" / "lab_1.tif", lab, **grey)
    for check in (preflight_annotation_pairs, read_annotation_pairs):
        with pytest.raises(InputError, match="img_1.tif: holds 3 slices; a folder must hold one slice per file"):
            check(tmp_path / "g", tmp_path / "h")


# --------------------------------------------------------------------------- true labels vs the volume
def _phantom(shape=(32, 48, 64), seed=0):
    """Independent test phantom: a support slab of blobs with particles, its labels, and a blurred noisy
    'reconstruction' of it (with streaks along z, as a missing wedge gives)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    support = ndimage.gaussian_filter(rng.random(shape), 3) > 0.5
    support[:, : shape[1] // 4] = False
    support[:, 3 * shape[1] // 4 :] = False
    lab = support.astype(np.uint8)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for _ in range(40):
        c = rng.integers([2, shape[1] // 4, 2], [shape[0] - 2, 3 * shape[1] // 4, shape[2] - 2])
        lab[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= rng.uniform(1, 3) ** 2] = 2
    density = np.array([0.0, 1.0, 5.0])[lab]
    vol = ndimage.gaussian_filter(density, 1.0) + rng.normal(0, 0.5, shape)
    vol += 0.5 * ndimage.gaussian_filter(rng.normal(0, 1, shape), (0, 3, 0))
    return vol.astype(np.float32), lab


@pytest.mark.parametrize("offset", [(0, -9, 10), (3, 2, -1), (0, 2, 0)])
def test_offset_true_labels_fail_with_the_offset(offset):
    from scipy import ndimage

    vol, lab = _phantom()
    moved = ndimage.shift(lab, offset, order=0, mode="nearest")  # labels(p) = truth(p - offset)
    np.testing.assert_allclose(measure_label_offset(vol, moved), offset, atol=0.3)
    with pytest.raises(InputError) as err:
        check_label_registration(vol, moved, 0.4, where="labels.tif")
    num = r"([+-]\d+\.\d+)"
    m = re.search(rf"\(dy, dz, dx\) = \({num}, {num}, {num}\) voxels = \({num}, {num}, {num}\) nm", str(err.value))
    assert m, str(err.value)
    np.testing.assert_allclose([float(v) for v in m.groups()[:3]], offset, atol=0.3)
    np.testing.assert_allclose([float(v) for v in m.groups()[3:]], np.multiply(offset, 0.4), atol=0.3 * 0.4)
    assert str(err.value).startswith("labels.tif: true labels are displaced") and "register_labels" in str(err.value)
    # registered when asked: the shifted labels equal the truth away from the uncovered border
    reg, rec = check_label_registration(vol, moved, 0.4, register=True)
    assert rec["registered"] and rec["applied_shift_vox"] == [-o for o in offset]
    inner = tuple(slice(abs(o), n - abs(o)) for o, n in zip(offset, lab.shape))
    np.testing.assert_array_equal(reg[inner], lab[inner])


def test_label_offset_on_a_missing_wedge_reconstruction():
    """Labels against a +-60 degree SART reconstruction (scikit-image radon/iradon_sart, an independent
    projector): elongation along the beam does not bias the measured offset."""
    from scipy import ndimage
    from skimage.transform import iradon_sart, radon

    _, lab = _phantom(shape=(12, 64, 64), seed=4)
    theta = np.arange(-60.0, 61.0, 3.0)
    rec = []
    for sl in np.array([0.0, 1.0, 5.0])[lab]:
        r = iradon_sart(radon(sl, theta, circle=False), theta)
        o = (r.shape[0] - 64) // 2
        rec.append(r[o : o + 64, o : o + 64])
    vol = np.stack(rec)
    for offset in [(0, 0, 0), (0, -9, 10), (-3, 5, 13)]:
        moved = ndimage.shift(lab, offset, order=0, mode="nearest")
        np.testing.assert_allclose(measure_label_offset(vol, moved), offset, atol=0.3)


def test_aligned_true_labels_pass_and_shapes_are_checked():
    vol, lab = _phantom(seed=1)
    out, rec = check_label_registration(vol, lab, 0.4)
    assert out is lab and not rec["registered"] and max(abs(v) for v in rec["measured_offset_vox"]) <= 0.5
    with pytest.raises(InputError, match=r"true-label shape \(32, 48, 60\) differs from the volume shape \(32, 48, 64\)"):
        check_label_registration(vol, lab[:, :, :60], 0.4)


def test_prepare_annotations_volume_mode_record():
    vol, lab = _phantom(seed=2)
    src = AnnotationSource(mode="volume", images=vol, labels=lab, voxel_size_nm=0.4,
                           paths={"volume": "v.mrc", "true_labels": "t.tif"})
    out = prepare_annotations(src, classes=CLASSES, sample="demo", n_slices=6, seed=3)
    np.testing.assert_array_equal(out.info["indices"], choose_slices(32, 6, 3))
    np.testing.assert_array_equal(out.images, vol[out.info["indices"]])
    np.testing.assert_array_equal(out.labels, lab[out.info["indices"]])
    assert out.labels.dtype == np.uint8 and out.info["registration"]["registered"] is False
    bad = lab.astype(np.int16)
    bad[0, 0, 0] = 256  # would wrap to 0 as uint8
    with pytest.raises(InputError, match=r"t.tif \(vs v.mrc\): label values \[256\] outside"):
        prepare_annotations(AnnotationSource("volume", vol, bad, 0.4, {"volume": "v.mrc", "true_labels": "t.tif"}),
                            classes=CLASSES, sample="demo")
