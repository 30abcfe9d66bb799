# MLEM reconstruction (tomoflow.recon, tomoflow.projector), scatter/gather over slabs of slices along the
# tilt axis: reconstruct_slab (one job per slab; slices are independent, so the gathered volume is
# bit-identical to a single-job reconstruction) -> reconstruct_tomogram (tomoflow.slabs.gather_slabs,
# misfit, figures).  recon.method auto/batched: one sparse system matrix per geometry for a whole slab
# (tomoflow.recon.batched), cached on disk under recon.matrix_cache for the other slab jobs; mem_mb
# accounts for it (tomoflow.slabs.slab_job_mem_mb), and a job given less falls back to per-slice ASTRA.
# A GPU is used by itself where present (CuPy or ASTRA CUDA); no `gpu` resource is declared because the
# CPU path is the default and a GPU is optional (add it in a profile if wanted).

from tomoflow.io import volume_shape
from tomoflow.slabs import slab_job_mem_mb


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
        method=config["recon"]["method"],
        matrix_cache=config["recon"]["matrix_cache"] or None,
        slabs=config["recon"]["slabs"],
        thickness_px=sample_int("thickness_px"),
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 2
    resources:
        # stack header read + slab sinograms + slab volume, with headroom; + system matrix when batched
        mem_mb=lambda wildcards, input: slab_job_mem_mb(
            volume_shape(input.tilt_series) if input.size_mb else None, sample_int("thickness_px")(wildcards), config["recon"]
        ),
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
