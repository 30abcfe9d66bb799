"""The real Snakemake workflow: lint, DAG, start-up checks, end to end, rerun semantics, interruption."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tomoflow import io
from tomoflow.io.models import read_metadata
from workflow_utils import TINY, make_workdir, planned_jobs, snakemake, workflow_env

STAGE_RULES = {
    "simulate_tilt_series",
    "align_tilt_series",
    "reconstruct_slab",
    "reconstruct_tomogram",
    "extract_annotations",
    "train_unet",
    "predict_slab",
    "predict_segmentation",
    "evaluate_segmentation",
    "export_meshes",
    "quantify",
}
# provenance records the config, so it is rewritten too
DOWNSTREAM_OF_PREDICT = {"predict_slab", "predict_segmentation", "evaluate_segmentation", "export_meshes", "quantify", "provenance", "report_summary",
                         "compare_models"}  # the comparison predicts its patches with predict.tta/batch_size, as evaluation does


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("wf"))


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_lists_the_whole_dag_for_the_default_config(workdir):
    proc = snakemake(workdir, "-n", "--cores", "2", check=True)
    jobs = planned_jobs(proc.stdout)
    assert STAGE_RULES <= set(jobs), jobs
    assert jobs["reconstruct_slab"] == 4 and jobs["predict_slab"] == 4  # recon.slabs, predict.slabs


@pytest.mark.parametrize(
    "overlay,message",
    [
        ("colour: red\n", "Additional properties are not allowed ('colour' was unexpected)"),
        ("recon:\n  iterations: 0\n", "0 is less than the minimum of 1"),
        ("recon:\n  projector: fast\n", "'fast' is not one of"),
    ],
)
def test_bad_config_stops_at_start_up(workdir, overlay, message):
    (workdir / "bad.yaml").write_text(overlay)
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", "config/config.yaml", "bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def _write_samples(workdir: Path, name: str, row: str) -> str:
    header = "sample\ttilt_series\tangles\tpixel_size_nm\ttilt_axis_deg\tthickness_px\ttrue_labels\tannotation_images\tannotation_labels\n"
    path = workdir / name
    path.write_text(header + row + "\n")
    return name


def test_corrupt_tilt_series_stops_before_any_job(workdir):
    bad = workdir / "data" / "broken.mrc"
    bad.parent.mkdir(exist_ok=True)
    io.write_volume(bad, np.ones((5, 16, 16), np.float32), 0.5)
    bad.write_bytes(bad.read_bytes()[:-200])  # truncated copy
    samples = _write_samples(workdir, "bad_samples.tsv", "broken\tdata/broken.mrc\t\t0.5\t0\t\t\t\t")
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", f"samples={samples}", "train={'samples': []}")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tomoflow:")]
    assert len(lines) == 1, proc.stderr
    assert "data/broken.mrc" in lines[0] and "truncated" in lines[0] and "Fix:" in lines[0]


def test_wrong_angle_count_stops_before_any_job(workdir):
    stack = workdir / "data" / "five.mrc"
    stack.parent.mkdir(exist_ok=True)
    io.write_volume(stack, np.ones((5, 16, 16), np.float32), 0.5)
    io.write_angles(workdir / "data" / "four.tlt", [-30, -10, 10, 30])
    samples = _write_samples(workdir, "bad_angles.tsv", "five\tdata/five.mrc\tdata/four.tlt\t0.5\t0\t\t\t\t")
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", f"samples={samples}", "train={'samples': []}")
    assert proc.returncode != 0
    assert "4 tilt angles for 5 images" in proc.stderr


# --------------------------------------------------------------------------- end to end (tiny config)
def _outputs(root: Path) -> dict[str, object]:
    """Deterministic outputs of a run, for comparing two runs."""
    vol, _ = io.read_volume(root / "results/demo/volume.mrc")
    seg, _ = io.read_volume(root / "results/demo/segmentation.tif")
    return {
        "volume": vol,
        "segmentation": seg,
        "alignment": (root / "results/demo/alignment.tsv").read_text(),
        "particles": (root / "results/demo/quantification/particles.tsv").read_text(),
        "model_sha": hashlib.sha256((root / "results/models/focal/unet.keras").read_bytes()).hexdigest(),
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = make_workdir(tmp_path_factory.mktemp("tiny"))
    snakemake(root, "--cores", "2", "--configfile", TINY, check=True, timeout=1500)
    return root


#: Alignment and reconstruction of the tiny configuration, recorded when the frame of issue 16 was introduced.
#: A refactor must reproduce them within float rounding; a change that means to alter them regenerates the file
#: with ``TOMOFLOW_UPDATE_REFERENCE=1 python -m pytest tests/test_workflow.py -k fingerprint`` and says so.
TINY_REFERENCE = Path(__file__).parent / "data" / "tiny_reference.json"


def tiny_fingerprint(results: Path) -> dict:
    """Alignment table + summary and per-slice/per-row sums of the tiny volume (float64)."""
    table = io.read_tsv(results / "demo/alignment.tsv")
    summary = io.read_json(results / "demo/alignment.json")
    vol, vs = io.read_volume(results / "demo/volume.mrc")
    v = np.asarray(vol, dtype=np.float64)
    return {
        "tilt_axis_deg": float(summary["tilt_axis_deg"]),
        "center_offset_px": float(summary["center_offset_px"]),
        "shifts_px": table[["shift_x_px", "shift_y_px"]].to_numpy(np.float64).round(6).tolist(),
        "volume_shape": list(v.shape),
        "voxel_size_nm": float(vs),
        "slice_sums": v.sum(axis=(1, 2)).tolist(),
        "z_profile": v.sum(axis=(0, 2)).tolist(),
        "x_profile": v.sum(axis=(0, 1)).tolist(),
    }


@pytest.mark.slow
def test_tiny_alignment_and_volume_match_the_recorded_fingerprint(tiny_run):
    """Refactors keep the demo's outputs: alignment and volume equal the recorded run within float rounding."""
    got = tiny_fingerprint(tiny_run / "results")
    if os.environ.get("TOMOFLOW_UPDATE_REFERENCE"):
        io.write_json(TINY_REFERENCE, got)
    ref = io.read_json(TINY_REFERENCE)
    assert got["volume_shape"] == ref["volume_shape"] and got["voxel_size_nm"] == pytest.approx(ref["voxel_size_nm"])
    assert got["tilt_axis_deg"] == pytest.approx(ref["tilt_axis_deg"], abs=1e-3)
    assert got["center_offset_px"] == pytest.approx(ref["center_offset_px"], abs=1e-3)
    assert np.allclose(got["shifts_px"], ref["shifts_px"], atol=1e-3)
    for key in ("slice_sums", "z_profile", "x_profile"):
        assert np.allclose(got[key], ref[key], rtol=1e-4, atol=1e-6 * max(map(abs, ref[key]))), key


@pytest.mark.slow
def test_tiny_end_to_end_produces_every_stage_output(tiny_run):
    r = tiny_run / "results"
    expected = [
        "synthetic/demo/tilt_series.mrc",
        "demo/aligned.mrc",
        "demo/alignment.tsv",
        "demo/aligned.xf",
        "demo/volume.mrc",
        "demo/figures/orthoslices.png",
        "models/focal/unet.keras",
        "models/ce/unet.keras",
        "models/comparison.tsv",
        "models/focal/history.tsv",
        "demo/segmentation.tif",
        "demo/metrics/metrics.json",
        "demo/metrics/table1.tsv",
        "demo/meshes/support.vtp",
        "demo/meshes/particles.vtp",
        "demo/quantification/particles.tsv",
        "demo/quantification/summary.json",
        "demo/provenance.json",
    ]
    missing = [p for p in expected if not (r / p).is_file()]
    assert not missing, missing
    labels, _ = io.read_volume(r / "demo/segmentation.tif")
    truth, _ = io.read_volume(r / "synthetic/demo/labels.tif")
    assert labels.shape == truth.shape and labels.dtype == np.uint8
    # the render shows both classes: light-grey support and red particles
    from PIL import Image

    rgb = np.asarray(Image.open(r / "demo/meshes/render_iso.png").convert("RGB")).astype(int)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    grey = (abs(rgb[..., 0] - rgb[..., 1]) < 12) & (abs(rgb[..., 1] - rgb[..., 2]) < 12) & (rgb[..., 0] > 60) & (rgb[..., 0] < 235)
    assert red.mean() > 1e-3 and grey.mean() > 0.02, (red.mean(), grey.mean())
    # the meshes are in nm, mesh (X, Y, Z) = volume axes (x, y, z) = (2, 0, 1): the support mesh spans the
    # extent of the predicted support voxels along each axis (the tiny 2-epoch model's support need not be
    # the specimen's, so the reference is the segmentation itself), within the surface's closing half voxel
    # and the smoothing
    import pyvista as pv

    support = pv.read(r / "demo/meshes/support.vtp")
    xmin, xmax, ymin, ymax, zmin, zmax = support.bounds
    iy, iz, ix = np.nonzero(labels == 1)
    voxel_extent = [(a.max() - a.min() + 1) * 0.4 for a in (ix, iy, iz)]
    for mesh_extent, vox in zip((xmax - xmin, ymax - ymin, zmax - zmin), voxel_extent):
        assert abs(mesh_extent - vox) <= 1.5 * 0.4, (support.bounds, voxel_extent)


@pytest.mark.slow
def test_changing_a_prediction_setting_reruns_only_prediction_and_downstream(tiny_run):
    (tiny_run / "tta.yaml").write_text("predict:\n  slabs: 2\n  tta: true\n")
    proc = snakemake(tiny_run, "-n", "--cores", "2", "--configfile", TINY, "tta.yaml", check=True)
    jobs = planned_jobs(proc.stdout)
    planned = set(jobs) - {"all"}
    assert planned == DOWNSTREAM_OF_PREDICT, jobs
    # and nothing at all is planned when nothing changed
    again = snakemake(tiny_run, "-n", "--cores", "2", "--configfile", TINY, check=True)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_changing_one_named_model_reruns_only_that_model_and_the_comparison(tiny_run):
    """tiny.yaml trains `focal` (segments the samples) and `ce`: a change to `models.ce` touches neither
    the segmentation nor `focal`; the comparison reads the two models side by side."""
    (tiny_run / "ce.yaml").write_text("models:\n  ce:\n    focal_gamma: 0.5\n")
    proc = snakemake(tiny_run, "-n", "--cores", "2", "--configfile", TINY, "ce.yaml", check=True)
    jobs = planned_jobs(proc.stdout)
    # provenance records the whole config, so it is rewritten too (as for any config change)
    assert set(jobs) - {"all"} == {"train_unet", "compare_models", "provenance"} and jobs["train_unet"] == 1, jobs
    assert "results/models/ce/unet.keras" in proc.stdout
    table = io.read_tsv(tiny_run / "results/models/comparison.tsv")
    assert list(table["model"]) == ["focal", "ce"] and set(table["evaluated_on"]) == {"validation (no test set)"}
    for name in ("focal", "ce"):
        meta = read_metadata(tiny_run / f"results/models/{name}/unet.keras")
        assert meta["model"] == name and meta["classes"] == ["background", "support", "particles"]
        assert meta["pixel_size_nm"] == pytest.approx(0.4) and meta["patch_size"] == [64, 64]
    assert read_metadata(tiny_run / "results/models/ce/unet.keras")["focal_gamma"] == 0.0
    prov = io.read_json(tiny_run / "results/demo/provenance.json")
    assert "results/models/focal/unet.keras" in json.dumps(prov)


@pytest.mark.slow
def test_report_collects_every_figure(tiny_run):
    snakemake(tiny_run, "--cores", "1", "--configfile", TINY, "--report", "report.zip", check=True, timeout=600)
    import zipfile

    with zipfile.ZipFile(tiny_run / "report.zip") as z:
        names = " ".join(z.namelist())
    for figure in (
        "specimen.png",
        "alignment_qc.png",
        "orthoslices.png",
        "misfit.png",
        "training_curves.png",
        "comparison.png",
        "prediction.png",
        "table1.tsv",
        "rhd.png",
        "errors.png",
        "render_iso.png",
        "size_hist.png",
    ):
        assert figure in names, figure


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_outputs(tiny_run, tmp_path_factory):
    root = make_workdir(tmp_path_factory.mktemp("killed"))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", TINY]
    proc = subprocess.Popen(cmd, cwd=root, env=workflow_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # kill it hard while the U-Net is training (recon and alignment are done by then)
    deadline = time.monotonic() + 900
    marker = root / "logs" / "train_unet" / "focal.log"
    while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    snakemake(root, "--unlock", "--configfile", TINY, check=True)
    snakemake(root, "--cores", "2", "--configfile", TINY, check=True, timeout=1500)
    a, b = _outputs(tiny_run), _outputs(root)
    np.testing.assert_array_equal(a["volume"], b["volume"])
    np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
    for key in ("alignment", "particles"):
        assert a[key] == b[key], key


# --------------------------------------------------------------------------- the same through Slurm
from slurm_cluster import run_snakemake as run_under_profile  # noqa: E402
from slurm_cluster import slurm_cluster  # noqa: E402,F401  (fixture)

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_config_through_slurm_equals_the_local_run(tiny_run, slurm_cluster, tmp_path_factory):  # noqa: F811
    root = make_workdir(tmp_path_factory.mktemp("slurm_wf"))
    res = run_under_profile(
        root,
        ["results/demo/volume.mrc", "--configfile", TINY],
        profile=slurm_cluster.profiles,
        env=slurm_cluster.snakemake_env(),
        cancel=slurm_cluster,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-6000:]
    job_ids = [m.group(2) for m in SUBMITTED.finditer(res.stdout)]
    # simulate, align, 2 recon slabs, gather: every one a Slurm job that completed
    assert len(job_ids) == 5, res.stdout[-4000:]
    jobs = slurm_cluster.jobs()
    for jid in job_ids:
        assert jobs[jid]["JobState"] == "COMPLETED" and jobs[jid]["ExitCode"] == "0:0", jobs[jid]
    # each rule's own log shows it ran inside one of those jobs
    logged = set()
    for logfile in (root / "logs").rglob("*.log"):
        logged |= set(re.findall(r"SLURM_JOB_ID=(\d+)", logfile.read_text(errors="replace")))
    assert set(job_ids) <= logged
    # same numbers as the local run
    for rel in ("results/demo/aligned.mrc", "results/demo/volume.mrc"):
        a, _ = io.read_volume(tiny_run / rel)
        b, _ = io.read_volume(root / rel)
        np.testing.assert_array_equal(a, b, err_msg=rel)


# --------------------------------------------------------------------------- annotation round trip (issue 14)
@pytest.fixture(scope="module")
def annotated_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run (results and Snakemake's records) for the annotation round trip."""
    import shutil

    root = tmp_path_factory.mktemp("annot")
    shutil.copytree(tiny_run, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("report.zip", "tta.yaml"))
    return root


@pytest.mark.slow
def test_annotation_round_trip_export_label_train_predict(annotated_run):
    """`snakemake annotate` exports evenly spread slices; labels painted on them (here: the synthetic truth at the
    exported indices) train the model with the images read from the current volume; the model segments the
    volume; a geometry change (thickness_px) then refuses the labels at start-up."""
    root = annotated_run
    snakemake(root, "annotate", "--cores", "2", "--configfile", TINY, check=True, timeout=600)
    out = root / "results/demo/to_annotate"
    sel = io.read_json(out / "selection.json")
    vol, _ = io.read_volume(root / "results/demo/volume.mrc")
    n = vol.shape[0]  # 16 slices; 10 evenly spread over [2, 14) (export_exclude_edges 2)
    assert sel["strategy"] == "even" and sel["volume_shape"] == list(vol.shape)
    assert sel["indices"] == [2 + int((k + 0.5) * (n - 4) / 10) for k in range(10)]
    for i in sel["indices"]:
        np.testing.assert_array_equal(io.read_volume(out / f"demo_z{i:04d}.tif")[0][0], vol[i])
    assert "demo_z0002_labels.tif" in (out / "HOWTO.md").read_text()
    # the user's painting: the truth at the exported indices, saved under the documented names
    truth, _ = io.read_volume(root / "results/synthetic/demo/labels.tif")
    painted = root / "annotations" / "demo_labels"
    painted.mkdir(parents=True)
    import tifffile

    for i in sel["indices"][::2]:  # five of the ten slices painted
        tifffile.imwrite(painted / f"demo_z{i:04d}_labels.tif", truth[i])
    table = (root / "tests/configs/tiny_samples.tsv").read_text().splitlines()
    head = table[0].split("\t")
    cells = table[1].split("\t") + [""] * (len(head) - len(table[1].split("\t")))
    cells[head.index("annotation_labels")] = "annotations/demo_labels"
    cells[head.index("true_labels")] = ""  # a user's sample: no true labels, only the painted slices
    (root / "rt_samples.tsv").write_text(table[0] + "\n" + "\t".join(cells) + "\n")
    (root / "rt.yaml").write_text(f"samples: rt_samples.tsv\ntrain:\n  epochs: 1\n  test: ['demo:{sel['indices'][-2]}']\n")
    snakemake(root, "results/demo/segmentation.tif", "--cores", "2", "--configfile", TINY, "rt.yaml", check=True, timeout=900)
    info = io.read_json(root / "results/demo/annotations/slices.json")
    assert info["source"] == "volume_indices" and info["indices"] == sel["indices"][::2]
    images, _ = io.read_volume(root / "results/demo/annotations/images.tif")
    labels, _ = io.read_volume(root / "results/demo/annotations/labels.tif")
    np.testing.assert_array_equal(images, vol[sel["indices"][::2]])  # read from the current volume
    np.testing.assert_array_equal(labels, truth[sel["indices"][::2]])
    split = io.read_json(root / "results/training/split.json")
    assert {r["slice"] for r in split["test"]} == {sel["indices"][-2]}
    assert {r["slice"] for side in ("train", "validation", "test") for r in split[side]} == set(sel["indices"][::2])
    assert not {r["slice"] for r in split["train"]} & {r["slice"] for r in split["validation"]}
    seg, _ = io.read_volume(root / "results/demo/segmentation.tif")
    assert seg.shape == vol.shape and seg.dtype == np.uint8
    # the active-learning step: entropy export ranks the unlabelled slices by the model's uncertainty
    (root / "al.yaml").write_text("annotations:\n  export_strategy: entropy\n  export_slices: 3\n")
    snakemake(root, "annotate", "--cores", "2", "--configfile", TINY, "rt.yaml", "al.yaml", check=True, timeout=600)
    al = io.read_json(out / "selection.json")
    assert al["strategy"] == "entropy" and len(al["indices"]) == 3 and not set(al["indices"]) & set(sel["indices"][::2])
    scores = np.asarray(al["all_scores"])
    free = [i for i in range(2, n - 2) if i not in sel["indices"][::2]]
    assert sorted(al["indices"]) == sorted(sorted(free, key=lambda i: (-scores[i], i))[:3])
    # re-reconstruction with another geometry: the labels no longer fit -> refused before any job
    cells[head.index("thickness_px")] = "48"
    (root / "rt_samples.tsv").write_text(table[0] + "\n" + "\t".join(cells) + "\n")
    proc = snakemake(root, "-n", "--cores", "1", "--configfile", TINY, "rt.yaml")
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tomoflow:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert f"demo_z{sel['indices'][0]:04d}_labels.tif" in lines[0] and "does not match slice" in lines[0] and "Fix:" in lines[0]


@pytest.mark.slow
def test_annotation_table_alone_trains_with_explicit_validation_and_test(annotated_run):
    """Annotation-only data (no tilt series): a table row of image/label stacks trains the model with
    train.samples: []; the explicit validation and test slices are honoured."""
    root = annotated_run
    vol, _ = io.read_volume(root / "results/demo/volume.mrc")
    truth, _ = io.read_volume(root / "results/synthetic/demo/labels.tif")
    idx = [1, 4, 7, 10, 13]
    io.write_volume(root / "colleague_images.tif", vol[idx], 0.4)
    io.write_labels(root / "colleague_labels.tif", truth[idx], 0.4)
    (root / "colleague.tsv").write_text("name\timages\tlabels\tpixel_size_nm\ncolleague\tcolleague_images.tif\tcolleague_labels.tif\t0.4\n")
    (root / "only.yaml").write_text("annotations:\n  table: colleague.tsv\ntrain:\n  samples: []\n  epochs: 1\n"
                                    "  validation: ['colleague:1']\n  test: ['colleague:4']\n")
    snakemake(root, "results/models/focal/unet.keras", "--cores", "2", "--configfile", TINY, "only.yaml", check=True, timeout=900)
    split = io.read_json(root / "results/training/split.json")
    assert split["mode"] == "explicit" and split["sources"] == ["colleague"]
    # a stack's slice numbers are its pages: colleague:1 = page 1, colleague:4 = page 4
    assert {(r["index"], r["slice"]) for r in split["validation"]} == {(1, 1)}
    assert {(r["index"], r["slice"]) for r in split["test"]} == {(4, 4)}
    assert {r["slice"] for r in split["train"]} == {0, 2, 3}
    stack, _ = io.read_volume(root / "results/annotation_sets/colleague/images.tif")
    np.testing.assert_array_equal(stack, vol[idx])
    assert (root / "results/models/focal/unet.keras").is_file()
