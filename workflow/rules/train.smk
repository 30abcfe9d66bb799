# Training data and U-Net training (tomoflow.annotations, tomoflow.unet, tomoflow.train):
# extract_annotations (per sample: slices of the volume + true labels for the demo, or the user's
# napari/Fiji/ilastik image/label pairs, validated and copied to one stack format) ->
# train_unet (all samples of train.samples -> results/model/).


rule extract_annotations:
    input:
        unpack(annotation_inputs),
    output:
        images="results/{sample}/annotations/images.tif",
        labels="results/{sample}/annotations/labels.tif",
        slices="results/{sample}/annotations/slices.json",
    log:
        "logs/extract_annotations/{sample}.log",
    params:
        mode=lambda wc: annotation_mode(wc.sample),
        n_slices=config["annotations"]["n_slices"],
        seed=config["annotations"]["seed"],
        register_labels=config["annotations"]["register_labels"],
        max_label_offset_vox=config["annotations"]["max_label_offset_vox"],
        classes=CLASSES,
        pixel_size_nm=sample_float("pixel_size_nm"),
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
        history=report("results/model/history.tsv", category="4. Segmentation", subcategory="U-Net training", caption="../report/history.rst"),
        curves=report("results/model/training_curves.png", category="4. Segmentation", subcategory="U-Net training", caption="../report/training_curves.rst"),
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
        lr_schedule=config["train"]["lr_schedule"],
        early_stopping_patience=config["train"]["early_stopping_patience"],
        particle_oversampling=config["train"]["particle_oversampling"],
        steps_per_epoch=config["train"]["steps_per_epoch"],
        max_minutes=config["train"]["max_minutes"],
        precision=config["train"]["precision"],
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_unet.py"
