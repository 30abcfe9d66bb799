# Evaluation (tomoflow.metrics, tomoflow.evaluation): DSC, precision, recall and (robust) Hausdorff
# distances in nm, on (a) the sample's validation patches of the training split (paper protocol; needs the
# model) and (b) the predicted volume vs the true labels, slice by slice and in 3-D (where true labels exist).


def _evaluate_row(sample):
    return SAMPLES.loc[sample] if sample in SAMPLES.index else None


def _evaluate_inputs(wildcards):
    """Only what exists for this sample: true labels (+ segmentation) and/or model + split + annotations."""
    s = wildcards.sample
    row = _evaluate_row(s)
    inputs = {}
    truth = str(row["true_labels"]).strip() if row is not None and "true_labels" in row.index else ""
    if truth and truth.lower() != "nan":
        inputs["true_labels"] = truth
        inputs["segmentation"] = f"results/{s}/segmentation.tif"
    if s in config["train"]["samples"]:
        inputs["model"] = "results/model/unet.keras"
        inputs["split"] = "results/model/split.json"
        inputs["images"] = f"results/{s}/annotations/images.tif"
        inputs["labels"] = f"results/{s}/annotations/labels.tif"
    return inputs


def _evaluate_pixel_size(wildcards):
    """pixel_size_nm of the sample table (fallback when file headers have no voxel size), or None."""
    row = _evaluate_row(wildcards.sample)
    if row is not None and row["pixel_size_nm"] not in ("", None):
        return float(row["pixel_size_nm"])
    return None


rule evaluate_segmentation:
    input:
        unpack(_evaluate_inputs),
    output:
        metrics="results/{sample}/metrics/metrics.json",
        table1="results/{sample}/metrics/table1.tsv",
        rhd="results/{sample}/metrics/rhd.tsv",
        rhd_png="results/{sample}/metrics/rhd.png",
        errors="results/{sample}/metrics/errors.png",
    log:
        "logs/evaluate_segmentation/{sample}.log",
    benchmark:
        "benchmarks/results/evaluate_segmentation/{sample}.tsv"
    params:
        classes=config["classes"],
        percentiles=config["evaluate"]["percentiles"],
        patch_size=config["train"]["patch_size"],
        batch_size=config["predict"]["batch_size"],
        tta=config["predict"]["tta"],
        pixel_size_nm=_evaluate_pixel_size,
        error_examples=4,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_segmentation.py"
