# The annotation round trip (tomoflow.annotations.roundtrip): `snakemake annotate` exports, for every sample,
# slices of results/{sample}/volume.mrc to paint -> results/{sample}/to_annotate/ ({sample}_zNNNN.tif,
# HOWTO.md, selection.json).  annotations.export_strategy: even (evenly spread) or entropy (after a first
# model: the unlabelled slices where it is least certain, mean per-pixel entropy of its probabilities).
# The painted {sample}_zNNNN_labels.tif come back through the sample table's annotation_labels column
# (annotation_images empty): extract_annotations then reads the images from the *current* volume at
# those indices (train.smk), and refuses labels whose index or shape no longer fits it.
# The model used by the entropy strategy comes from annotate_model() in common.smk.


rule export_annotations:
    input:
        unpack(annotate_model),
        volume="results/{sample}/volume.mrc",
    output:
        folder=directory("results/{sample}/to_annotate"),
    log:
        "logs/export_annotations/{sample}.log",
    params:
        n_slices=config["annotations"]["export_slices"],
        strategy=config["annotations"]["export_strategy"],
        exclude_edges=config["annotations"]["export_exclude_edges"],
        labelled=lambda wc: labelled_indices(wc.sample),
        classes=CLASSES,
        table=SAMPLES_TABLE,
        labels_folder=lambda wc: sample_value(wc.sample, "annotation_labels", f"annotations/{wc.sample}_labels"),
        pixel_size_nm=sample_float("pixel_size_nm"),
        # entropy: the prediction settings (one pass per whole slice where it fits the memory budget)
        patch_size=SEGMENT_PATCH,  # the segmenting model's patch (blended fallback)
        batch_size=config["predict"]["batch_size"],
        mode=config["predict"]["mode"],
        memory_budget_mb=lambda wildcards, resources: 0.5 * resources.mem_mb,
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/predict.yaml"
    script:
        "../scripts/export_annotations.py"


rule annotate:
    input:
        expand("results/{sample}/to_annotate", sample=SAMPLES.index),
