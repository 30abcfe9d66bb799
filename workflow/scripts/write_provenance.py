"""Rule provenance: results/{sample}/provenance.json (config, package versions, seeds, checksums)."""

from tomoflow import io
from tomoflow.provenance import provenance
from tomoflow.runner import run_rule


def main(smk):
    inputs = {k: v for k, v in smk.input.items() if k != "outputs"}
    record = provenance(smk.wildcards.sample, smk.params.config, smk.params.row, inputs, smk.input.outputs)
    io.write_json(smk.output[0], record)


run_rule(snakemake, main)
