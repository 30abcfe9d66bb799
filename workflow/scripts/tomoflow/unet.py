"""The paper's 2-D U-Net, its weighted categorical focal loss and per-class Dice metrics.

Everything here is written against Keras 3's backend-neutral API (``keras.layers``, ``keras.ops``), so
the same code runs on the TensorFlow (default), JAX or PyTorch backend, on CPU or GPU.

Model
-----
:func:`build_unet` makes the network of the paper: ``depth`` (default 6) convolution steps down, each two
3×3 convolutions ('same' padding, ReLU), with 2×2 average pooling between steps, and ``depth - 1`` steps
up, each a 2×2 transposed convolution with stride 2, concatenation of the skip connection of the same
level and two 3×3 convolutions.  The number of feature maps is ``base_filters · 2**level`` (doubling per
level down, halving per level up).  Kernels are He-normal, biases zero, the output a per-pixel softmax
over the classes.  The first layer is a fixed :class:`keras.layers.Normalization` holding the intensity
mean and variance of the training images, so the saved model takes *raw* reconstructed intensities.
Inputs of any height/width divisible by ``2**(depth - 1)`` are accepted (32 for depth 6).

* demo scale (config default): ``base_filters=8``, ``depth=6``, 128×128 patches - ~1.9 M parameters,
  trains in a few minutes on 2 CPU cores;
* paper scale: ``base_filters=16`` (or 32), ``depth=6``, 512×512 patches - ~7.8 M (31 M) parameters,
  a GPU is recommended.

Loss
----
The weighted categorical focal loss (Lin et al. 2017, weighted per class)

.. math::  L = -\\frac{1}{N} \\sum_i \\sum_c \\alpha_c\\, y_{ic} (1 - p_{ic})^{\\gamma} \\log p_{ic}

is Keras' built-in :class:`keras.losses.CategoricalFocalCrossentropy` with a per-class ``alpha`` (one-hot
labels, mean over all pixels of the batch).  ``gamma = 0`` gives the class-weighted cross-entropy.  Using the
built-in keeps saved models loadable without custom objects.

Class weights ("auto")
----------------------
:func:`class_weights_from_labels` derives α from the class frequencies ``f_c`` of the training labels by
inverse-fourth-root-frequency weighting, normalised to sum to one:

.. math::  \\alpha_c = f_c^{-1/4} \\Big/ \\sum_k f_k^{-1/4}

For the demo (f ≈ 0.77 / 0.23 / 0.0055) this gives α ≈ (0.17, 0.23, 0.59).  Stronger weighting
over-segments the particles: on the demo, ``f^{-1/2}`` (α ≈ 0.07 / 0.13 / 0.81) reached particle recall
0.99 but precision 0.75 (DSC 0.86), ``f^{-1/4}`` precision 0.80 and DSC 0.88 (``benchmarks/loss_ablation.py``).  A class absent
from the training labels gets the largest weight of the present classes (finite), with a warning.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import numpy.typing as npt
from keras import layers, ops

from .errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "build_unet",
    "focal_loss",
    "class_weights_from_labels",
    "ClassDice",
    "dice_per_class",
    "metric_name",
    "count_conv_steps",
    "ModelInfo",
    "inspect_model",
    "check_model_classes",
]


def _conv_block(x, filters: int, name: str):
    """Two 3×3 'same' convolutions with ReLU, He-normal kernels and zero biases."""
    for j in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer="he_normal",
            bias_initializer="zeros",
            name=f"{name}_conv{j}",
        )(x)
    return x


def build_unet(
    depth: int = 6,
    base_filters: int = 8,
    n_classes: int = 3,
    mean: float = 0.0,
    variance: float = 1.0,
    patch_size: Sequence[int] | None = None,
) -> keras.Model:
    """Build the paper's U-Net with the intensity normalisation inside.

    Parameters
    ----------
    depth : int
        Number of convolution steps down (the paper: 6); there are ``depth - 1`` pooling and
        ``depth - 1`` up steps.
    base_filters : int
        Feature maps of the first level; level ``l`` has ``base_filters * 2**l``.
    n_classes : int
        Number of output classes (softmax channels).
    mean, variance : float
        Intensity mean and variance of the training images (raw reconstructed intensities); stored in
        the first (:class:`keras.layers.Normalization`) layer.
    patch_size : (int, int), optional
        Fixed input height and width; default ``None`` accepts any size divisible by
        ``2**(depth - 1)``.

    Returns
    -------
    keras.Model
        Input ``(B, H, W, 1)`` float32 raw intensities; output ``(B, H, W, n_classes)`` softmax
        probabilities.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if base_filters < 1 or n_classes < 2:
        raise ValueError(f"need base_filters >= 1 and n_classes >= 2, got {base_filters}, {n_classes}")
    if not (variance > 0 and math.isfinite(variance) and math.isfinite(mean)):
        raise ValueError(f"normalisation needs finite mean and variance > 0, got {mean}, {variance}")
    factor = 2 ** (depth - 1)
    if patch_size is not None:
        h, w = (int(s) for s in patch_size)
        if h % factor or w % factor:
            raise ValueError(f"patch size {h}x{w} is not divisible by 2**(depth-1) = {factor}")
        shape: tuple[int | None, int | None, int] = (h, w, 1)
    else:
        shape = (None, None, 1)
    inputs = keras.Input(shape=shape, dtype="float32", name="image")
    x = layers.Normalization(mean=float(mean), variance=float(variance), name="normalize")(inputs)
    skips = []
    for level in range(depth):
        if level > 0:
            x = layers.AveragePooling2D(2, name=f"down{level}_pool")(x)
        x = _conv_block(x, base_filters * 2**level, f"down{level}")
        skips.append(x)
    for level in range(depth - 2, -1, -1):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(
            filters,
            2,
            strides=2,
            padding="same",
            kernel_initializer="he_normal",
            bias_initializer="zeros",
            name=f"up{level}_transpose",
        )(x)
        x = layers.Concatenate(axis=-1, name=f"up{level}_concat")([skips[level], x])
        x = _conv_block(x, filters, f"up{level}")
    outputs = layers.Conv2D(
        n_classes,
        1,
        activation="softmax",
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        name="probabilities",
        dtype="float32",
    )(x)
    return keras.Model(inputs, outputs, name=f"unet_d{depth}_f{base_filters}")


def count_conv_steps(model: keras.Model) -> tuple[int, int]:
    """Number of (down, up) convolution steps of a model built by :func:`build_unet`.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    (int, int)
        Steps down (blocks named ``down*``) and up (blocks named ``up*``), counted from the layer names.
    """
    down = {lay.name.split("_")[0] for lay in model.layers if re.match(r"down\d+_conv", lay.name)}
    up = {lay.name.split("_")[0] for lay in model.layers if re.match(r"up\d+_conv", lay.name)}
    return len(down), len(up)


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs to know about a trained segmentation model (see :func:`inspect_model`).

    Attributes
    ----------
    n_classes : int
        Output channels (softmax classes).
    input_hw : (int or None, int or None)
        Fixed input height/width, ``None`` where any size is accepted (fully convolutional).
    factor : int
        Input heights/widths must be multiples of this (``2**(depth - 1)`` for :func:`build_unet`): the
        largest down-sampling of any layer.
    floats_per_px : float
        Sum over all layer outputs of their float count per input pixel - the memory of one forward pass
        if every intermediate result were kept (an upper bound of the live activations), in floats per
        input pixel; bytes = ``4 * floats_per_px * H * W`` per image.
    per_input_normalization : bool
        True when a layer normalises with statistics of the input image itself (GroupNormalization,
        LayerNormalization over spatial axes): then a whole slice is normalised differently from a
        training patch and prediction must use patches of the training size.
    """

    n_classes: int
    input_hw: tuple[int | None, int | None]
    factor: int
    floats_per_px: float
    per_input_normalization: bool

    @property
    def fully_convolutional(self) -> bool:
        """Whether the model accepts any input size that is a multiple of :attr:`factor`."""
        return self.input_hw == (None, None)


def _per_input_norm(layer) -> bool:
    """Whether ``layer`` normalises with statistics computed over the spatial axes of each input."""
    if isinstance(layer, layers.GroupNormalization):
        return True
    if isinstance(layer, layers.LayerNormalization):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return any(int(a) in (1, 2, -2, -3) for a in axes)
    return False


def inspect_model(model: keras.Model, reference_px: int = 1024) -> ModelInfo:
    """Classes, size constraints and activation memory of a single-input, single-output image model.

    The per-pixel activation count is measured on a symbolic ``reference_px`` × ``reference_px`` input
    (no computation): every layer output of a fully convolutional network scales with the number of input
    pixels, so ``floats_per_px`` holds for any slice size.  The normalisation of :func:`build_unet` is a
    :class:`keras.layers.Normalization` with the *fixed* mean/variance of the training images, i.e. the
    same affine map for a 128² patch and a 1024×512 slice, so ``per_input_normalization`` is False for it.

    Parameters
    ----------
    model : keras.Model
        Input ``(B, H, W, 1)``, output ``(B, H, W, C)``.
    reference_px : int
        Side of the symbolic probe image (a power of two, larger than the model's down-sampling).

    Returns
    -------
    ModelInfo
    """
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    n_classes = int(out_shape[-1])
    hw = (in_shape[1], in_shape[2])
    per_input = any(_per_input_norm(lay) for lay in model.layers)
    probe = (hw[0] or reference_px, hw[1] or reference_px)
    try:
        feat = keras.Model(model.inputs, [lay.output for lay in model.layers if not isinstance(lay, layers.InputLayer)])
        specs = feat.compute_output_spec(keras.KerasTensor((1, probe[0], probe[1], 1)))
    except Exception as exc:
        log.debug("no per-layer shapes for %s: %s", model.name, exc)
        return ModelInfo(n_classes, hw, 1, math.nan, per_input)
    total = float(probe[0] * probe[1])  # the input itself
    smallest = min(probe)
    for spec in specs:
        shape = tuple(spec.shape)
        total += float(np.prod([int(v) for v in shape[1:]]))
        if len(shape) == 4:
            smallest = min(smallest, int(shape[1]), int(shape[2]))
    factor = max(1, min(probe) // max(1, smallest))
    return ModelInfo(n_classes, hw, factor, total / (probe[0] * probe[1]), per_input)


def check_model_classes(model: keras.Model, classes: Sequence[str], where: str) -> None:
    """Refuse a model whose number of output classes differs from the configured ``classes``.

    Parameters
    ----------
    model : keras.Model
    classes : sequence of str
        Configured class names (config ``classes``).
    where : str
        The model file, named in the message.

    Raises
    ------
    InputError
        One line naming the model file and both numbers.
    """
    n_model = int(tuple(model.output_shape)[-1])
    if n_model != len(classes):
        raise InputError(
            where,
            f"the model predicts {n_model} classes but config classes has {len(classes)} ({', '.join(classes)})",
            f"use a model trained for these {len(classes)} classes (delete results/models/<name>/ to retrain) "
            f"or set classes to the model's {n_model} class names",
        )


def focal_loss(alpha: Sequence[float] | npt.NDArray[np.floating], gamma: float = 1.0) -> keras.losses.Loss:
    """The weighted categorical focal loss (Keras built-in, per-class ``alpha``).

    Parameters
    ----------
    alpha : sequence of float, length n_classes
        Class weights α_c (finite, >= 0).
    gamma : float
        Focusing parameter γ >= 0 (the paper: 1); 0 gives weighted cross-entropy.

    Returns
    -------
    keras.losses.CategoricalFocalCrossentropy
        Expects one-hot ``y_true`` and softmax ``y_pred``, both ``(..., n_classes)``; mean over pixels.
    """
    a = [float(v) for v in alpha]
    if not all(math.isfinite(v) and v >= 0 for v in a):
        raise ValueError(f"class weights must be finite and >= 0, got {a}")
    if gamma < 0 or not math.isfinite(gamma):
        raise ValueError(f"focal gamma must be finite and >= 0, got {gamma}")
    return keras.losses.CategoricalFocalCrossentropy(alpha=a, gamma=float(gamma), from_logits=False)


def class_weights_from_labels(
    labels: np.ndarray, n_classes: int, power: float = 0.25, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Derive focal-loss class weights α from the class frequencies of training labels.

    ``α_c = f_c**(-power) / Σ_k f_k**(-power)`` (default power 1/4).  A class that
    never occurs gets the largest weight of the present classes, with a :class:`UserWarning`.

    Parameters
    ----------
    labels : ndarray of int, any shape
        Training labels, values in ``[0, n_classes)``.
    n_classes : int
    power : float
        Exponent of the inverse frequency (0: equal weights, 1/2: inverse square root, 1: inverse
        frequency).
    class_names : sequence of str, optional
        Names used in the warning.

    Returns
    -------
    alpha : ndarray, shape (n_classes,), float64
        Weights summing to 1.
    frequencies : ndarray, shape (n_classes,), float64
        Fraction of pixels of each class.

    Raises
    ------
    ValueError
        If fewer than two classes occur or a label is out of range.
    """
    lab = np.asarray(labels)
    counts = np.bincount(lab.ravel().astype(np.int64), minlength=n_classes).astype(np.float64)
    if counts.size > n_classes:
        raise ValueError(f"label values up to {counts.size - 1} but only {n_classes} classes")
    freq = counts / max(counts.sum(), 1.0)
    present = counts > 0
    if present.sum() < 2:
        raise ValueError("the training labels contain fewer than two classes; cannot derive class weights")
    w = np.zeros(n_classes)
    w[present] = freq[present] ** (-power)
    if not present.all():
        names = class_names or [str(c) for c in range(n_classes)]
        missing = [names[int(c)] for c in np.flatnonzero(~present)]
        warnings.warn(
            f"class(es) {missing} never occur in the training labels; giving them the largest weight of "
            "the present classes (the model cannot learn them)",
            UserWarning,
            stacklevel=2,
        )
        w[~present] = w[present].max()
    return w / w.sum(), freq


def metric_name(class_name: str) -> str:
    """History/metric name of the Dice of one class, e.g. ``"dsc_particles"``."""
    return "dsc_" + re.sub(r"[^0-9A-Za-z]+", "_", class_name).strip("_").lower()


class ClassDice(keras.metrics.Metric):
    """Dice similarity coefficient of one class, accumulated over all pixels of an epoch.

    Predictions are hard (argmax over the softmax channels); ``DSC = 2|P∩T| / (|P| + |T|)`` with the
    counts summed over every batch since the last reset (1 when both are empty).

    Parameters
    ----------
    class_id : int
        Channel index of the class.
    name : str
        Metric name (see :func:`metric_name`).
    """

    def __init__(self, class_id: int, name: str | None = None, **kwargs):
        super().__init__(name=name or f"dsc_{class_id}", **kwargs)
        self.class_id = int(class_id)
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true = ops.cast(ops.equal(ops.argmax(y_true, axis=-1), self.class_id), "float32")
        pred = ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), self.class_id), "float32")
        self.intersection.assign_add(ops.sum(true * pred))
        self.total.assign_add(ops.sum(true) + ops.sum(pred))

    def result(self):
        return ops.where(
            self.total > 0, 2.0 * self.intersection / ops.maximum(self.total, 1.0), ops.ones_like(self.total)
        )

    def reset_state(self):
        self.intersection.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id}


def dice_per_class(labels_true: np.ndarray, labels_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Dice similarity coefficient of every class between two label arrays.

    Parameters
    ----------
    labels_true, labels_pred : ndarray of int, same shape
    n_classes : int

    Returns
    -------
    ndarray, shape (n_classes,), float64
        ``2|P∩T| / (|P| + |T|)`` per class; 1.0 where the class is absent from both.
    """
    t = np.asarray(labels_true).ravel()
    p = np.asarray(labels_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"label arrays differ in size: {t.size} vs {p.size}")
    out = np.ones(n_classes)
    for c in range(n_classes):
        tc, pc = t == c, p == c
        s = tc.sum() + pc.sum()
        if s:
            out[c] = 2.0 * np.logical_and(tc, pc).sum() / s
    return out
