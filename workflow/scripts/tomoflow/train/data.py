"""Training batches: random affine augmentation (image and labels warped alike) and :class:`PatchDataset`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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


class CropDataset(keras.utils.PyDataset):
    """Random crops of the training images, a set fraction centred on particles, augmented like
    :class:`PatchDataset`.

    Crop ``j`` of batch ``i`` in epoch ``e`` depends only on ``(seed, e, i)``: with probability
    ``oversampling`` it is centred on a pixel of class ``n_classes - 1`` (Pt) drawn uniformly over all such
    pixels of all images (the crop is moved inside the image when the centre is near an edge); otherwise
    the image is drawn with probability proportional to its number of crop positions and the origin
    uniformly.

    Parameters
    ----------
    images : sequence of ndarray float32, shape (H_k, W_k)
        Training images (annotated slices or patches), each at least ``crop`` in both axes.
    labels : sequence of ndarray uint8, same shapes
    crop : (int, int)
        Patch rows and columns, px.
    n_classes, batch_size : int
    steps : int
        Batches per epoch.
    oversampling : float
        Probability that a crop is centred on a Pt pixel (0 ≤ p ≤ 1).
    augment : AugmentSettings or None
    seed : int
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        crop: Sequence[int],
        n_classes: int,
        batch_size: int,
        steps: int,
        oversampling: float,
        augment: AugmentSettings | None,
        seed: int,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.crop = (int(crop[0]), int(crop[1]))
        h, w = self.crop
        self.images = [np.asarray(a, np.float32) for a in images]
        self.labels = [np.asarray(a, np.uint8) for a in labels]
        for k, (im, lab) in enumerate(zip(self.images, self.labels)):
            if im.shape != lab.shape or im.ndim != 2 or im.shape[0] < h or im.shape[1] < w:
                raise ValueError(f"training image {k}: {im.shape} / labels {lab.shape} must be 2-D and at least {self.crop}")
        if not self.images or not 0.0 <= oversampling <= 1.0 or steps < 1:
            raise ValueError(f"need images, 0 <= oversampling <= 1 and steps >= 1 (got {oversampling}, {steps})")
        self.n_classes, self.batch_size, self.steps = int(n_classes), int(batch_size), int(steps)
        self.oversampling = float(oversampling)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.epoch = 0
        positions = np.array([(a.shape[0] - h + 1) * (a.shape[1] - w + 1) for a in self.images], np.float64)
        self._p_image = positions / positions.sum()
        self._pt = [np.flatnonzero(lab.ravel() == self.n_classes - 1) for lab in self.labels]
        counts = np.array([p.size for p in self._pt], np.float64)
        self._p_pt = counts / counts.sum() if counts.sum() else None

    def __len__(self) -> int:
        return self.steps

    def crop_origins(self, i: int) -> list[tuple[int, int, int, bool]]:
        """``(image, y0, x0, centred_on_pt)`` of the crops of batch ``i`` of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, i, 2])
        h, w = self.crop
        out = []
        for _ in range(self.batch_size):
            on_pt = self._p_pt is not None and rng.random() < self.oversampling
            if on_pt:
                k = int(rng.choice(len(self.images), p=self._p_pt))
                flat = int(self._pt[k][rng.integers(self._pt[k].size)])
                H, W = self.images[k].shape
                cy, cx = divmod(flat, W)
                y0 = int(np.clip(cy - h // 2, 0, H - h))
                x0 = int(np.clip(cx - w // 2, 0, W - w))
            else:
                k = int(rng.choice(len(self.images), p=self._p_image))
                H, W = self.images[k].shape
                y0, x0 = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
            out.append((k, y0, x0, bool(on_pt)))
        return out

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.crop
        origins = self.crop_origins(i)
        im = np.stack([self.images[k][y0 : y0 + h, x0 : x0 + w] for k, y0, x0, _ in origins])
        lab = np.stack([self.labels[k][y0 : y0 + h, x0 : x0 + w] for k, y0, x0, _ in origins])
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i, 1])
            tr = np.stack([random_affine(rng, (h, w), self.augment) for _ in origins])
            im, lab = augment_batch(im, lab, tr)
        onehot = np.eye(self.n_classes, dtype=np.float32)[lab]
        return im[..., None], onehot

    def on_epoch_end(self) -> None:
        self.epoch += 1


def crop_sources(images: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                 records: Sequence[Mapping[str, Any]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Whole annotated slices behind the patch ``records`` of a split (each slice once, in record order).

    Parameters
    ----------
    images, labels : mapping sample -> ndarray, shape (n, H, W)
    records : sequence of dict
        Split records (``sample``, ``index``, ...) of :func:`tomoflow.annotations.make_split`.

    Returns
    -------
    images, labels : list of ndarray, shape (H, W)
        Sources for :class:`CropDataset`.
    """
    keys = list(dict.fromkeys((str(r["sample"]), int(r["index"])) for r in records))
    return [images[s][i] for s, i in keys], [labels[s][i] for s, i in keys]
