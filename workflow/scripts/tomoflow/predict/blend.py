"""Blended patches: the spline window, the 50 %-overlap patch grid and blended chunks of slices."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .common import PaddedSlice, SliceSource, _patch_pair, _read, log
from .model import _predict_patches, as_predictor


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
class PatchGrid(PaddedSlice):
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
    def n_patches(self) -> int:
        """Patches per slice."""
        return len(self.origins_y) * len(self.origins_x)


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

