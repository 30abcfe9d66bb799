"""Annotated training slices: selection, validation, patch tiling and the train/validation split.

Annotations are stacks of paired 2-D image/label slices, ``images`` float32 ``(n, H, W)`` (raw
reconstructed intensities) and ``labels`` uint8 ``(n, H, W)`` with values ``0 .. n_classes-1``
(0 background/pores, 1 support, 2 particles by default).  For the demo they are slices along axis 0 of the
reconstructed volume (perpendicular to the tilt axis, ``(n_z, n_x)``) paired with the true labels, after
checking that the labels sit where the volume shows the specimen (:func:`check_label_registration`);
user annotations (napari, Fiji, ilastik exports) arrive as a pair of TIFF stacks or two folders of
single-slice TIFFs paired by the slice numbers in their names (:func:`pair_files`), or as label slices painted on slices exported from the volume
(:mod:`.roundtrip`, read back from the *current* volume).  The files are read
by :func:`tomoflow.io.read_annotation_pairs` / :func:`tomoflow.io.read_annotation_source` into an
:class:`AnnotationSource`; :func:`prepare_annotations` turns it into the training stacks and the
``slices.json`` record.  Submodules: :mod:`.pairing` (file names → pairs), :mod:`.registration`
(true labels vs the volume), :mod:`.roundtrip` (export of slices to annotate, labels back) and :mod:`.split`
(train/validation/test split by groups of neighbouring slices, or explicit); their public names are
re-exported here.

Slices larger than the patch size are cut into patches that cover the slice (the paper: a 1024×512 slice
gives two 512×512 patches); when a side is not a multiple of the patch size the last patch is aligned to
the far edge and overlaps its neighbour.  :func:`make_split` (random, seeded, *by slice*) is the old
split, kept for library use; the workflow splits by groups of neighbouring slices or by explicit lists
(:func:`make_grouped_split`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .pairing import ROLE_WORDS, pair_files, pairing_keys
from .registration import (
    MAX_LABEL_OFFSET_VOX,
    check_label_registration,
    measure_label_offset,
)
from .roundtrip import (
    check_label_fit,
    even_indices,
    howto_text,
    label_file_name,
    label_slice_index,
    plan_export,
    select_slices,
    selection_record,
    slice_entropy,
    slice_file_name,
    volume_entropy,
)
from .split import make_grouped_split, parse_selector, retile_split, slice_groups, split_from_records

log = logging.getLogger(__name__)

__all__ = [
    "ROLE_WORDS",
    "AnnotationSet",
    "AnnotationSource",
    "check_label_fit",
    "check_label_registration",
    "check_label_values",
    "choose_slices",
    "extract_slices",
    "even_indices",
    "howto_text",
    "label_file_name",
    "label_slice_index",
    "make_grouped_split",
    "make_split",
    "parse_selector",
    "plan_export",
    "select_slices",
    "selection_record",
    "slice_entropy",
    "slice_file_name",
    "slice_groups",
    "slice_numbers",
    "retile_split",
    "split_from_records",
    "volume_entropy",
    "measure_label_offset",
    "pair_files",
    "pairing_keys",
    "patch_origins",
    "prepare_annotations",
    "split_records",
    "stack_pairs",
    "validate_annotations",
]


def choose_slices(n_total: int, n_pick: int, seed: int) -> np.ndarray:
    """Seeded slice indices spread along a stack (one random index per equal-width bin).

    Parameters
    ----------
    n_total : int
        Number of slices in the volume (axis 0).
    n_pick : int
        Number of slices wanted; clipped to ``n_total``.
    seed : int

    Returns
    -------
    ndarray of int64, shape (min(n_pick, n_total),)
        Strictly increasing indices in ``[0, n_total)``.
    """
    if n_total < 1 or n_pick < 1:
        raise ValueError(f"need n_total >= 1 and n_pick >= 1, got {n_total}, {n_pick}")
    k = min(int(n_pick), int(n_total))
    edges = np.linspace(0, n_total, k + 1)
    lo = np.ceil(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.ceil(edges[1:]).astype(np.int64), lo + 1)  # bin [lo, hi), non-empty, disjoint
    rng = np.random.default_rng(seed)
    return np.array([rng.integers(a, b) for a, b in zip(lo, hi)], dtype=np.int64)


def extract_slices(
    volume: np.ndarray, labels: np.ndarray, indices: Sequence[int], where: str = "volume"
) -> tuple[np.ndarray, np.ndarray]:
    """Take slices ``indices`` along axis 0 of a volume and of its label volume.

    Parameters
    ----------
    volume : ndarray, shape (n_slices, n_z, n_x)
        Reconstructed intensities.
    labels : ndarray of int, shape (n_slices, n_z, n_x)
        True labels on the same grid.
    indices : sequence of int
    where : str
        Name used in error messages.

    Returns
    -------
    images : ndarray float32, shape (k, n_z, n_x)
    labels : ndarray uint8, shape (k, n_z, n_x)
    """
    if volume.ndim != 3 or labels.shape != volume.shape:
        raise InputError(
            where,
            f"volume shape {volume.shape} and true-label shape {labels.shape} differ",
            "give labels on the voxel grid of the reconstruction (n_slices, n_z, n_x)",
        )
    idx = np.asarray(indices, dtype=np.int64)
    return volume[idx].astype(np.float32), labels[idx].astype(np.uint8)


def check_label_values(labels: np.ndarray, classes: Sequence[str], where: str = "labels") -> np.ndarray:
    """Check that every label is a class index ``0 … len(classes)-1``; return the labels as an array.

    Parameters
    ----------
    labels : ndarray, any shape
        Integer (or integer-valued float) labels.
    classes : sequence of str
    where : str
        File named in messages.

    Returns
    -------
    ndarray (the input, unchanged dtype)

    Raises
    ------
    InputError
        Non-integer values or dtype; values outside the classes (with the first offending values).
    """
    lab = np.asarray(labels)
    if lab.dtype.kind == "f":
        if not np.all(lab == np.round(lab)):
            raise InputError(where, "labels are not integers", "save labels as an integer (uint8) image")
    elif lab.dtype.kind not in "iub":
        raise InputError(where, f"labels have dtype {lab.dtype}", "save labels as uint8")
    n = len(classes)
    lo, hi = lab.min(), lab.max()
    if lo < 0 or hi >= n:
        bad = np.unique(lab[(lab < 0) | (lab >= n)])[:10]
        raise InputError(
            where,
            f"label values {bad.tolist()} outside the classes 0..{n - 1} {list(classes)}",
            "relabel the annotations or extend `classes` in the config",
        )
    return lab


def validate_annotations(
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    where: str = "annotations",
) -> np.ndarray:
    """Check an annotation stack pair; return the pixel count of every class.

    Parameters
    ----------
    images : ndarray, shape (n, H, W) (or (H, W) for one slice)
    labels : ndarray of int, same shape
    classes : sequence of str
        Class names; label value = index.
    where : str
        File or sample named in messages.

    Returns
    -------
    ndarray of int64, shape (n_classes,)
        Pixel count per class.

    Raises
    ------
    InputError
        Shape mismatch, non-finite image values, non-integer labels or label values outside the classes.

    Warns
    -----
    UserWarning
        For a class that never occurs.
    """
    if images.shape != labels.shape:
        raise InputError(
            where,
            f"image shape {images.shape} and label shape {labels.shape} differ",
            "export image and label slices with the same size and the same number of slices",
        )
    if images.ndim not in (2, 3) or images.size == 0:
        raise InputError(where, f"expected (n, H, W) slices, got shape {images.shape}", "give 2-D slices")
    if not np.all(np.isfinite(images)):
        raise InputError(where, "images contain NaN or Inf", "replace non-finite values in the images")
    lab = check_label_values(labels, classes, where)
    n = len(classes)
    counts = np.bincount(lab.ravel().astype(np.int64), minlength=n)
    for c in np.flatnonzero(counts == 0).tolist():
        warnings.warn(f"{where}: class {c} ({classes[c]}) never occurs in the annotations", UserWarning,
                      stacklevel=2)
    return counts


def stack_pairs(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Stack paired 2-D slices into ``(n, H, W)`` arrays, checking each pair.

    Parameters
    ----------
    images, labels : sequence of ndarray, each (H, W) (a leading axis of length 1 is dropped)
    names : sequence of str
        File names used in messages.

    Returns
    -------
    images : ndarray float32, shape (n, H, W)
    labels : ndarray, shape (n, H, W), dtype of the inputs
    """
    im_out: list[np.ndarray] = []
    lab_out: list[np.ndarray] = []
    for im, lab, name in zip(images, labels, names):
        im, lab = np.squeeze(np.asarray(im)), np.squeeze(np.asarray(lab))
        if im.ndim != 2:
            raise InputError(name, f"expected one 2-D slice per file, got shape {im.shape}",
                             "save one greyscale slice per file (or give a TIFF stack pair)")
        if im.shape != lab.shape:
            raise InputError(name, f"image shape {im.shape} and label shape {lab.shape} differ",
                             "export image and label slices with the same size")
        if im_out and im.shape != im_out[0].shape:
            raise InputError(name, f"slice shape {im.shape} differs from {im_out[0].shape}",
                             "give slices of one size per sample")
        im_out.append(im.astype(np.float32))
        lab_out.append(lab)
    return np.stack(im_out), np.stack(lab_out)


def _starts(n: int, p: int) -> list[int]:
    k = -(-n // p)
    if k == 1:
        return [0]
    return [min(i * p, n - p) for i in range(k)]


def patch_origins(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """Top-left corners of the patches that tile a slice.

    Parameters
    ----------
    shape : (int, int)
        Slice height and width (px).
    patch : (int, int)
        Patch height and width (px); must not exceed the slice.

    Returns
    -------
    list of (y0, x0)
        Row-major; ``ceil(H/h) * ceil(W/w)`` patches, the last in a row/column aligned to the far edge.
    """
    (H, W), (h, w) = (int(s) for s in shape), (int(s) for s in patch)
    if h > H or w > W:
        raise InputError(
            "train.patch_size",
            f"patch {h}x{w} is larger than the annotated slices ({H}x{W})",
            "set train.patch_size no larger than the slices (multiples of 2**(depth-1))",
        )
    return [(y, x) for y in _starts(H, h) for x in _starts(W, w)]


def make_split(
    slice_shapes: Mapping[str, tuple[int, int, int]],
    patch: Sequence[int],
    val_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """Seeded random train/validation split of the patches of all annotated slices, by slice.

    Parameters
    ----------
    slice_shapes : mapping sample -> (n, H, W)
        Shape of each sample's annotation stack (sample order is kept).
    patch : (int, int)
        Patch height and width (px).
    val_fraction : float
        Fraction of the slices for validation (0 < f < 1); at least one slice goes to each set.
    seed : int

    Returns
    -------
    dict
        ``{"seed", "patch_size": [h, w], "train": [rec...], "validation": [rec...]}`` with
        ``rec = {"sample", "index", "y0", "x0", "height", "width"}``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError("train.val_fraction", f"{val_fraction} is not in (0, 1)", "use e.g. 0.25")
    h, w = (int(s) for s in patch)
    slices = [(s, i) for s, shp in slice_shapes.items() for i in range(int(shp[0]))]
    if len(slices) < 2:
        raise InputError("annotations", f"only {len(slices)} annotated slice(s)",
                         "annotate at least two slices (one for validation)")
    n_val = int(np.clip(round(val_fraction * len(slices)), 1, len(slices) - 1))
    rng = np.random.default_rng(seed)
    val_ids = set(rng.permutation(len(slices))[:n_val].tolist())
    out: dict[str, Any] = {"seed": int(seed), "patch_size": [h, w], "train": [], "validation": []}
    for k, (s, i) in enumerate(slices):
        H, W = slice_shapes[s][1:]
        for y0, x0 in patch_origins((H, W), (h, w)):
            rec = {"sample": s, "index": i, "y0": y0, "x0": x0, "height": h, "width": w}
            out["validation" if k in val_ids else "train"].append(rec)
    log.info("split: %d train / %d validation patches (%d / %d slices)", len(out["train"]),
             len(out["validation"]), len(slices) - n_val, n_val)
    return out


def slice_numbers(source: AnnotationSource, info: Mapping[str, Any]) -> list[int]:
    """The slice number of every annotated slice (what ``train.validation``/``test`` selectors and the grouped
    split use): the volume slice index (``volume``, ``volume_indices``); in a folder, the number the pairing
    rule keys the image file by (its first number; else the position); in a stack, the page.
    """
    if info.get("indices") is not None:
        return [int(i) for i in info["indices"]]
    pairs = list(source.pairs)
    if pairs and all(p.get("page", 0) == 0 for p in pairs) and len({p["image"] for p in pairs}) == len(pairs):
        keys = pairing_keys([p["image"] for p in pairs])
        nums = [next((t for t in k if isinstance(t, int)), None) for k in keys]
        if all(n is not None for n in nums) and len(set(nums)) == len(nums):
            return [int(n) for n in nums if n is not None]
        return list(range(len(pairs)))
    return [int(p.get("page", k)) for k, p in enumerate(pairs)] if pairs else list(range(int(source.images.shape[0])))


def split_records(
    stacks: Mapping[str, np.ndarray], records: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """Cut the patches named by split records out of annotation stacks.

    Parameters
    ----------
    stacks : mapping sample -> ndarray (n, H, W)
    records : sequence of split records (see :func:`make_split`)

    Returns
    -------
    ndarray, shape (len(records), h, w), dtype of the stacks
    """
    out = []
    for r in records:
        a = stacks[r["sample"]][r["index"]]
        out.append(a[r["y0"] : r["y0"] + r["height"], r["x0"] : r["x0"] + r["width"]])
    return np.stack(out)


# --------------------------------------------------------------------------- the rule's work
@dataclass
class AnnotationSource:
    """Annotation data as read from disk (by :mod:`tomoflow.io.annotations`).

    Attributes
    ----------
    mode : {"user", "volume", "volume_indices"}
        ``user``: paired image/label slices; ``volume``: a reconstructed volume and true labels;
        ``volume_indices``: label slices painted on exported volume slices and those slices of the current
        volume (:mod:`.roundtrip`).
    images : ndarray
        ``user``: float32 slices, shape (n, H, W); ``volume``: the volume, shape (n_y, n_z, n_x).
    labels : ndarray
        Same shape as ``images``; native integer (or integer-valued float) dtype.
    voxel_size_nm : float
        Pixel/voxel size, nm.
    paths : dict of str
        ``user``: ``{"images", "labels"}``; ``volume``: ``{"volume", "true_labels"}``;
        ``volume_indices``: ``{"volume", "labels"}``.
    pairs : list of dict
        ``user``: one record per slice, ``{"image", "label", "page", "shape"}`` (file names; the page
        within a stack file; ``[H, W]``); ``volume_indices``: ``{"label", "index", "shape"}``.
    """

    mode: str
    images: np.ndarray
    labels: np.ndarray
    voxel_size_nm: float
    paths: dict[str, Any]
    pairs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AnnotationSet:
    """Training stacks of one sample and their ``slices.json`` record.

    Attributes
    ----------
    images : ndarray float32, shape (n, H, W)
    labels : ndarray uint8, shape (n, H, W)
    voxel_size_nm : float
    info : dict
        JSON-ready record of where every slice came from.
    """

    images: np.ndarray
    labels: np.ndarray
    voxel_size_nm: float
    info: dict[str, Any]


def prepare_annotations(
    source: AnnotationSource,
    *,
    classes: Sequence[str],
    sample: str,
    n_slices: int = 30,
    seed: int = 11,
    register_labels: bool = False,
    max_offset_vox: float = MAX_LABEL_OFFSET_VOX,
) -> AnnotationSet:
    """Validated training stacks (and their record) from a sample's annotation source.

    ``volume`` mode: the true labels' shape and registration are checked against the volume
    (:func:`check_label_registration`), then ``n_slices`` seeded slices along axis 0 are taken
    (:func:`choose_slices`).  ``user`` and ``volume_indices`` modes: the read pairs are taken as they are
    (``volume_indices``: their fit to the volume was checked when read).  Both: every label
    must be a class index and every class is counted (:func:`validate_annotations`).

    Parameters
    ----------
    source : AnnotationSource
    classes : sequence of str
        Class names; label value = index.
    sample : str
        Sample name (for the record).
    n_slices, seed : int
        Volume mode: how many slices, and which (seeded).
    register_labels : bool
        Volume mode: shift labels that are off the volume instead of failing.
    max_offset_vox : float
        Volume mode: largest accepted label offset, voxels.

    Returns
    -------
    AnnotationSet
    """
    classes = list(classes)
    if source.mode == "volume":
        where = f"{source.paths.get('true_labels', 'true_labels')} (vs {source.paths.get('volume', 'volume')})"
        check_label_values(source.labels, classes, where)
        labels, reg = check_label_registration(source.images, source.labels, source.voxel_size_nm,
                                               tolerance_vox=max_offset_vox, register=register_labels, where=where)
        idx = choose_slices(source.images.shape[0], int(n_slices), int(seed))
        images, lab = extract_slices(source.images, labels, idx.tolist(), where=where)
        info: dict[str, Any] = {"sample": sample, "source": "volume", "axis": 0, "indices": idx.tolist(),
                                "volume": source.paths.get("volume"), "true_labels": source.paths.get("true_labels"),
                                "seed": int(seed), "registration": reg}
    elif source.mode == "volume_indices":
        where = f"{source.paths.get('labels')} (slices of {source.paths.get('volume')})"
        images, lab = source.images, source.labels
        info = {"sample": sample, "source": "volume_indices", "axis": 0, "indices": [int(p["index"]) for p in source.pairs],
                "volume": source.paths.get("volume"), "labels": source.paths.get("labels"),
                "files": [p["label"] for p in source.pairs], "volume_shape": source.paths.get("volume_shape")}
    else:
        where = f"{source.paths.get('images')} / {source.paths.get('labels')}"
        images, lab = source.images, source.labels
        info = {"sample": sample, "source": "user", "axis": None, "indices": None,
                "images": source.paths.get("images"), "labels": source.paths.get("labels"),
                "files": [p["image"] for p in source.pairs], "pairs": source.pairs}
    info["slices"] = slice_numbers(source, info)
    counts = validate_annotations(images, lab, classes, where=where)
    info["class_pixels"] = {c: int(n) for c, n in zip(classes, counts)}
    info["shape"] = list(images.shape)
    log.info("%d annotated slices of %dx%d px; class pixels %s", images.shape[0], images.shape[1],
             images.shape[2], info["class_pixels"])
    return AnnotationSet(images=np.asarray(images, dtype=np.float32), labels=np.asarray(lab).astype(np.uint8),
                         voxel_size_nm=float(source.voxel_size_nm), info=info)
