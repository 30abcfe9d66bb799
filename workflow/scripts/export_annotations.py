"""Rule export_annotations: slices of results/{sample}/volume.mrc to annotate -> results/{sample}/to_annotate/."""

from tomoflow.runner import optional, run_rule


def main(smk):
    from tomoflow import io
    from tomoflow.annotations import plan_export

    p, volume = smk.params, smk.input.volume
    shape = io.volume_shape(volume)
    voxel = io.voxel_size_or(volume, io.read_slab(volume, 0, 1)[1], p.pixel_size_nm)
    model_path = optional(smk.input, "model")
    model = None
    if model_path:
        from tomoflow.io.models import load_model

        model = load_model(model_path, compile=False)
    slices, texts, records = plan_export(
        smk.wildcards.sample, shape, voxel, lambda a, b: io.read_slab(volume, a, b)[0], classes=list(p.classes),
        n_pick=int(p.n_slices), strategy=p.strategy, exclude_edges=int(p.exclude_edges), labelled=list(p.labelled),
        model=model, predict_options={"patch_size": list(p.patch_size), "batch_size": int(p.batch_size), "mode": p.mode,
                                      "memory_budget_mb": float(p.memory_budget_mb)},
        labels_folder=p.labels_folder, table=p.table)
    io.write_annotation_export(smk.output.folder, slices, voxel, texts, records)


run_rule(snakemake, main)
