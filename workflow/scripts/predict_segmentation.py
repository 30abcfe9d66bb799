"""Rule predict_segmentation: gather the slab predictions into results/{sample}/segmentation.tif + figure."""


import logging

import numpy as np

from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.predict_segmentation")


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.predict import figure_positions, prediction_figure
    from tomoflow.slabs import gather_slabs

    classes = list(smk.params.classes)
    volume = str(smk.input.volume)
    n_slices = io.volume_shape(volume)[0]
    fix = "delete results/{sample}/predict/ and re-run"
    labels, voxel = gather_slabs(list(smk.input.slabs), lambda p: io.read_labels(p, len(classes)), io.volume_shape,
                                 dtype=np.uint8, n_slices=n_slices, fix=fix)
    _, vol_voxel = io.read_slab(volume, 0, 1)
    vs = io.voxel_size_or(volume, vol_voxel if vol_voxel is not None else voxel, smk.params.pixel_size_nm or None)
    io.write_labels(smk.output.segmentation, labels, vs)
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    log.info("segmentation %s: %s", labels.shape, ", ".join(f"{c} {n / labels.size:.4%}" for c, n in zip(classes, counts)))

    if "probabilities" in smk.output.keys():
        n_slabs = len(smk.input.slabs)
        for c, out in enumerate(smk.output.probabilities):  # one class at a time: bounded memory
            slab_files = list(smk.input.probabilities)[c * n_slabs : (c + 1) * n_slabs]
            stack, _ = gather_slabs(slab_files, io.read_volume, io.volume_shape, dtype=np.uint8, n_slices=n_slices, fix=fix)
            io.write_volume(out, stack, vs)
            del stack

    positions = figure_positions(n_slices, int(smk.params.figure_slices))
    slices = {p: io.read_slab(volume, p, p + 1)[0][0] for p in positions}
    fig = prediction_figure(slices, labels, positions, classes, voxel_size_nm=vs,
                            title=f"{smk.wildcards.sample}: U-Net prediction")
    io.save_figure(fig, smk.output.figure)


run_rule(snakemake, main)
