"""Pixel size in the model's world: resample slices to the model's grid and probabilities back.

A U-Net learns features of a given size in *pixels*.  When a sample's pixel size ``d`` (nm) differs from
the model's training pixel size ``m`` by more than ``predict.pixel_size_tolerance``
(:func:`tomoflow.models.pixel_scale`), each slice ``(H, W)`` is resampled to ``(round(H d/m),
round(W d/m))`` pixels - the same field of view in the model's pixel size - predicted there, and the
class *probabilities* are resampled back to ``(H, W)`` before the arg-max.  Resampling labels
(nearest neighbour) or arg-maxing before resampling would move class boundaries by up to half a model
pixel and drop thin structures; interpolating the probabilities linearly puts each boundary where the
interpolated probabilities cross.

Both directions use the same separable linear interpolation on pixel centres (:func:`resample_axis`):
output pixel ``i`` of ``n_out`` covers ``[i, i+1) · n_in / n_out`` of the input, so its centre maps to the
input coordinate ``(i + ½) n_in / n_out − ½``, clamped to ``[0, n_in − 1]`` (edge pixels repeat).  For
down-sampling by more than 2 this point-samples (no anti-alias filter): intensities of a reconstruction
are already band-limited by the missing wedge and MLEM's smoothness, and large factors are an unusual
use (a warning is logged beyond 2×).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .common import log

__all__ = ["resample_axis", "resample_slices", "resampled_shape"]


def resampled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(round(H * factor), round(W * factor))``, at least 1 px each."""
    return (max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor))))


def resample_axis(a: npt.ArrayLike, n_out: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` from ``n_in`` to ``n_out`` samples (pixel centres).

    Parameters
    ----------
    a : array_like
        Any shape; float result (float32 for float32/integer input, float64 for float64).
    n_out : int
        Output length along ``axis`` (≥ 1).
    axis : int

    Returns
    -------
    ndarray
        ``a`` with ``axis`` of length ``n_out``: sample ``i`` is ``a`` at input coordinate
        ``clip((i + ½) n_in / n_out − ½, 0, n_in − 1)``, linearly interpolated.
    """
    arr = np.asarray(a)
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    arr = arr.astype(dtype, copy=False)
    n_in = arr.shape[axis]
    if n_out == n_in:
        return arr
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (x - lo).astype(dtype)
    shape = [1] * arr.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(arr, lo, axis=axis) * (1 - w) + np.take(arr, hi, axis=axis) * w


def resample_slices(stack: npt.ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """Resample every slice of ``stack`` (axes 1 and 2) to ``shape`` by :func:`resample_axis`.

    Parameters
    ----------
    stack : array_like, shape (n, H, W) or (n, H, W, C)
        Images (raw intensities) or per-class probabilities.
    shape : (int, int)
        Output ``(h, w)`` px.

    Returns
    -------
    ndarray, shape (n, h, w) or (n, h, w, C), float32 (float64 stays float64)
    """
    a = np.asarray(stack)
    if a.ndim not in (3, 4):
        raise ValueError(f"expected (n, H, W) or (n, H, W, C), got shape {a.shape}")
    h, w = int(shape[0]), int(shape[1])
    if max(a.shape[1] / h, a.shape[2] / w) > 2.0:
        log.warning("down-sampling %dx%d slices to %dx%d (more than 2x) point-samples without anti-aliasing",
                    a.shape[1], a.shape[2], h, w)
    return resample_axis(resample_axis(a, h, 1), w, 2)
