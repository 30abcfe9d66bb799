"""Start-up checks of the annotation round trip, the annotation table and the split lists (real Snakemake CLI,
dry runs in the style of tests/test_bad_inputs.py): one line naming file/key, problem and fix; no job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from test_bad_inputs import (
    Case,
    _run,
    base,  # noqa: F401  (fixture)
    good_series,
    phantom,
    row,
)
from workflow_utils import planned_jobs

# good_series: 12 tilts of 24 rows x 32 columns, thickness_px 32 -> the volume is 24 slices of 32 x 32
RT_ROW = [row(lab="data/rt")]
TRAIN_RT = ['train={"samples": ["s1"], "patch_size": [32, 32]}']
TABLE_HEADER = "name\timages\tlabels\tpixel_size_nm\n"


def _round_trip_labels(indices=(3, 10, 17), shape=(32, 32)):
    def make(d: Path) -> None:
        good_series(d)
        (d / "rt").mkdir(parents=True, exist_ok=True)
        for i in indices:
            lab = np.zeros(shape, np.uint8)
            lab[10:20] = 1
            lab[12:14, 5:8] = 2
            tifffile.imwrite(d / "rt" / f"s1_z{i:04d}_labels.tif", lab)
    return make


def _annotation_set(table: str, labels_value: int = 2, n: int = 4):
    def make(d: Path) -> None:
        good_series(d)
        lab = np.zeros((n, 64, 64), np.uint8)
        lab[:, 20:40] = 1
        lab[:, 30:33, 30:33] = labels_value
        tifffile.imwrite(d / "set_img.tif", phantom(n, 64, 64), photometric="minisblack")
        tifffile.imwrite(d / "set_lab.tif", lab, photometric="minisblack")
        (d / "ann.tsv").write_text(table)
    return make


GOOD_TABLE = TABLE_HEADER + "colleague\tdata/set_img.tif\tdata/set_lab.tif\t0.5\n"
ANN = ['train={"samples": []}', 'annotations={"table": "data/ann.tsv"}']

CASES: dict[str, Case] = {
    "round_trip_labels_after_thickness_change": Case(
        make=_round_trip_labels(shape=(30, 32)), rows=RT_ROW, config=TRAIN_RT,
        expect=("s1_z0003_labels.tif", "label slice (30, 32) does not match slice 3", "re-export")),
    "round_trip_label_index_outside_volume": Case(
        make=_round_trip_labels(indices=(3, 30)), rows=RT_ROW, config=TRAIN_RT,
        expect=("s1_z0030_labels.tif", "slice index 30 is outside", "slices 0..23")),
    "round_trip_label_without_index": Case(
        make=lambda d: (_round_trip_labels()(d), tifffile.imwrite(d / "rt" / "painted.tif", np.zeros((32, 32), np.uint8))),
        rows=RT_ROW, config=TRAIN_RT, expect=("painted.tif", "cannot tell the volume slice index")),
    "round_trip_label_values": Case(
        make=lambda d: (_round_trip_labels()(d), tifffile.imwrite(d / "rt" / "s1_z0005_labels.tif", np.full((32, 32), 7, np.uint8))),
        rows=RT_ROW, config=TRAIN_RT, expect=("s1_z0005_labels.tif", "outside")),
    "split_unknown_validation_source": Case(
        make=_round_trip_labels(), rows=RT_ROW, config=['train={"samples": ["s1"], "patch_size": [32, 32], "validation": ["nosuch"]}'],
        expect=("train.validation", "'nosuch' names no training source")),
    "split_validation_and_test_overlap": Case(
        make=_round_trip_labels(), rows=RT_ROW, config=['train={"samples": ["s1"], "patch_size": [32, 32], "validation": ["s1:3"], "test": ["s1"]}'],
        expect=("train.validation", "both train.validation and train.test")),
    "split_bad_selector_syntax": Case(
        make=_round_trip_labels(), rows=RT_ROW, config=['train={"samples": ["s1"], "patch_size": [32, 32], "test": ["s1:three"]}'],
        expect=("train", "test")),
    "annotation_table_missing_column": Case(
        make=_annotation_set("name\timages\ncolleague\tdata/set_img.tif\n"), config=ANN,
        expect=("data/ann.tsv", "required column(s) ['labels']")),
    "annotation_table_name_is_a_sample": Case(
        make=_annotation_set(TABLE_HEADER + "s1\tdata/set_img.tif\tdata/set_lab.tif\t0.5\n"), config=ANN,
        expect=("data/ann.tsv line 2", "also a sample")),
    "annotation_table_label_values": Case(
        make=_annotation_set(GOOD_TABLE, labels_value=9), config=ANN,
        expect=("set_lab.tif", "column `labels` of data/ann.tsv line 2")),
    "annotation_table_not_found": Case(make=good_series, config=['train={"samples": []}', 'annotations={"table": "data/none.tsv"}'],
                                       expect=("annotations.table", "data/none.tsv not found")),
    "annotation_table_file_missing": Case(
        make=_annotation_set(TABLE_HEADER + "colleague\tdata/nope.tif\tdata/set_lab.tif\t\n"), config=ANN,
        expect=("data/nope.tif", "not found")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_annotation_input_stops_before_any_job_with_one_line(base, name):  # noqa: F811
    wd, proc = _run(base, "annot_" + name, CASES[name])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Building DAG of jobs" not in out and "Traceback" not in proc.stderr, out
    assert not (wd / "results").exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tomoflow: ")]
    assert len(lines) == 1, proc.stderr
    assert ". Fix: " in lines[0], lines[0]
    for part in CASES[name].expect:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"


def test_round_trip_labels_and_annotation_table_plan_training(base):  # noqa: F811
    """Good round-trip labels pass start-up and plan extract -> split -> train; an annotation table alone
    (train.samples: []) trains too, and the samples are still aligned, reconstructed and segmented."""
    _, proc = _run(base, "annot_good_rt", Case(make=_round_trip_labels(), rows=RT_ROW,
                                               config=['train={"samples": ["s1"], "patch_size": [32, 32], "validation": ["s1:10"]}']), dry=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert jobs.get("extract_annotations") == 1 and jobs.get("split_annotations") == 1 and jobs.get("train_unet") == 2, jobs  # tiny.yaml: focal, ce
    _, proc = _run(base, "annot_good_table", Case(make=_annotation_set(GOOD_TABLE), config=ANN),
                   dry=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert jobs.get("extract_annotation_set") == 1 and "extract_annotations" not in jobs, jobs
    assert jobs.get("train_unet") == 2 and jobs.get("reconstruct_tomogram") == 1 and jobs.get("predict_segmentation") == 1, jobs
