"""Rule train_unet: annotation stacks of every training source + results/training/split.json -> results/models/{model}/ (U-Net with metadata, history, curves, its split)."""

import logging

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow.train import train_from_files  # imports NumPy/Keras after run_rule pinned the threads

    logging.captureWarnings(True)
    train_from_files(
        [str(f) for f in smk.input.images],
        [str(f) for f in smk.input.labels],
        {name: str(path) for name, path in smk.output.items()},
        dict(smk.params.items()),
        split_path=str(smk.input.split) if "split" in smk.input.keys() else None,  # pretrain: own split
    )


run_rule(snakemake, main)
