"""Rule align_tilt_series: translations, tilt axis, rotation centre, projection matching, frame (tomoflow.align)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow import io
    from tomoflow.align import align_sample, write_imod_xf

    p, out = smk.params, smk.output
    ts = io.read_tilt_series(smk.input.tilt_series, angles=getattr(smk.input, "angles", None) or None, pixel_size_nm=p.pixel_size_nm)
    res = align_sample(ts, p.align, tilt_axis_prior_deg=p.tilt_axis_deg, thickness_px=p.thickness_px, threads=int(smk.threads),
                       name=str(smk.wildcards.sample))
    io.write_volume(out.aligned, res.aligned, ts.pixel_size_nm)
    io.write_tsv(out.table, res.table)
    io.write_json(out.summary, res.summary)
    write_imod_xf(out.xf, res.alignment)
    io.write_angles(out.tlt, res.alignment.angles_deg)
    io.save_figure(res.figure, out.figure)


run_rule(snakemake, main)
