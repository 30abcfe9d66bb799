"""The model as a batch predictor: model calls of a fixed batch size and test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .common import _patch_pair


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

