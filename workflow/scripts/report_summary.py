"""Rule report_summary: every sample's key numbers -> results/report/summary.html (landing page) and .tsv
(tomoflow.report.run_summary)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.report import SampleOutputs, run_summary

    i, p = smk.input, smk.params
    table1, quant = dict(zip(p.evaluated, i.table1)), dict(zip(p.quantified, i.quantification))
    samples = [
        SampleOutputs(s, alignment=a, misfit=m, quantification=quant.get(s), table1=table1.get(s))
        for s, a, m in zip(p.samples, i.alignment, i.misfit)
    ]
    res = run_summary(samples, {str(k): str(v) for k, v in p.run.items()})
    with io.atomic_path(smk.output.html) as tmp:
        tmp.write_text(res.html, encoding="utf-8")
    io.write_tsv(smk.output.tsv, res.table)


run_rule(snakemake, main)
