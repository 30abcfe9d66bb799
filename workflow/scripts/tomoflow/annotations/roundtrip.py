"""The annotation round trip: pick volume slices to annotate, name them, and take the painted labels back.

Export (rule ``export_annotations``): :func:`select_slices` picks slice indices along axis 0 of
``results/{sample}/volume.mrc`` - evenly spread (``even``) or, once a model exists, the slices where it
is least certain (``entropy``: highest mean per-pixel entropy of its class probabilities,
:func:`slice_entropy`, the active-learning step) - never re-picking slices that already have labels.  They
are written as ``{sample}_z{index:04d}.tif`` (:func:`slice_file_name`) with ``HOWTO.md``
(:func:`howto_text`) and ``selection.json``.

Back: the user saves ``{sample}_z{index:04d}_labels.tif`` (:func:`label_file_name`) into a folder named
in the sample table's ``annotation_labels`` (``annotation_images`` empty).  The training images are then
always read from the *current* volume at those indices (:func:`label_slice_index`), and
:func:`check_label_fit` refuses labels whose index or shape no longer fits the volume (for example after
``thickness_px`` changed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .pairing import pairing_keys

__all__ = [
    "check_label_fit",
    "even_indices",
    "howto_text",
    "label_file_name",
    "label_slice_index",
    "plan_export",
    "select_slices",
    "selection_record",
    "slice_entropy",
    "slice_file_name",
    "volume_entropy",
]

_Z_INDEX = re.compile(r"(?:^|[_\-. ])z(\d+)(?=$|[_\-. ])", re.IGNORECASE)
_RE_EXPORT = "re-export with `snakemake annotate` and paint the new slices, or restore the reconstruction settings"


def slice_file_name(sample: str, index: int) -> str:
    """``{sample}_z{index:04d}.tif``: the exported image of volume slice ``index``."""
    return f"{sample}_z{int(index):04d}.tif"


def label_file_name(sample: str, index: int) -> str:
    """``{sample}_z{index:04d}_labels.tif``: the painted labels of volume slice ``index``."""
    return f"{sample}_z{int(index):04d}_labels.tif"


def label_slice_index(name: str) -> int:
    """The volume slice index of a label file: ``..._z0012_labels.tif`` -> 12.

    The ``z<digits>`` token (as :func:`label_file_name` writes) wins; otherwise the one number left by the
    pairing rule (:func:`tomoflow.annotations.pair_files`: role words such as ``labels`` ignored).

    Raises
    ------
    InputError
        No ``z<index>`` token and not exactly one number in the name.
    """
    stem = PurePath(name).name
    m = _Z_INDEX.search(re.sub(r"\.(ome\.)?tiff?$", "", stem, flags=re.IGNORECASE))
    if m:
        return int(m.group(1))
    numbers = [t for t in pairing_keys([stem])[0] if isinstance(t, int)]
    if len(numbers) != 1:
        raise InputError(name, f"cannot tell the volume slice index from the file name ({len(numbers)} numbers)",
                         "name label files like the exported images: SAMPLE_z0012_labels.tif")
    return int(numbers[0])


def even_indices(n_total: int, n_pick: int, exclude_edges: int = 0) -> npt.NDArray[np.int64]:
    """Evenly spread slice indices: the centres of ``n_pick`` equal bins of ``[e, n_total - e)``.

    Parameters
    ----------
    n_total : int
        Slices along axis 0.
    n_pick : int
        Wanted; clipped to the slices available.
    exclude_edges : int
        Slices skipped at each end (reconstruction edges, often truncated).

    Returns
    -------
    ndarray of int64, shape (k,)
        Strictly increasing.
    """
    lo, hi = int(exclude_edges), int(n_total) - int(exclude_edges)
    if hi <= lo:
        lo, hi = 0, int(n_total)
    k = max(0, min(int(n_pick), hi - lo))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    centres = lo + (np.arange(k) + 0.5) * (hi - lo) / k
    return np.floor(centres).astype(np.int64)


def slice_entropy(probabilities: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Mean per-pixel Shannon entropy of class probabilities, per slice, normalised to [0, 1].

    Parameters
    ----------
    probabilities : array_like, shape (n, H, W, C)
        Softmax probabilities (each pixel sums to 1).

    Returns
    -------
    ndarray float64, shape (n,)
        ``mean_pixels(-sum_c p_c ln p_c) / ln C`` (0: certain everywhere; 1: uniform everywhere).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 4 or p.shape[-1] < 2:
        raise ValueError(f"expected probabilities (n, H, W, C>=2), got shape {p.shape}")
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    ent = -plogp.sum(axis=-1)
    return np.asarray(ent.mean(axis=(1, 2)) / math.log(p.shape[-1]))


def volume_entropy(
    chunks: Iterable[tuple[int, int, np.ndarray]], n_slices: int, progress: Callable[[int, int], None] | None = None
) -> npt.NDArray[np.float64]:
    """Per-slice entropy (:func:`slice_entropy`) of a volume predicted chunk by chunk.

    Parameters
    ----------
    chunks : iterable of (a, b, probabilities (b - a, H, W, C))
        As :func:`tomoflow.predict.predict_chunks` yields them.
    n_slices : int
    progress : callable (done, total), optional

    Returns
    -------
    ndarray float64, shape (n_slices,)
    """
    out = np.full(int(n_slices), np.nan)
    for a, b, prob in chunks:
        out[a:b] = slice_entropy(prob)
        if progress is not None:
            progress(b, n_slices)
    if np.isnan(out).any():
        raise ValueError("the prediction did not cover every slice")
    return out


def select_slices(
    n_total: int,
    n_pick: int,
    *,
    strategy: str = "even",
    exclude_edges: int = 0,
    scores: npt.ArrayLike | None = None,
    labelled: Sequence[int] = (),
) -> tuple[list[int], list[float | None]]:
    """Slice indices to annotate next, and the score of each.

    Parameters
    ----------
    n_total : int
        Slices along axis 0 of the volume.
    n_pick : int
        How many.
    strategy : {"even", "entropy"}
        ``even``: :func:`even_indices` over the slices not yet labelled; ``entropy``: the ``n_pick`` highest
        ``scores`` (ties: lower index first).
    exclude_edges : int
        Slices skipped at each end.
    scores : array_like, shape (n_total,), optional
        ``entropy`` only: per-slice entropy (:func:`slice_entropy`).
    labelled : sequence of int
        Indices that already have labels; never picked.

    Returns
    -------
    indices : list of int, increasing
    scores : list of float or None
        The score of each picked slice (None for ``even``).
    """
    done = {int(i) for i in labelled}
    lo, hi = int(exclude_edges), int(n_total) - int(exclude_edges)
    if hi <= lo:
        lo, hi = 0, int(n_total)
    free = np.array([i for i in range(lo, hi) if i not in done], dtype=np.int64)
    if free.size == 0:
        raise InputError("config key `annotations.export_exclude_edges`",
                         f"no unlabelled slice left to export ({len(done)} labelled of {n_total})",
                         "lower annotations.export_exclude_edges, or train with the labels you have")
    if strategy == "even":
        picked = free[even_indices(free.size, n_pick)]
        return sorted(int(i) for i in picked), [None] * len(picked)
    if strategy == "entropy":
        if scores is None:
            raise ValueError("the entropy strategy needs per-slice scores")
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (int(n_total),):
            raise ValueError(f"{s.shape} scores for {n_total} slices")
        order = sorted(free.tolist(), key=lambda i: (-s[i], i))[: max(0, int(n_pick))]
        idx = sorted(order)
        return idx, [float(s[i]) for i in idx]
    raise InputError("config key `annotations.export_strategy`", f"{strategy!r} is not even or entropy", "use even or entropy")


def check_label_fit(
    label_shapes: Sequence[tuple[str, int, Sequence[int]]], volume_shape: Sequence[int], volume: str
) -> None:
    """Refuse label slices that no longer fit the volume they are paired with.

    Parameters
    ----------
    label_shapes : sequence of (file, index, (H, W))
        Each label file, the volume slice index it names and its shape (px).
    volume_shape : (n, H, W)
        The current volume's shape (slices along axis 0).
    volume : str
        The volume named in messages.

    Raises
    ------
    InputError
        An index outside ``[0, n)``, a shape other than ``(H, W)``, or two files naming one index.
    """
    n, H, W = (int(v) for v in volume_shape)
    seen: dict[int, str] = {}
    for name, index, shape in label_shapes:
        if not 0 <= int(index) < n:
            raise InputError(name, f"slice index {index} is outside {volume} (slices 0..{n - 1})",
                             f"the volume changed since these labels were exported: {_RE_EXPORT}")
        if tuple(int(v) for v in shape) != (H, W):
            raise InputError(name, f"label slice {tuple(shape)} does not match slice {index} of {volume} "
                             f"({H}×{W}, volume {n}×{H}×{W})",
                             f"the volume's geometry changed since these labels were exported: {_RE_EXPORT}")
        if int(index) in seen:
            raise InputError(name, f"names slice {index} like {seen[int(index)]}", "keep one label file per slice")
        seen[int(index)] = name


def howto_text(sample: str, classes: Sequence[str], indices: Sequence[int], labels_folder: str, table: str,
               voxel_size_nm: float, strategy: str) -> str:
    """The ``HOWTO.md`` written beside the exported slices (Markdown).

    Parameters
    ----------
    sample : str
    classes : sequence of str
        Label value = index.
    indices : sequence of int
        Exported volume slice indices.
    labels_folder : str
        Suggested folder for the painted labels.
    table : str
        The sample table to edit.
    voxel_size_nm : float
    strategy : str
    """
    first = slice_file_name(sample, indices[0]) if indices else slice_file_name(sample, 0)
    first_lab = label_file_name(sample, indices[0] if indices else 0)
    values = "\n".join(f"| {i} | {c} |" for i, c in enumerate(classes))
    return f"""# Annotating {sample}: {len(indices)} slice(s) to paint

These are slices along axis 0 of `results/{sample}/volume.mrc` (pixel size {voxel_size_nm:g} nm), picked
`{strategy}`: indices {list(int(i) for i in indices)}.  Each file `{sample}_zNNNN.tif` is slice NNNN,
float32 raw intensities.  Paint one label image per slice, of the same size, one class index per pixel:

| value | class |
|---|---|
{values}

Save each as `{sample}_zNNNN_labels.tif` (same NNNN), single-channel 8-bit integer (not RGB, not a
coloured overlay), e.g. `{first}` -> `{first_lab}`.

* **napari**: `napari {first}`; *Layers > New Labels Layer*; paint with label 1 (support), 2 (particles);
  unpainted pixels stay 0; select the labels layer, *File > Save Selected Layer(s)...*, name `{first_lab}`.
* **Fiji**: open the slice, *Image > Duplicate*, *Image > Type > 8-bit*, *Edit > Selection > Select All*,
  *Edit > Clear* (0), paint class values with the pencil/brush at the value (*Edit > Options > Colors*,
  grey level 1, 2), *File > Save As > Tiff...*.  The image looks black: the values are 0..{len(classes) - 1}.
* **ilastik** (Pixel Classification): add the slices, one label per class in the order above, train,
  *Export*: source *Simple Segmentation*, format *tif*, file name `{{nickname}}_labels.tif`; ilastik numbers
  classes from 1, so subtract 1 (Fiji *Process > Math > Subtract 1*) unless the first ilastik label is
  unused.

Put every `*_labels.tif` into one folder, e.g. `{labels_folder}/`, and in the sample table `{table}`
set, for sample `{sample}`: `annotation_labels` = `{labels_folder}`, `annotation_images` empty.  Add
`{sample}` to `train.samples` in the config.  The images are then always read from the current
`volume.mrc` at these indices, so a reconstruction with other iterations keeps the labels valid; if the
volume's shape changes (e.g. `thickness_px`), the run stops and asks you to re-export.

Next round (active learning): with a trained model, set `annotations.export_strategy: entropy` and run
`snakemake annotate` again: it exports the unlabelled slices where the model is least certain.
"""


def selection_record(sample: str, indices: Sequence[int], scores: Sequence[float | None], strategy: str,
                     volume_shape: Sequence[int], voxel_size_nm: float, labelled: Sequence[int],
                     exclude_edges: int) -> dict[str, Any]:
    """The JSON-ready ``selection.json`` record of an export."""
    return {"sample": sample, "strategy": strategy, "indices": [int(i) for i in indices],
            "scores": [None if s is None else float(s) for s in scores],
            "files": [slice_file_name(sample, i) for i in indices],
            "labels": [label_file_name(sample, i) for i in indices],
            "volume_shape": [int(v) for v in volume_shape], "voxel_size_nm": float(voxel_size_nm),
            "already_labelled": sorted(int(i) for i in labelled), "exclude_edges": int(exclude_edges),
            "axis": 0, "score": "mean per-pixel entropy / ln(classes)" if strategy == "entropy" else None}


def plan_export(
    sample: str,
    volume_shape: Sequence[int],
    voxel_size_nm: float,
    read_slices: Callable[[int, int], np.ndarray],
    *,
    classes: Sequence[str],
    n_pick: int,
    strategy: str = "even",
    exclude_edges: int = 0,
    labelled: Sequence[int] = (),
    model: Any = None,
    predict_options: dict[str, Any] | None = None,
    labels_folder: str = "",
    table: str = "config/samples.tsv",
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any]]:
    """Everything an export for annotation writes: the picked slices, ``HOWTO.md`` and ``selection.json``.

    Parameters
    ----------
    sample : str
    volume_shape : (n, H, W)
        Of ``results/{sample}/volume.mrc``.
    voxel_size_nm : float
    read_slices : callable (a, b) -> ndarray (b - a, H, W)
        Reads volume slices ``[a, b)`` (slab by slab; the volume is never loaded whole).
    classes : sequence of str
    n_pick : int
        ``annotations.export_slices``.
    strategy : {"even", "entropy"}
    exclude_edges : int
    labelled : sequence of int
        Indices that already have labels (never picked again).
    model : keras.Model, optional
        ``entropy`` only: the trained model; its probabilities come from
        :func:`tomoflow.predict.predict_chunks` (one pass per whole slice where it fits).
    predict_options : dict, optional
        Keyword arguments of :func:`tomoflow.predict.predict_chunks` (``patch_size``, ``batch_size``, ``mode``,
        ``memory_budget_mb``).
    labels_folder, table : str
        Named in ``HOWTO.md``.

    Returns
    -------
    slices : dict file name -> ndarray float32 (H, W)
    texts : dict ``{"HOWTO.md": str}``
    records : dict ``{"selection.json": dict}``
    """
    import logging

    log = logging.getLogger(__name__)
    n = int(volume_shape[0])
    scores = None
    if strategy == "entropy":
        if model is None:
            raise InputError("config key `annotations.export_strategy`", "entropy needs a trained model",
                             "train a model first (snakemake train), or use export_strategy: even")
        from ..predict import predict_chunks

        chunks = predict_chunks(model, read_slices, 0, n, **(predict_options or {"patch_size": volume_shape[1:]}))
        scores = volume_entropy(chunks, n, lambda done, total: log.info("entropy: %d/%d slices", done, total))
    idx, picked_scores = select_slices(n, n_pick, strategy=strategy, exclude_edges=exclude_edges, scores=scores,
                                       labelled=labelled)
    slices = {slice_file_name(sample, i): np.asarray(read_slices(i, i + 1)[0], dtype=np.float32) for i in idx}
    record = selection_record(sample, idx, picked_scores, strategy, volume_shape, voxel_size_nm, labelled, exclude_edges)
    if scores is not None:
        record["all_scores"] = [float(v) for v in scores]
    howto = howto_text(sample, classes, idx, labels_folder or f"annotations/{sample}_labels", table, voxel_size_nm, strategy)
    log.info("exporting %d slice(s) of %s (%s): %s", len(idx), sample, strategy, idx)
    return slices, {"HOWTO.md": howto}, {"selection.json": record}
