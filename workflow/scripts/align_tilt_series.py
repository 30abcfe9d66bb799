"""Rule align_tilt_series: translations, tilt axis, rotation centre, projection matching (tomoflow.align)."""

import logging

from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.align_tilt_series")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    from tomoflow import io
    from tomoflow.align import AlignParams, align_tilt_series, alignment_qc_figure, alignment_table, format_xf, imod_xf

    p = smk.params
    ts = io.read_tilt_series(smk.input.tilt_series, angles=getattr(smk.input, "angles", None) or None, pixel_size_nm=p.pixel_size_nm)
    log.info("%s: %d tilts of %dx%d px, %.1f..%.1f deg, %.3f nm/px (angles: %s)", ts.path, *ts.data.shape,
             ts.angles_deg.min(), ts.angles_deg.max(), ts.pixel_size_nm, ts.angles_source)
    params = AlignParams.from_config(p.align)
    res = align_tilt_series(
        ts.data, ts.angles_deg, params=params, tilt_axis_prior_deg=float(p.tilt_axis_deg or 0.0),
        thickness_px=p.thickness_px, threads=int(smk.threads), where=ts.path,
    )
    a = res.alignment
    out = smk.output
    io.write_volume(out.aligned, res.aligned, ts.pixel_size_nm)
    io.write_tsv(out.table, alignment_table(a))
    summary = a.to_json() | {"pixel_size_nm": ts.pixel_size_nm, "tilt_series": ts.path, "angles_source": ts.angles_source,
                             "params": vars(params)}
    io.write_json(out.summary, summary)
    with io.atomic_path(out.xf) as tmp:
        tmp.write_text(format_xf(imod_xf(a)))
    io.write_angles(out.tlt, a.angles_deg)
    io.save_figure(alignment_qc_figure(ts.data, res.aligned, a, title=str(smk.wildcards.sample)), out.figure)


run_rule(snakemake, main)  # noqa: F821
