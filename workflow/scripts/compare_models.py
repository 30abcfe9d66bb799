"""Rule compare_models: every model of `models:` side by side -> results/models/comparison.tsv and .png
(tomoflow.evaluation.compare_models)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.evaluation import ModelFiles, compare_models, comparison_figure

    i, p = smk.input, smk.params
    models = [ModelFiles(n, m, h, c, s) for n, m, h, c, s in zip(p.names, i.models, i.histories, i.class_weights, i.splits)]
    table = compare_models(models, list(p.samples), list(i.images), list(i.labels), list(p.classes),
                           percentiles=[float(v) for v in p.percentiles], batch_size=int(p.batch_size), tta=bool(p.tta))
    io.write_tsv(smk.output.table, table)
    histories = {m.name: io.read_tsv(m.history) for m in models}
    io.save_figure(comparison_figure(table, histories, list(p.classes)), smk.output.figure)


run_rule(snakemake, main)
