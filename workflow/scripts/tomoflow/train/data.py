"""Training batches: random affine augmentation (image and labels warped alike) and :class:`PatchDataset`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from .settings import AugmentSettings


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
