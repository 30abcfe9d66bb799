# MLEM reconstruction (tomoflow.recon, tomoflow.projector), scatter/gather over slabs of slices along the
# tilt axis: reconstruct_slab (one job per slab; slices are independent, so the gathered volume is
# bit-identical to a single-job reconstruction) -> reconstruct_tomogram (concatenate, misfit, figures).
# The ASTRA backend uses CUDA (EM_CUDA) by itself where astra.use_cuda() is true; no `gpu` resource is
# declared because the CPU path is the default and a GPU is optional (add it in a profile if wanted).


rule reconstruct_slab:
    input:
        tilt_series="results/{sample}/aligned.mrc",
        angles="results/{sample}/aligned.tlt",
    output:
        volume=temp("results/{sample}/recon/slab_{i}.mrc"),
        misfit="results/{sample}/recon/slab_{i}_misfit.tsv",
    log:
        "logs/reconstruct_slab/{sample}_{i}.log",
    benchmark:
        "benchmarks/results/reconstruct_slab/{sample}_{i}.tsv"
    params:
        backend=config["recon"]["backend"],
        algorithm=config["recon"]["algorithm"],
        iterations=config["recon"]["iterations"],
        subsets=config["recon"]["subsets"],
        projector=config["recon"]["projector"],
        slabs=config["recon"]["slabs"],
        thickness_px=sample_int("thickness_px"),
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 2
    resources:
        # whole stack (float32) + slab sinograms + slab volume, with headroom
        mem_mb=lambda wildcards, input: max(1000, int(6 * input.size_mb) + 500),
        runtime=240,
    conda:
        "../../envs/recon.yaml"
    script:
        "../scripts/reconstruct_slab.py"


rule reconstruct_tomogram:
    input:
        slabs=lambda wc: [f"results/{wc.sample}/recon/slab_{i}.mrc" for i in range(config["recon"]["slabs"])],
        misfit=lambda wc: [f"results/{wc.sample}/recon/slab_{i}_misfit.tsv" for i in range(config["recon"]["slabs"])],
    output:
        volume="results/{sample}/volume.mrc",
        misfit="results/{sample}/recon/misfit.tsv",
        misfit_figure=report("results/{sample}/figures/misfit.png", category="3. Reconstruction", subcategory="{sample}", caption="../report/misfit.rst"),
        orthoslices=report("results/{sample}/figures/orthoslices.png", category="3. Reconstruction", subcategory="{sample}", caption="../report/orthoslices.rst"),
    log:
        "logs/reconstruct_tomogram/{sample}.log",
    benchmark:
        "benchmarks/results/reconstruct_tomogram/{sample}.tsv"
    params:
        algorithm=config["recon"]["algorithm"],
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: max(1000, int(3 * input.size_mb) + 500),
        runtime=30,
    conda:
        "../../envs/recon.yaml"
    script:
        "../scripts/reconstruct_tomogram.py"
