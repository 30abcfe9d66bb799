# Pre-training on the paper-like synthetic specimen (`snakemake pretrain`): simulate the specimen of
# config/paper_like.yaml (its `synthetic:` section; perfectly aligned series), reconstruct annotations.n_slices
# slices with MLEM, and train the U-Net of config `train:` on them -> results/pretrained/unet.keras, a warm
# start for real data (`train.init_model: results/pretrained/unet.keras`, see config/real_data.yaml).

import yaml

PAPER_LIKE = yaml.safe_load(open(Path(workflow.basedir) / "config" / "paper_like.yaml"))["synthetic"]


rule pretrain:
    input:
        "results/pretrained/unet.keras",


rule pretrain_annotations:
    output:
        images="results/pretrained/annotations/images.tif",
        labels="results/pretrained/annotations/labels.tif",
        slices="results/pretrained/annotations/slices.json",
    log:
        "logs/pretrain/annotations.log",
    benchmark:
        "benchmarks/results/pretrain/annotations.tsv"
    params:
        synthetic=PAPER_LIKE,
        n_slices=config["annotations"]["n_slices"],
        seed=config["annotations"]["seed"],
        iterations=config["recon"]["iterations"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/synthetic.yaml"
    script:
        "../scripts/pretrain_annotations.py"


rule pretrain_unet:
    input:
        images=["results/pretrained/annotations/images.tif"],
        labels=["results/pretrained/annotations/labels.tif"],
    output:
        model="results/pretrained/unet.keras",
        history="results/pretrained/history.tsv",
        curves="results/pretrained/training_curves.png",
        class_weights="results/pretrained/class_weights.json",
        split="results/pretrained/split.json",
        normalization="results/pretrained/normalization.json",
    log:
        "logs/pretrain/train_unet.log",
    benchmark:
        "benchmarks/results/pretrain/train_unet.tsv"
    params:
        samples=["pretrained"],
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
