"""Rule train_unet: annotation stacks of train.samples -> results/model/ (U-Net, history, curves, split)."""

import logging

import numpy as np

from tomoflow.annotations import make_split, split_records
from tomoflow.errors import InputError
from tomoflow.io import read_labels, read_volume, save_figure, write_json, write_tsv
from tomoflow.io.models import save_model
from tomoflow.runner import run_rule
from tomoflow.train import AugmentSettings, TrainSettings, export_model, train_unet, training_curves_figure
from tomoflow.unet import metric_name

log = logging.getLogger("tomoflow.train_unet")


def main(smk):
    logging.captureWarnings(True)
    p = smk.params
    classes = list(p.classes)
    patch = [int(v) for v in p.patch_size]
    factor = 2 ** (int(p.depth) - 1)
    if patch[0] % factor or patch[1] % factor:
        raise InputError("train.patch_size", f"{patch} is not divisible by 2**(depth-1) = {factor}",
                         f"use multiples of {factor} (e.g. 128 or 512) or a smaller train.depth")
    cw = p.class_weights
    if not isinstance(cw, str):
        cw = [float(v) for v in cw]
        if len(cw) != len(classes):
            raise InputError("train.class_weights", f"{len(cw)} weights for {len(classes)} classes",
                             "give one weight per class or 'auto'")
    images, labels = {}, {}
    for s, im_path, lab_path in zip(p.samples, smk.input.images, smk.input.labels):
        images[s] = read_volume(im_path)[0].astype(np.float32)
        labels[s] = read_labels(lab_path, len(classes))[0]
    split = make_split({s: a.shape for s, a in images.items()}, patch, float(p.val_fraction), int(p.seed))
    ti, tl = split_records(images, split["train"]), split_records(labels, split["train"])
    vi, vl = split_records(images, split["validation"]), split_records(labels, split["validation"])
    aug = p.augment
    settings = TrainSettings(
        depth=int(p.depth), base_filters=int(p.base_filters), epochs=int(p.epochs), batch_size=int(p.batch_size),
        learning_rate=float(p.learning_rate), focal_gamma=float(p.focal_gamma), class_weights=cw,
        monitor=str(p.monitor), seed=int(p.seed),
        augment=AugmentSettings(float(aug["rotation_deg"]), bool(aug["flip"]), float(aug["zoom"]),
                                float(aug["shear_deg"])),
    )
    res = train_unet(ti, tl, vi, vl, classes, settings)
    export_model(res.model, res.alpha, settings.focal_gamma, settings.learning_rate)
    save_model(res.model, smk.output.model)
    write_tsv(smk.output.history, res.history)
    save_figure(training_curves_figure(res.history, classes, res.best_epoch), smk.output.curves)
    best = res.history.iloc[res.best_epoch - 1]
    write_json(smk.output.class_weights, {
        "classes": classes,
        "alpha": res.alpha.tolist(),
        "gamma": settings.focal_gamma,
        "mode": "auto" if isinstance(cw, str) else "config",
        "rule": f"alpha_c = f_c**-{settings.alpha_power:g} / sum_k f_k**-{settings.alpha_power:g} "
        "(f_c: class fraction of the training patches)" if isinstance(cw, str) else "train.class_weights",
        "frequencies": res.frequencies.tolist(),
        "best_epoch": res.best_epoch,
        "monitor": res.monitor,
        "validation_dsc": {c: float(best[f"val_{metric_name(c)}"]) for c in classes},
    })
    write_json(smk.output.split, split)
    write_json(smk.output.normalization, {**res.normalization, "layer": "normalize",
                                          "note": "model input = raw intensities; (x - mean) / std inside"})


run_rule(snakemake, main)  # noqa: F821
