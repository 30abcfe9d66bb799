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

Submodules: :mod:`.settings` (settings/result types, config parsing), :mod:`.data` (augmentation and
batches), :mod:`.loop` (the training loop), :mod:`.outputs` (export, curves, the rule's file-level entry
point).  Every public name is re-exported here, so ``from tomoflow.train import ...`` keeps working.
"""

from __future__ import annotations

from .data import CropDataset, PatchDataset, augment_batch, crop_sources, random_affine
from .loop import (
    configure_precision,
    early_stop_epoch,
    gpu_visible,
    learning_rate_at,
    resolve_monitor,
    set_determinism,
    train_unet,
)
from .outputs import export_model, train_from_files, training_curves_figure
from .settings import AugmentSettings, TrainResult, TrainSettings, settings_from_params

__all__ = [
    "AugmentSettings",
    "TrainSettings",
    "TrainResult",
    "set_determinism",
    "random_affine",
    "augment_batch",
    "PatchDataset",
    "CropDataset",
    "crop_sources",
    "configure_precision",
    "early_stop_epoch",
    "gpu_visible",
    "learning_rate_at",
    "resolve_monitor",
    "train_unet",
    "export_model",
    "training_curves_figure",
    "settings_from_params",
    "train_from_files",
]
