"""The training loop: determinism, the monitored quantity, per-epoch logging/best weights, :func:`train_unet`."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd

from ..unet import ClassDice, build_unet, class_weights_from_labels, focal_loss, metric_name
from .data import PatchDataset
from .settings import TrainResult, TrainSettings

log = logging.getLogger(__package__)  # "tomoflow.train", as before the split into a package


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend; enable TensorFlow op determinism on that backend."""
    keras.utils.set_random_seed(int(seed))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # only for the determinism switch, never in model/loss code

        tf.config.experimental.enable_op_determinism()


def resolve_monitor(monitor: str, classes: Sequence[str]) -> tuple[str, str]:
    """History key and mode (``"min"``/``"max"``) of a ``train.monitor`` value.

    ``"val_loss"`` is minimised; ``"val_dsc_<class>"`` is maximised; ``"val_dsc_particles"`` falls back to the
    last (rarest-by-convention) class when no class is named "particles".
    """
    if monitor == "val_loss":
        return "val_loss", "min"
    names = {"val_" + metric_name(c): c for c in classes}
    if monitor in names:
        return monitor, "max"
    if monitor == "val_dsc_particles":
        return "val_" + metric_name(classes[-1]), "max"
    raise ValueError(f"train.monitor {monitor!r} is not val_loss or one of {sorted(names)}")


class _EpochLog(keras.callbacks.Callback):
    """Log one progress line per epoch and keep the weights of the best epoch in memory."""

    def __init__(self, epochs: int, key: str, mode: str, keys: Sequence[str]) -> None:
        super().__init__()
        self.epochs, self.key, self.mode, self.keys = epochs, key, mode, list(keys)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.seconds.append(time.perf_counter() - self._t0)
        val = float(logs.get(self.key, math.nan))
        better = val < self.best if self.mode == "min" else val > self.best
        if better and math.isfinite(val):
            self.best, self.best_epoch = val, epoch + 1
            self.best_weights = copy.deepcopy(self.model.get_weights())
        parts = " ".join(f"{k}={float(logs[k]):.4f}" for k in self.keys if k in logs)
        log.info("epoch %d/%d %s (%.1f s)%s", epoch + 1, self.epochs, parts, self.seconds[-1],
                 " *best*" if self.best_epoch == epoch + 1 else "")


def initial_model(init: keras.Model, depth: int, base_filters: int, n_classes: int, where: str = "train.init_model") -> tuple[keras.Model, float, float]:
    """A fresh U-Net carrying the weights (and the intensity normalisation) of ``init`` (fine-tuning).

    The normalisation of ``init`` is kept, not re-estimated from the new training images: the weights
    were learnt on intensities standardised with it, so another mean/std would shift every input the
    pre-trained filters see (a sample with a different dose or reconstruction scale is then a
    domain shift the fine-tuning learns, with the first layers starting from where they work).

    Returns
    -------
    (keras.Model, float, float)
        The model and the kept normalisation ``mean``, ``variance``.

    Raises
    ------
    InputError
        ``init`` has another architecture (weights of other shapes or count).
    """
    from ..errors import InputError

    try:
        cfg = init.get_layer("normalize").get_config()
        mean = float(np.asarray(cfg["mean"], dtype=np.float64).ravel()[0])
        var = float(np.asarray(cfg["variance"], dtype=np.float64).ravel()[0])
    except (ValueError, KeyError, TypeError, IndexError):
        raise InputError(where, "the model has no 'normalize' (keras Normalization) first layer with a fixed mean/variance",
                         "start from a model trained by tomoflow (train_unet), or leave train.init_model empty") from None
    model = build_unet(depth, base_filters, n_classes, mean, var)
    theirs, ours = init.get_weights(), model.get_weights()
    shapes = [tuple(w.shape) for w in theirs], [tuple(w.shape) for w in ours]
    if shapes[0] != shapes[1]:
        raise InputError(where, f"the model's weights ({len(theirs)} arrays, {init.count_params()} parameters) do not fit the "
                         f"configured U-Net (depth {depth}, base filters {base_filters}, {n_classes} classes: {len(ours)} arrays, "
                         f"{model.count_params()} parameters)", "set train.depth/base_filters/classes to the model's, or start from a matching model")
    model.set_weights(theirs)
    log.info("initial weights from %s (normalisation kept: mean %.6g, std %.6g)", where, mean, math.sqrt(var))
    return model, mean, var


def encoder_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of the down path (names ``down*``) of a :func:`~tomoflow.unet.build_unet` model."""
    return [lay for lay in model.layers if lay.name.startswith("down")]


def _fit_phases(model: keras.Model, compile_model, freeze_epochs: int, epochs: int, **fit_kwargs) -> dict[str, list[float]]:
    """``model.fit`` for ``epochs``; with ``freeze_epochs > 0`` first that many epochs with the encoder
    frozen, then the rest with every layer trainable (recompiled each time: a fresh Adam for the second
    phase).  Returns the joined history."""
    frozen = min(max(int(freeze_epochs), 0), int(epochs))
    phases = [(0, frozen, False), (frozen, int(epochs), True)] if frozen else [(0, int(epochs), True)]
    history: dict[str, list[float]] = {}
    for first, last, trainable in phases:
        if last <= first:
            continue
        for lay in encoder_layers(model):
            lay.trainable = trainable
        compile_model(model)
        if not trainable:
            log.info("epochs %d-%d: encoder frozen (%d layers)", first + 1, last, len(encoder_layers(model)))
        hist = model.fit(initial_epoch=first, epochs=last, **fit_kwargs)
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)
    for lay in encoder_layers(model):
        lay.trainable = True
    return history


def train_unet(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    settings: TrainSettings,
    init: keras.Model | None = None,
) -> TrainResult:
    """Train the U-Net with the weighted focal loss and keep the best epoch.

    Parameters
    ----------
    train_images, val_images : ndarray float32, shape (n, h, w)
        Raw reconstructed intensities of the training / validation patches (h, w divisible by
        ``2**(depth-1)``).
    train_labels, val_labels : ndarray uint8, shape (n, h, w)
        Labels ``0 .. len(classes)-1``.
    classes : sequence of str
        Class names (label value = index).
    settings : TrainSettings
    init : keras.Model, optional
        Model to start from (fine-tuning, :func:`initial_model`): its weights and normalisation;
        ``settings.freeze_encoder_epochs`` freezes its encoder for the first epochs.

    Returns
    -------
    TrainResult
    """
    n_classes = len(classes)
    s = settings
    set_determinism(s.seed)
    if isinstance(s.class_weights, str):
        if s.class_weights != "auto":
            raise ValueError(f"train.class_weights must be 'auto' or a list, got {s.class_weights!r}")
        alpha, freq = class_weights_from_labels(train_labels, n_classes, s.alpha_power, classes)
    else:
        alpha = np.asarray(s.class_weights, dtype=np.float64)
        if alpha.shape != (n_classes,):
            raise ValueError(f"train.class_weights has {alpha.size} values for {n_classes} classes")
        freq = np.bincount(train_labels.ravel(), minlength=n_classes) / train_labels.size
    if init is not None:
        model, mean, var = initial_model(init, s.depth, s.base_filters, n_classes, s.init_model or "train.init_model")
    else:
        mean = float(np.mean(train_images, dtype=np.float64))
        var = float(np.var(train_images, dtype=np.float64))
        if not var > 0:
            raise ValueError("the training images are constant; cannot normalise intensities")
        model = build_unet(s.depth, s.base_filters, n_classes, mean, var)
    norm = {"mean": mean, "variance": var, "std": math.sqrt(var)}
    log.info("class frequencies %s -> focal alpha %s, gamma %.2f", np.round(freq, 5).tolist(),
             np.round(alpha, 4).tolist(), s.focal_gamma)
    log.info("intensity normalisation: mean %.6g, std %.6g", mean, norm["std"])
    names = [metric_name(c) for c in classes]

    def compile_model(m: keras.Model) -> None:
        m.compile(
            optimizer=keras.optimizers.Adam(learning_rate=s.learning_rate),
            loss=focal_loss(alpha, s.focal_gamma),
            metrics=[ClassDice(c, name=n) for c, n in enumerate(names)],
            jit_compile=False,
        )

    log.info("U-Net depth %d, base filters %d: %d parameters; %d train / %d validation patches",
             s.depth, s.base_filters, model.count_params(), len(train_images), len(val_images))
    key, mode = resolve_monitor(s.monitor, classes)
    train_ds = PatchDataset(train_images, train_labels, n_classes, s.batch_size, s.augment, s.seed)
    y_val = np.eye(n_classes, dtype=np.float32)[val_labels.astype(np.uint8)]
    keys = ["loss", "val_loss"] + [f"val_{n}" for n in names]
    cb = _EpochLog(s.epochs, key, mode, keys)
    history = _fit_phases(
        model, compile_model, s.freeze_encoder_epochs if init is not None else 0, s.epochs,
        x=train_ds,
        validation_data=(val_images[..., None].astype(np.float32), y_val),
        validation_batch_size=s.batch_size,
        callbacks=[cb],
        verbose=0,
        shuffle=False,
    )
    if cb.best_weights is not None:
        model.set_weights(cb.best_weights)
    df = pd.DataFrame({"epoch": np.arange(1, len(cb.seconds) + 1)})
    for k in ["loss", "val_loss"] + names + [f"val_{n}" for n in names]:
        df[k] = np.asarray(history.get(k, [math.nan] * len(df)), dtype=np.float64)
    df["seconds"] = cb.seconds
    log.info("kept epoch %d (%s = %.4f)", cb.best_epoch, key, cb.best)
    return TrainResult(model, df, alpha, freq, norm, cb.best_epoch, key)
