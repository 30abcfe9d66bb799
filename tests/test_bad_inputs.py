"""Bad inputs through the real ``snakemake`` CLI: each stops before any job with one clear line.

Every case runs ``snakemake --cores 1`` for real (not a dry run) in a scratch copy of the workflow with
``tests/configs/tiny.yaml`` plus the case's sample table / ``--config`` / ``--configfile`` and small
synthetic files, and asserts: non-zero exit, Snakemake never got as far as building the DAG (so no job
started), nothing under ``results/``, and exactly one ``tomoflow: <where>: <problem>. Fix: <fix>`` line on
stderr that names the file or key and the problem.  A good user sample and the documented ``--config``
overrides are checked to pass, so that the checks do not refuse everything.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from tomoflow import io
from workflow_utils import TINY, make_workdir, planned_jobs, snakemake

HEADER = "sample\ttilt_series\tangles\tpixel_size_nm\ttilt_axis_deg\tthickness_px\ttrue_labels\tannotation_images\tannotation_labels"
N_TILTS, H, W = 12, 24, 32  # small user tilt series: 12 tilts of 24 rows × 32 columns
ANGLES = np.linspace(-60.0, 60.0, N_TILTS)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("bad"))


# --------------------------------------------------------------------------- small synthetic files
def phantom(n: int = N_TILTS, h: int = H, w: int = W) -> np.ndarray:
    """Smooth blobs that move with the tilt: images continuous along rows and columns."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        c = w / 2 + 6 * np.sin(np.radians(ANGLES[i % N_TILTS]))
        out[i] = 10 + 100 * np.exp(-((x - c) ** 2 + (y - h / 2) ** 2) / 18.0) + 50 * np.exp(-((x - c / 2) ** 2 + (y - h / 3) ** 2) / 8.0)
    return out


def mrc(path: Path, data: np.ndarray, voxel_a: float = 5.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(data))
        m.voxel_size = voxel_a
    return path


def tlt(path: Path, values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{v}\n" for v in values))
    return path


def good_series(d: Path) -> None:
    mrc(d / "ts.mrc", phantom())
    tlt(d / "ts.tlt", ANGLES)


def labels_for(d: Path, shape=(H, 32, W), value: int = 2) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[:, shape[1] // 3: shape[1] // 2, :] = 1
    lab[:, 12:15, 10:13] = value
    return lab


def row(sample="s1", ts="data/ts.mrc", angles="data/ts.tlt", px="", axis="0", thick="32", truth="", img="", lab="") -> str:
    return "\t".join([sample, ts, angles, px, axis, thick, truth, img, lab])


@dataclass
class Case:
    """One bad input: files to make, sample-table rows, CLI config, expected message parts."""

    make: Callable[[Path], None] | None = None
    rows: list[str] | None = field(default_factory=lambda: [row()])
    config: list[str] = field(default_factory=lambda: ['train={"samples": []}'])
    overlay: str | None = None
    expect: tuple[str, ...] = ()
    table: str | None = None  # raw table text instead of HEADER + rows


def _truncate(path: Path, n: int) -> None:
    path.write_bytes(path.read_bytes()[:-n])


def _swap_header_xy(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:4], raw[4:8] = raw[4:8], raw[0:4]
    path.write_bytes(bytes(raw))


def _mixed_pages(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(d / "ts.tif") as tw:
        for i, img in enumerate(phantom()):
            tw.write(img if i != 7 else img[:, :16])
    tlt(d / "ts.tlt", ANGLES)


def _tiff_series(d: Path, **kw) -> None:
    d.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(d / "ts.tif", phantom(), **kw)
    tlt(d / "ts.tlt", ANGLES)


def _rgb_series(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rgb = np.repeat(phantom()[..., None], 3, axis=-1).astype(np.uint8)
    tifffile.imwrite(d / "ts.tif", rgb, photometric="rgb")
    tlt(d / "ts.tlt", ANGLES)


def _with(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        for s in steps:
            s(d)
    return make


def _mode4(d: Path) -> None:
    mrc(d / "ts.mrc", phantom().astype(np.complex64))
    tlt(d / "ts.tlt", ANGLES)


def _user_annotations(images: np.ndarray, labels: np.ndarray) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        good_series(d)
        tifffile.imwrite(d / "img.tif", images, photometric="minisblack")
        tifffile.imwrite(d / "lab.tif", labels, photometric="minisblack")
    return make


def _rgb_annotation_folder(d: Path) -> None:
    good_series(d)
    for name in ("img", "lab"):
        (d / name).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        tifffile.imwrite(d / "img" / f"s{i}.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
        tifffile.imwrite(d / "lab" / f"s{i}.tif", np.zeros((64, 64), np.uint8))


def _unpaired_annotation_folder(d: Path) -> None:
    """img_1 … img_12 pair with lab_01 … lab_12 by number; lab_13 has no image."""
    good_series(d)
    for name in ("img", "lab"):
        (d / name).mkdir(parents=True, exist_ok=True)
    for i in range(1, 13):
        tifffile.imwrite(d / "img" / f"img_{i}.tif", np.zeros((64, 64), np.float32))
        tifffile.imwrite(d / "lab" / f"lab_{i:02d}.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(d / "lab" / "lab_13.tif", np.zeros((64, 64), np.uint8))


TRAIN_S1 = ['train={"samples": ["s1"]}', 'annotations={"n_slices": 4}']
ANN_ROW = [row(img="data/img.tif", lab="data/lab.tif")]

CASES: dict[str, Case] = {
    # ---- config: schema (via --configfile overlay and --config)
    "unknown_top_key": Case(overlay="colour: red\n", expect=("config", "'colour' was unexpected", "remove the key")),
    "unknown_nested_key": Case(overlay="recon:\n  iters: 3\n", expect=("recon", "'iters' was unexpected")),
    "iterations_zero": Case(overlay="recon:\n  iterations: 0\n", expect=("recon.iterations", "less than the minimum of 1")),
    "projector_unknown": Case(overlay="recon:\n  projector: fast\n", expect=("recon.projector", "'fast' is not one of")),
    "cli_iterations_text": Case(config=['train={"samples": []}', 'recon={"iterations": "many"}'],
                                expect=("recon.iterations", "'many' is not of type 'integer'")),
    "cli_iterations_zero": Case(config=['train={"samples": []}', 'recon={"iterations": 0}'],
                                expect=("recon.iterations", "less than the minimum of 1")),
    "cli_flag_not_bool": Case(config=['train={"samples": []}', 'predict={"tta": "perhaps"}'],
                              expect=("predict.tta", "'perhaps' is not of type 'boolean'")),
    "samples_table_missing": Case(config=["samples=nowhere.tsv"], rows=None, expect=("nowhere.tsv", "not found")),
    # ---- config: cross-key constraints
    "patch_not_divisible": Case(rows=None, config=[], overlay="train:\n  patch_size: [48, 48]\n",
                                expect=("train.patch_size", "not divisible by 2^(depth−1) = 32", "multiples of 32")),
    "class_weights_count": Case(rows=None, config=[], overlay="train:\n  class_weights: [1.0, 2.0]\n",
                                expect=("train.class_weights", "2 weights for 3 classes")),
    "two_classes": Case(rows=None, config=[], overlay="classes: [background, particles]\n",
                        expect=("classes", "quantification needs background, support and particles")),
    "background_not_first": Case(rows=None, config=[], overlay="classes: [support, background, particles]\n",
                                 expect=("classes", "'background' is class 1", "label 0 is the background")),
    "classes_misordered": Case(rows=None, config=[], overlay="classes: [background, particles, support]\n",
                               expect=("classes", "'particles' is class 1", "[background, support, particles]")),
    "class_metric_clash": Case(rows=None, config=[], overlay="classes: [background, support, particles, Pt-a, pt_a]\n",
                               expect=("classes", "same metric name dsc_pt_a")),
    "recon_slabs_gt_slices": Case(rows=None, config=['recon={"slabs": 20}'], expect=("recon.slabs", "20 slabs for 16 slices")),
    "predict_slabs_gt_slices": Case(rows=None, config=['predict={"slabs": 17}'], expect=("predict.slabs", "17 slabs for 16 slices")),
    "annotation_slices_gt_volume": Case(rows=None, config=['annotations={"n_slices": 40}'],
                                        expect=("annotations.n_slices", "40 slices", "has 16")),
    "patch_larger_than_slices": Case(rows=None, config=[], overlay="train:\n  patch_size: [128, 128]\n",
                                     expect=("train.patch_size", "larger than the slices", "64×128")),
    "synthetic_range_reversed": Case(rows=None, config=[], overlay="synthetic:\n  tilt_range_deg: [60, -60]\n",
                                     expect=("synthetic.tilt_range_deg", "first < last")),
    "bandpass_inverted": Case(rows=None, config=[], overlay="align:\n  bandpass_px: [30, 2]\n",
                              expect=("align.bandpass_px", "[30, 2] is not a band")),
    "particle_sizes_reversed": Case(rows=None, config=[], overlay="synthetic:\n  particle_diameter_nm: [0, 4]\n",
                                    expect=("synthetic.particle_diameter_nm", "[0, 4] is not a size range")),
    "train_sample_unknown": Case(rows=None, config=['train={"samples": ["nosuch"]}'],
                                 expect=("train.samples", "['nosuch'] not in the sample table", "tiny_samples.tsv")),
    "cuda_projector_without_gpu": Case(overlay="recon:\n  projector: cuda\n", expect=("recon.projector", "CUDA")),
    "tomopy_not_installed": Case(overlay="recon:\n  backend: tomopy\n", expect=("recon.backend", "tomopy is not installed")),
    # ---- sample table
    "table_missing_column": Case(table="sample\tangles\ns1\tdata/ts.tlt\n",
                                 expect=("samples.tsv", "required column(s) ['tilt_series'] missing")),
    "table_empty_required_cell": Case(make=good_series, rows=[row(ts="")],
                                      expect=("samples.tsv line 2 (sample 's1')", "column `tilt_series` is empty")),
    "table_bad_pixel_size": Case(make=good_series, rows=[row(px="0,4")], expect=("samples.tsv line 2", "`pixel_size_nm` = '0,4'")),
    "table_negative_thickness": Case(make=good_series, rows=[row(thick="-5")], expect=("line 2", "`thickness_px` = '-5'")),
    "table_zero_thickness": Case(make=good_series, rows=[row(thick="0")], expect=("line 2", "`thickness_px` = '0' is not positive")),
    "table_duplicate_sample": Case(make=good_series, rows=[row(), row()], expect=("line 3 (sample 's1')", "repeats line 2")),
    "table_unknown_column": Case(table=HEADER + "\tcolour\n" + row() + "\tred\n", expect=("samples.tsv", "unknown column(s) ['colour']")),
    "table_bad_sample_name": Case(make=good_series, rows=[row(sample="my sample")], expect=("line 2", "column `sample` = 'my sample'")),
    "table_comma_separated": Case(table=HEADER.replace("\t", ",") + "\n", expect=("samples.tsv", "not tab-separated")),
    "table_extra_cells": Case(make=good_series, rows=[row() + "\textra"], expect=("line 2 has 10 cells for 9 columns",)),
    "table_no_rows": Case(rows=[], expect=("samples.tsv", "no samples")),
    "train_only_annotation_images": Case(make=good_series, rows=[row(img="data/img.tif")], config=TRAIN_S1,
                                         expect=("line 2 (sample 's1')", "only one of `annotation_images`/`annotation_labels`")),
    "train_without_annotations": Case(make=good_series, config=TRAIN_S1, expect=("sample 's1'", "no annotations and no true_labels")),
    # ---- the tilt series file
    "tilt_series_missing": Case(expect=("data/ts.mrc", "tilt series not found", "sample 's1'")),
    "tilt_series_is_directory": Case(make=lambda d: (d / "ts.mrc").mkdir(parents=True), expect=("data/ts.mrc", "is a directory")),
    "tilt_series_empty": Case(make=lambda d: (d.mkdir(parents=True), (d / "ts.mrc").write_bytes(b"")),
                              expect=("data/ts.mrc", "empty (0 bytes)")),
    "tiff_renamed_mrc": Case(make=lambda d: (d.mkdir(parents=True), tifffile.imwrite(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", ANGLES)),
                             expect=("data/ts.mrc", "a TIFF file with a .mrc suffix", "rename it to .tif")),
    "png_renamed_mrc": Case(make=lambda d: (d.mkdir(parents=True), (d / "ts.mrc").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))),
                            expect=("data/ts.mrc", "not an MRC file: the content is a PNG image")),
    "mrc_unknown_suffix": Case(make=lambda d: (mrc(d / "ts.dat", phantom()), tlt(d / "ts.tlt", ANGLES)), rows=[row(ts="data/ts.dat")],
                               expect=("data/ts.dat", "unknown tilt series file type '.dat'", "the content is an MRC file")),
    "mrc_truncated": Case(make=_with(good_series, lambda d: _truncate(d / "ts.mrc", 500)),
                          expect=("data/ts.mrc", "truncated MRC file", "re-copy")),
    "mrc_header_only": Case(make=_with(good_series, lambda d: (d / "ts.mrc").write_bytes((d / "ts.mrc").read_bytes()[:600])),
                            expect=("data/ts.mrc", "shorter than the 1024-byte header")),
    "mrc_complex_mode": Case(make=_mode4, expect=("data/ts.mrc", "unsupported MRC mode 4")),
    "mrc_swapped_dimensions": Case(make=_with(good_series, lambda d: _swap_header_xy(d / "ts.mrc")),
                                   expect=("data/ts.mrc", "look swapped", "alterheader")),
    "single_image": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()[:1]), tlt(d / "ts.tlt", ANGLES[:1])),
                         expect=("data/ts.mrc", "not a tilt series")),
    "too_few_tilts": Case(make=lambda d: (mrc(d / "ts.mrc", phantom(5)), tlt(d / "ts.tlt", [-40, -20, 0, 20, 40])),
                          expect=("data/ts.mrc", "only 5 tilt images")),
    "tiff_rgb": Case(make=_rgb_series, rows=[row(ts="data/ts.tif", px="0.5")], expect=("data/ts.tif", "RGB", "single-channel greyscale")),
    "tiff_mixed_pages": Case(make=_mixed_pages, rows=[row(ts="data/ts.tif", px="0.5")],
                             expect=("data/ts.tif", "pages of different shapes", "image 8 is 24×16")),
    "tiff_truncated": Case(make=_with(lambda d: _tiff_series(d), lambda d: _truncate(d / "ts.tif", 300)),
                           rows=[row(ts="data/ts.tif", px="0.5")], expect=("data/ts.tif", "truncated or corrupt TIFF")),
    "no_pixel_size": Case(make=lambda d: (mrc(d / "ts.mrc", phantom(), voxel_a=0.0), tlt(d / "ts.tlt", ANGLES)),
                          expect=("data/ts.mrc", "no pixel size", "pixel_size_nm")),
    # ---- angles
    "angles_missing_file": Case(make=lambda d: mrc(d / "ts.mrc", phantom()), expect=("data/ts.tlt", "not found")),
    "angles_none_at_all": Case(make=lambda d: mrc(d / "ts.mrc", phantom()), rows=[row(angles="")], expect=("data/ts.mrc", "no tilt angles")),
    "angles_count": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", ANGLES[:-1])),
                         expect=("data/ts.tlt", "11 tilt angles for 12 images")),
    "angles_radians": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", np.radians(ANGLES))),
                           expect=("data/ts.tlt", "look like radians")),
    "angles_not_number": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", list(ANGLES[:2]) + ["x"] + list(ANGLES[3:]))),
                              expect=("data/ts.tlt", "line 3 is not a number")),
    "angles_unsorted": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", list(ANGLES[[0, 2, 1]]) + list(ANGLES[3:]))),
                            expect=("data/ts.tlt", "not strictly monotonic (angle 3")),
    "angles_beyond_90": Case(make=lambda d: (mrc(d / "ts.mrc", phantom()), tlt(d / "ts.tlt", ANGLES * 2)),
                             expect=("data/ts.tlt", "within ±90°")),
    # ---- true labels
    "true_labels_shape": Case(make=lambda d: (good_series(d), io.write_labels(d / "truth.tif", labels_for(d, (H, 30, W)), 0.5)),
                              rows=[row(truth="data/truth.tif")], expect=("data/truth.tif", "(24, 30, 32) does not match", "(24, 32, 32)")),
    "true_labels_values": Case(make=lambda d: (good_series(d), io.write_labels(d / "truth.tif", labels_for(d, value=5), 0.5)),
                               rows=[row(truth="data/truth.tif")], expect=("data/truth.tif", "label value(s) 5", "outside the class indices 0..2")),
    "true_labels_missing": Case(make=good_series, rows=[row(truth="data/truth.tif")], expect=("data/truth.tif", "not found")),
    "synthetic_thickness_vs_labels": Case(rows=[row(sample="demo", ts="results/synthetic/demo/tilt_series.mrc",
                                                    angles="results/synthetic/demo/tilt_series.rawtlt", px="0.4", thick="100",
                                                    truth="results/synthetic/demo/labels.tif")], config=[],
                                          expect=("results/synthetic/demo/labels.tif", "(16, 64, 128) does not match", "(16, 100, 128)")),
    "synthetic_unknown_file": Case(rows=[row(ts="results/synthetic/demo/raw.mrc")], expect=("results/synthetic/demo/raw.mrc", "not a file the synthetic rule writes")),
    # ---- user annotations (training sample)
    "annotation_shapes_differ": Case(make=_user_annotations(np.zeros((4, 64, 64), np.float32), np.zeros((4, 64, 60), np.uint8)),
                                     rows=ANN_ROW, config=TRAIN_S1, expect=("data/lab.tif", "(4, 64, 60) differs from the image stack (4, 64, 64)")),
    "annotation_label_values": Case(make=_user_annotations(np.zeros((4, 64, 64), np.float32), np.full((4, 64, 64), 255, np.uint8)),
                                    rows=ANN_ROW, config=TRAIN_S1, expect=("data/lab.tif", "label value(s) 255")),
    "annotation_patch_too_big": Case(make=_user_annotations(np.zeros((4, 32, 32), np.float32), np.zeros((4, 32, 32), np.uint8)),
                                     rows=ANN_ROW, config=TRAIN_S1, expect=("train.patch_size", "larger than the slices", "32×32")),
    "annotation_rgb_in_folder": Case(make=_rgb_annotation_folder, rows=[row(img="data/img", lab="data/lab")], config=TRAIN_S1,
                                     expect=("data/img/s0.tif", "RGB")),
    "annotation_unpaired_file": Case(make=_unpaired_annotation_folder, rows=[row(img="data/img", lab="data/lab")], config=TRAIN_S1,
                                     expect=("lab_13.tif",)),
    "annotation_folder_and_file": Case(make=_with(_rgb_annotation_folder, lambda d: tifffile.imwrite(d / "lab.tif", np.zeros((3, 64, 64), np.uint8), photometric="minisblack")),
                                       rows=[row(img="data/img", lab="data/lab.tif")], config=TRAIN_S1, expect=("a folder, the other a file",)),
}

SKIP = {
    "cuda_projector_without_gpu": lambda: _has_cuda(),
    "tomopy_not_installed": lambda: importlib.util.find_spec("tomopy") is not None,
}


def _has_cuda() -> bool:
    try:
        import astra

        return bool(astra.use_cuda())
    except Exception:
        return False


def _run(base: Path, name: str, case: Case, dry: bool = False):
    wd = base / name
    if wd.exists():
        shutil.rmtree(wd)
    shutil.copytree(base, wd, ignore=lambda d, names: [n for n in names if Path(d) == base and n not in
                                                         ("Snakefile", "workflow", "config", "envs", "profiles", "tests")])
    if case.make:
        case.make(wd / "data")
    args = ["--cores", "1", "--configfile", TINY]
    if case.overlay:
        (wd / "overlay.yaml").write_text(case.overlay)
        args.append("overlay.yaml")
    config = list(case.config)
    if case.table is not None or case.rows is not None:
        text = case.table if case.table is not None else HEADER + "\n" + "".join(r + "\n" for r in case.rows)
        (wd / "samples.tsv").write_text(text)
        config.insert(0, "samples=samples.tsv")
    if config:
        args += ["--config", *config]
    if dry:
        args.insert(0, "-n")
    return wd, snakemake(wd, *args, timeout=300)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_stops_before_any_job_with_one_line(base, name):
    if name in SKIP and SKIP[name]():
        pytest.skip("the environment has what this case lacks")
    case = CASES[name]
    wd, proc = _run(base, name, case)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Building DAG of jobs" not in out and "rule " not in proc.stdout, out  # stopped while parsing: no job
    assert not (wd / "results").exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tomoflow: ")]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ". Fix: " in line and line.index(": ", 10) < line.index(". Fix: "), line
    for part in case.expect:
        assert part in line, f"{part!r} not in {line!r}"


def test_battery_has_at_least_40_cases():
    assert len(CASES) >= 40


def test_good_user_sample_passes_start_up(base):
    """The same small files, unbroken, pass every start-up check (alignment + reconstruction only)."""
    case = Case(make=lambda d: (good_series(d), io.write_labels(d / "truth.tif", labels_for(d), 0.5)),
                rows=[row(truth="data/truth.tif")])
    _, proc = _run(base, "good", case, dry=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert jobs.get("align_tilt_series") == 1 and jobs.get("reconstruct_slab") == 2, jobs
    assert "train_unet" not in jobs and "predict_slab" not in jobs, jobs  # train.samples: [] → no model, no segmentation


def test_good_user_annotations_pass_start_up(base):
    case = Case(make=_user_annotations(phantom(4, 64, 64), np.ones((4, 64, 64), np.uint8)), rows=ANN_ROW, config=TRAIN_S1)
    _, proc = _run(base, "good_ann", case, dry=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert planned_jobs(proc.stdout).get("train_unet") == 2  # tiny.yaml trains two models (focal, ce)


def test_documented_nested_config_override_is_typed(base):
    """config/README.md: `--config 'recon={"iterations": 30}'` works; other keys of the section are kept."""
    _, proc = _run(base, "override", Case(rows=None, config=['recon={"iterations": 30}']), dry=True)
    assert proc.returncode == 0, proc.stderr
    assert planned_jobs(proc.stdout)["reconstruct_slab"] == 2  # recon.slabs of tiny.yaml kept
    _, proc = _run(base, "override3", Case(rows=None, config=['recon={"slabs": 3}', 'predict={"tta": "true", "slabs": "4"}']), dry=True)
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert jobs["reconstruct_slab"] == 3 and jobs["predict_slab"] == 4, jobs


def test_coercion_follows_the_schema():
    from tomoflow.io.probe import read_schema
    from tomoflow.preflight import coerce_value

    schema = read_schema(Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml")
    got = coerce_value({"recon": {"iterations": "30", "backend": "astra"}, "train": {"patch_size": ["64", "64"],
                        "class_weights": ["1", "2.5", "3"], "learning_rate": "1e-3", "augment": {"flip": "false"}},
                        "synthetic": {"tilt_range_deg": "[-60, 60]"}, "classes": ["a", "b", "c"]}, schema)
    assert got["recon"] == {"iterations": 30, "backend": "astra"}
    assert got["train"]["patch_size"] == [64, 64] and got["train"]["class_weights"] == [1, 2.5, 3]
    assert got["train"]["learning_rate"] == 0.001 and got["train"]["augment"]["flip"] is False
    assert got["synthetic"]["tilt_range_deg"] == [-60, 60] and got["classes"] == ["a", "b", "c"]
    assert coerce_value({"train": {"class_weights": "auto"}}, schema)["train"]["class_weights"] == "auto"


# --------------------------------------------------------------------------- library level (no CLI)
def _schemas():
    from tomoflow.io.probe import read_schema

    root = Path(__file__).resolve().parents[1] / "workflow/schemas"
    return read_schema(root / "config.schema.yaml"), read_schema(root / "samples.schema.yaml")


def test_sample_table_messages_count_lines_from_one_with_comments(tmp_path):
    from tomoflow.errors import InputError
    from tomoflow.preflight import read_samples, sample_columns

    _, samples_schema = _schemas()
    assert sample_columns(samples_schema) == HEADER.split("\t")  # columns come from the schema
    table = tmp_path / "t.tsv"
    table.write_text("# my samples\n" + HEADER + "\n\n" + row(sample="a") + "\n" + row(sample="b", px="abc") + "\n")
    with pytest.raises(InputError) as exc:
        read_samples(table, samples_schema)  # header line 2, blank line 3, a = line 4, b = line 5
    assert str(exc.value).startswith(f"{table} line 5 (sample 'b'): column `pixel_size_nm` = 'abc' is not valid")


def test_schema_error_names_the_key_path():
    from tomoflow.preflight import coerce_config, schema_error

    schema, _ = _schemas()
    cfg = {"samples": "x.tsv", "classes": ["background", "support", "particles"], "train": {"augment": {"zoom": "2"}}}
    coerce_config(cfg, schema)
    err = schema_error(cfg, schema)
    assert err is not None and err.where == "config key `train.augment.zoom`" and "2 is greater than the maximum of 0.9" in err.problem
