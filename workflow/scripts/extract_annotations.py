"""Rules extract_annotations / extract_annotation_set: a training source's annotations -> its stacks + slices.json."""

from tomoflow.runner import optional, run_rule


def main(smk):
    from tomoflow.annotations import prepare_annotations
    from tomoflow.io import (
        read_annotation_source,
        write_json,
        write_labels,
        write_volume,
    )

    p = smk.params
    source = read_annotation_source(p.mode, labels=smk.input.labels, images=optional(smk.input, "images"),
                                    volume=optional(smk.input, "volume"), pixel_size_nm=p.pixel_size_nm,
                                    sample=p.source)
    result = prepare_annotations(source, classes=list(p.classes), sample=p.source,
                                 n_slices=int(p.n_slices), seed=int(p.seed),
                                 register_labels=bool(p.register_labels), max_offset_vox=float(p.max_label_offset_vox))
    write_volume(smk.output.images, result.images, result.voxel_size_nm)
    write_labels(smk.output.labels, result.labels, result.voxel_size_nm)
    write_json(smk.output.slices, result.info)


run_rule(snakemake, main)
