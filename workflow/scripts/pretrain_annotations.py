"""Rule pretrain_annotations: reconstructed slices + true labels of the paper-like specimen (tomoflow.synthetic)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.synthetic import annotated_slices

    p = smk.params
    res = annotated_slices(p.synthetic, n_slices=int(p.n_slices), slice_seed=int(p.seed),
                           iterations=int(p.iterations), threads=int(smk.threads))
    px = float(p.synthetic["pixel_size_nm"])
    io.write_volume(smk.output.images, res.images, px)
    io.write_labels(smk.output.labels, res.labels, px)
    io.write_json(smk.output.slices, {"slices": res.index.tolist(), **res.info})


run_rule(snakemake, main)
