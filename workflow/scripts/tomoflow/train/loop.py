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
from .data import CropDataset, PatchDataset
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


def gpu_visible() -> bool:
    """Whether the Keras backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def configure_precision(mode: str) -> str:
    """Set the global Keras dtype policy for ``train.precision`` and return its name.

    ``"mixed_float16"`` (or ``"auto"`` when :func:`gpu_visible`) uses Keras 3's documented
    ``keras.mixed_precision.set_dtype_policy("mixed_float16")`` (the U-Net's softmax output layer is
    float32 regardless, and ``compile`` then scales the loss); otherwise ``"float32"``.
    """
    if mode not in ("auto", "float32", "mixed_float16"):
        raise ValueError(f"precision {mode!r} is not auto, float32 or mixed_float16")
    name = "mixed_float16" if mode == "mixed_float16" or (mode == "auto" and gpu_visible()) else "float32"
    keras.mixed_precision.set_dtype_policy(name)
    return name


def learning_rate_at(epoch: int, settings: TrainSettings) -> float:
    """Learning rate of 0-based ``epoch`` for ``constant`` and ``cosine`` schedules.

    ``cosine``: ``lr · (f + (1 - f) · ½ (1 + cos(π e / (E - 1))))`` with ``f = 0.01`` and ``E`` =
    ``settings.epochs``: ``lr`` at the first epoch, ``lr / 100`` at the last.  ``plateau`` (and
    ``constant``) start at ``lr``; ``plateau`` is then lowered by ``ReduceLROnPlateau`` in :func:`train_unet`.
    """
    lr = float(settings.learning_rate)
    if settings.lr_schedule != "cosine" or settings.epochs <= 1:
        return lr
    f = 0.01
    t = min(max(epoch, 0), settings.epochs - 1) / (settings.epochs - 1)
    return lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t)))


def early_stop_epoch(values: Sequence[float], mode: str, patience: int) -> int | None:
    """1-based epoch after which early stopping ends training, or ``None`` (never, or ``patience`` 0).

    Training stops after the first epoch that is ``patience`` epochs past the best value so far (strictly
    better counts as an improvement; NaN never does).
    """
    if patience <= 0:
        return None
    best, best_epoch = (math.inf if mode == "min" else -math.inf), 0
    for e, v in enumerate(values, start=1):
        v = float(v)
        if math.isfinite(v) and (v < best if mode == "min" else v > best):
            best, best_epoch = v, e
        if e - best_epoch >= patience:
            return e
    return None


class _EpochLog(keras.callbacks.Callback):
    """Log one progress line per epoch and keep the weights of the best epoch in memory."""

    def __init__(self, epochs: int, key: str, mode: str, keys: Sequence[str], patience: int = 0,
                 max_minutes: float = 0.0) -> None:
        super().__init__()
        self.epochs, self.key, self.mode, self.keys = epochs, key, mode, list(keys)
        self.patience, self.max_s = int(patience), 60.0 * float(max_minutes)
        self.values: list[float] = []
        self.learning_rates: list[float] = []
        self.stop_reason = "all epochs"
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.seconds: list[float] = []
        self._t0 = self._lr = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))  # set by the schedule

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.seconds.append(time.perf_counter() - self._t0)
        val = float(logs.get(self.key, math.nan))
        better = val < self.best if self.mode == "min" else val > self.best
        if better and math.isfinite(val):
            self.best, self.best_epoch = val, epoch + 1
            self.best_weights = copy.deepcopy(self.model.get_weights())
        parts = " ".join(f"{k}={float(logs[k]):.4f}" for k in self.keys if k in logs)
        lr = self._lr  # the rate this epoch trained with (ReduceLROnPlateau may lower it for the next)
        self.learning_rates.append(lr)
        log.info("epoch %d/%d %s lr=%.3g (%.1f s)%s", epoch + 1, self.epochs, parts, lr, self.seconds[-1],
                 " *best*" if self.best_epoch == epoch + 1 else "")
        self.values.append(val)
        total = sum(self.seconds)
        if early_stop_epoch(self.values, self.mode, self.patience) == epoch + 1:
            self.stop_reason = (f"early stopping: {self.key} not better than {self.best:.4f} (epoch "
                                f"{self.best_epoch}) for {self.patience} epochs")
        elif self.max_s > 0 and epoch + 1 < self.epochs and total + self.seconds[-1] > self.max_s:
            self.stop_reason = (f"time limit: {total / 60:.1f} min trained, another epoch "
                                f"(~{self.seconds[-1]:.0f} s) would pass {self.max_s / 60:g} min")
        else:
            return
        log.info("stopping after epoch %d: %s", epoch + 1, self.stop_reason)
        self.model.stop_training = True


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
        if model.stop_training:  # early stopping or the time limit ended the run: no further phase
            break
    for lay in encoder_layers(model):
        lay.trainable = True
    return history


def train_unet(
    train_images: np.ndarray | Sequence[np.ndarray],
    train_labels: np.ndarray | Sequence[np.ndarray],
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    settings: TrainSettings,
    init: keras.Model | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train the U-Net with the weighted focal loss and keep the best epoch.

    Parameters
    ----------
    train_images, val_images : ndarray float32, shape (n, h, w)
        Raw reconstructed intensities of the training / validation patches (h, w divisible by
        ``2**(depth-1)``).  With random crops (``settings.random_crops``) ``train_images`` may be any
        sequence of 2-D images at least the crop size (e.g. whole annotated slices).
    train_labels, val_labels : ndarray uint8, shape (n, h, w)
        Labels ``0 .. len(classes)-1`` (``train_labels`` shaped like ``train_images``).
    classes : sequence of str
        Class names (label value = index).
    settings : TrainSettings
    init : keras.Model, optional
        Model to start from (fine-tuning, :func:`initial_model`): its weights and normalisation;
        ``settings.freeze_encoder_epochs`` freezes its encoder for the first epochs.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, called after the epoch log (e.g. a benchmark's held-out scoring; their time is
        not counted in the epoch seconds or the time limit).

    Returns
    -------
    TrainResult
    """
    s = settings
    set_determinism(s.seed)
    crops: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    if s.random_crops:  # class weights and normalisation from all pixels of the crop sources
        crops = ([np.asarray(a, np.float32) for a in train_images], [np.asarray(a, np.uint8) for a in train_labels])
        ti, tl = np.concatenate([a.ravel() for a in crops[0]]), np.concatenate([a.ravel() for a in crops[1]])
    else:
        ti, tl = np.asarray(train_images), np.asarray(train_labels)
    previous_policy = keras.mixed_precision.dtype_policy().name
    policy = configure_precision(s.precision)
    try:
        return _train(ti, tl, val_images, val_labels, classes, s, callbacks, crops, policy, init)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _train(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
           classes: Sequence[str], s: TrainSettings, callbacks: Sequence[keras.callbacks.Callback],
           crops: tuple[list[np.ndarray], list[np.ndarray]] | None, policy: str,
           init: keras.Model | None = None) -> TrainResult:
    """The body of :func:`train_unet` (``crops``: the random-crop sources, else ``None``; ``init``: the
    model to start from, else ``None``)."""
    n_classes = len(classes)
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

    key, mode = resolve_monitor(s.monitor, classes)
    train_ds: PatchDataset | CropDataset
    if crops is not None:
        crop = s.crop_size or tuple(val_images.shape[1:3])
        steps = s.steps_per_epoch or max(1, -(-sum(a.size for a in crops[0]) // (crop[0] * crop[1] * s.batch_size)))
        train_ds = CropDataset(crops[0], crops[1], crop, n_classes, s.batch_size, steps, s.particle_oversampling,
                               s.augment, s.seed)
        what = f"{steps} batches of random {crop[0]}x{crop[1]} crops per epoch from {len(crops[0])} images " \
               f"({s.particle_oversampling:.0%} centred on {classes[-1]})"
    else:
        train_ds = PatchDataset(train_images, train_labels, n_classes, s.batch_size, s.augment, s.seed)
        what = f"{len(train_images)} train patches"
    log.info("U-Net depth %d, base filters %d: %d parameters (%s); %s / %d validation patches; lr %g %s%s%s",
             s.depth, s.base_filters, model.count_params(), policy, what, len(val_images), s.learning_rate,
             s.lr_schedule, f", early stopping after {s.early_stopping_patience}" if s.early_stopping_patience else "",
             f", time limit {s.max_minutes:g} min" if s.max_minutes else "")
    y_val = np.eye(n_classes, dtype=np.float32)[val_labels.astype(np.uint8)]
    keys = ["loss", "val_loss"] + [f"val_{n}" for n in names]
    cb = _EpochLog(s.epochs, key, mode, keys, s.early_stopping_patience, s.max_minutes)
    schedule: list[keras.callbacks.Callback] = []
    if s.lr_schedule == "cosine":
        schedule.append(keras.callbacks.LearningRateScheduler(lambda e, lr: learning_rate_at(e, s)))
    elif s.lr_schedule == "plateau":
        schedule.append(keras.callbacks.ReduceLROnPlateau(monitor=key, mode=mode, factor=0.5, patience=3,
                                                          min_lr=s.learning_rate / 100))
    history = _fit_phases(
        model, compile_model, s.freeze_encoder_epochs if init is not None else 0, s.epochs,
        x=train_ds,
        validation_data=(val_images[..., None].astype(np.float32), y_val),
        validation_batch_size=s.batch_size,
        callbacks=[*schedule, cb, *callbacks],
        verbose=0,
        shuffle=False,
    )
    if cb.best_weights is not None:
        model.set_weights(cb.best_weights)
    df = pd.DataFrame({"epoch": np.arange(1, len(cb.seconds) + 1)})
    for k in ["loss", "val_loss"] + names + [f"val_{n}" for n in names]:
        df[k] = np.asarray(history.get(k, [math.nan] * len(df)), dtype=np.float64)
    df["seconds"] = cb.seconds
    df["learning_rate"] = cb.learning_rates
    log.info("kept epoch %d (%s = %.4f); ended by %s", cb.best_epoch, key, cb.best, cb.stop_reason)
    return TrainResult(model, df, alpha, freq, norm, cb.best_epoch, key, cb.stop_reason)
