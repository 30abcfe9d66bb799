"""Rule simulate_tilt_series: synthetic γ-Al2O3/Pt specimen and its misaligned HAADF tilt series."""

import logging

from tomoflow import io
from tomoflow.runner import run_rule
from tomoflow.synthetic import simulate, specimen_figure, truth_tables

log = logging.getLogger("tomoflow.simulate")


def main(smk):
    cfg = dict(smk.params.synthetic)
    specimen, ts = simulate(cfg, threads=smk.threads)
    px = specimen.pixel_size_nm
    out = smk.output
    io.write_volume(out.tilt_series, ts.data, px)
    io.write_angles(out.angles, ts.angles_deg)
    io.write_volume(out.aligned, ts.aligned, px)
    io.write_labels(out.labels, specimen.labels, px)
    io.write_volume(out.density, specimen.density, px)
    table, truth, spec = truth_tables(specimen, ts, cfg)
    io.write_tsv(out.alignment_tsv, table)
    io.write_json(out.alignment_json, truth)
    io.write_json(out.specimen, spec)
    io.save_figure(specimen_figure(specimen, ts), out.figure)
    log.info("wrote %d tilts of %s px, %d particles", ts.data.shape[0], ts.data.shape[1:], len(specimen.particles))


run_rule(snakemake, main)  # noqa: F821
