"""After training: the model recompiled for saving, the training-curve figure, and :func:`train_from_files`
(read the annotation stacks, train, write the model and its records)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from ..unet import focal_loss, metric_name
from .loop import log, train_unet
from .settings import TrainResult, settings_from_params


def export_model(model: keras.Model, alpha: Sequence[float] | npt.NDArray[np.floating], gamma: float, learning_rate: float) -> keras.Model:
    """Recompile a trained model with built-in objects only, so it loads with no custom objects.

    The Dice metrics (custom) are dropped; the optimiser is a fresh Adam and the loss the built-in focal
    loss, so the saved model can be fine-tuned as is.

    Parameters
    ----------
    model : keras.Model
    alpha : sequence of float
    gamma, learning_rate : float

    Returns
    -------
    keras.Model
        The same model object, recompiled.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=focal_loss(alpha, gamma), jit_compile=False)
    model.optimizer.build(model.trainable_variables)  # saved slots match on load (no skip warning)
    return model


def training_curves_figure(
    history: pd.DataFrame, classes: Sequence[str], best_epoch: int | None = None
) -> Figure:
    """Loss and per-class Dice per epoch, training (dashed) and validation (solid).

    Parameters
    ----------
    history : pandas.DataFrame
        As in :attr:`TrainResult.history`.
    classes : sequence of str
    best_epoch : int, optional
        Marked with a vertical line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ep = history["epoch"].to_numpy()
    ax1.plot(ep, history["loss"], "--", color="k", label="train")
    ax1.plot(ep, history["val_loss"], "-", color="k", label="validation")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("weighted focal loss")
    ax1.legend()
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for c, name in enumerate(classes):
        m = metric_name(name)
        col = colors[c % len(colors)]
        if m in history:
            ax2.plot(ep, history[m], "--", color=col)
        if f"val_{m}" in history:
            ax2.plot(ep, history[f"val_{m}"], "-", color=col, label=name)
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("Dice (solid: validation, dashed: train)")
    ax2.legend(loc="lower right")
    if best_epoch:
        for ax in (ax1, ax2):
            ax.axvline(best_epoch, color="0.6", lw=0.8, ls=":")
    fig.suptitle("U-Net training")
    return fig


def train_from_files(
    image_paths: Sequence[str],
    label_paths: Sequence[str],
    outputs: Mapping[str, str],
    params: Mapping[str, Any],
    split_path: str | None = None,
) -> TrainResult:
    """Train the U-Net on annotation stacks and write the model and its records (rule ``train_unet``).

    The model file carries its metadata (:func:`tomoflow.models.build_metadata`: classes, pixel size of
    the training images, normalisation, patch, depth, filters, focal γ/α, tomoflow version, sources).

    Parameters
    ----------
    image_paths, label_paths : sequence of str
        Per sample of ``params["samples"]``: the annotation images (float, ``(n, H, W)``) and labels
        (uint8, same shape) written by ``extract_annotations``.
    outputs : mapping
        Paths ``model`` (``.keras``), ``history`` (TSV), ``curves`` (PNG), ``class_weights``, ``split`` and
        ``normalization`` (JSON).
    params : mapping
        ``samples``, ``classes``, ``patch_size``, ``val_fraction`` and the keys of
        :func:`settings_from_params` (the model's effective settings: ``train`` with the overrides of
        its ``models:`` entry); optional ``model`` (the configuration name, recorded in the metadata) and
        ``init_model`` (a ``.keras`` path to fine-tune from, checked by
        :func:`tomoflow.models.check_architecture`).
    split_path : str, optional
        ``results/training/split.json`` (:func:`tomoflow.annotations.make_grouped_split`; its ``train`` and
        ``validation`` records are used, ``test`` is held out; re-tiled at this model's patch size when it differs, by
        :func:`tomoflow.annotations.retile_split`); without it, :func:`tomoflow.annotations.make_split`.

    Returns
    -------
    TrainResult
        After everything is written.
    """
    from .. import io
    from ..annotations import make_split, retile_split, split_records
    from ..io.models import load_model, read_metadata, save_model
    from ..models import build_metadata, check_architecture

    classes = list(params["classes"])
    settings = settings_from_params(params, len(classes))
    patch = [int(v) for v in params["patch_size"]]
    samples = list(params["samples"])
    if not (len(samples) == len(image_paths) == len(label_paths)):
        raise InputError("train.samples", f"{len(samples)} samples but {len(image_paths)} image and "
                         f"{len(label_paths)} label stacks", "give one annotation stack pair per sample")
    images, labels, pixel = {}, {}, {}
    for s, im_path, lab_path in zip(samples, image_paths, label_paths):
        data, vs = io.read_volume(im_path)
        images[s], pixel[s] = data.astype(np.float32), vs
        labels[s] = io.read_labels(lab_path, len(classes))[0]
    init = None
    if settings.init_model:
        meta = read_metadata(settings.init_model)
        check_architecture(meta, depth=settings.depth, base_filters=settings.base_filters, classes=classes,
                           where=settings.init_model)
        init = load_model(settings.init_model, compile=False)
    if split_path is not None:  # the shared split of rule split_annotations (train/validation/test)
        split = retile_split(io.read_json(split_path), {s: a.shape for s, a in images.items()}, patch)
    else:
        split = make_split({s: a.shape for s, a in images.items()}, patch, float(params["val_fraction"]),
                           int(params["seed"]))
    vi, vl = split_records(images, split["validation"]), split_records(labels, split["validation"])
    ti: np.ndarray | list[np.ndarray]
    tl: np.ndarray | list[np.ndarray]
    if settings.random_crops:  # random crops come from the whole training slices
        from .data import crop_sources

        ti, tl = crop_sources(images, labels, split["train"])
    else:
        ti, tl = split_records(images, split["train"]), split_records(labels, split["train"])
    res = train_unet(ti, tl, vi, vl, classes, settings, init=init)
    export_model(res.model, res.alpha, settings.focal_gamma, settings.learning_rate)
    known = [float(v) for v in pixel.values() if v is not None]
    if known and max(known) > 1.03 * min(known):
        log.warning("training samples have different pixel sizes %s nm; the model records their median", pixel)
    meta = build_metadata(
        classes=classes, pixel_size_nm=float(np.median(known)) if known else None, normalization=res.normalization,
        patch_size=patch, depth=settings.depth, base_filters=settings.base_filters, focal_gamma=settings.focal_gamma,
        focal_alpha=res.alpha.tolist(),
        sources={"samples": samples, "images": list(map(str, image_paths)), "labels": list(map(str, label_paths)),
                 "pixel_size_nm": pixel},
        model=str(params.get("model", "")), init_model=settings.init_model,
        freeze_encoder_epochs=settings.freeze_encoder_epochs if settings.init_model else 0, best_epoch=res.best_epoch,
        epochs=settings.epochs, seed=settings.seed,
    )
    save_model(res.model, outputs["model"], meta)
    io.write_tsv(outputs["history"], res.history)
    io.save_figure(training_curves_figure(res.history, classes, res.best_epoch), outputs["curves"])
    best = res.history.iloc[res.best_epoch - 1]
    auto = isinstance(settings.class_weights, str)
    io.write_json(outputs["class_weights"], {
        "classes": classes,
        "alpha": res.alpha.tolist(),
        "gamma": settings.focal_gamma,
        "mode": "auto" if auto else "config",
        "rule": f"alpha_c = f_c**-{settings.alpha_power:g} / sum_k f_k**-{settings.alpha_power:g} "
        "(f_c: class fraction of the training patches)" if auto else "train.class_weights",
        "frequencies": res.frequencies.tolist(),
        "best_epoch": res.best_epoch,
        "monitor": res.monitor,
        "validation_dsc": {c: float(best[f"val_{metric_name(c)}"]) for c in classes},
    })
    io.write_json(outputs["split"], split)
    io.write_json(outputs["normalization"], {**res.normalization, "layer": "normalize",
                                             "note": "model input = raw intensities; (x - mean) / std inside"})
    return res
