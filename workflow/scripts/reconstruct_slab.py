"""Rule reconstruct_slab: MLEM/OSEM/SIRT/FBP of one slab of results/{sample}/aligned.mrc (scatter step)."""

import logging

from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.reconstruct_slab")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.recon import check_signal, misfit_table, reconstruct_slab

    stack = str(smk.input.tilt_series)
    p = smk.params
    angles = io.read_angles(smk.input.angles)
    n_tilts, n_slices, n_det = io.volume_shape(stack)
    if len(angles) != n_tilts:
        raise InputError(smk.input.angles, f"{len(angles)} tilt angles for the {n_tilts} images of {stack}",
                         "re-run the alignment so that the .tlt and the stack match")
    i, n_slabs = int(smk.wildcards.i), int(p.slabs)
    if n_slabs > n_slices:
        raise InputError("config recon.slabs", f"{n_slabs} slabs for {n_slices} slices leaves slab(s) empty",
                         f"set recon.slabs <= {n_slices}")
    # The all-noise check looks at a central band of the whole stack: a slab of vacuum is legitimate.
    mid = n_slices // 2
    band, voxel = io.read_slab(stack, max(0, mid - 16), min(n_slices, mid + 16), axis=1)
    corr = check_signal(band, angles, where=stack)
    log.info("%s: %d tilts (%.1f..%.1f deg), %d slices x %d px; neighbour correlation %.3f",
             stack, n_tilts, angles.min(), angles.max(), n_slices, n_det, corr)
    thickness = int(p.thickness_px) if p.thickness_px else n_det
    (start, stop), res = reconstruct_slab(
        lambda a, b: io.read_slab(stack, a, b, axis=1)[0], n_slices, i, n_slabs, angles,
        thickness_px=thickness, algorithm=p.algorithm, iterations=int(p.iterations), subsets=int(p.subsets),
        projector=p.projector, backend=p.backend,
        threads=int(smk.threads), where=stack,
    )
    vs = io.voxel_size_or(stack, voxel, p.pixel_size_nm or None)
    io.write_volume(smk.output.volume, res.volume, vs)
    io.write_tsv(smk.output.misfit, misfit_table(res, i, start, stop))


run_rule(snakemake, main)  # noqa: F821
