"""Rule quantify: segmentation (+ true labels, + generator particle list) -> results/{sample}/quantification/
particles.tsv, summary.json, size_hist.png (tomoflow.quantify.quantify_sample)."""

from tomoflow.runner import optional, run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.quantify import QuantifySettings, quantify_sample

    p = smk.params
    settings = QuantifySettings(
        connectivity=int(p.connectivity), contact_distance_nm=float(p.contact_distance_nm),
        envelope_closing_nm=float(p.envelope_closing_nm), min_particle_diameter_nm=float(p.min_particle_diameter_nm),
        remove_specks=bool(p.remove_specks), smoothing_iterations=int(p.smoothing_iterations),
        pass_band=float(p.pass_band),
    )
    res = quantify_sample(str(smk.wildcards.sample), p.classes, smk.input.segmentation, settings,
                          pixel_size_nm=p.pixel_size_nm, true_labels=optional(smk.input, "true_labels"),
                          specimen=optional(smk.input, "specimen"))
    io.write_tsv(smk.output.particles, res.particles)
    io.write_json(smk.output.summary, res.summary)
    io.save_figure(res.size_hist, smk.output.size_hist)


run_rule(snakemake, main)
