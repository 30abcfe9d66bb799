# Tilt-series alignment (tomoflow.align): coarse neighbour cross-correlation with cosine stretching,
# tilt-axis angle from the common-line principle, rotation centre and per-tilt shifts refined by projection
# matching (tomoflow.recon SIRT + tomoflow.projector), quality gate on the residual.


rule align_tilt_series:
    """Shift and rotate the raw tilt series so that the tilt axis runs along y through the detector centre."""
    input:
        unpack(align_inputs),
    output:
        aligned="results/{sample}/aligned.mrc",
        table="results/{sample}/alignment.tsv",
        summary="results/{sample}/alignment.json",
        xf="results/{sample}/aligned.xf",
        tlt="results/{sample}/aligned.tlt",
        figure=report(
            "results/{sample}/figures/alignment_qc.png",
            category="2. Alignment",
            subcategory="{sample}",
            caption="../report/alignment_qc.rst",
        ),
    log:
        "logs/align_tilt_series/{sample}.log",
    benchmark:
        "benchmarks/results/align_tilt_series/{sample}.tsv"
    params:
        align=config["align"],
        tilt_axis_deg=sample_float("tilt_axis_deg"),
        thickness_px=sample_int("thickness_px"),
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 2
    resources:
        # raw + working + aligned stacks (float32) and a reconstruction block, with headroom
        mem_mb=lambda wildcards, input: max(1500, int(8 * input.size_mb) + 1000),
        runtime=60,
    conda:
        "../../envs/align.yaml"
    script:
        "../scripts/align_tilt_series.py"
