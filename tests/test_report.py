"""The run summary (tomoflow.report) and the report's landing page (workflow/report/workflow.rst) in a real
Snakemake report."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pandas as pd

from tomoflow import io
from tomoflow.report import COLUMNS, SampleOutputs, describe_run, run_summary, sample_numbers

REPO = Path(__file__).resolve().parents[1]


def _sample_files(root: Path, name: str, *, n_particles: int, misfit: list[float], table1: bool) -> SampleOutputs:
    d = root / name
    io.write_json(d / "alignment.json", {"tilt_axis_deg": 2.4375, "center_offset_px": -1.25, "residual_px": 0.0875})
    rows = [{"slab": s, "start": 0, "stop": 8, "iteration": it, "misfit": m, "residual_ss": 1.0, "data_ss": 1.0}
            for s in ("0", "all") for it, m in enumerate(misfit)]
    rows[1]["misfit"] = 99.0  # a slab row, not the whole volume: must not be reported
    io.write_tsv(d / "misfit.tsv", pd.DataFrame(rows))
    io.write_json(d / "summary.json", {
        "n_specks_removed": 7,
        "predicted": {"n_particles": n_particles, "mean_equivalent_diameter_nm": 2.375, "median_equivalent_diameter_nm": 2.25},
        "true": {"n_particles": 16},
        "generator": {"n_reference": 16, "mean_reference_diameter_nm": 2.45},
    })
    t1 = None
    if table1:
        t1 = d / "table1.tsv"
        io.write_tsv(t1, pd.DataFrame({"evaluation": ["volume_3d"], "particles DSC": ["0.812 ± 0.01"]}))
    return SampleOutputs(name, alignment=d / "alignment.json", misfit=d / "misfit.tsv",
                         quantification=d / "summary.json", table1=t1)


def test_run_summary_numbers_and_html(tmp_path):
    a = _sample_files(tmp_path, "a", n_particles=17, misfit=[0.9, 0.31, 0.1875], table1=True)
    b = _sample_files(tmp_path, "b", n_particles=3, misfit=[0.5, 0.25], table1=False)
    res = run_summary([a, b, SampleOutputs("c")], {"reconstruction": "mlem, 3 iterations"})
    t = res.table
    assert list(t.columns) == [k for k, _ in COLUMNS] and list(t["sample"]) == ["a", "b", "c"]
    ra = t.iloc[0]
    assert ra.tilt_axis_deg == 2.4375 and ra.alignment_residual_px == 0.0875 and ra.center_offset_px == -1.25
    assert ra.final_misfit == 0.1875 and ra.misfit_iteration == 2  # last iteration of the "all" rows
    assert t.iloc[1].final_misfit == 0.25 and t.iloc[1].misfit_iteration == 1
    assert ra.n_particles == 17 and ra.mean_diameter_nm == 2.375 and ra.n_specks_removed == 7
    assert ra.n_particles_generator == 16 and ra.mean_diameter_generator_nm == 2.45
    assert t.iloc[2].drop("sample").isna().all()  # a sample without outputs: empty cells
    h = res.html
    assert h.startswith('<div class="tomoflow-summary">') and h.rstrip().endswith("</div>")
    for text in ("<td>a</td>", "<td>2.438</td>", "<td>0.0875</td>", "<td>0.1875</td>", "<td>17</td>", "<td>2.375</td>",
                 "Table 1: a", "0.812 ± 0.01", "mlem, 3 iterations"):
        assert text in h, text
    assert "Table 1: b" not in h


def test_sample_numbers_tolerates_missing_keys():
    row = sample_numbers("x", {"tilt_axis_deg": 1.0}, pd.DataFrame(), {"predicted": None})
    assert row["tilt_axis_deg"] == 1.0 and row["alignment_residual_px"] is None
    assert row["final_misfit"] is None and row["n_particles"] is None


def test_describe_run():
    cfg = {"recon": {"algorithm": "mlem", "iterations": 50, "backend": "astra", "slabs": 4},
           "train": {"samples": ["demo"], "depth": 6, "base_filters": 8, "epochs": 40},
           "quantify": {"min_particle_diameter_nm": 0.5, "remove_specks": True}}
    d = describe_run(cfg, ["demo", "needle"])
    assert d["samples"] == "demo, needle"
    assert d["reconstruction"] == "mlem, 50 iterations (astra, 4 slabs)"
    assert "trained on demo" in d["segmentation"] and "0.5 nm" in d["quantification"] and "removed" in d["quantification"]
    assert describe_run({}, [])["reconstruction"] == "?, ? iterations (?, ? slabs)"


def _report_text(report_html: str) -> str:
    """The landing page's HTML as the report stores it (a JSON string in the page)."""
    m = re.search(r"workflow_desc\W*[:=]\s*(\"(?:[^\"\\]|\\.)*\")", report_html)
    return json.loads(m.group(1)) if m else report_html


def test_landing_page_shows_the_summary_in_a_real_snakemake_report(tmp_path):
    """A small workflow with this repository's landing page and a summary.html result: the report made by
    Snakemake opens on the run description, the summary's numbers and links to the categories."""
    from workflow_utils import snakemake

    summary = run_summary([_sample_files(tmp_path / "in", "demo", n_particles=123, misfit=[0.5, 0.1875], table1=True)],
                          {"reconstruction": "mlem, 2 iterations"})
    (tmp_path / "summary_src.html").write_text(summary.html)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "workflow.rst").write_text((REPO / "workflow" / "report" / "workflow.rst").read_text())
    (tmp_path / "report" / "cap.rst").write_text("caption\n")
    (tmp_path / "Snakefile").write_text(textwrap.dedent('''
        config.update({"samples": "config/samples.tsv", "recon": {"algorithm": "mlem", "iterations": 2},
                        "train": {"samples": ["demo"]}, "quantify": {"min_particle_diameter_nm": 0.5}})
        report: "report/workflow.rst"
        rule all:
            input: "results/report/summary.html", "results/demo/figures/alignment_qc.txt"
        rule summary:
            output: report("results/report/summary.html", category="0. Summary", caption="report/cap.rst")
            shell: "cp summary_src.html {output}"
        rule fig:
            output: report("results/demo/figures/alignment_qc.txt", category="2. Alignment", subcategory="demo", caption="report/cap.rst")
            shell: "echo figure > {output}"
    '''))
    snakemake(tmp_path, "--cores", "1", check=True, timeout=300)
    snakemake(tmp_path, "--cores", "1", "--report", "report.html", check=True, timeout=300)
    page = _report_text((tmp_path / "report.html").read_text())
    for text in ("What was run", "MLEM reconstruction", "2 iterations", "trained on", "demo",
                 "Key numbers per sample", "<td>123</td>", "<td>0.1875</td>", "Table 1: demo", "2. Alignment",
                 "alignment_qc.txt", "0. Summary"):
        assert text in page, text
    assert "No run summary yet" not in page
    assert "System Message" not in page and "Unknown target name" not in page, page[:3000]


def test_landing_page_without_a_summary_says_how_to_get_one(tmp_path):
    from workflow_utils import snakemake

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "workflow.rst").write_text((REPO / "workflow" / "report" / "workflow.rst").read_text())
    (tmp_path / "Snakefile").write_text(textwrap.dedent('''
        config.update({"samples": "s.tsv", "recon": {"algorithm": "sirt", "iterations": 5},
                       "train": {"samples": []}, "quantify": {"min_particle_diameter_nm": 0.5}})
        report: "report/workflow.rst"
        rule all:
            output: "x.txt"
            shell: "echo x > {output}"
    '''))
    snakemake(tmp_path, "--cores", "1", check=True, timeout=300)
    snakemake(tmp_path, "--cores", "1", "--report", "report.html", check=True, timeout=300)
    page = _report_text((tmp_path / "report.html").read_text())
    assert "No run summary yet" in page and "SIRT reconstruction" in page and "no sample" in page
