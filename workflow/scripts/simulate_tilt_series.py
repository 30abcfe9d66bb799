"""Rule simulate_tilt_series: synthetic γ-Al2O3/Pt specimen and its misaligned HAADF tilt series (tomoflow.synthetic)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.synthetic import simulate_outputs

    res = simulate_outputs(smk.params.synthetic, threads=int(smk.threads))
    spec, ts, out = res.specimen, res.tilt_series, smk.output
    px = spec.pixel_size_nm
    io.write_volume(out.tilt_series, ts.data, px)
    io.write_angles(out.angles, ts.angles_deg)
    io.write_volume(out.aligned, ts.aligned, px)
    io.write_labels(out.labels, spec.labels, px)
    io.write_volume(out.density, spec.density, px)
    io.write_tsv(out.alignment_tsv, res.table)
    io.write_json(out.alignment_json, res.alignment)
    io.write_json(out.specimen, res.specimen_info)
    io.save_figure(res.figure, out.figure)


run_rule(snakemake, main)
