# The report's landing page (`report:` in the Snakefile -> workflow/report/workflow.rst) and the run summary
# it shows: rule report_summary collects every sample's key numbers (tomoflow.report.run_summary) into
# results/report/summary.html (an HTML fragment, also a report item) and summary.tsv.
# `snakemake --report report.html` then opens on what was run, the samples and their numbers, with links
# to every figure.

from tomoflow.report import describe_run  # noqa: E402 - the package path is set in common.smk

REPORT_SUMMARY = "results/report/summary.html"


rule report_summary:
    input:
        # per sample, in the order of the sample table; Table 1 only for the samples that are evaluated
        alignment=expand("results/{sample}/alignment.json", sample=SAMPLES.index),
        misfit=expand("results/{sample}/recon/misfit.tsv", sample=SAMPLES.index),
        # quantification only where a model segments the samples (a trained or an external model)
        quantification=expand("results/{sample}/quantification/summary.json", sample=SAMPLES.index) if SEGMENTED else [],
        table1=[f"results/{s}/metrics/table1.tsv" for s in SAMPLES.index if evaluate_inputs_exist(s)],
    output:
        html=report(REPORT_SUMMARY, category="0. Summary", caption="../report/summary.rst"),
        tsv="results/report/summary.tsv",
    log:
        "logs/report_summary.log",
    params:
        samples=list(SAMPLES.index),
        evaluated=[s for s in SAMPLES.index if evaluate_inputs_exist(s)],
        quantified=list(SAMPLES.index) if SEGMENTED else [],
        run=describe_run(config, list(SAMPLES.index)),
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/report_summary.py"
