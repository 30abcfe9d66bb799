"""Rule reconstruct_slab: MLEM/OSEM/SIRT/FBP of one slab of results/{sample}/aligned.mrc (scatter step)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.recon import ReconSettings, reconstruct_slab_job

    stack, p = str(smk.input.tilt_series), smk.params
    settings = ReconSettings(
        thickness_px=int(p.thickness_px) if p.thickness_px else None, algorithm=p.algorithm,
        iterations=int(p.iterations), subsets=int(p.subsets), projector=p.projector, backend=p.backend,
        method=p.method, threads=int(smk.threads), memory_budget_mb=getattr(smk.resources, "mem_mb", None),
        matrix_cache_dir=p.matrix_cache, where=stack,
    )
    _, res, table = reconstruct_slab_job(
        lambda a, b: io.read_slab(stack, a, b, axis=1)[0], io.volume_shape(stack), io.read_angles(smk.input.angles),
        int(smk.wildcards.i), int(p.slabs), settings)
    voxel = io.read_slab(stack, 0, 1, axis=1)[1]
    io.write_volume(smk.output.volume, res.volume, io.voxel_size_or(stack, voxel, p.pixel_size_nm or None))
    io.write_tsv(smk.output.misfit, table)


run_rule(snakemake, main)
