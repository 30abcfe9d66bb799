"""Rule quantify: segmentation (+ true labels, + generator particle list) -> results/{sample}/quantification/
particles.tsv (one row per particle; column ``labels`` = predicted | true), summary.json (predicted numbers
with true-label and generator numbers beside them), size_hist.png.
"""

import logging

from tomoflow.runner import optional, run_rule

log = logging.getLogger("tomoflow.quantify_rule")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    import pandas as pd

    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.quantify import compare, match_specimen, quantify, size_histogram, specimen_particles

    p = smk.params
    classes = [str(c) for c in p.classes]
    if len(classes) < 3:
        raise InputError("classes", f"quantification needs background, support and particles, got {classes}",
                         "use `classes: [background, support, particles]` (label values 0, 1, 2)")
    settings = dict(connectivity=int(p.connectivity), contact_distance_nm=float(p.contact_distance_nm),
                    envelope_closing_nm=float(p.envelope_closing_nm), smoothing_iterations=int(p.smoothing_iterations),
                    pass_band=float(p.pass_band))

    def measure(path, what):  # noqa: ANN001, ANN202
        labels, voxel = io.read_labels(path, len(classes))
        vs = io.voxel_size_or(path, voxel, p.pixel_size_nm)
        log.info("%s labels %s (%s), voxel %.4g nm", what, labels.shape, path, vs)
        table, summary = quantify(labels, vs, **settings)
        summary["file"] = str(path)
        log.info("%s: %d particles, mean equivalent diameter %s nm", what, summary["n_particles"],
                 summary["mean_equivalent_diameter_nm"])
        return table, summary, vs, labels.shape

    pred_table, pred, vs, shape = measure(smk.input.segmentation, "predicted")
    tables = {"predicted": pred_table}
    true = match = None
    reference = None
    true_path = optional(smk.input, "true_labels")
    if true_path:
        true_table, true, vs_true, shape_true = measure(true_path, "true")
        if tuple(shape_true) != tuple(shape):
            raise InputError(true_path, f"true labels have shape {tuple(shape_true)}, the segmentation {tuple(shape)}",
                             "give true labels of the same volume (config/samples.tsv: true_labels)")
        tables["true"] = true_table
        spec_path = optional(smk.input, "specimen")
        if spec_path:
            reference = specimen_particles(io.read_json(spec_path), vs_true)
            match = match_specimen(true_table, reference)
            log.info("generator: %d particles (mean diameter %s nm); %d matched in the true labels",
                     match["n_reference"], match["mean_reference_diameter_nm"], match["n_matched"])
    summary = {
        "sample": str(smk.wildcards.sample),
        "classes": {"support": classes[1], "particles": classes[2]},
        "predicted": pred,
        "true": true,
        "generator": match,
        "comparison": compare(pred, true, match),
    }
    if true is not None and reference is not None:
        summary["generator_vs_predicted"] = match_specimen(pred_table, reference)
    rows = [t.assign(labels=name) for name, t in tables.items()]
    table = pd.concat(rows, ignore_index=True) if rows else pred_table
    table = table[["labels"] + [c for c in table.columns if c != "labels"]]
    io.write_tsv(smk.output.particles, table)
    io.write_json(smk.output.summary, summary)
    title = f"{summary['sample']}: particle sizes"
    fig = size_histogram(tables, None if reference is None else reference["diameter_nm"], title=title)
    io.save_figure(fig, smk.output.size_hist)


run_rule(snakemake, main)  # noqa: F821
