"""Rule split_annotations: slices.json of every training source -> results/training/split.json (train/validation/test)."""

from tomoflow.runner import run_rule


def main(smk):
    from tomoflow import io
    from tomoflow.annotations import split_from_records

    p = smk.params
    records = [io.read_json(f) for f in smk.input.slices]
    validation = p.validation if isinstance(p.validation, str) else [str(v) for v in p.validation]
    split = split_from_records(list(p.sources), records, [int(v) for v in p.patch_size], validation=validation,
                               test=[str(v) for v in p.test], val_fraction=float(p.val_fraction), seed=int(p.seed),
                               group_gap=int(p.group_gap))
    io.write_json(smk.output.split, split)


run_rule(snakemake, main)
