"""The training/validation/test split of annotated slices: by groups of neighbouring slices, or explicit.

Annotated slices of one *source* (a sample of the sample table, or a row of the annotation table) whose
slice numbers differ by at most ``group_gap`` form one *group* (:func:`slice_groups`): neighbouring slices
of a reconstruction are near-duplicates (correlation 0.95-0.99), so a random split *by slice* puts the
twin of every validation slice into training and inflates the validation scores.  The seeded ``auto``
split assigns whole groups; every patch of a slice follows its slice.

Explicit sets are lists of *selectors* (:func:`parse_selector`): ``"<source>"`` (every slice of a
source) or ``"<source>:<slice>"`` (one slice, by its slice number: the volume slice index, or the
number in the file name).  ``test`` is held out from both training and validation.

Split records (``results/training/split.json``): ``{"sample", "index", "slice", "y0", "x0", "height",
"width"}`` - ``sample`` the source name, ``index`` the position in that source's annotation stack,
``slice`` its slice number, then the patch (px).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["make_grouped_split", "parse_selector", "slice_groups", "split_from_records"]

#: The config keys named in messages.
VALIDATION_KEY = "config key `train.validation`"
TEST_KEY = "config key `train.test`"


def slice_groups(slices: Sequence[int], gap: int) -> list[list[int]]:
    """Group positions of a stack whose slice numbers are within ``gap`` of a neighbour (single linkage).

    Parameters
    ----------
    slices : sequence of int
        Slice number of each stack position (any order, may repeat).
    gap : int
        Largest difference of slice numbers that still joins two slices (0: only equal numbers, e.g. the
        same slice annotated twice).

    Returns
    -------
    list of list of int
        Stack positions per group, groups ordered by their smallest slice number, positions by slice.
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    order = sorted(range(len(slices)), key=lambda k: (int(slices[k]), k))
    groups: list[list[int]] = []
    last: int | None = None
    for k in order:
        s = int(slices[k])
        if last is None or s - last > gap:
            groups.append([])
        groups[-1].append(k)
        last = s
    return groups


def parse_selector(selector: str, slices: Mapping[str, Sequence[int]], key: str) -> list[tuple[str, int]]:
    """The ``(source, position)`` pairs a selector names.

    Parameters
    ----------
    selector : str
        ``"<source>"`` or ``"<source>:<slice>"``.
    slices : mapping source -> sequence of int
        Slice numbers of each source's stack positions.
    key : str
        Config key named in messages.

    Raises
    ------
    InputError
        Unknown source, or a slice number that source does not have.
    """
    text = str(selector).strip()
    name, _, number = text.partition(":")
    if name not in slices:
        raise InputError(key, f"{text!r} names no training source (sources: {sorted(slices)})",
                         "use '<source>' or '<source>:<slice>' with a sample of train.samples or an annotation-table name")
    if not number:
        return [(name, k) for k in range(len(slices[name]))]
    try:
        wanted = int(number)
    except ValueError:
        raise InputError(key, f"{text!r}: {number!r} is not a slice number",
                         "write '<source>:<slice>' with the slice number (e.g. demo:12)") from None
    hits = [(name, k) for k, s in enumerate(slices[name]) if int(s) == wanted]
    if not hits:
        raise InputError(key, f"{text!r}: source {name!r} has no annotated slice {wanted} "
                         f"(slices: {sorted(int(s) for s in slices[name])[:20]})", "name an annotated slice")
    return hits


def _select(selectors: Sequence[str], slices: Mapping[str, Sequence[int]], key: str) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for sel in selectors:
        out |= set(parse_selector(sel, slices, key))
    return out


def make_grouped_split(
    sources: Mapping[str, Mapping[str, Any]],
    patch: Sequence[int],
    *,
    validation: str | Sequence[str] = "auto",
    test: Sequence[str] = (),
    val_fraction: float = 0.25,
    seed: int = 42,
    group_gap: int = 1,
) -> dict[str, Any]:
    """Split the patches of every annotated slice into train, validation and (optional) test sets.

    Parameters
    ----------
    sources : mapping name -> {"shape": (n, H, W), "slices": sequence of n int}
        Each training source's annotation-stack shape (px) and the slice number of every stack position
        (source order is kept).
    patch : (int, int)
        Patch height and width (px).
    validation : "auto" or sequence of str
        ``auto``: seeded random choice of whole groups (:func:`slice_groups`) holding about
        ``val_fraction`` of the slices that are not in ``test``; else selectors (:func:`parse_selector`).
    test : sequence of str
        Selectors of the held-out test slices (neither trained on nor validated on).
    val_fraction : float
        ``auto`` only, in (0, 1).
    seed : int
    group_gap : int
        ``auto`` only: slices of one source within this many slice numbers are one group.

    Returns
    -------
    dict
        ``{"seed", "patch_size", "mode", "validation_fraction", "group_gap", "train", "validation", "test",
        "groups", "sources"}``; the three sets are lists of records ``{"sample", "index", "slice", "y0",
        "x0", "height", "width"}``; ``groups`` lists, per source, the slice numbers of each group and the set
        it went to.

    Raises
    ------
    InputError
        Unknown selectors, a slice in both validation and test, an empty training or validation set.
    """
    from . import patch_origins

    h, w = (int(s) for s in patch)
    slices = {name: [int(v) for v in src["slices"]] for name, src in sources.items()}
    for name, src in sources.items():
        if len(slices[name]) != int(src["shape"][0]):
            raise ValueError(f"source {name}: {len(slices[name])} slice numbers for {src['shape'][0]} slices")
    everything = {(n, k) for n in slices for k in range(len(slices[n]))}
    test_set = _select(list(test), slices, TEST_KEY)
    mode = "auto" if isinstance(validation, str) else "explicit"
    groups_out: dict[str, list[dict[str, Any]]] = {}
    if isinstance(validation, str):
        if validation != "auto":
            raise InputError(VALIDATION_KEY, f"{validation!r} is neither 'auto' nor a list",
                             "use `auto` or a list of '<source>' / '<source>:<slice>' selectors")
        if not 0.0 < val_fraction < 1.0:
            raise InputError("config key `train.val_fraction`", f"{val_fraction} is not in (0, 1)", "use e.g. 0.25")
        groups: list[tuple[str, list[int]]] = []
        for name in slices:
            free = [k for k in range(len(slices[name])) if (name, k) not in test_set]
            for g in slice_groups([slices[name][k] for k in free], int(group_gap)):
                groups.append((name, [free[j] for j in g]))
        if len(groups) < 2:
            raise InputError(VALIDATION_KEY, f"auto split: the annotated slices outside the test set form {len(groups)} "
                             f"group(s) of neighbouring slices (train.group_gap {group_gap})",
                             "annotate slices further apart, lower train.group_gap, or list the validation slices")
        n_free = sum(len(g) for _, g in groups)
        target = int(np.clip(round(val_fraction * n_free), 1, n_free - 1))
        order = np.random.default_rng(seed).permutation(len(groups)).tolist()
        val_set: set[tuple[str, int]] = set()
        chosen: set[int] = set()
        for gi in order:
            if len(val_set) >= target or len(chosen) == len(groups) - 1:
                break
            chosen.add(gi)
            val_set |= {(groups[gi][0], k) for k in groups[gi][1]}
        for gi, (name, members) in enumerate(groups):
            groups_out.setdefault(name, []).append(
                {"slices": [slices[name][k] for k in members], "set": "validation" if gi in chosen else "train"})
    else:
        val_set = _select(list(validation), slices, VALIDATION_KEY)
        both = sorted(val_set & test_set)
        if both:
            shown = ", ".join(f"{n}:{slices[n][k]}" for n, k in both[:5])
            raise InputError(VALIDATION_KEY, f"{len(both)} slice(s) are in both train.validation and train.test ({shown})",
                             "give each annotated slice to at most one of train.validation and train.test")
        if not val_set:
            raise InputError(VALIDATION_KEY, "the list selects no slice", "name at least one validation slice, or use `auto`")
    train_set = everything - val_set - test_set
    if not train_set:
        raise InputError(VALIDATION_KEY if mode == "explicit" else TEST_KEY,
                         f"no annotated slice is left for training ({len(val_set)} validation, {len(test_set)} test)",
                         "keep some annotated slices out of train.validation and train.test, or annotate more")
    out: dict[str, Any] = {"seed": int(seed), "patch_size": [h, w], "mode": mode, "validation_fraction": float(val_fraction),
                           "group_gap": int(group_gap), "train": [], "validation": [], "test": [], "groups": groups_out,
                           "sources": list(sources)}
    for name, src in sources.items():
        H, W = (int(v) for v in src["shape"][1:])
        origins = patch_origins((H, W), (h, w))
        for k, s in enumerate(slices[name]):
            side = "test" if (name, k) in test_set else "validation" if (name, k) in val_set else "train"
            out[side] += [{"sample": name, "index": k, "slice": s, "y0": y0, "x0": x0, "height": h, "width": w}
                          for y0, x0 in origins]
    log.info("split (%s): %d train / %d validation / %d test slices; %d / %d / %d patches", mode, len(train_set),
             len(val_set), len(test_set), len(out["train"]), len(out["validation"]), len(out["test"]))
    return out


def split_from_records(
    names: Sequence[str], records: Sequence[Mapping[str, Any]], patch: Sequence[int], **options: Any
) -> dict[str, Any]:
    """:func:`make_grouped_split` from the ``slices.json`` records of the training sources.

    Parameters
    ----------
    names : sequence of str
        Source names (``train.samples`` then the annotation-table names).
    records : sequence of dict
        Each source's ``slices.json`` (``shape`` (n, H, W) and ``slices``, the slice numbers).
    patch : (int, int)
    **options
        ``validation``, ``test``, ``val_fraction``, ``seed``, ``group_gap``.
    """
    if len(names) != len(records):
        raise ValueError(f"{len(names)} sources but {len(records)} slices records")
    sources = {}
    for name, rec in zip(names, records):
        shape = [int(v) for v in rec["shape"]]
        slices = rec.get("slices")
        if slices is None:
            slices = rec.get("indices") or list(range(shape[0]))
        sources[str(name)] = {"shape": shape, "slices": [int(v) for v in slices]}
    return make_grouped_split(sources, patch, **options)


def retile_split(split: Mapping[str, Any], shapes: Mapping[str, Sequence[int]], patch: Sequence[int]) -> dict[str, Any]:
    """The same slice assignment as ``split``, its records re-cut at another patch size.

    A model whose ``patch_size`` differs from the shared split's (a ``models:`` override) trains and
    validates on exactly the slices the split gives each set; only the patch tiling of those slices changes.

    Parameters
    ----------
    split : mapping
        A split from :func:`make_grouped_split`.
    shapes : mapping source -> (n, H, W)
        Annotation-stack shape of every source named in the records (px).
    patch : (int, int)
        The new patch height and width (px).

    Returns
    -------
    dict
        ``split`` unchanged when its patch size is ``patch``; else a copy whose ``train``, ``validation`` and
        ``test`` records tile each slice with :func:`tomoflow.annotations.patch_origins` at ``patch``.
    """
    from . import patch_origins

    h, w = (int(v) for v in patch)
    if [int(v) for v in split["patch_size"]] == [h, w]:
        return dict(split)
    out = {**split, "patch_size": [h, w]}
    for side in ("train", "validation", "test"):
        seen: dict[tuple[str, int], int] = {}
        for r in split.get(side, []):
            seen.setdefault((str(r["sample"]), int(r["index"])), int(r.get("slice", r["index"])))
        recs = []
        for (name, k), s in seen.items():
            H, W = (int(v) for v in shapes[name][1:])
            recs += [{"sample": name, "index": k, "slice": s, "y0": y0, "x0": x0, "height": h, "width": w}
                     for y0, x0 in patch_origins((H, W), (h, w))]
        out[side] = recs
    log.info("split re-tiled at %dx%d px: %d / %d / %d patches", h, w, len(out["train"]), len(out["validation"]),
             len(out["test"]))
    return out
