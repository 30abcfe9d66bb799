"""Rule reconstruct_tomogram: gather the slab volumes into results/{sample}/volume.mrc, misfit table, figures."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    import numpy as np

    from tomoflow import io
    from tomoflow.recon import tomogram_outputs
    from tomoflow.slabs import gather_slabs

    volume, voxel = gather_slabs(list(smk.input.slabs), io.read_volume, io.volume_shape, dtype=np.float32,
                                 fix="delete results/{sample}/recon/ and re-run")
    vs = io.voxel_size_or(smk.input.slabs[0], voxel, smk.params.pixel_size_nm or None)
    io.write_volume(smk.output.volume, volume, vs)
    table, misfit_fig, ortho_fig = tomogram_outputs(volume, vs, [io.read_tsv(t) for t in smk.input.misfit],
                                                    f"{smk.wildcards.sample}: {smk.params.algorithm}")
    io.write_tsv(smk.output.misfit, table)
    io.save_figure(misfit_fig, smk.output.misfit_figure)
    io.save_figure(ortho_fig, smk.output.orthoslices)


run_rule(snakemake, main)
