"""U-Net prediction of reconstructed slices and whole stacks: one pass per slice, or blended patches.

Two methods (config ``predict.mode``; :func:`plan_prediction` decides for ``auto``):

**One pass per slice** (``whole``).  The U-Net is fully convolutional, so a whole slice ``(H, W)`` is
predicted in one network pass: it is reflect-padded by a margin of ``2**(depth-1)`` px (default; the
context a patch border would otherwise lack) and up to the next multiple of ``2**(depth-1)`` (the five
poolings of a depth-6 net need multiples of 32), several slices share one model call, and the output is
cropped back to ``(H, W)``.  Cost: about ``(H+2m)(W+2m)`` pixels of network work per slice, against
``4 H W`` (50 % overlap) - ``32 H W`` with 8-fold TTA - for blended patches.
*Normalisation*: the model's first layer is a :class:`keras.layers.Normalization` holding the fixed
mean and variance of the *training images* (not statistics of each input), so a whole slice is normalised
exactly as a training patch was; a model that normalises by statistics of each input
(:attr:`tomoflow.unet.ModelInfo.per_input_normalization`) is predicted with blended patches of the
training size instead (``auto``) or refused (``whole``).
*Memory*: one pass holds the network's activations for the whole slice.  :func:`tomoflow.unet.inspect_model`
counts them per input pixel from the model's layers (the sum over all layer outputs, an upper bound of
what is alive at once); ``auto`` predicts whole slices when one padded slice fits ``memory_budget_mb``
(fed from the rule's ``resources: mem_mb``) and batches as many slices per call as fit (at most
``batch_size``); otherwise it falls back to blended patches.

**Blended patches** (``blended``, the paper's reference method, with ``tta`` its 8-fold test-time
augmentation).  A U-Net trained on ``patch_size`` patches is applied to slices of any shape by cutting
every slice into overlapping patches, predicting them in batches (patches of several slices share a batch)
and merging the per-patch class probabilities with a smooth window (*Smoothly-Blend-Image-Patches*,
Chevalier 2017):

* **Window** - the outer product of two 1-D second-order spline windows.  From the triangle ``t``
  (:func:`scipy.signal.windows.triang`, values ``(2k+1)/M`` rising then falling for an even length
  ``M``) the window is ``w = 2 t²`` where ``t < ½`` (outer quarters) and ``w = 1 - 2 (1 - t)²`` where
  ``t ≥ ½`` (inner half), divided by its mean (which is exactly ½).
* **50 % overlap** - patch origins every ``M/2`` pixels.  Two windows shifted by ``M/2`` have
  triangle values ``t`` and ``1 - t`` at every pixel, and ``w(t) + w(1 - t) = 1``, so the 1-D windows
  sum to exactly 2 (after division by the mean) and the 2-D windows to exactly 4 at every pixel covered
  by a full set of overlapping patches.
* **Reflect padding** of ``M/2`` (= ``M·(1 - 1/2)``) on each side, plus up to ``M/2 - 1`` extra pixels
  of reflection at the far end so that the padded length is a multiple of ``M/2``: every original
  pixel then lies where the weights sum to the constant.  The merged result is divided by the summed
  weights (which equals the reference's division by ``subdivisions² = 4`` there), so an identity model
  reproduces the input everywhere, for any slice shape - the reference code only handles square
  images.
* **Test-time augmentation** (``tta=True``) - the prediction of every patch is the mean over the 8
  rotations/mirrors of the square (the dihedral group D4: input transformed, output transformed back).
  Rectangular patches cannot be rotated by 90° without changing shape, so they use the 4 mirrors
  (identity, up-down, left-right, both).  In one-pass mode the whole padded slice goes through all 8
  (a fully convolutional model takes the transposed shape too).

The model is a Keras model (``predict_on_batch`` is used) or any callable taking a float32 batch
``(B, Hp, Wp, 1)`` of *raw* intensities (the normalisation of training is a layer inside the saved
model) and returning softmax probabilities ``(B, Hp, Wp, C)``.  Every model call gets exactly
``batch_size`` patches (the last batch is padded with zeros and its extra outputs dropped) so a compiled
model never retraces.

Memory (blended): slices are processed in chunks of the fewest slices whose patches fill whole batches
(:func:`chunk_slices_for`; float64 accumulators capped by ``max_chunk_mb``), independent of the stack;
:func:`predict_volume_slab` reads its input chunk by chunk through a reader callable
and keeps only uint8 labels (and optional uint8 probabilities) of its slab, so the memory of a slab job
does not depend on the depth of the stack.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "spline_window_1d",
    "spline_window_2d",
    "PatchGrid",
    "patch_grid",
    "as_predictor",
    "predict_chunks",
    "predict_images",
    "predict_volume_slab",
    "predict_slab_file",
    "MODES",
    "WholeSliceLayout",
    "whole_slice_layout",
    "PredictionPlan",
    "plan_prediction",
    "probabilities_to_uint8",
    "chunk_slices_for",
    "figure_positions",
    "prediction_figure",
    "DEFAULT_CLASS_COLORS",
]

#: A volume, or a reader ``(start, stop) -> ndarray (stop - start, H, W)`` returning slices of one.
SliceSource = np.ndarray | Callable[[int, int], np.ndarray]

#: Values of ``predict.mode``.
MODES: tuple[str, ...] = ("auto", "whole", "blended")

#: Class colours of the prediction figure (index = label value): pores black, support blue, Pt orange.
DEFAULT_CLASS_COLORS: tuple[str, ...] = ("#000000", "#4a90d9", "#ffb000", "#d62728", "#2ca02c", "#9467bd")


# --------------------------------------------------------------------------- window and tiling
def _patch_pair(patch_size: int | Sequence[int]) -> tuple[int, int]:
    """``(Hp, Wp)`` from an int or a pair; both even and ≥ 2 (InputError otherwise)."""
    if isinstance(patch_size, (int, np.integer)):
        pair = (int(patch_size), int(patch_size))
    else:
        vals = [int(v) for v in patch_size]
        if len(vals) != 2:
            raise InputError("train.patch_size", f"needs two values [height, width], got {list(patch_size)}", "set e.g. patch_size: [128, 128]")
        pair = (vals[0], vals[1])
    if min(pair) < 2 or pair[0] % 2 or pair[1] % 2:
        raise InputError(
            "train.patch_size",
            f"{pair[0]}x{pair[1]} is not a pair of even sizes >= 2 (50 % overlap needs a whole half-patch step)",
            "use even patch sizes (multiples of 2**(depth-1) for the U-Net, e.g. [128, 128])",
        )
    return pair


def spline_window_1d(size: int) -> npt.NDArray[np.float64]:
    """1-D second-order spline window of the reference method, normalised to mean 1.

    Parameters
    ----------
    size : int
        Window length ``M`` in px (even, ≥ 2).

    Returns
    -------
    ndarray, shape (M,), float64
        ``w(t)/mean`` with ``t`` the triangle ``(2k+1)/M`` (k = 0 … M/2-1, then mirrored),
        ``w = 2t²`` for ``t < ½`` and ``1 - 2(1-t)²`` otherwise.  Two copies shifted by ``M/2`` sum to 2.
    """
    m = _patch_pair((size, size))[0]
    k = np.arange(m)
    t = (2.0 * np.minimum(k, m - 1 - k) + 1.0) / m  # = scipy.signal.windows.triang(m) for even m
    w = np.where(t < 0.5, 2.0 * t**2, 1.0 - 2.0 * (1.0 - t) ** 2)
    return w / w.mean()


def spline_window_2d(patch_size: int | Sequence[int]) -> npt.NDArray[np.float64]:
    """2-D blending window: outer product of two :func:`spline_window_1d` (mean 1).

    Parameters
    ----------
    patch_size : int or (int, int)
        ``(Hp, Wp)`` in px, even.

    Returns
    -------
    ndarray, shape (Hp, Wp), float64
        Sums to exactly 4 over the overlapping patches at every interior pixel (50 % overlap).
    """
    hp, wp = _patch_pair(patch_size)
    return np.outer(spline_window_1d(hp), spline_window_1d(wp))


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of one slice lie (all sizes in px).

    Attributes
    ----------
    shape : (int, int)
        Original slice shape ``(H, W)``.
    patch : (int, int)
        Patch shape ``(Hp, Wp)``.
    pad : ((int, int), (int, int))
        Reflect padding ``((top, bottom), (left, right))``; ``top = Hp/2``, ``left = Wp/2``.
    origins_y, origins_x : tuple of int
        Patch origins (top-left corners) in the padded slice, every ``Hp/2`` (``Wp/2``) px.
    """

    shape: tuple[int, int]
    patch: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]
    origins_y: tuple[int, ...]
    origins_x: tuple[int, ...]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Shape of the padded slice ``(H + top + bottom, W + left + right)``."""
        return (
            self.shape[0] + self.pad[0][0] + self.pad[0][1],
            self.shape[1] + self.pad[1][0] + self.pad[1][1],
        )

    @property
    def n_patches(self) -> int:
        """Patches per slice."""
        return len(self.origins_y) * len(self.origins_x)

    def crop(self) -> tuple[slice, slice]:
        """Index of the original slice inside the padded one."""
        (top, _), (left, _) = self.pad
        return slice(top, top + self.shape[0]), slice(left, left + self.shape[1])


def _axis_layout(n: int, m: int) -> tuple[tuple[int, int], tuple[int, ...]]:
    """Padding and patch origins along one axis of length ``n`` for patch length ``m`` (even)."""
    step = m // 2
    extra = (-n) % step  # make the padded length a multiple of the step
    before, after = step, step + extra
    length = n + before + after
    origins = tuple(range(0, length - m + 1, step))
    return (before, after), origins


def patch_grid(shape: Sequence[int], patch_size: int | Sequence[int]) -> PatchGrid:
    """Reflect padding and 50 %-overlap patch origins for slices of ``shape``.

    Parameters
    ----------
    shape : (int, int)
        Slice shape ``(H, W)`` in px; any size ≥ 1.
    patch_size : int or (int, int)
        Patch shape ``(Hp, Wp)`` in px, even.

    Returns
    -------
    PatchGrid
        Every original pixel is covered by exactly 2 patches along each axis (4 in all), at positions
        where the 2-D windows sum to 4.
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise InputError("volume", f"slice shape {h}x{w} is empty", "check the reconstructed volume")
    hp, wp = _patch_pair(patch_size)
    pad_y, oy = _axis_layout(h, hp)
    pad_x, ox = _axis_layout(w, wp)
    return PatchGrid(shape=(h, w), patch=(hp, wp), pad=(pad_y, pad_x), origins_y=oy, origins_x=ox)


def _weight_sum(grid: PatchGrid, window: np.ndarray) -> np.ndarray:
    """Summed window weights over the padded slice, shape ``grid.padded_shape`` (float64)."""
    total = np.zeros(grid.padded_shape, dtype=np.float64)
    hp, wp = grid.patch
    for y in grid.origins_y:
        for x in grid.origins_x:
            total[y : y + hp, x : x + wp] += window
    return total


# --------------------------------------------------------------------------- the model
def as_predictor(model: Any, patch_size: int | Sequence[int] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a Keras model or a callable as ``f(batch (B, Hp, Wp, 1) float32) -> (B, Hp, Wp, C) float32``.

    Parameters
    ----------
    model : keras.Model or callable
        Keras models are called with ``predict_on_batch``; other callables directly.  The result is
        converted with :func:`numpy.asarray`.
    patch_size : int or (int, int), optional
        Checked against a Keras model's fixed input height/width where it has one.

    Returns
    -------
    callable
    """
    if patch_size is not None and hasattr(model, "input_shape"):
        try:
            shape = tuple(model.input_shape)
        except Exception:
            shape = ()
        if len(shape) == 4:
            hp, wp = _patch_pair(patch_size)
            fixed_h, fixed_w = shape[1], shape[2]
            if (fixed_h is not None and fixed_h != hp) or (fixed_w is not None and fixed_w != wp):
                raise InputError(
                    "train.patch_size",
                    f"the model takes {fixed_h}x{fixed_w} patches but patch_size is {hp}x{wp}",
                    "set train.patch_size to the size the model was trained with",
                )
            if shape[3] not in (None, 1):
                raise InputError("model", f"expects {shape[3]} input channels, prediction gives 1", "use a single-channel (grey-scale) model")
    fn = model.predict_on_batch if hasattr(model, "predict_on_batch") else model
    if not callable(fn):
        raise InputError("model", f"{type(model).__name__} is neither a Keras model nor callable", "pass a keras.Model or a function of a batch")

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.asarray(fn(batch), dtype=np.float32)
        if out.ndim == 3:  # (B, H, W): one channel
            out = out[..., None]
        if out.ndim != 4 or out.shape[:3] != batch.shape[:3]:
            raise InputError("model", f"returned shape {out.shape} for a batch of shape {batch.shape}", "use a model whose output is (B, H, W, n_classes) per-pixel probabilities")
        return out

    return predict


def _run_batches(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predict ``x (N, Hp, Wp, 1)`` in calls of exactly ``batch_size`` patches (last one zero-padded)."""
    outs = []
    n = x.shape[0]
    for s in range(0, n, batch_size):
        b = x[s : s + batch_size]
        k = b.shape[0]
        if k < batch_size:
            b = np.concatenate([b, np.zeros((batch_size - k,) + b.shape[1:], dtype=b.dtype)])
        outs.append(predict(b)[:k])
    return np.concatenate(outs) if len(outs) > 1 else outs[0]


def _tta_ops(square: bool) -> list[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]]:
    """(forward, inverse) transforms of a batch ``(B, H, W, ...)``: D4 (8) if square, else 4 mirrors."""
    ops: list[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = []
    if square:
        for mirror in (False, True):
            for k in range(4):
                def fwd(a: np.ndarray, k: int = k, mirror: bool = mirror) -> np.ndarray:
                    a = a[:, :, ::-1] if mirror else a
                    return np.rot90(a, k, axes=(1, 2))

                def inv(a: np.ndarray, k: int = k, mirror: bool = mirror) -> np.ndarray:
                    a = np.rot90(a, -k, axes=(1, 2))
                    return a[:, :, ::-1] if mirror else a

                ops.append((fwd, inv))
    else:
        for fy in (False, True):
            for fx in (False, True):
                def flip(a: np.ndarray, fy: bool = fy, fx: bool = fx) -> np.ndarray:
                    a = a[:, ::-1] if fy else a
                    return a[:, :, ::-1] if fx else a

                ops.append((flip, flip))
    return ops


def _predict_patches(
    predict: Callable[[np.ndarray], np.ndarray], patches: np.ndarray, batch_size: int, tta: bool
) -> np.ndarray:
    """Probabilities ``(N, Hp, Wp, C)`` float32 of patches ``(N, Hp, Wp)``, TTA-averaged if asked."""
    x = patches[..., None]
    if not tta:
        return _run_batches(predict, x, batch_size)
    ops = _tta_ops(patches.shape[1] == patches.shape[2])
    acc: np.ndarray | None = None
    for fwd, inv in ops:
        y = inv(_run_batches(predict, np.ascontiguousarray(fwd(x)), batch_size))
        acc = y.astype(np.float64) if acc is None else acc + y
    assert acc is not None
    return (acc / len(ops)).astype(np.float32)


# --------------------------------------------------------------------------- stacks
def chunk_slices_for(grid: PatchGrid, batch_size: int = 8, n_classes: int = 3, max_chunk_mb: float = 256.0) -> int:
    """Slices per chunk: the fewest whose patches fill whole batches, within a memory budget.

    Parameters
    ----------
    grid : PatchGrid
        Patch layout of one slice (``grid.n_patches`` patches per slice).
    batch_size : int
        Patches per model call.
    n_classes : int
        Output channels (the float64 accumulators hold ``n_classes`` values per padded pixel).
    max_chunk_mb : float
        Budget (MiB) for the accumulators and padded inputs of one chunk.

    Returns
    -------
    int
        ``batch_size / gcd(n_patches, batch_size)`` (so no model call is padded) when that fits the
        budget, else as many slices as fit (at least 1).  Independent of the stack depth, so the memory
        of a prediction does not grow with it.
    """
    hp, wp = grid.padded_shape
    per_slice = hp * wp * (8 * n_classes + 4)
    fit = max(1, int(max_chunk_mb * 2**20 // per_slice))
    full = batch_size // math.gcd(grid.n_patches, batch_size)
    return full if full <= fit else fit


def _read(source: SliceSource, start: int, stop: int) -> np.ndarray:
    block = source[start:stop] if isinstance(source, np.ndarray) else source(start, stop)
    block = np.asarray(block)
    if block.ndim != 3 or block.shape[0] != stop - start:
        raise InputError("volume", f"slices [{start}, {stop}) came back with shape {block.shape}", "pass a 3-D stack (slices, rows, columns)")
    if not np.all(np.isfinite(block)):
        raise InputError("volume", f"slices [{start}, {stop}) contain NaN or Inf", "check the reconstruction (re-run it or mask bad values)")
    return block.astype(np.float32, copy=False)


def _blended_chunks(
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
    first: np.ndarray | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Blended probabilities of slices ``[start, stop)`` (see :func:`predict_chunks`)."""
    hp, wp = _patch_pair(patch_size)
    predict = as_predictor(model, (hp, wp))
    window = spline_window_2d((hp, wp))
    first = _read(source, start, start + 1) if first is None else first
    grid = patch_grid(first.shape[1:], (hp, wp))
    wsum = _weight_sum(grid, window)[grid.crop()]
    n_total = stop - start
    chunk = chunk_slices if chunk_slices is not None else None
    t0 = time.perf_counter()
    a = start
    n_classes: int | None = None
    cached: np.ndarray | None = first
    while a < stop:
        if chunk is None:
            step = chunk_slices_for(grid, batch_size, n_classes or 3, max_chunk_mb)
        else:
            step = max(1, int(chunk))
        b = min(stop, a + step)
        if cached is not None and b - a == 1:
            block = cached
        elif cached is not None:
            block = np.concatenate([cached, _read(source, a + 1, b)])
        else:
            block = _read(source, a, b)
        cached = None
        if block.shape[1:] != grid.shape:
            raise InputError("volume", f"slice shape changed from {grid.shape} to {block.shape[1:]}", "pass slices of one shape")
        padded = np.pad(block, ((0, 0),) + grid.pad, mode="reflect")
        coords = [(s, y, x) for s in range(b - a) for y in grid.origins_y for x in grid.origins_x]
        acc: np.ndarray | None = None
        # patch batches of `batch_size` (TTA multiplies the model calls, not the patches per call)
        for i in range(0, len(coords), batch_size):
            group = coords[i : i + batch_size]
            patches = np.stack([padded[s, y : y + hp, x : x + wp] for s, y, x in group])
            probs = _predict_patches(predict, patches, batch_size, tta)
            if acc is None:
                n_classes = probs.shape[-1]
                acc = np.zeros((b - a,) + grid.padded_shape + (n_classes,), dtype=np.float64)
            weighted = probs * window[None, :, :, None]
            for (s, y, x), p in zip(group, weighted):
                acc[s, y : y + hp, x : x + wp] += p
        assert acc is not None
        cy, cx = grid.crop()
        out = (acc[:, cy, cx] / wsum[None, :, :, None]).astype(np.float32)
        del acc, padded
        done = b - start
        dt = time.perf_counter() - t0
        log.info(
            "predicted slices %d-%d (%d/%d, %d patches/slice%s): %.2f slices/s",
            a, b - 1, done, n_total, grid.n_patches, ", 8-fold TTA" if tta else "", done / max(dt, 1e-9),
        )
        yield a, b, out
        a = b


# --------------------------------------------------------------------------- one pass per slice
@dataclass(frozen=True)
class WholeSliceLayout:
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

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(H + top + bottom, W + left + right)``."""
        return (self.shape[0] + sum(self.pad[0]), self.shape[1] + sum(self.pad[1]))

    def crop(self) -> tuple[slice, slice]:
        """Index of the original slice inside the padded one."""
        (top, _), (left, _) = self.pad
        return slice(top, top + self.shape[0]), slice(left, left + self.shape[1])


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
    from .unet import inspect_model  # imports Keras: only when a Keras model is given

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

    Returns
    -------
    labels : ndarray, shape (stop - start, n_z, n_x), uint8
        ``argmax`` over the classes (ties go to the lower label).
    probabilities : ndarray, shape (stop - start, n_z, n_x, C), uint8, or None
        ``round(255 p)`` where asked.
    """
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for _, _, p in predict_chunks(
        model, source, start, stop, patch_size=patch_size, batch_size=batch_size, tta=tta,
        chunk_slices=chunk_slices, max_chunk_mb=max_chunk_mb, mode=mode, memory_budget_mb=memory_budget_mb,
        margin_px=margin_px,
    ):
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
) -> None:
    """Predict slab ``slab`` of ``n_slabs`` of a volume file and write its labels (rule ``predict_slab``).

    The model is checked against ``classes`` before anything is predicted or written.

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

    Raises
    ------
    InputError
        Model with another number of classes, an empty slab, unreadable files.
    """
    from . import io
    from .io.models import load_model  # imports Keras
    from .slabs import slab_ranges
    from .unet import check_model_classes

    n_slices = io.volume_shape(volume)[0]
    start, stop = slab_ranges(n_slices, int(n_slabs))[int(slab)]
    if stop <= start:
        raise InputError("predict.slabs", f"{n_slabs} slabs for a volume of {n_slices} slices leaves slab {slab} empty", f"set predict.slabs <= {n_slices}")
    model = load_model(model_path, compile=False)
    check_model_classes(model, list(classes), str(model_path))
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
    labels, probs = predict_volume_slab(
        model, read, 0, stop - start, patch_size=tuple(int(v) for v in patch_size), batch_size=int(batch_size),
        tta=use_tta, return_probabilities=bool(probs_out), mode=str(mode), memory_budget_mb=float(memory_budget_mb),
    )
    vs = io.voxel_size_or(volume, voxel[0] if voxel else None, pixel_size_nm or None)
    io.write_labels(labels_out, labels, vs)
    if probs is not None:
        for c, path in enumerate(probs_out):
            io.write_volume(path, probs[..., c], vs)


# --------------------------------------------------------------------------- figure
def figure_positions(n_slices: int, count: int = 4) -> list[int]:
    """``count`` slice numbers spread evenly along a stack: centres of ``count`` equal parts."""
    if n_slices < 1:
        return []
    count = max(1, min(int(count), n_slices))
    return sorted({int(math.floor((i + 0.5) * n_slices / count)) for i in range(count)})


def prediction_figure(
    volume: Any,
    labels: Any,
    positions: Sequence[int],
    class_names: Sequence[str],
    *,
    colors: Sequence[str] | None = None,
    voxel_size_nm: float | None = None,
    title: str | None = None,
) -> Figure:
    """Reconstructed slices beside their predicted labels (the paper's Fig. 5 layout).

    Parameters
    ----------
    volume : array-like or mapping, indexed by slice number -> ndarray (n_z, n_x)
        Raw intensities; only ``volume[p]`` for ``p`` in ``positions`` is used (a dict of slices works).
    labels : array-like or mapping, indexed by slice number -> uint8 ndarray (n_z, n_x)
        Predicted labels ``0 … len(class_names) - 1``.
    positions : sequence of int
        Slice numbers (axis 0) to show, one row each.
    class_names : sequence of str
        Name of every label value (legend).
    colors : sequence of str, optional
        Colour of every class; default :data:`DEFAULT_CLASS_COLORS`.
    voxel_size_nm : float, optional
        Axes in nm instead of px.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    positions = [int(p) for p in positions]
    if not positions:
        raise InputError("prediction figure", "no slice positions to show", "give at least one position")
    n_classes = len(class_names)
    cols = list(colors) if colors is not None else list(DEFAULT_CLASS_COLORS)
    if len(cols) < n_classes:
        cols += [f"C{i}" for i in range(len(cols), n_classes)]
    cmap = ListedColormap(cols[:n_classes])
    first = np.asarray(volume[positions[0]])
    h, w = first.shape
    panel_w = 4.0
    panel_h = max(1.2, panel_w * h / w)
    fig = Figure(figsize=(2 * panel_w + 0.4, panel_h * len(positions) + 1.1), layout="constrained")
    axes = fig.subplots(len(positions), 2, squeeze=False)
    unit = " (nm)" if voxel_size_nm else " (px)"
    extent = (0.0, w * voxel_size_nm, h * voxel_size_nm, 0.0) if voxel_size_nm else None
    for row, p in enumerate(positions):
        img = np.asarray(volume[p], dtype=np.float32)
        lab = np.asarray(labels[p])
        lo, hi = np.percentile(img, [1.0, 99.5])
        ax_i, ax_l = axes[row]
        ax_i.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", extent=extent)
        ax_l.imshow(lab, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest", extent=extent)
        ax_i.set_ylabel(f"slice {p}\nz{unit}", fontsize=8)
        for ax in (ax_i, ax_l):
            ax.tick_params(labelsize=7)
        if row == 0:
            ax_i.set_title("reconstruction", fontsize=9)
            ax_l.set_title("prediction", fontsize=9)
        if row == len(positions) - 1:
            ax_i.set_xlabel(f"x{unit}", fontsize=8)
            ax_l.set_xlabel(f"x{unit}", fontsize=8)
    handles = [Patch(facecolor=cols[i], edgecolor="0.5", label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="outside lower center", ncols=n_classes, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
