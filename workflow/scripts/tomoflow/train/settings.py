"""Training settings and result types, and :func:`settings_from_params` (the checked config ``train``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd

from ..errors import InputError


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
    init_model : str
        ``.keras`` file whose weights start the training (fine-tuning; ``""``: random He-normal start).
    freeze_encoder_epochs : int
        With ``init_model``: the encoder (down path) is frozen for the first this many epochs.
    lr_schedule : {"constant", "cosine", "plateau"}
        Learning rate per epoch (see :func:`tomoflow.train.loop.learning_rate_at`); ``plateau`` halves it
        after 3 epochs without improvement of the monitored quantity (floor ``learning_rate / 100``).
    early_stopping_patience : int
        Stop after this many epochs without improvement of the monitored quantity (0: off).
    particle_oversampling : float
        With random crops: probability that a training patch is centred on a pixel of the last class (Pt).
    steps_per_epoch : int
        Batches per epoch (0: one pass over the training patches).  Any of ``particle_oversampling > 0``,
        ``steps_per_epoch > 0`` switches to random crops of ``crop_size`` from the training images.
    max_minutes : float
        Stop when the next epoch would end after this much training wall time (0: off).
    precision : {"auto", "float32", "mixed_float16"}
        Keras dtype policy; ``auto`` = ``mixed_float16`` when a GPU is visible, else ``float32``.
    crop_size : (int, int) or None
        Random-crop patch size (rows, cols), px; ``None``: the validation patches' size.
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
    init_model: str = ""
    freeze_encoder_epochs: int = 0
    lr_schedule: str = "constant"
    early_stopping_patience: int = 0
    particle_oversampling: float = 0.0
    steps_per_epoch: int = 0
    max_minutes: float = 0.0
    precision: str = "auto"
    crop_size: tuple[int, int] | None = None

    @property
    def random_crops(self) -> bool:
        """Whether training patches are random crops (see ``steps_per_epoch``)."""
        return self.particle_oversampling > 0 or self.steps_per_epoch > 0


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
    stop_reason : str
        Why training ended (``"all epochs"``, early stopping or the time limit).
    """

    model: keras.Model
    history: pd.DataFrame
    alpha: np.ndarray
    frequencies: np.ndarray
    normalization: dict[str, float]
    best_epoch: int
    monitor: str
    stop_reason: str = "all epochs"


def settings_from_params(params: Mapping[str, Any], n_classes: int) -> TrainSettings:
    """:class:`TrainSettings` from the ``train`` config values (rule ``train_unet``'s params), checked.

    Parameters
    ----------
    params : mapping
        Keys ``depth, base_filters, epochs, batch_size, learning_rate, focal_gamma, class_weights,
        monitor, seed, augment`` (``augment``: ``rotation_deg, flip, zoom, shear_deg``) and
        ``patch_size`` (checked against the depth); optional ``init_model`` (a resolved ``.keras`` path or
        ``""``) and ``freeze_encoder_epochs``.
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
        init_model=str(params.get("init_model") or ""),
        freeze_encoder_epochs=int(params.get("freeze_encoder_epochs") or 0),
        **_recipe_settings(params, patch),
    )


def _recipe_settings(params: Mapping[str, Any], patch: Sequence[int]) -> dict[str, Any]:
    """The fast-convergence keys (``lr_schedule`` ... ``precision``; defaults = off) of the ``train`` params."""
    sched = str(params.get("lr_schedule", "constant"))
    if sched not in ("constant", "cosine", "plateau"):
        raise InputError("train.lr_schedule", f"{sched!r} is not constant, cosine or plateau", "use one of them")
    prec = str(params.get("precision", "auto"))
    if prec not in ("auto", "float32", "mixed_float16"):
        raise InputError("train.precision", f"{prec!r} is not auto, float32 or mixed_float16", "use one of them")
    p = float(params.get("particle_oversampling", 0.0))
    if not 0.0 <= p <= 1.0:
        raise InputError("train.particle_oversampling", f"{p} is not in [0, 1]", "use e.g. 0.5")
    return {"lr_schedule": sched, "early_stopping_patience": int(params.get("early_stopping_patience", 0)),
            "particle_oversampling": p, "steps_per_epoch": int(params.get("steps_per_epoch", 0)),
            "max_minutes": float(params.get("max_minutes", 0.0)), "precision": prec,
            "crop_size": (int(patch[0]), int(patch[1]))}
