# Stage targets (`snakemake align`, `recon`, `train`, `segment`, `evaluate`, `meshes`, `summary`) and the
# per-sample provenance record.  The report (landing page, summary table) is in report.smk.


rule align:
    input:
        expand("results/{sample}/aligned.mrc", sample=SAMPLES.index),


rule recon:
    input:
        expand("results/{sample}/volume.mrc", sample=SAMPLES.index),


rule train:
    input:
        expand("results/models/{model}/unet.keras", model=MODELS) if TRAINED else [],
        "results/models/comparison.tsv" if TRAINED else [],


rule segment:
    input:
        expand("results/{sample}/segmentation.tif", sample=SAMPLES.index),


rule evaluate:
    input:
        [f"results/{s}/metrics/metrics.json" for s in SAMPLES.index if evaluate_inputs_exist(s)],


rule meshes:
    input:
        expand("results/{sample}/meshes/render_iso.png", sample=SAMPLES.index),
        expand("results/{sample}/quantification/summary.json", sample=SAMPLES.index),


rule summary:
    input:
        REPORT_SUMMARY,


rule provenance:
    input:
        unpack(provenance_inputs),
    output:
        "results/{sample}/provenance.json",
    params:
        config=config,
        row=lambda wc: SAMPLES.loc[wc.sample].to_dict(),
    log:
        "logs/provenance/{sample}.log",
    threads: 1
    conda:
        "../../envs/synthetic.yaml"
    script:
        "../scripts/write_provenance.py"
