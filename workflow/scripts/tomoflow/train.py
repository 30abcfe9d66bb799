"""Training the U-Net on annotated patches: augmentation, class weights, best-model selection, curves.

Backend-neutral (Keras 3): augmentation uses :func:`keras.ops.image.affine_transform`, batches come from a
:class:`keras.utils.PyDataset`, metrics are :class:`tomoflow.unet.ClassDice`.  With the TensorFlow backend
:func:`set_determinism` also turns on TensorFlow's op determinism, so on CPU the same seed gives the same
weights bit for bit.

Augmentation (on the fly, seeded per epoch and batch): a random affine map about the patch centre made of
a rotation (uniform in ±``rotation_deg``), a shear (±``shear_deg``), an isotropic zoom (factor uniform in
``1 ± zoom``) and horizontal/vertical flips (probability ½ each).  The same map is applied to image and
labels - bilinear interpolation for the image, nearest-neighbour for the labels, reflecting the patch at
its edges for both - so they stay registered.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pandas as pd
from keras import ops
from matplotlib.figure import Figure

from .errors import InputError
from .unet import ClassDice, build_unet, class_weights_from_labels, focal_loss, metric_name

log = logging.getLogger(__name__)

__all__ = [
    "AugmentSettings",
    "TrainSettings",
    "TrainResult",
    "set_determinism",
    "random_affine",
    "augment_batch",
    "PatchDataset",
    "resolve_monitor",
    "train_unet",
    "export_model",
    "training_curves_figure",
    "settings_from_params",
    "train_from_files",
]


@dataclass(frozen=True)
class AugmentSettings:
    """On-the-fly augmentation ranges (config ``train.augment``).

    Attributes
    ----------
    rotation_deg : float
        Rotation uniform in ``[-rotation_deg, rotation_deg]`` degrees.
    flip : bool
        Random horizontal and vertical flips (probability ½ each).
    zoom : float
        Zoom factor uniform in ``[1 - zoom, 1 + zoom]``.
    shear_deg : float
        Shear angle uniform in ``[-shear_deg, shear_deg]`` degrees.
    """

    rotation_deg: float = 15.0
    flip: bool = True
    zoom: float = 0.1
    shear_deg: float = 5.0

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(self.rotation_deg or self.flip or self.zoom or self.shear_deg)


@dataclass
class TrainSettings:
    """Training settings (config ``train``).

    Attributes
    ----------
    depth, base_filters : int
        U-Net depth (steps down) and first-level feature maps.
    epochs, batch_size : int
    learning_rate : float
        Adam learning rate.
    focal_gamma : float
        Focal loss γ.
    class_weights : "auto" or sequence of float
        Focal loss α per class, or ``"auto"`` (see :func:`tomoflow.unet.class_weights_from_labels`).
    monitor : str
        ``"val_loss"`` (minimised) or ``"val_dsc_<class>"`` (maximised) - the epoch whose weights are kept;
        ``"val_dsc_particles"`` means the last class when no class is called "particles".
    seed : int
    augment : AugmentSettings
    alpha_power : float
        Exponent of the inverse class frequency for ``class_weights="auto"``.
    """

    depth: int = 6
    base_filters: int = 8
    epochs: int = 40
    batch_size: int = 2
    learning_rate: float = 5e-4
    focal_gamma: float = 1.0
    class_weights: str | Sequence[float] = "auto"
    monitor: str = "val_loss"
    seed: int = 42
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    alpha_power: float = 0.25


@dataclass
class TrainResult:
    """What :func:`train_unet` returns.

    Attributes
    ----------
    model : keras.Model
        The U-Net with the weights of the best epoch (still compiled with the training metrics; use
        :func:`export_model` before saving).
    history : pandas.DataFrame
        One row per epoch: ``epoch`` (1-based), ``loss``, ``val_loss``, ``dsc_<class>``,
        ``val_dsc_<class>``, ``seconds``.
    alpha : ndarray, shape (n_classes,)
        Focal loss class weights used.
    frequencies : ndarray, shape (n_classes,)
        Class fractions of the training labels.
    normalization : dict
        ``{"mean", "variance", "std"}`` of the training images (raw intensity units).
    best_epoch : int
        1-based epoch whose weights were kept.
    monitor : str
        The monitored quantity.
    """

    model: keras.Model
    history: pd.DataFrame
    alpha: np.ndarray
    frequencies: np.ndarray
    normalization: dict[str, float]
    best_epoch: int
    monitor: str


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend; enable TensorFlow op determinism on that backend."""
    keras.utils.set_random_seed(int(seed))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # only for the determinism switch, never in model/loss code

        tf.config.experimental.enable_op_determinism()


def random_affine(rng: np.random.Generator, shape: Sequence[int], aug: AugmentSettings) -> np.ndarray:
    """Draw one random affine map (about the patch centre) in ``affine_transform`` form.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        Patch height and width (px).
    aug : AugmentSettings

    Returns
    -------
    ndarray float32, shape (8,)
        ``[a0, a1, a2, b0, b1, b2, 0, 0]`` mapping *output* pixel ``(x, y)`` (column, row) to the input
        position ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, as :func:`keras.ops.image.affine_transform` wants.
    """
    h, w = shape
    theta = math.radians(rng.uniform(-aug.rotation_deg, aug.rotation_deg)) if aug.rotation_deg else 0.0
    shear = math.radians(rng.uniform(-aug.shear_deg, aug.shear_deg)) if aug.shear_deg else 0.0
    zoom = rng.uniform(1.0 - aug.zoom, 1.0 + aug.zoom) if aug.zoom else 1.0
    fx, fy = (rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0])) if aug.flip else (1.0, 1.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    she = np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
    fwd = rot @ she @ np.diag([zoom * fx, zoom * fy])  # input -> output about the centre
    inv = np.linalg.inv(fwd)
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    off = c - inv @ c
    return np.array([inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1], 0.0, 0.0], np.float32)


def augment_batch(
    images: np.ndarray, labels: np.ndarray, transforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp images (bilinear) and labels (nearest neighbour) with the same affine maps.

    Parameters
    ----------
    images : ndarray float32, shape (B, H, W)
    labels : ndarray uint8, shape (B, H, W)
    transforms : ndarray, shape (B, 8)
        From :func:`random_affine`.

    Returns
    -------
    images : ndarray float32, shape (B, H, W)
    labels : ndarray uint8, shape (B, H, W)
    """
    t = ops.convert_to_tensor(np.asarray(transforms, np.float32))
    im = ops.image.affine_transform(
        ops.convert_to_tensor(images[..., None].astype(np.float32)), t,
        interpolation="bilinear", fill_mode="reflect", data_format="channels_last",
    )
    lab = ops.image.affine_transform(
        ops.convert_to_tensor(labels[..., None].astype(np.float32)), t,
        interpolation="nearest", fill_mode="reflect", data_format="channels_last",
    )
    im_np = ops.convert_to_numpy(im)[..., 0].astype(np.float32)
    lab_np = np.rint(ops.convert_to_numpy(lab)[..., 0]).astype(np.uint8)
    return im_np, lab_np


class PatchDataset(keras.utils.PyDataset):
    """Shuffled, augmented batches of training patches.

    Batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, so the stream is reproducible whatever
    order Keras asks for batches in.

    Parameters
    ----------
    images : ndarray float32, shape (n, h, w)
        Raw intensities.
    labels : ndarray uint8, shape (n, h, w)
    n_classes : int
    batch_size : int
    augment : AugmentSettings or None
    seed : int
    shuffle : bool
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        batch_size: int,
        augment: AugmentSettings | None,
        seed: int,
        shuffle: bool = True,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if images.shape != labels.shape or images.ndim != 3:
            raise ValueError(f"images {images.shape} and labels {labels.shape} must both be (n, h, w)")
        self.images = images.astype(np.float32)
        self.labels = labels.astype(np.uint8)
        self.n_classes = int(n_classes)
        self.batch_size = int(batch_size)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self._order()[i * self.batch_size : (i + 1) * self.batch_size]
        im, lab = self.images[idx], self.labels[idx]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i, 1])
            tr = np.stack([random_affine(rng, im.shape[1:], self.augment) for _ in idx])
            im, lab = augment_batch(im, lab, tr)
        onehot = np.eye(self.n_classes, dtype=np.float32)[lab]
        return im[..., None], onehot

    def on_epoch_end(self) -> None:
        self.epoch += 1


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


def train_unet(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    settings: TrainSettings,
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
    mean = float(np.mean(train_images, dtype=np.float64))
    var = float(np.var(train_images, dtype=np.float64))
    if not var > 0:
        raise ValueError("the training images are constant; cannot normalise intensities")
    norm = {"mean": mean, "variance": var, "std": math.sqrt(var)}
    log.info("class frequencies %s -> focal alpha %s, gamma %.2f", np.round(freq, 5).tolist(),
             np.round(alpha, 4).tolist(), s.focal_gamma)
    log.info("intensity normalisation: mean %.6g, std %.6g", mean, norm["std"])

    model = build_unet(s.depth, s.base_filters, n_classes, mean, var)
    names = [metric_name(c) for c in classes]
    model.compile(
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
    hist = model.fit(
        train_ds,
        validation_data=(val_images[..., None].astype(np.float32), y_val),
        validation_batch_size=s.batch_size,
        epochs=s.epochs,
        callbacks=[cb],
        verbose=0,
        shuffle=False,
    )
    if cb.best_weights is not None:
        model.set_weights(cb.best_weights)
    df = pd.DataFrame({"epoch": np.arange(1, len(cb.seconds) + 1)})
    for k in ["loss", "val_loss"] + names + [f"val_{n}" for n in names]:
        df[k] = np.asarray(hist.history.get(k, [math.nan] * len(df)), dtype=np.float64)
    df["seconds"] = cb.seconds
    log.info("kept epoch %d (%s = %.4f)", cb.best_epoch, key, cb.best)
    return TrainResult(model, df, alpha, freq, norm, cb.best_epoch, key)


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


def settings_from_params(params: Mapping[str, Any], n_classes: int) -> TrainSettings:
    """:class:`TrainSettings` from the ``train`` config values (rule ``train_unet``'s params), checked.

    Parameters
    ----------
    params : mapping
        Keys ``depth, base_filters, epochs, batch_size, learning_rate, focal_gamma, class_weights,
        monitor, seed, augment`` (``augment``: ``rotation_deg, flip, zoom, shear_deg``) and
        ``patch_size`` (checked against the depth).
    n_classes : int
        Number of configured classes (checked against explicit class weights).

    Raises
    ------
    InputError
        ``train.patch_size`` not divisible by ``2**(depth-1)``, or ``train.class_weights`` of the wrong
        length.
    """
    depth = int(params["depth"])
    factor = 2 ** (depth - 1)
    patch = [int(v) for v in params["patch_size"]]
    if len(patch) != 2 or patch[0] % factor or patch[1] % factor:
        raise InputError("train.patch_size", f"{patch} is not two multiples of 2**(depth-1) = {factor}",
                         f"use multiples of {factor} (e.g. 128 or 512) or a smaller train.depth")
    cw: str | list[float] = params["class_weights"]
    if not isinstance(cw, str):
        cw = [float(v) for v in cw]
        if len(cw) != n_classes:
            raise InputError("train.class_weights", f"{len(cw)} weights for {n_classes} classes",
                             "give one weight per class or 'auto'")
    aug = params["augment"]
    return TrainSettings(
        depth=depth, base_filters=int(params["base_filters"]), epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]), learning_rate=float(params["learning_rate"]),
        focal_gamma=float(params["focal_gamma"]), class_weights=cw, monitor=str(params["monitor"]),
        seed=int(params["seed"]),
        augment=AugmentSettings(float(aug["rotation_deg"]), bool(aug["flip"]), float(aug["zoom"]),
                                float(aug["shear_deg"])),
    )


def train_from_files(
    image_paths: Sequence[str],
    label_paths: Sequence[str],
    outputs: Mapping[str, str],
    params: Mapping[str, Any],
) -> TrainResult:
    """Train the U-Net on annotation stacks and write the model and its records (rule ``train_unet``).

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
        :func:`settings_from_params`.

    Returns
    -------
    TrainResult
        After everything is written.
    """
    from . import io
    from .annotations import make_split, split_records
    from .io.models import save_model

    classes = list(params["classes"])
    settings = settings_from_params(params, len(classes))
    patch = [int(v) for v in params["patch_size"]]
    samples = list(params["samples"])
    if not (len(samples) == len(image_paths) == len(label_paths)):
        raise InputError("train.samples", f"{len(samples)} samples but {len(image_paths)} image and "
                         f"{len(label_paths)} label stacks", "give one annotation stack pair per sample")
    images, labels = {}, {}
    for s, im_path, lab_path in zip(samples, image_paths, label_paths):
        images[s] = io.read_volume(im_path)[0].astype(np.float32)
        labels[s] = io.read_labels(lab_path, len(classes))[0]
    split = make_split({s: a.shape for s, a in images.items()}, patch, float(params["val_fraction"]),
                       int(params["seed"]))
    ti, tl = split_records(images, split["train"]), split_records(labels, split["train"])
    vi, vl = split_records(images, split["validation"]), split_records(labels, split["validation"])
    res = train_unet(ti, tl, vi, vl, classes, settings)
    export_model(res.model, res.alpha, settings.focal_gamma, settings.learning_rate)
    save_model(res.model, outputs["model"])
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
