# Blended U-Net prediction of the whole reconstructed stack (tomoflow.predict), scatter/gather over slabs:
# predict_slab (one job per slab, memory bounded by the slab) -> predict_segmentation (concatenate + figure).
# GPU: predict_slab declares gpu=1 so that a scheduler with GPUs gives it one; locally it only limits
# concurrency when `--resources gpu=N` is given, and the same code runs on CPU (TensorFlow picks the device).


def _predict_pixel_size(wildcards):
    """pixel_size_nm of the sample table (fallback when the volume header has no voxel size), or None."""
    if wildcards.sample in SAMPLES.index:
        value = SAMPLES.loc[wildcards.sample, "pixel_size_nm"]
        if value not in ("", None):
            return float(value)
    return None


def _predict_prob_files(pattern):
    """Per-class probability files (class-major order) when predict.save_probabilities is on."""
    if not config["predict"]["save_probabilities"]:
        return {}
    return {"probabilities": [pattern.format(cls=c, i="{i}") for c in CLASSES]}


rule predict_slab:
    input:
        volume="results/{sample}/volume.mrc",
        model="results/model/unet.keras",
    output:
        labels="results/{sample}/predict/slab_{i}.tif",
        **_predict_prob_files("results/{{sample}}/predict/slab_{i}_prob_{cls}.tif"),
    log:
        "logs/predict_slab/{sample}_{i}.log",
    benchmark:
        "benchmarks/results/predict_slab/{sample}_{i}.tsv"
    wildcard_constraints:
        i=r"\d+",
    params:
        slabs=config["predict"]["slabs"],
        batch_size=config["predict"]["batch_size"],
        tta=config["predict"]["tta"],
        save_probabilities=config["predict"]["save_probabilities"],
        patch_size=config["train"]["patch_size"],
        pixel_size_nm=_predict_pixel_size,
    threads: 4
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1,
    conda:
        "../../envs/predict.yaml"
    script:
        "../scripts/predict_slab.py"


rule predict_segmentation:
    input:
        volume="results/{sample}/volume.mrc",
        slabs=lambda wc: [f"results/{wc.sample}/predict/slab_{i}.tif" for i in range(config["predict"]["slabs"])],
        probabilities=lambda wc: (
            [
                f"results/{wc.sample}/predict/slab_{i}_prob_{c}.tif"
                for c in CLASSES
                for i in range(config["predict"]["slabs"])
            ]
            if config["predict"]["save_probabilities"]
            else []
        ),
    output:
        segmentation="results/{sample}/segmentation.tif",
        figure="results/{sample}/figures/prediction.png",
        **(
            {"probabilities": [f"results/{{sample}}/probabilities/{c}.tif" for c in CLASSES]}
            if config["predict"]["save_probabilities"]
            else {}
        ),
    log:
        "logs/predict_segmentation/{sample}.log",
    benchmark:
        "benchmarks/results/predict_segmentation/{sample}.tsv"
    params:
        classes=CLASSES,
        figure_slices=4,
        pixel_size_nm=_predict_pixel_size,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/predict.yaml"
    script:
        "../scripts/predict_segmentation.py"
