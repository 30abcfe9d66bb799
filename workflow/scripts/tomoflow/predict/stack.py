"""Stacks of slices: the method chosen once per stack, chunks, images, slabs and the slab-file rule call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .blend import _blended_chunks
from .common import SliceSource, _patch_pair, _read, log
from .model import as_predictor
from .whole import _whole_chunks, plan_prediction


def predict_chunks(
    model: Any,
    source: SliceSource,
    start: int,
    stop: int,
    *,
    patch_size: int | Sequence[int],
    batch_size: int = 8,
    tta: bool = False,
    chunk_slices: int | None = None,
    max_chunk_mb: float = 256.0,
    mode: str = "auto",
    memory_budget_mb: float = 2048.0,
    margin_px: int | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Class probabilities of slices ``[start, stop)``, one chunk of slices at a time.

    The method (one pass per slice or blended patches) is chosen once for the stack by
    :func:`plan_prediction` and logged.

    Parameters
    ----------
    model : keras.Model or callable
        See :func:`as_predictor`.
    source : ndarray, shape (n_slices, H, W), or callable ``(a, b) -> ndarray (b - a, H, W)``
        Raw intensities (any real dtype; used as float32).
    start, stop : int
        Slice range (axis 0).
    patch_size : int or (int, int)
        Blended: model input ``(Hp, Wp)`` in px (``train.patch_size``).
    batch_size : int
        Blended: patches per model call (with ``tta`` each patch makes 8 (4) inputs, still in calls of this
        size).  One pass: the most slices per model call.
    tta : bool
        Average over the 8 rotations/mirrors (4 mirrors for rectangular patches).
    chunk_slices : int, optional
        Blended: slices per chunk; default from :func:`chunk_slices_for` with ``max_chunk_mb``.
    max_chunk_mb : float
        Blended: memory budget of one chunk's accumulators (MiB).
    mode, memory_budget_mb, margin_px
        See :func:`plan_prediction`.

    Yields
    ------
    (int, int, ndarray)
        ``(a, b, probabilities)`` with probabilities of shape ``(b - a, H, W, C)`` float32, for
        consecutive chunks covering ``[start, stop)``.
    """
    if batch_size < 1:
        raise InputError("predict.batch_size", f"must be >= 1, got {batch_size}", "set predict.batch_size to e.g. 8")
    if stop <= start:
        return
    first = _read(source, start, start + 1)
    plan = plan_prediction(model, first.shape[1:], mode=mode, batch_size=batch_size,
                           memory_budget_mb=memory_budget_mb, margin_px=margin_px)
    if plan.mode == "whole":
        assert plan.layout is not None
        log.info("one pass per slice: %dx%d slices padded to %dx%d, %d slice(s) per call (%s)",
                 *plan.layout.shape, *plan.layout.padded_shape, plan.per_call, plan.reason)
        yield from _whole_chunks(as_predictor(model), source, start, stop, plan, tta, first)
        return
    log.info("blended patches %s, %d per call (%s)", list(_patch_pair(patch_size)), batch_size, plan.reason)
    yield from _blended_chunks(model, source, start, stop, patch_size=patch_size, batch_size=batch_size, tta=tta,
                               chunk_slices=chunk_slices, max_chunk_mb=max_chunk_mb, first=first)


def predict_images(
    model: Any,
    images: npt.ArrayLike,
    *,
    patch_size: int | Sequence[int],
    batch_size: int = 8,
    tta: bool = False,
    mode: str = "auto",
    memory_budget_mb: float = 2048.0,
    margin_px: int | None = None,
) -> npt.NDArray[np.float32]:
    """Class probabilities of a stack of images of any shape (one pass per image, or blended patches).

    Parameters
    ----------
    model : keras.Model or callable
        Input ``(B, Hp, Wp, 1)`` float32 raw intensities, output ``(B, Hp, Wp, C)`` probabilities.
    images : array_like, shape (n, H, W)
        Raw intensities; any ``H, W`` ≥ 1 (not necessarily square or a multiple of the patch).
    patch_size : int or (int, int)
        ``(Hp, Wp)`` in px, even (``train.patch_size``).
    batch_size : int
        Patches per model call.
    tta : bool
        Average over the 8 rotations/mirrors of each patch (or padded image in one-pass mode).
    mode, memory_budget_mb, margin_px
        See :func:`plan_prediction`.

    Returns
    -------
    ndarray, shape (n, H, W, C), float32
        One-pass probabilities, or the window-weighted mean of the overlapping patch predictions.
    """
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise InputError("images", f"expected a stack (n, H, W), got shape {arr.shape}", "add a leading axis for a single image (images[None])")
    if arr.shape[0] == 0:
        raise InputError("images", "the stack is empty", "pass at least one image")
    parts = [p for _, _, p in predict_chunks(model, arr, 0, arr.shape[0], patch_size=patch_size, batch_size=batch_size,
                                             tta=tta, mode=mode, memory_budget_mb=memory_budget_mb, margin_px=margin_px)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def probabilities_to_uint8(probabilities: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Scale probabilities in [0, 1] to uint8 ``round(255 p)`` (0 → 0, 1 → 255)."""
    p = np.asarray(probabilities, dtype=np.float32)
    return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)



def predict_volume_slab(
    model: Any,
    source: SliceSource,
    start: int,
    stop: int,
    *,
    patch_size: int | Sequence[int],
    batch_size: int = 8,
    tta: bool = False,
    return_probabilities: bool = False,
    chunk_slices: int | None = None,
    max_chunk_mb: float = 256.0,
    mode: str = "auto",
    memory_budget_mb: float = 2048.0,
    margin_px: int | None = None,
    scale: float = 1.0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
    """Labels (and uint8 probabilities) of the slab ``[start, stop)`` of a volume.

    Input is read one chunk at a time (see :func:`predict_chunks`), so memory is bounded by the chunk
    plus the uint8 outputs of the slab - never by the stack.  The result does not depend on how the stack
    is cut into slabs or chunks (every slice is predicted on its own; one-pass results may differ by float
    rounding between batch sizes).

    Parameters
    ----------
    model : keras.Model or callable
        See :func:`as_predictor`.
    source : ndarray, shape (n_slices, n_z, n_x), or callable ``(a, b) -> ndarray (b - a, n_z, n_x)``
        The reconstructed volume (raw intensities) or a reader of its slices (e.g. around
        :func:`tomoflow.io.read_slab`).
    start, stop : int
        Slab range along axis 0 (from :func:`tomoflow.slabs.slab_ranges`).
    patch_size, batch_size, tta, chunk_slices, max_chunk_mb, mode, memory_budget_mb, margin_px
        See :func:`predict_chunks`.
    return_probabilities : bool
        Also return the probabilities scaled to uint8.
    scale : float
        Data pixel size / model pixel size (:func:`tomoflow.models.pixel_scale`).  Other than 1, every
        slice ``(H, W)`` is resampled to ``round(H·scale) × round(W·scale)`` px (the model's pixel size),
        predicted, and its probabilities resampled back to ``(H, W)`` linearly before the arg-max
        (:mod:`tomoflow.predict.resample`).

    Returns
    -------
    labels : ndarray, shape (stop - start, n_z, n_x), uint8
        ``argmax`` over the classes (ties go to the lower label).
    probabilities : ndarray, shape (stop - start, n_z, n_x, C), uint8, or None
        ``round(255 p)`` where asked.
    """
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    grid: list[tuple[int, int]] = []
    src: SliceSource = source
    if scale != 1.0:
        from .resample import resample_slices, resampled_shape

        def src(a: int, b: int) -> np.ndarray:
            block = _read(source, a, b)
            if not grid:
                grid.append(block.shape[1:])
                log.info("resampling %dx%d slices by %.4f to %dx%d px (the model's pixel size), probabilities back",
                         *block.shape[1:], scale, *resampled_shape(block.shape[1:], scale))
            return resample_slices(block, resampled_shape(block.shape[1:], scale))

    for _, _, p in predict_chunks(
        model, src, start, stop, patch_size=patch_size, batch_size=batch_size, tta=tta,
        chunk_slices=chunk_slices, max_chunk_mb=max_chunk_mb, mode=mode, memory_budget_mb=memory_budget_mb,
        margin_px=margin_px,
    ):
        if grid:
            from .resample import resample_slices

            p = resample_slices(p, grid[0])
        labels.append(np.argmax(p, axis=-1).astype(np.uint8))
        if return_probabilities:
            probs.append(probabilities_to_uint8(p))
    if not labels:
        empty = np.zeros((0, 0, 0), dtype=np.uint8)
        return empty, (np.zeros((0, 0, 0, 0), dtype=np.uint8) if return_probabilities else None)
    lab = np.concatenate(labels)
    return lab, (np.concatenate(probs) if return_probabilities else None)


def _flag(value: Any, key: str) -> bool:
    """A config boolean; strings from ``--config key=false`` are parsed, not taken as truthy."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes", "on"):
            return True
        if v in ("false", "0", "no", "off", ""):
            return False
        raise InputError(key, f"{value!r} is not a boolean", "use true or false")
    return bool(value)


def predict_slab_file(
    volume: str,
    model_path: str,
    labels_out: str,
    probability_outs: Sequence[str] = (),
    *,
    slab: int,
    n_slabs: int,
    classes: Sequence[str],
    patch_size: Sequence[int],
    batch_size: int = 8,
    tta: bool | str = False,
    mode: str = "auto",
    memory_budget_mb: float = 2048.0,
    pixel_size_nm: float | None = None,
    resample: str = "auto",
    pixel_size_tolerance: float = 0.03,
) -> None:
    """Predict slab ``slab`` of ``n_slabs`` of a volume file and write its labels (rule ``predict_slab``).

    The model is checked against ``classes`` (names from its metadata, else the output layer) and its
    pixel size against the volume's before anything is predicted or written
    (:mod:`tomoflow.models`); beyond the tolerance the slices are resampled to the model's pixel size and
    the probabilities back (``resample="auto"``) or the job is refused (``"never"``).

    Parameters
    ----------
    volume : str
        Reconstructed volume (MRC/TIFF), shape ``(n_slices, n_z, n_x)``, read chunk by chunk.
    model_path : str
        Trained ``.keras`` model (:func:`tomoflow.io.models.load_model`).
    labels_out : str
        Output uint8 labels of the slab, shape ``(stop - start, n_z, n_x)``.
    probability_outs : sequence of str
        One uint8 probability file per class (``round(255 p)``), or empty for none.
    slab, n_slabs : int
        Which of :func:`tomoflow.slabs.slab_ranges` ``(n_slices, n_slabs)``.
    classes : sequence of str
        Configured class names; the model must predict ``len(classes)`` classes.
    patch_size, batch_size, tta, mode, memory_budget_mb
        See :func:`predict_chunks` (``tta`` may be a config string such as ``"false"``).
    pixel_size_nm : float, optional
        Voxel size (nm) where the volume header has none.
    resample, pixel_size_tolerance
        ``predict.resample`` and ``predict.pixel_size_tolerance`` (:func:`tomoflow.models.pixel_scale`).

    Raises
    ------
    InputError
        Model for other classes, pixel size mismatch with ``resample="never"``, an empty slab,
        unreadable files.
    """
    from .. import io
    from ..io.models import load_model, read_metadata  # imports Keras
    from ..models import check_classes_metadata, pixel_scale
    from ..slabs import slab_ranges

    n_slices = io.volume_shape(volume)[0]
    start, stop = slab_ranges(n_slices, int(n_slabs))[int(slab)]
    if stop <= start:
        raise InputError("predict.slabs", f"{n_slabs} slabs for a volume of {n_slices} slices leaves slab {slab} empty", f"set predict.slabs <= {n_slices}")
    meta = read_metadata(model_path)
    model = load_model(model_path, compile=False)
    check_classes_metadata(meta, list(classes), str(model_path), n_outputs=int(tuple(model.output_shape)[-1]))
    data_px = io.voxel_size_or(volume, io.read_slab(volume, start, start + 1)[1], pixel_size_nm or None)
    model_px = None if meta is None else meta.get("pixel_size_nm")
    scale = pixel_scale(model_px, data_px, tolerance=float(pixel_size_tolerance), resample=str(resample),
                        where=str(model_path), what=f"volume {volume}")
    if meta is not None and meta.get("patch_size"):
        patch_size = [int(v) for v in meta["patch_size"]]  # blended patches of the model's training size
    probs_out = list(probability_outs)
    if probs_out and len(probs_out) != len(classes):
        raise InputError("predict.save_probabilities", f"{len(probs_out)} probability files for {len(classes)} classes", "declare one output per class")
    voxel: list[float | None] = []

    def read(a: int, b: int) -> np.ndarray:
        data, vs = io.read_slab(volume, start + a, start + b)
        voxel.append(vs)
        return data

    use_tta = _flag(tta, "predict.tta")
    log.info("slab %d: slices [%d, %d) of %d, model %s, mode %s, patch %s, batch %d, tta %s, budget %.0f MiB",
             slab, start, stop, n_slices, model_path, mode, list(patch_size), int(batch_size), use_tta, memory_budget_mb)
    log.info("pixel size: volume %s nm, model %s nm -> scale %.4f", data_px, model_px, scale)
    labels, probs = predict_volume_slab(
        model, read, 0, stop - start, patch_size=tuple(int(v) for v in patch_size), batch_size=int(batch_size),
        tta=use_tta, return_probabilities=bool(probs_out), mode=str(mode), memory_budget_mb=float(memory_budget_mb),
        scale=scale,
    )
    vs = io.voxel_size_or(volume, voxel[0] if voxel else None, pixel_size_nm or None)
    io.write_labels(labels_out, labels, vs)
    if probs is not None:
        for c, path in enumerate(probs_out):
            io.write_volume(path, probs[..., c], vs)

