# U-Net prediction of the whole reconstructed stack (tomoflow.predict), scatter/gather over slabs:
# predict_slab (one job per slab, memory bounded by the slab) -> predict_segmentation (concatenate + figure).
# predict.mode auto: one network pass per whole slice (several slices per call) where a slice fits the
# memory budget (half of resources.mem_mb; the rest holds TensorFlow, the model and the slab's labels),
# blended overlapping patches otherwise.
# The model: predict.model ("" = the first of `models:`, a name, or an external .keras file); its metadata
# are checked (classes; pixel size: resampled to the model's and back, or refused with predict.resample: never).
# GPU: predict_slab declares gpu=1 so that a scheduler with GPUs gives it one; locally it only limits
# concurrency when `--resources gpu=N` is given, and the same code runs on CPU (TensorFlow picks the device).


rule predict_slab:
    input:
        volume="results/{sample}/volume.mrc",
        model=SEGMENT_MODEL or "results/models/none/unet.keras",  # the segmenting model (tomoflow.models.segment_model)
    output:
        labels="results/{sample}/predict/slab_{i}.tif",
        **(
            {"probabilities": [f"results/{{sample}}/predict/slab_{{i}}_prob_{c}.tif" for c in CLASSES]}
            if config["predict"]["save_probabilities"]
            else {}
        ),
    log:
        "logs/predict_slab/{sample}_{i}.log",
    benchmark:
        "benchmarks/results/predict_slab/{sample}_{i}.tsv"
    params:
        slabs=config["predict"]["slabs"],
        mode=config["predict"]["mode"],
        batch_size=config["predict"]["batch_size"],
        tta=config["predict"]["tta"],
        patch_size=SEGMENT_PATCH,  # where the model has no metadata (else its training patch)
        classes=CLASSES,
        resample=config["predict"]["resample"],
        pixel_size_tolerance=config["predict"]["pixel_size_tolerance"],
        # MiB for the network's activations of one model call (auto mode: whole slices if one fits)
        memory_budget_mb=lambda wildcards, resources: 0.5 * resources.mem_mb,
        # fallback voxel size (nm) where the volume header has none: pixel_size_nm of the sample table
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 4
    resources:
        mem_mb=4000,
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
        figure=report("results/{sample}/figures/prediction.png", category="4. Segmentation", subcategory="{sample}", caption="../report/prediction.rst"),
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
        # fallback voxel size (nm) where the volume header has none: pixel_size_nm of the sample table
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/predict.yaml"
    script:
        "../scripts/predict_segmentation.py"
