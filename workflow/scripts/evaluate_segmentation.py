"""Rule evaluate_segmentation: DSC/precision/recall and (robust) Hausdorff distances of one sample
(tomoflow.evaluation.evaluate_sample) -> results/{sample}/metrics/metrics.json, table1.tsv, rhd.tsv, rhd.png,
errors.png."""

from tomoflow.runner import optional, run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.evaluation import EvaluationSettings, evaluate_sample

    p = smk.params
    settings = EvaluationSettings(
        percentiles=tuple(float(v) for v in p.percentiles), patch_size=(int(p.patch_size[0]), int(p.patch_size[1])),
        batch_size=int(p.batch_size), tta=bool(p.tta), error_examples=int(p.error_examples),
    )
    i = smk.input
    res = evaluate_sample(
        str(smk.wildcards.sample), p.classes, settings, pixel_size_nm=p.pixel_size_nm or None,
        split=optional(i, "split"), images=optional(i, "images"), labels=optional(i, "labels"), model=optional(i, "model"),
        true_labels=optional(i, "true_labels"), segmentation=optional(i, "segmentation"),
    )
    io.write_json(smk.output.metrics, res.metrics)
    io.write_tsv(smk.output.table1, res.table1)
    io.write_tsv(smk.output.rhd, res.rhd)
    io.save_figure(res.rhd_figure, smk.output.rhd_png)
    io.save_figure(res.errors_figure, smk.output.errors)


run_rule(snakemake, main)
