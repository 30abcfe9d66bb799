# Training data and U-Net training (tomoflow.annotations, tomoflow.unet, tomoflow.train):
# extract_annotations (per sample: slices of the volume + true labels for the demo, the user's
# napari/Fiji/ilastik image/label pairs, or labels painted on slices exported by `snakemake annotate` with
# the images read from the current volume; validated and copied to one stack format) and
# extract_annotation_set (per row of annotations.table: annotation-only data, no tilt series) ->
# split_annotations (train/validation/test patches of every source, by groups of neighbouring slices or
# explicit lists -> results/training/split.json, shared by every model) ->
# train_unet (per named model configuration of `models:`, every training source -> results/models/{model}/) ->
# compare_models (every model side by side: results/models/comparison.tsv/.png).


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
        unpack(init_model_inputs),
        images=training_stacks("images.tif"),
        labels=training_stacks("labels.tif"),
        split="results/training/split.json",
    output:
        model="results/models/{model}/unet.keras",
        history=report("results/models/{model}/history.tsv", category="4. Segmentation", subcategory="U-Net training: {model}", caption="../report/history.rst"),
        curves=report("results/models/{model}/training_curves.png", category="4. Segmentation", subcategory="U-Net training: {model}", caption="../report/training_curves.rst"),
        class_weights="results/models/{model}/class_weights.json",
        split="results/models/{model}/split.json",
        normalization="results/models/{model}/normalization.json",
    wildcard_constraints:
        model=MODEL_CONSTRAINT,
    log:
        "logs/train_unet/{model}.log",
    benchmark:
        "benchmarks/results/train_unet/{model}.tsv"
    params:
        # the model's effective settings: train with the overrides of models.{model} (a change reruns only it)
        model=lambda wc: wc.model,
        samples=TRAIN_SOURCES,
        classes=CLASSES,
        val_fraction=config["train"]["val_fraction"],
        seed=model_setting("seed"),
        patch_size=model_setting("patch_size"),
        base_filters=model_setting("base_filters"),
        depth=model_setting("depth"),
        epochs=model_setting("epochs"),
        batch_size=model_setting("batch_size"),
        learning_rate=model_setting("learning_rate"),
        focal_gamma=model_setting("focal_gamma"),
        class_weights=model_setting("class_weights"),
        monitor=model_setting("monitor"),
        augment=model_setting("augment"),
        init_model=lambda wc: _models.init_model_path(config, wc.model),
        freeze_encoder_epochs=model_setting("freeze_encoder_epochs"),
        lr_schedule=model_setting("lr_schedule"),
        early_stopping_patience=model_setting("early_stopping_patience"),
        particle_oversampling=model_setting("particle_oversampling"),
        steps_per_epoch=model_setting("steps_per_epoch"),
        max_minutes=model_setting("max_minutes"),
        precision=model_setting("precision"),
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_unet.py"


rule compare_models:
    input:
        models=expand("results/models/{model}/unet.keras", model=MODELS),
        histories=expand("results/models/{model}/history.tsv", model=MODELS),
        class_weights=expand("results/models/{model}/class_weights.json", model=MODELS),
        splits=expand("results/models/{model}/split.json", model=MODELS),
        images=training_stacks("images.tif"),
        labels=training_stacks("labels.tif"),
    output:
        table=report("results/models/comparison.tsv", category="4. Segmentation", subcategory="Model comparison", caption="../report/comparison.rst"),
        figure=report("results/models/comparison.png", category="4. Segmentation", subcategory="Model comparison", caption="../report/comparison.rst"),
    log:
        "logs/compare_models.log",
    params:
        names=MODELS,
        samples=TRAIN_SOURCES,
        classes=CLASSES,
        percentiles=config["evaluate"]["percentiles"],
        batch_size=config["predict"]["batch_size"],
        tta=config["predict"]["tta"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/compare_models.py"
