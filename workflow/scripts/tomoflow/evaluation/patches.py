"""Validation patches of the training split and full volumes, scored per patch/slice and in 3-D."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..metrics import (
    DEFAULT_PERCENTILES,
    Spacing,
    segmentation_metrics,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- validation patches
def validation_records(split: Mapping[str, Any], sample: str | None, where: str = "split.json",
                       key: str = "validation") -> list[dict[str, int | str]]:
    """The validation (or ``key``: ``"test"``) records of ``sample`` in a training split.

    Parameters
    ----------
    split : mapping
        ``{"seed", "patch_size": [h, w], "train": [rec...], "validation": [rec...]}`` with
        ``rec = {"sample", "index", "y0", "x0", "height", "width"}`` (px); optionally ``"test": [rec...]``.
    sample : str or None
        None: the records of every sample.
    where : str
        File name for error messages.
    key : {"validation", "test"}
        Which list; a missing ``"test"`` list means no test set (empty result).

    Returns
    -------
    list of dict
        The records of this sample, in file order (empty when none).
    """
    recs = split.get(key) if isinstance(split, Mapping) else None
    if key == "test" and recs is None:
        return []
    if not isinstance(recs, list):
        raise InputError(where, f"no '{key}' list of patch records", "re-run train_unet to write a complete split.json")
    keys = ("sample", "index", "y0", "x0", "height", "width")
    out: list[dict[str, int | str]] = []
    for k, r in enumerate(recs):
        if not isinstance(r, Mapping) or any(key not in r for key in keys):
            raise InputError(where, f"{key} record {k} lacks one of {list(keys)}", "re-run train_unet to write a complete split.json")
        if sample is None or r["sample"] == sample:
            rec: dict[str, int | str] = {key: int(r[key]) for key in keys[1:]}
            out.append({"sample": str(r["sample"]), **rec})
    return out


def cut_patches(stack: npt.ArrayLike, records: Sequence[Mapping[str, Any]], where: str = "annotations") -> np.ndarray:
    """Cut the patches named by split records out of an annotation stack.

    Parameters
    ----------
    stack : array_like, shape (n, H, W)
        Annotation images or labels of one sample.
    records : sequence of dict
        Split records (``index``, ``y0``, ``x0``, ``height``, ``width`` in px).
    where : str
        File name for error messages.

    Returns
    -------
    ndarray, shape (len(records), h, w)
        Same dtype as ``stack``; all records must have the same size.
    """
    a = np.asarray(stack)
    if a.ndim != 3:
        raise InputError(where, f"expected an (n, H, W) stack, got shape {a.shape}", "re-run extract_annotations")
    if not records:
        return np.zeros((0, 0, 0), a.dtype)
    sizes = {(int(r["height"]), int(r["width"])) for r in records}
    if len(sizes) != 1:
        raise InputError(where, f"validation patches of different sizes {sorted(sizes)}", "re-run train_unet")
    h, w = sizes.pop()
    out = np.empty((len(records), h, w), a.dtype)
    for k, r in enumerate(records):
        i, y0, x0 = int(r["index"]), int(r["y0"]), int(r["x0"])
        if not (0 <= i < a.shape[0] and 0 <= y0 and y0 + h <= a.shape[1] and 0 <= x0 and x0 + w <= a.shape[2]):
            raise InputError(
                where,
                f"validation patch {k} (slice {i}, y {y0}:{y0 + h}, x {x0}:{x0 + w}) lies outside the stack of shape {a.shape}",
                "the split does not match the annotations: re-run train_unet after extract_annotations",
            )
        out[k] = a[i, y0 : y0 + h, x0 : x0 + w]
    return out


def predict_validation_patches(
    model: Any,
    images: npt.ArrayLike,
    records: Sequence[Mapping[str, Any]],
    *,
    n_classes: int,
    patch_size: int | Sequence[int],
    batch_size: int = 8,
    tta: bool = False,
) -> np.ndarray:
    """Predicted labels of validation patches (whole annotated slices predicted, then cut).

    Parameters
    ----------
    model : keras.Model or callable
        ``(B, Hp, Wp, 1)`` raw intensities -> ``(B, Hp, Wp, C)`` probabilities.
    images : array_like, shape (n, H, W)
        The sample's annotation images (raw reconstructed intensities).
    records : sequence of dict
        Validation records of this sample.
    n_classes : int
        Expected number of model outputs ``C``.
    patch_size : int or (int, int)
        Model patch size (px), ``train.patch_size``.
    batch_size : int
    tta : bool
        8-fold rotation/mirror test-time augmentation.

    Returns
    -------
    ndarray, shape (len(records), h, w), uint8
        Arg-max labels of each patch.
    """
    from ..predict import predict_images

    imgs = np.asarray(images)
    idx = sorted({int(r["index"]) for r in records})
    if imgs.ndim != 3 or (idx and idx[-1] >= imgs.shape[0]):
        raise InputError("annotations/images.tif", f"stack of shape {imgs.shape} lacks slices named in the split", "re-run train_unet after extract_annotations")
    labels = np.zeros(imgs.shape, np.uint8)
    for k, i in enumerate(idx):
        prob = predict_images(model, imgs[i : i + 1].astype(np.float32), patch_size=patch_size, batch_size=batch_size, tta=tta)
        if prob.shape[-1] != n_classes:
            raise InputError("model", f"predicts {prob.shape[-1]} classes but {n_classes} are configured", "set `classes` to the classes the model was trained with")
        labels[i] = np.argmax(prob[0], axis=-1).astype(np.uint8)
        log.info("predicted annotated slice %d (%d/%d)", i, k + 1, len(idx))
    return cut_patches(labels, records, where="annotations/images.tif")


# --------------------------------------------------------------------------- evaluation
def evaluate_stack(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    *,
    pixel_size_nm: Spacing,
    classes: Sequence[int] = (0, 1, 2),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    what: str = "slice",
) -> list[dict[int, dict[str, Any]]]:
    """2-D metrics of every image of a stack (patches or volume slices).

    Parameters
    ----------
    truth, prediction : array_like of int, shape (n, H, W)
        Label stacks.
    pixel_size_nm : float or (float, float)
        Pixel size of each image in nm (rows, columns).
    classes, percentiles
        See :func:`tomoflow.metrics.segmentation_metrics`.
    what : str
        Word used in progress lines.

    Returns
    -------
    list of dict
        One :func:`~tomoflow.metrics.segmentation_metrics` result per image.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3:
        raise InputError("prediction", f"shape {p.shape} does not match the truth {t.shape} (need two (n, H, W) stacks)", "compare stacks of the same shape")
    out = []
    step = max(1, len(t) // 10)
    for i in range(len(t)):
        out.append(segmentation_metrics(t[i], p[i], pixel_size_nm=pixel_size_nm, classes=classes, percentiles=percentiles))
        if (i + 1) % step == 0 or i + 1 == len(t):
            log.info("evaluated %s %d/%d", what, i + 1, len(t))
    return out


def evaluate_volume(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    *,
    voxel_size_nm: Spacing,
    classes: Sequence[int] = (0, 1, 2),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> tuple[list[dict[int, dict[str, Any]]], dict[int, dict[str, Any]]]:
    """Slice-by-slice (axis 0) and 3-D metrics of a predicted label volume.

    Parameters
    ----------
    truth, prediction : array_like of int, shape (n_slices, n_z, n_x)
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm.

    Returns
    -------
    per_slice : list of dict
        One 2-D result per slice ``volume[y]`` (pixel size ``(dz, dx)``).
    volume : dict
        The 3-D result.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3:
        raise InputError("segmentation.tif", f"predicted volume {p.shape} and true labels {t.shape} differ in shape", "predict the same volume the true labels describe")
    vox = tuple(float(v) for v in np.broadcast_to(np.asarray(voxel_size_nm, dtype=np.float64), (3,)))
    per_slice = evaluate_stack(t, p, pixel_size_nm=vox[1:], classes=classes, percentiles=percentiles, what="volume slice")
    log.info("evaluating the %s volume in 3-D", "x".join(map(str, t.shape)))
    vol = segmentation_metrics(t, p, pixel_size_nm=vox, classes=classes, percentiles=percentiles)
    return per_slice, vol


def select_examples(truth: npt.ArrayLike, n: int, cls: int) -> list[int]:
    """Indices of the ``n`` images with most pixels of class ``cls`` (ties: lower index), ascending.

    Parameters
    ----------
    truth : array_like of int, shape (m, H, W)
    n : int
    cls : int
    """
    t = np.asarray(truth)
    counts = (t == cls).reshape(len(t), -1).sum(axis=1)
    order = np.lexsort((np.arange(len(t)), -counts))
    return sorted(int(i) for i in order[: max(0, n)])
