"""Pairing of annotation image and label files by the slice numbers in their names.

The rule (:func:`pair_files`): a file name (without ``.tif``/``.tiff``) is split into numbers and words;
words shared by every file of a folder and role words (:data:`ROLE_WORDS`) are ignored; what remains -
usually the slice number - is the key, numbers compared as numbers (``img_1.tif`` ↔ ``lab_01.tif``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

from ..errors import InputError

__all__ = ["ROLE_WORDS", "pair_files", "pairing_keys"]

#: Words that name a file's role; they are never part of the pairing key (compared lower-case).
ROLE_WORDS = frozenset({
    "img", "im", "image", "images", "raw", "data", "input", "intensity", "intensities",
    "lab", "lbl", "label", "labels", "labeled", "labelled", "mask", "masks", "seg", "segmentation",
    "segmentations", "annotation", "annotations", "annot", "gt", "truth", "groundtruth",
})
_TOKEN = re.compile(r"\d+|[^\W\d_]+")
TIFF_SUFFIXES = (".tif", ".tiff")


def _stem(name: str) -> str:
    base = PurePath(name).name
    low = base.lower()
    for suffix in (".ome.tiff", ".ome.tif") + TIFF_SUFFIXES:
        if low.endswith(suffix):
            return base[: -len(suffix)]
    return PurePath(base).stem


def _tokens(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in _TOKEN.findall(_stem(name).lower())]


def pairing_keys(names: Sequence[str]) -> list[tuple[int | str, ...]]:
    """The pairing key of every file name of one folder (see :func:`pair_files` for the rule).

    Parameters
    ----------
    names : sequence of str
        File names (or paths) of one folder.

    Returns
    -------
    list of tuple
        One key per name: its numbers (as ``int``) and its remaining words, in order.
    """
    toks = [_tokens(n) for n in names]
    word_sets = [{t for t in ts if isinstance(t, str)} for ts in toks]
    shared = set.intersection(*word_sets) if word_sets else set()
    return [tuple(t for t in ts if not isinstance(t, str) or (t not in shared and t not in ROLE_WORDS))
            for ts in toks]


def _sort_key(key: tuple[int | str, ...]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, t, "") if isinstance(t, int) else (1, 0, t) for t in key)


def _listing(names: Sequence[str], n_show: int = 3) -> str:
    shown = ", ".join(PurePath(x).name for x in names[:n_show])
    return shown + (f" (+{len(names) - n_show} more)" if len(names) > n_show else "")


def pair_files(image_files: Sequence[str], label_files: Sequence[str], where: str) -> list[tuple[str, str]]:
    """Pair image and label slice files by the numbers (and distinguishing words) in their names.

    The rule: a file name (without ``.tif``/``.tiff``) is split into numbers and words at ``_``,
    ``-``, ``.``, spaces and letter/digit boundaries, lower-cased.  Not part of the key are (1) words
    that every file of the same folder contains (a common prefix or suffix such as ``img``/``lab``,
    ``slice``, a sample name, ``Simple Segmentation``) and (2) role words (:data:`ROLE_WORDS`:
    img/image/raw/lab/label/mask/seg/annotation/gt ...).  What remains - usually just the slice
    number - is the key; numbers compare as numbers, so ``img_1.tif`` ↔ ``lab_01.tif`` and
    ``slice_12_image.tif`` ↔ ``slice_12_label.tif``.  A folder of one file keeps only its numbers.
    Every image must find exactly one label with the same key and vice versa.

    Parameters
    ----------
    image_files, label_files : sequence of str
        Paths of the image slices and of the label slices (any order).
    where : str
        The two folders, named in messages.

    Returns
    -------
    list of (image, label)
        Sorted by key (slice number).

    Raises
    ------
    InputError
        No files; two files of one folder with the same key (ambiguous, e.g. ``img_1`` and
        ``img_01``); any image or label without a partner.  One line with the counts and the first
        names.
    """
    imgs, labs = list(image_files), list(label_files)
    if not imgs or not labs:
        side = "image" if not imgs else "label"
        raise InputError(where, f"no {side} TIFFs found", f"put one .tif per annotated slice in the {side} folder")
    keyed: dict[str, dict[tuple[int | str, ...], str]] = {}
    for side, files in (("image", imgs), ("label", labs)):
        groups: dict[tuple[int | str, ...], list[str]] = {}
        for f, k in zip(files, pairing_keys(files)):
            groups.setdefault(k, []).append(f)
        dup = [sorted(v) for v in groups.values() if len(v) > 1]
        if dup:
            raise InputError(
                where,
                f"{sum(len(d) for d in dup)} {side} files share a pairing key, e.g. {_listing(dup[0])} "
                "(numbers compare as numbers; words shared by all files and img/lab/label/mask are ignored)",
                f"give every {side} file a distinct slice number, or remove the duplicates",
            )
        keyed[side] = {k: v[0] for k, v in groups.items()}
    lone_i = sorted((v for k, v in keyed["image"].items() if k not in keyed["label"]))
    lone_l = sorted((v for k, v in keyed["label"].items() if k not in keyed["image"]))
    if lone_i or lone_l:
        parts = []
        if lone_i:
            parts.append(f"images: {_listing(lone_i)}")
        if lone_l:
            parts.append(f"labels: {_listing(lone_l)}")
        raise InputError(
            where,
            f"{len(lone_i)} of {len(imgs)} image file(s) and {len(lone_l)} of {len(labs)} label file(s) have no "
            f"partner with the same slice number ({'; '.join(parts)})",
            "name each label like its image with the same numbers (e.g. img_03.tif and lab_03.tif), "
            "or remove the extra files",
        )
    return [(keyed["image"][k], keyed["label"][k]) for k in sorted(keyed["image"], key=_sort_key)]
