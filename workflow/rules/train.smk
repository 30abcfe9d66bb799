# Training data and U-Net training (tomoflow.annotations, tomoflow.unet, tomoflow.train):
# extract_annotations (per sample: slices of the volume + true labels for the demo, or the user's
# napari/Fiji/ilastik image/label pairs, validated and copied to one stack format) ->
# train_unet (all samples of train.samples -> results/model/).


def _annotation_mode(sample):
    """'user' when the sample table gives annotation_images/labels, else 'volume' (true labels)."""
    images = sample_value(sample, "annotation_images")
    labels = sample_value(sample, "annotation_labels")
    if images and labels:
        return "user"
    if images or labels:
        raise ValueError(
            f"config/samples.tsv: sample {sample} has only one of annotation_images/annotation_labels. "
            "Fix: give both (a TIFF stack pair or two folders of paired TIFFs) or neither"
        )
    if sample_value(sample, "true_labels"):
        return "volume"
    raise ValueError(
        f"config/samples.tsv: sample {sample} has no annotations and no true_labels. "
        "Fix: fill annotation_images/annotation_labels, or drop it from train.samples"
    )


def _annotation_inputs(wildcards):
    s = wildcards.sample
    if _annotation_mode(s) == "user":
        return {"images": sample_value(s, "annotation_images"), "labels": sample_value(s, "annotation_labels")}
    return {"volume": f"results/{s}/volume.mrc", "labels": sample_value(s, "true_labels")}


def _annotation_pixel_size(wildcards):
    value = sample_value(wildcards.sample, "pixel_size_nm")
    return float(value) if value else None


rule extract_annotations:
    input:
        unpack(_annotation_inputs),
    output:
        images="results/{sample}/annotations/images.tif",
        labels="results/{sample}/annotations/labels.tif",
        slices="results/{sample}/annotations/slices.json",
    log:
        "logs/extract_annotations/{sample}.log",
    wildcard_constraints:
        sample="|".join(SAMPLES.index) if len(SAMPLES.index) else "NO_SAMPLES",
    params:
        mode=lambda wc: _annotation_mode(wc.sample),
        n_slices=config["annotations"]["n_slices"],
        seed=config["annotations"]["seed"],
        classes=CLASSES,
        pixel_size_nm=_annotation_pixel_size,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/extract_annotations.py"


rule train_unet:
    input:
        images=expand("results/{sample}/annotations/images.tif", sample=config["train"]["samples"]),
        labels=expand("results/{sample}/annotations/labels.tif", sample=config["train"]["samples"]),
    output:
        model="results/model/unet.keras",
        history="results/model/history.tsv",
        curves="results/model/training_curves.png",
        class_weights="results/model/class_weights.json",
        split="results/model/split.json",
        normalization="results/model/normalization.json",
    log:
        "logs/train_unet/train_unet.log",
    benchmark:
        "benchmarks/results/train_unet/train_unet.tsv"
    params:
        samples=config["train"]["samples"],
        classes=CLASSES,
        seed=config["train"]["seed"],
        patch_size=config["train"]["patch_size"],
        base_filters=config["train"]["base_filters"],
        depth=config["train"]["depth"],
        epochs=config["train"]["epochs"],
        batch_size=config["train"]["batch_size"],
        learning_rate=config["train"]["learning_rate"],
        val_fraction=config["train"]["val_fraction"],
        focal_gamma=config["train"]["focal_gamma"],
        class_weights=config["train"]["class_weights"],
        monitor=config["train"]["monitor"],
        augment=config["train"]["augment"],
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_unet.py"
