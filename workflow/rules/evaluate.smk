# Evaluation (tomoflow.metrics, tomoflow.evaluation): DSC, precision, recall and (robust) Hausdorff
# distances in nm, on (a) the sample's validation patches of the training split (paper protocol; needs the
# model) and (b) the predicted volume vs the true labels, slice by slice and in 3-D (where true labels exist).


rule evaluate_segmentation:
    input:
        unpack(evaluate_inputs),
    output:
        metrics="results/{sample}/metrics/metrics.json",
        table1=report("results/{sample}/metrics/table1.tsv", category="5. Evaluation", subcategory="{sample}", caption="../report/table1.rst"),
        rhd="results/{sample}/metrics/rhd.tsv",
        rhd_png=report("results/{sample}/metrics/rhd.png", category="5. Evaluation", subcategory="{sample}", caption="../report/rhd.rst"),
        errors=report("results/{sample}/metrics/errors.png", category="5. Evaluation", subcategory="{sample}", caption="../report/errors.rst"),
    log:
        "logs/evaluate_segmentation/{sample}.log",
    benchmark:
        "benchmarks/results/evaluate_segmentation/{sample}.tsv"
    params:
        classes=config["classes"],
        percentiles=config["evaluate"]["percentiles"],
        patch_size=SEGMENT_PATCH,
        batch_size=config["predict"]["batch_size"],
        tta=config["predict"]["tta"],
        pixel_size_nm=sample_float("pixel_size_nm"),
        error_examples=4,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_segmentation.py"
