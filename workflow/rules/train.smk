# Training data and U-Net training (tomoflow.annotations, tomoflow.unet, tomoflow.train):
# extract_annotations (per sample: slices of the volume + true labels for the demo, the user's
# napari/Fiji/ilastik image/label pairs, or labels painted on slices exported by `snakemake annotate` with
# the images read from the current volume; validated and copied to one stack format) and
# extract_annotation_set (per row of annotations.table: annotation-only data, no tilt series) ->
# split_annotations (train/validation/test patches of every source, by groups of neighbouring slices or
# explicit lists -> results/training/split.json, shared by every model) ->
# train_unet (all training sources -> results/model/).


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
        source=lambda wc: wc.sample,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/extract_annotations.py"


rule extract_annotation_set:
    input:
        images=lambda wc: ANNOTATION_SETS[wc.name]["images"],
        labels=lambda wc: ANNOTATION_SETS[wc.name]["labels"],
    output:
        images="results/annotation_sets/{name}/images.tif",
        labels="results/annotation_sets/{name}/labels.tif",
        slices="results/annotation_sets/{name}/slices.json",
    log:
        "logs/extract_annotation_set/{name}.log",
    params:
        mode="user",
        n_slices=config["annotations"]["n_slices"],
        seed=config["annotations"]["seed"],
        register_labels=config["annotations"]["register_labels"],
        max_label_offset_vox=config["annotations"]["max_label_offset_vox"],
        classes=CLASSES,
        pixel_size_nm=lambda wc: float(ANNOTATION_SETS[wc.name]["pixel_size_nm"]) if ANNOTATION_SETS[wc.name]["pixel_size_nm"] else None,
        source=lambda wc: wc.name,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/extract_annotations.py"


rule split_annotations:
    input:
        slices=training_stacks("slices.json"),
    output:
        split="results/training/split.json",
    log:
        "logs/split_annotations.log",
    params:
        sources=TRAIN_SOURCES,
        patch_size=config["train"]["patch_size"],
        validation=config["train"]["validation"],
        test=config["train"]["test"],
        val_fraction=config["train"]["val_fraction"],
        group_gap=config["train"]["group_gap"],
        seed=config["train"]["seed"],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/split_annotations.py"


rule train_unet:
    input:
        images=training_stacks("images.tif"),
        labels=training_stacks("labels.tif"),
        split="results/training/split.json",
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
        samples=TRAIN_SOURCES,
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
