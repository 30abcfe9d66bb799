"""One pass per slice: slice padding, the memory plan (:func:`plan_prediction`) and one-pass chunks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .common import PaddedSlice, SliceSource, _read, log
from .model import _tta_ops

#: Values of ``predict.mode``.
MODES: tuple[str, ...] = ("auto", "whole", "blended")


@dataclass(frozen=True)
class WholeSliceLayout(PaddedSlice):
    """Reflect padding of a slice for one-pass prediction (sizes in px).

    Attributes
    ----------
    shape : (int, int)
        Original slice shape ``(H, W)``.
    pad : ((int, int), (int, int))
        ``((top, bottom), (left, right))``: at least ``margin`` on every side, and the padded size a
        multiple of the model's ``factor``.
    """

    shape: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]


def whole_slice_layout(shape: Sequence[int], factor: int, margin_px: int) -> WholeSliceLayout:
    """Padding of a ``(H, W)`` slice to a multiple of ``factor`` with at least ``margin_px`` on each side.

    Parameters
    ----------
    shape : (int, int)
        Slice shape in px (≥ 1 each).
    factor : int
        Required divisor of the padded height and width (``2**(depth-1)`` for the U-Net).
    margin_px : int
        Reflected context added on every side (≥ 0).

    Returns
    -------
    WholeSliceLayout
        Per axis ``n``: total padding ``2 m + e`` with ``e = (-(n + 2m)) mod factor``, split as
        ``m + e//2`` before and ``m + e - e//2`` after.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise InputError("volume", f"slice shape {h}x{w} is empty", "check the reconstructed volume")
    f, m = max(1, int(factor)), max(0, int(margin_px))
    pads = []
    for n in (h, w):
        e = (-(n + 2 * m)) % f
        pads.append((m + e // 2, m + e - e // 2))
    return WholeSliceLayout((h, w), (pads[0], pads[1]))


@dataclass(frozen=True)
class PredictionPlan:
    """How a stack of slices of one shape is predicted (see :func:`plan_prediction`).

    Attributes
    ----------
    mode : str
        ``"whole"`` (one pass per slice) or ``"blended"`` (overlapping patches).
    per_call : int
        Slices per model call (whole) or patches per model call (blended).
    layout : WholeSliceLayout or None
        Padding of each slice (whole only).
    mb_per_slice : float
        Estimated activation memory of one padded slice in one pass (MiB; NaN when unknown).
    reason : str
        Why this method (logged).
    """

    mode: str
    per_call: int
    layout: WholeSliceLayout | None
    mb_per_slice: float
    reason: str


def _model_info(model: Any) -> Any:
    """:class:`tomoflow.unet.ModelInfo` of a Keras model, None for a plain callable."""
    if not (hasattr(model, "layers") and hasattr(model, "input_shape") and hasattr(model, "output_shape")):
        return None
    from ..unet import inspect_model  # imports Keras: only when a Keras model is given

    return inspect_model(model)


def plan_prediction(
    model: Any,
    slice_shape: Sequence[int],
    *,
    mode: str = "auto",
    batch_size: int = 8,
    memory_budget_mb: float = 2048.0,
    margin_px: int | None = None,
) -> PredictionPlan:
    """Choose one-pass or blended prediction for slices of ``slice_shape``.

    Parameters
    ----------
    model : keras.Model or callable
        A Keras model is inspected (:func:`tomoflow.unet.inspect_model`).  A plain callable is predicted
        with blended patches under ``auto``; under ``whole`` it is taken to accept any input size (factor
        1, memory unknown).
    slice_shape : (int, int)
        ``(H, W)`` in px.
    mode : {"auto", "whole", "blended"}
        ``auto``: one pass where the model is fully convolutional, normalises with fixed statistics and
        one padded slice fits ``memory_budget_mb``; blended otherwise.  ``whole``: one pass (InputError if
        the model cannot take whole slices; a warning if the estimate exceeds the budget).
        ``blended``: overlapping patches.
    batch_size : int
        Most slices (whole) or patches (blended) per model call.
    memory_budget_mb : float
        Memory for the network's activations of one model call, MiB.
    margin_px : int, optional
        Reflected context around each slice in one-pass mode; default the model's ``factor``
        (``2**(depth-1)``, 32 px for depth 6), 0 for a plain callable.

    Returns
    -------
    PredictionPlan
    """
    if mode not in MODES:
        raise InputError("predict.mode", f"{mode!r} is not one of {', '.join(MODES)}", "set predict.mode: auto, whole or blended")
    if batch_size < 1:
        raise InputError("predict.batch_size", f"must be >= 1, got {batch_size}", "set predict.batch_size to e.g. 8")
    if mode == "blended":
        return PredictionPlan("blended", batch_size, None, math.nan, "predict.mode is blended")
    info = _model_info(model)
    if info is None and mode == "auto":
        return PredictionPlan("blended", batch_size, None, math.nan, "a plain callable: input sizes it takes are unknown")
    factor = info.factor if info is not None else 1
    margin = int(margin_px) if margin_px is not None else (factor if factor > 1 else 0)
    layout = whole_slice_layout(slice_shape, factor, margin)
    hp, wp = layout.padded_shape
    mb = 4.0 * info.floats_per_px * hp * wp / 2**20 if info is not None else math.nan
    problem = None
    if info is not None and not info.fully_convolutional:
        problem = f"the model takes only {info.input_hw[0]}x{info.input_hw[1]} inputs"
    elif info is not None and info.per_input_normalization:
        problem = "the model normalises each input by its own statistics (a whole slice would differ from a patch)"
    if problem is not None:
        if mode == "whole":
            raise InputError("predict.mode", f"whole needs a fully convolutional model with fixed normalisation, but {problem}", "set predict.mode: auto or blended")
        return PredictionPlan("blended", batch_size, None, mb, problem)
    fits = int(memory_budget_mb // mb) if math.isfinite(mb) and mb > 0 else batch_size
    if fits < 1:
        if mode == "auto":
            return PredictionPlan("blended", batch_size, None, mb, f"one {hp}x{wp} slice needs ~{mb:.0f} MiB > budget {memory_budget_mb:.0f} MiB")
        log.warning("predict.mode whole: one %dx%d slice needs ~%.0f MiB, more than the budget of %.0f MiB", hp, wp, mb, memory_budget_mb)
        fits = 1
    reason = f"{hp}x{wp} padded slice, ~{mb:.0f} MiB each, budget {memory_budget_mb:.0f} MiB" if math.isfinite(mb) else "plain callable"
    return PredictionPlan("whole", max(1, min(batch_size, fits)), layout, mb, reason)


def _whole_chunks(
    predict: Callable[[np.ndarray], np.ndarray],
    source: SliceSource,
    start: int,
    stop: int,
    plan: PredictionPlan,
    tta: bool,
    first: np.ndarray,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """One-pass probabilities of slices ``[start, stop)``, ``plan.per_call`` slices per model call."""
    layout = plan.layout
    assert layout is not None
    ops = _tta_ops(True) if tta else [(lambda a: a, lambda a: a)]
    cy, cx = layout.crop()
    t0 = time.perf_counter()
    a = start
    while a < stop:
        b = min(stop, a + plan.per_call)
        if a == start:
            block = first if b - a == 1 else np.concatenate([first, _read(source, a + 1, b)])
        else:
            block = _read(source, a, b)
        if block.shape[1:] != layout.shape:
            raise InputError("volume", f"slice shape changed from {layout.shape} to {block.shape[1:]}", "pass slices of one shape")
        x = np.pad(block, ((0, 0),) + layout.pad, mode="reflect")[..., None]
        acc: np.ndarray | None = None
        for fwd, inv in ops:
            y = inv(predict(np.ascontiguousarray(fwd(x))))[:, cy, cx]
            acc = y.astype(np.float64) if acc is None else acc + y
        assert acc is not None
        out = (acc / len(ops)).astype(np.float32)
        dt = time.perf_counter() - t0
        log.info("predicted slices %d-%d (%d/%d, one pass per slice%s): %.2f slices/s",
                 a, b - 1, b - start, stop - start, ", 8-fold TTA" if tta else "", (b - start) / max(dt, 1e-9))
        yield a, b, out
        a = b

