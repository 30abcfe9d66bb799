"""Helpers shared by the prediction modules: patch sizes, slice reading, padded-slice geometry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError

#: One logger for the package, named ``tomoflow.predict`` as before the module became a package.
log = logging.getLogger(__package__)

#: A volume, or a reader ``(start, stop) -> ndarray (stop - start, H, W)`` returning slices of one.
SliceSource = np.ndarray | Callable[[int, int], np.ndarray]


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



def _read(source: SliceSource, start: int, stop: int) -> np.ndarray:
    block = source[start:stop] if isinstance(source, np.ndarray) else source(start, stop)
    block = np.asarray(block)
    if block.ndim != 3 or block.shape[0] != stop - start:
        raise InputError("volume", f"slices [{start}, {stop}) came back with shape {block.shape}", "pass a 3-D stack (slices, rows, columns)")
    if not np.all(np.isfinite(block)):
        raise InputError("volume", f"slices [{start}, {stop}) contain NaN or Inf", "check the reconstruction (re-run it or mask bad values)")
    return block.astype(np.float32, copy=False)



class PaddedSlice:
    """Geometry shared by slice layouts that reflect-pad a slice of ``shape`` by ``pad`` (sizes in px).

    Subclasses (:class:`~tomoflow.predict.PatchGrid`, :class:`~tomoflow.predict.WholeSliceLayout`) are
    frozen dataclasses with the fields ``shape`` ``(H, W)`` and ``pad`` ``((top, bottom), (left, right))``.
    """

    shape: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Shape of the padded slice ``(H + top + bottom, W + left + right)``."""
        return (self.shape[0] + sum(self.pad[0]), self.shape[1] + sum(self.pad[1]))

    def crop(self) -> tuple[slice, slice]:
        """Index of the original slice inside the padded one."""
        (top, _), (left, _) = self.pad
        return slice(top, top + self.shape[0]), slice(left, left + self.shape[1])
