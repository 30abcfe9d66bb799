"""Key numbers of a run for the report's landing page (rule ``report_summary``).

:func:`run_summary` reads, per sample, the alignment summary (``alignment.json``), the reconstruction
misfit table (``recon/misfit.tsv``), Table 1 (``metrics/table1.tsv``, where the sample was evaluated) and
the quantification summary (``quantification/summary.json``), and returns

* a table with one row per sample: tilt axis (degrees), rotation-centre offset (px), alignment residual
  (px, RMS), final reconstruction misfit and its iteration, particle count and mean / median equivalent
  diameter (nm) of the prediction, specks removed, and the true labels' and the generator's count and mean
  diameter where known;
* an HTML fragment (``<div>`` with tables, no ``<html>`` wrapper) of that table, each sample's Table 1 and
  the description of the run, which the report shows as a result and which ``workflow/report/workflow.rst``
  places on the landing page.

Missing keys (an older or a partial output) give empty cells, not errors.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import pandas as pd

from . import io

Pathish = str | PathLike[str]

#: Columns of the summary table: (key, heading with unit).
COLUMNS = (
    ("sample", "sample"),
    ("tilt_axis_deg", "tilt axis (°)"),
    ("center_offset_px", "centre offset (px)"),
    ("alignment_residual_px", "alignment residual (px, RMS)"),
    ("final_misfit", "final misfit"),
    ("misfit_iteration", "iteration"),
    ("n_particles", "particles"),
    ("mean_diameter_nm", "mean diameter (nm)"),
    ("median_diameter_nm", "median diameter (nm)"),
    ("n_specks_removed", "specks removed"),
    ("n_particles_true", "particles (true labels)"),
    ("n_particles_generator", "particles (generator)"),
    ("mean_diameter_generator_nm", "mean diameter, generator (nm)"),
)


@dataclass(frozen=True)
class SampleOutputs:
    """The files :func:`run_summary` reads for one sample (None where the sample has none)."""

    sample: str
    alignment: Pathish | None = None
    misfit: Pathish | None = None
    quantification: Pathish | None = None
    table1: Pathish | None = None


@dataclass
class RunSummary:
    """Outputs of :func:`run_summary`: the per-sample table and its HTML fragment."""

    table: pd.DataFrame
    html: str


def describe_run(config: Mapping[str, Any], samples: Sequence[str]) -> dict[str, str]:
    """What a run does, ``{label: text}``, from its config (for the landing page).

    Parameters
    ----------
    config : mapping
        The validated workflow config (keys looked up leniently: a missing one shows ``?``).
    samples : sequence of str
        Sample names.

    Returns
    -------
    dict
        ``samples``, ``reconstruction``, ``segmentation``, ``models``, ``quantification`` descriptions.
    """

    def c(section: str, key: str) -> Any:
        sec = config.get(section)
        return sec.get(key, "?") if isinstance(sec, Mapping) else "?"

    trained = c("train", "samples")
    trained = ", ".join(map(str, trained)) if isinstance(trained, (list, tuple)) and trained else "no sample"
    return {
        "samples": ", ".join(map(str, samples)),
        "reconstruction": f"{c('recon', 'algorithm')}, {c('recon', 'iterations')} iterations "
                          f"({c('recon', 'backend')}, {c('recon', 'slabs')} slabs)",
        "segmentation": f"U-Net depth {c('train', 'depth')}, {c('train', 'base_filters')} base filters, "
                        f"{c('train', 'epochs')} epochs, trained on {trained}",
        "models": _describe_models(config),
        "quantification": f"particles of at least {c('quantify', 'min_particle_diameter_nm')} nm equivalent diameter; "
                          f"specks {'removed' if c('quantify', 'remove_specks') is True else 'kept'}",
    }


def _describe_models(config: Mapping[str, Any]) -> str:
    """The named models of the run and which one segments the samples (their settings are in the config
    section of the report and in each model's metadata)."""
    models = config.get("models")
    predict = config.get("predict")
    if not isinstance(models, Mapping) or not isinstance(predict, Mapping) or not isinstance(config.get("train"), Mapping):
        return "?"
    from .models import segment_model

    name, path = segment_model(config)
    listed = ", ".join(map(str, models))  # names only: a model's hyper-parameters do not rerun the summary
    who = f"model {name} ({path})" if name else (f"external model {path}" if path else "none (no model)")
    return f"{listed}; segmenting: {who}" + ("; compared in results/models/comparison.tsv" if config["train"].get("samples") else "")


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def sample_numbers(sample: str, alignment: Mapping[str, Any] | None, misfit: pd.DataFrame | None,
                   quantification: Mapping[str, Any] | None) -> dict[str, Any]:
    """One row of the summary table (keys: :data:`COLUMNS`) from a sample's parsed outputs.

    Parameters
    ----------
    sample : str
    alignment : mapping, optional
        ``alignment.json``.
    misfit : DataFrame, optional
        ``recon/misfit.tsv`` (the ``slab == "all"`` rows; the last iteration is the final misfit).
    quantification : mapping, optional
        ``quantification/summary.json``.
    """
    row: dict[str, Any] = {"sample": sample}
    row["tilt_axis_deg"] = _get(alignment, "tilt_axis_deg")
    row["center_offset_px"] = _get(alignment, "center_offset_px")
    row["alignment_residual_px"] = _get(alignment, "residual_px")
    row["final_misfit"] = row["misfit_iteration"] = None
    if misfit is not None and len(misfit):
        whole = misfit[(misfit["slab"].astype(str) == "all") & (misfit["iteration"] > 0)]
        if len(whole):
            last = whole.sort_values("iteration").iloc[-1]
            row["final_misfit"], row["misfit_iteration"] = float(last["misfit"]), int(last["iteration"])
    pred = _get(quantification, "predicted")
    row["n_particles"] = _get(pred, "n_particles")
    row["mean_diameter_nm"] = _get(pred, "mean_equivalent_diameter_nm")
    row["median_diameter_nm"] = _get(pred, "median_equivalent_diameter_nm")
    row["n_specks_removed"] = _get(quantification, "n_specks_removed")
    row["n_particles_true"] = _get(quantification, "true", "n_particles")
    row["n_particles_generator"] = _get(quantification, "generator", "n_reference")
    row["mean_diameter_generator_nm"] = _get(quantification, "generator", "mean_reference_diameter_nm")
    return row


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k))}</td>" for k, _ in columns) + "</tr>" for r in rows)
    return f'<table class="tomoflow-summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_html(table: pd.DataFrame, table1: Mapping[str, pd.DataFrame], run: Mapping[str, str]) -> str:
    """The HTML fragment of :func:`run_summary` (see the module docstring)."""
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    parts = ['<div class="tomoflow-summary">', "<h3>Run settings</h3>", "<ul>"]
    parts += [f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in run.items()]
    parts += ["</ul>", "<h3>Key numbers per sample</h3>", _html_table(rows, COLUMNS)]
    for sample, t1 in table1.items():
        cols = [(c, c) for c in t1.columns]
        parts += [f"<h3>Table 1: {html.escape(sample)}</h3>",
                  _html_table(t1.astype(object).where(t1.notna(), None).to_dict("records"), cols)]
    parts.append("</div>")
    return "\n".join(parts) + "\n"


def run_summary(samples: Sequence[SampleOutputs], run: Mapping[str, str]) -> RunSummary:
    """Key numbers of every sample of a run, as a table and as an HTML fragment.

    Parameters
    ----------
    samples : sequence of SampleOutputs
        The files of each sample (read with :mod:`tomoflow.io`).
    run : mapping
        What was run, ``{label: value}`` (e.g. ``{"reconstruction": "mlem, 50 iterations (astra)"}``),
        listed first.

    Returns
    -------
    RunSummary
        ``table`` has the keys of :data:`COLUMNS` as columns, one row per sample.
    """
    rows, table1 = [], {}
    for s in samples:
        alignment = io.read_json(s.alignment) if s.alignment is not None else None
        misfit = io.read_tsv(s.misfit) if s.misfit is not None else None
        quant = io.read_json(s.quantification) if s.quantification is not None else None
        rows.append(sample_numbers(s.sample, alignment, misfit, quant))
        if s.table1 is not None:
            table1[s.sample] = io.read_tsv(s.table1)
    table = pd.DataFrame(rows, columns=[k for k, _ in COLUMNS])
    return RunSummary(table, summary_html(table, table1, run))
