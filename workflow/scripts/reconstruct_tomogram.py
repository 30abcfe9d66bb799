"""Rule reconstruct_tomogram: gather the slab volumes into results/{sample}/volume.mrc, misfit table, figures."""

import logging

import numpy as np

from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.reconstruct_tomogram")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.recon import gather_misfit, misfit_figure, orthoslices_figure

    parts, voxel = [], None
    for path in smk.input.slabs:
        vol, vs = io.read_volume(path)
        parts.append(np.asarray(vol, np.float32))
        voxel = voxel if voxel is not None else vs
    shapes = {v.shape[1:] for v in parts}
    if len(shapes) != 1:
        raise InputError(smk.input.slabs[0], f"slabs have different slice shapes {sorted(shapes)}",
                         "delete results/{sample}/recon/ and re-run")
    volume = np.concatenate(parts)
    del parts
    vs = io.voxel_size_or(smk.input.slabs[0], voxel, smk.params.pixel_size_nm or None)
    io.write_volume(smk.output.volume, volume, vs)
    table = gather_misfit([io.read_tsv(t) for t in smk.input.misfit])
    io.write_tsv(smk.output.misfit, table)
    whole = table[(table["slab"] == "all") & (table["iteration"] > 0)]
    if len(whole):
        log.info("volume %s, voxel %.4g nm; misfit %.5f after %d iterations", volume.shape, vs,
                 float(whole["misfit"].iloc[-1]), int(whole["iteration"].iloc[-1]))
    else:
        log.info("volume %s, voxel %.4g nm (non-iterative)", volume.shape, vs)
    name = smk.wildcards.sample
    io.save_figure(misfit_figure(table, title=f"{name}: {smk.params.algorithm} convergence"), smk.output.misfit_figure)
    io.save_figure(orthoslices_figure(volume, vs, title=f"{name}: {smk.params.algorithm} reconstruction"),
                   smk.output.orthoslices)


run_rule(snakemake, main)  # noqa: F821
