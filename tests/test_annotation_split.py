"""The annotation round trip and the train/validation/test split (library level, fast):
grouped split (random cases), explicit lists, slice selection for annotation, entropy, labels back from the
current volume and the stale-label check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tifffile
from scipy import stats

from tomoflow import io
from tomoflow.annotations import (
    AnnotationSource,
    check_label_fit,
    even_indices,
    label_file_name,
    label_slice_index,
    make_grouped_split,
    plan_export,
    prepare_annotations,
    select_slices,
    slice_entropy,
    slice_file_name,
    slice_groups,
    slice_numbers,
    split_from_records,
)
from tomoflow.errors import InputError
from tomoflow.io.annotations import read_indexed_labels

CLASSES = ["background", "support", "particles"]


# --------------------------------------------------------------------------- grouping and the auto split
def _components(slices: list[int], gap: int) -> list[set[int]]:
    """Reference grouping: connected components of 'slice numbers differ by <= gap' (union-find over all pairs)."""
    parent = list(range(len(slices)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in itertools.combinations(range(len(slices)), 2):
        if abs(slices[a] - slices[b]) <= gap:
            parent[find(a)] = find(b)
    comps: dict[int, set[int]] = {}
    for i in range(len(slices)):
        comps.setdefault(find(i), set()).add(i)
    return list(comps.values())


def test_slice_groups_equal_the_connected_components_of_neighbours():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 15))
        slices = rng.integers(0, 40, n).tolist()
        gap = int(rng.integers(0, 4))
        got = [set(g) for g in slice_groups(slices, gap)]
        assert sorted(map(sorted, got)) == sorted(map(sorted, _components(slices, gap))), (slices, gap)
    assert slice_groups([5, 1, 2, 9, 10, 12], 1) == [[1, 2], [0], [3, 4], [5]]


def _side_of(split: dict) -> dict[tuple[str, int], set[str]]:
    sides: dict[tuple[str, int], set[str]] = {}
    for side in ("train", "validation", "test"):
        for r in split[side]:
            sides.setdefault((r["sample"], r["slice"]), set()).add(side)
    return sides


def _random_sources(rng: np.random.Generator) -> dict[str, dict]:
    sources = {}
    for k in range(int(rng.integers(1, 4))):
        n = int(rng.integers(1, 9))
        slices = sorted(rng.choice(60, n, replace=False).tolist())
        h, w = (64, 64) if rng.random() < 0.5 else (64, 160)  # one or three patches per slice
        sources[f"s{k}"] = {"shape": (n, h, w), "slices": slices}
    return sources


def test_auto_split_never_separates_a_slice_or_neighbouring_slices():
    """Random cases (seeded, hypothesis-style): every patch of a slice and every two slices of a source within
    group_gap are on one side; each side is non-empty; the same seed gives the same split."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(400):
        sources = _random_sources(rng)
        gap = int(rng.integers(0, 4))
        frac = float(rng.uniform(0.1, 0.6))
        seed = int(rng.integers(0, 1000))
        try:
            split = make_grouped_split(sources, (64, 64), val_fraction=frac, seed=seed, group_gap=gap)
        except InputError as exc:
            n_groups = sum(len(slice_groups(s["slices"], gap)) for s in sources.values())
            assert n_groups < 2 and "group" in str(exc)
            continue
        checked += 1
        sides = _side_of(split)
        assert all(len(v) == 1 for v in sides.values()), sides  # no slice's patches on two sides
        for name, src in sources.items():
            for a, b in itertools.combinations(src["slices"], 2):
                if abs(a - b) <= gap:
                    assert sides[(name, a)] == sides[(name, b)], (name, a, b, gap)
            # every patch of every slice is somewhere, with the patch count of the slice shape
            per_slice = 1 if src["shape"][2] == 64 else 3
            for s in src["slices"]:
                n_rec = sum(1 for side in ("train", "validation") for r in split[side] if (r["sample"], r["slice"]) == (name, s))
                assert n_rec == per_slice
        assert split["train"] and split["validation"] and not split["test"]
        assert split == make_grouped_split(sources, (64, 64), val_fraction=frac, seed=seed, group_gap=gap)
    assert checked > 300


def test_auto_split_fraction_follows_val_fraction_by_groups():
    # 40 isolated slices (every 3rd): groups of one; 25 % -> 10 validation slices
    src = {"demo": {"shape": (40, 64, 64), "slices": list(range(0, 120, 3))}}
    split = make_grouped_split(src, (64, 64), val_fraction=0.25, seed=42, group_gap=1)
    assert len(split["validation"]) == 10 and len(split["train"]) == 30
    # adjacent pairs (0,1), (3,4), ...: 20 groups of two; both slices of a pair always together
    src = {"demo": {"shape": (40, 64, 64), "slices": sorted([3 * k for k in range(20)] + [3 * k + 1 for k in range(20)])}}
    split = make_grouped_split(src, (64, 64), val_fraction=0.25, seed=42, group_gap=1)
    val = sorted(r["slice"] for r in split["validation"])
    assert len(val) == 10 and all(v % 3 in (0, 1) for v in val)
    assert all((v + 1 in val) if v % 3 == 0 else (v - 1 in val) for v in val)
    # a random split by slice (group_gap 0 would not group them) does split pairs for this seed
    by_slice = make_grouped_split(src, (64, 64), val_fraction=0.25, seed=42, group_gap=0)
    vs = {r["slice"] for r in by_slice["validation"]}
    assert any((v + 1 if v % 3 == 0 else v - 1) not in vs for v in vs)


def test_explicit_validation_and_test_lists_are_honoured_exactly():
    src = {"demo": {"shape": (6, 64, 128), "slices": [2, 3, 7, 8, 12, 13]},
           "colleague": {"shape": (3, 64, 64), "slices": [1, 2, 3]}}
    split = make_grouped_split(src, (64, 64), validation=["demo:7", "demo:8"], test=["colleague"])
    sides = _side_of(split)
    assert {k for k, v in sides.items() if v == {"validation"}} == {("demo", 7), ("demo", 8)}
    assert {k for k, v in sides.items() if v == {"test"}} == {("colleague", 1), ("colleague", 2), ("colleague", 3)}
    assert {k for k, v in sides.items() if v == {"train"}} == {("demo", s) for s in (2, 3, 12, 13)}
    assert split["mode"] == "explicit" and len(split["validation"]) == 4  # two slices x two patches
    assert {r["index"] for r in split["validation"]} == {2, 3}  # stack positions of slices 7, 8
    # auto with a fixed test set: the test slices are never in train or validation
    auto = make_grouped_split(src, (64, 64), test=["demo:12", "demo:13"], val_fraction=0.3, seed=3)
    sides = _side_of(auto)
    assert sides[("demo", 12)] == {"test"} and sides[("demo", 13)] == {"test"}
    assert sum(1 for v in sides.values() if v == {"test"}) == 2


@pytest.mark.parametrize("validation,test,match", [
    (["demo:7"], ["demo:7"], "both train.validation and train.test"),
    (["demo"], ["demo:7"], "both train.validation and train.test"),
    (["nosuch"], [], "names no training source"),
    (["demo:99"], [], "has no annotated slice 99"),
    (["demo"], ["colleague"], "no annotated slice is left for training"),
    ("random", [], "neither 'auto' nor a list"),
])
def test_bad_split_lists_are_one_line_input_errors(validation, test, match):
    src = {"demo": {"shape": (6, 64, 64), "slices": [2, 3, 7, 8, 12, 13]}, "colleague": {"shape": (2, 64, 64), "slices": [1, 5]}}
    with pytest.raises(InputError, match=match) as exc:
        make_grouped_split(src, (64, 64), validation=validation, test=test)
    assert "\n" not in str(exc.value) and "Fix:" in str(exc.value)


def test_split_from_slices_records():
    recs = [{"shape": [3, 64, 64], "slices": [4, 9, 20]}, {"shape": [2, 64, 64], "indices": None, "slices": None}]
    split = split_from_records(["demo", "set"], recs, (64, 64), validation=["set"], test=["demo:20"])
    assert sorted((r["sample"], r["slice"]) for r in split["train"]) == [("demo", 4), ("demo", 9)]
    assert sorted((r["sample"], r["slice"]) for r in split["validation"]) == [("set", 0), ("set", 1)]
    assert split["sources"] == ["demo", "set"]


# --------------------------------------------------------------------------- choosing slices to annotate
def test_even_indices_and_selection():
    np.testing.assert_array_equal(even_indices(100, 4), [12, 37, 62, 87])  # bin centres of 4 x 25
    np.testing.assert_array_equal(even_indices(16, 3, exclude_edges=2), [4, 8, 12])
    idx, scores = select_slices(20, 4, exclude_edges=2, labelled=[4, 5, 6, 7])
    # the 12 unlabelled slices 2, 3, 8..17: bin centres 1.5, 4.5, 7.5, 10.5 of 12 -> positions 1, 4, 7, 10
    assert idx == [3, 10, 13, 16] and scores == [None] * 4
    assert not set(idx) & {4, 5, 6, 7} and min(idx) >= 2 and max(idx) <= 17
    s = np.zeros(20)
    s[[1, 5, 9, 10, 18]] = [0.9, 0.8, 0.7, 0.7, 0.95]
    idx, scores = select_slices(20, 3, strategy="entropy", exclude_edges=2, scores=s, labelled=[5])
    assert idx == [2, 9, 10]  # 18 and 1 are edges, 5 is labelled; then the zeros tie -> lowest index 2
    assert idx == sorted(idx) and scores == [float(s[i]) for i in idx]
    with pytest.raises(InputError, match="no unlabelled slice"):
        select_slices(6, 2, exclude_edges=1, labelled=[1, 2, 3, 4])


def test_slice_entropy_matches_scipy():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 8, 9, 3)) * np.array([0.1, 1.0, 5.0])[:, None, None, None]
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ref = stats.entropy(p, axis=-1).mean(axis=(1, 2)) / np.log(3)
    np.testing.assert_allclose(slice_entropy(p), ref, rtol=1e-12)
    assert slice_entropy(p)[0] > slice_entropy(p)[1] > slice_entropy(p)[2]  # flatter logits -> less certain
    onehot = np.eye(3)[rng.integers(0, 3, (2, 4, 4))]
    np.testing.assert_allclose(slice_entropy(onehot), 0.0, atol=1e-15)
    np.testing.assert_allclose(slice_entropy(np.full((1, 2, 2, 3), 1 / 3)), 1.0)


def test_entropy_export_ranks_slices_by_the_models_uncertainty():
    """A stand-in model whose certainty falls with the slice's mean: the most uncertain slices are exported."""
    vol = np.stack([np.full((16, 32), float(i)) for i in range(12)]).astype(np.float32)

    def model(x):  # (B, H, W, 1) -> probabilities: sharp for small intensities, flat for large
        t = x[..., 0] / 12.0
        logits = np.stack([np.zeros_like(t), (1 - t) * 6, np.zeros_like(t)], -1)
        e = np.exp(logits)
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)

    slices, texts, records = plan_export("s", vol.shape, 0.5, lambda a, b: vol[a:b], classes=CLASSES, n_pick=3,
                                         strategy="entropy", exclude_edges=1, labelled=[10], model=model,
                                         predict_options={"patch_size": [16, 32], "batch_size": 4, "mode": "whole"})
    rec = records["selection.json"]
    assert rec["indices"] == [7, 8, 9]  # 11 is an edge, 10 is labelled
    assert list(slices) == [slice_file_name("s", i) for i in (7, 8, 9)]
    np.testing.assert_array_equal(slices["s_z0008.tif"], vol[8])
    assert np.all(np.diff(rec["all_scores"]) > 0)
    assert "s_z0007_labels.tif" in texts["HOWTO.md"] and "| 2 | particles |" in texts["HOWTO.md"]
    with pytest.raises(InputError, match="needs a trained model"):
        plan_export("s", vol.shape, 0.5, lambda a, b: vol[a:b], classes=CLASSES, n_pick=3, strategy="entropy")


# --------------------------------------------------------------------------- labels back, stale labels refused
def test_label_file_names_round_trip():
    assert slice_file_name("demo", 7) == "demo_z0007.tif" and label_file_name("demo", 7) == "demo_z0007_labels.tif"
    for i in (0, 7, 123, 40000):
        assert label_slice_index(label_file_name("my_sample-2", i)) == i
    assert label_slice_index("labels_12.tif") == 12  # no z token: the one number
    with pytest.raises(InputError, match="slice index"):
        label_slice_index("run2_slice12_labels.tif")


def test_check_label_fit_refuses_stale_labels():
    check_label_fit([("a.tif", 0, (8, 10)), ("b.tif", 5, (8, 10))], (6, 8, 10), "vol.mrc")
    with pytest.raises(InputError, match=r"b.tif: slice index 6 is outside vol.mrc \(slices 0..5\)"):
        check_label_fit([("b.tif", 6, (8, 10))], (6, 8, 10), "vol.mrc")
    with pytest.raises(InputError, match=r"label slice \(9, 10\) does not match slice 2.*re-export"):
        check_label_fit([("c.tif", 2, (9, 10))], (6, 8, 10), "vol.mrc")
    with pytest.raises(InputError, match="one label file per slice"):
        check_label_fit([("a.tif", 2, (8, 10)), ("b.tif", 2, (8, 10))], (6, 8, 10), "vol.mrc")


def test_export_then_labels_back_read_the_current_volume(tmp_path):
    """Export -> paint (labels from a known truth) -> read back: images are the *current* volume's slices;
    a volume re-reconstructed with other intensities keeps the labels; a new geometry refuses them."""
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, (10, 12, 20)).astype(np.uint8)
    vol = (truth * 2.0 + rng.normal(0, 0.1, truth.shape)).astype(np.float32)
    io.write_volume(tmp_path / "volume.mrc", vol, 0.4)
    slices, texts, records = plan_export("demo", vol.shape, 0.4, lambda a, b: vol[a:b], classes=CLASSES, n_pick=3,
                                         exclude_edges=2)
    io.write_annotation_export(tmp_path / "to_annotate", slices, 0.4, texts, records)
    rec = io.read_json(tmp_path / "to_annotate" / "selection.json")
    assert rec["indices"] == [3, 5, 7] and rec["volume_shape"] == [10, 12, 20]
    exported = tifffile.imread(tmp_path / "to_annotate" / "demo_z0005.tif")
    np.testing.assert_array_equal(exported, vol[5])
    with tifffile.TiffFile(tmp_path / "to_annotate" / "demo_z0005.tif") as tif:
        assert tif.imagej_metadata["unit"] == "nm"
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.4, rel=1e-6)
    assert (tmp_path / "to_annotate" / "HOWTO.md").read_text().startswith("# Annotating demo: 3 slice(s)")
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in rec["indices"]:  # the user's painting: here the truth at those slices
        tifffile.imwrite(labels / label_file_name("demo", i), truth[i])
    tifffile.imwrite(labels / "other_z0001_labels.tif", truth[1])  # another sample's label in the same folder
    src = read_indexed_labels(labels, tmp_path / "volume.mrc", "demo")
    np.testing.assert_array_equal(src.images, vol[[3, 5, 7]])
    np.testing.assert_array_equal(src.labels, truth[[3, 5, 7]])
    ann = prepare_annotations(src, classes=CLASSES, sample="demo")
    assert ann.info["source"] == "volume_indices" and ann.info["slices"] == [3, 5, 7] and ann.info["indices"] == [3, 5, 7]
    # re-reconstructed (other iterations): same geometry, new intensities -> new images, same labels
    vol2 = vol * 3.0 + 1.0
    io.write_volume(tmp_path / "volume.mrc", vol2, 0.4)
    src2 = read_indexed_labels(labels, tmp_path / "volume.mrc", "demo")
    np.testing.assert_array_equal(src2.images, vol2[[3, 5, 7]])
    # new geometry (thickness 12 -> 10): refused, naming the file and the fix
    io.write_volume(tmp_path / "volume.mrc", vol[:, 1:11], 0.4)
    with pytest.raises(InputError, match=r"demo_z0003_labels.tif: label slice \(12, 20\) does not match slice 3"):
        read_indexed_labels(labels, tmp_path / "volume.mrc", "demo")
    # fewer slices: an index outside the volume
    io.write_volume(tmp_path / "volume.mrc", vol[:6], 0.4)
    with pytest.raises(InputError, match="slice index 7 is outside"):
        read_indexed_labels(labels, tmp_path / "volume.mrc", "demo")


def test_slice_numbers_of_user_folders_come_from_the_file_names():
    pairs = [{"image": f"d/img_{i}.tif", "label": f"l/lab_{i}.tif", "page": 0, "shape": [4, 4]} for i in (3, 10, 11)]
    src = AnnotationSource("user", np.zeros((3, 4, 4), np.float32), np.zeros((3, 4, 4), np.uint8), 1.0, {}, pairs)
    assert slice_numbers(src, {"indices": None}) == [3, 10, 11]
    stack = [{"image": "a.tif", "label": "b.tif", "page": k, "shape": [4, 4]} for k in range(3)]
    src = AnnotationSource("user", np.zeros((3, 4, 4), np.float32), np.zeros((3, 4, 4), np.uint8), 1.0, {}, stack)
    assert slice_numbers(src, {"indices": None}) == [0, 1, 2]
