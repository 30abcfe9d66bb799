"""TIFF reading helpers: ImageJ voxel size (nm), opening with one-line errors, whole or partial stacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


def _tiff_voxel_nm(tif: Any) -> float | None:
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower().replace("\\u00b5", "µ")
    page = tif.pages[0]
    scale = {"nm": 1.0, "nanometer": 1.0, "um": 1000.0, "µm": 1000.0, "micron": 1000.0, "a": 0.1, "å": 0.1, "angstrom": 0.1}.get(unit)
    tag = page.tags.get("XResolution")
    if scale is None or tag is None:
        return None
    num, den = tag.value
    if num == 0:
        return None
    px = den / num * scale
    return px if px > 0 and px != scale else None


@contextmanager
def _tiff(path: Path) -> Iterator[Any]:
    """Open a TIFF; any tifffile error becomes one InputError line."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            yield tif
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})", "check that the file is a complete TIFF stack") from None


def _read_tiff(path: Path, key: slice | None = None) -> tuple[np.ndarray, float | None]:
    with _tiff(path) as tif:
        voxel = _tiff_voxel_nm(tif)
        n_pages = len(tif.pages)
        spp = int(tif.pages[0].samplesperpixel)
        if spp > 1:
            raise InputError(path, f"RGB/multi-channel TIFF ({spp} samples per pixel)",
                             "save the images as single-channel greyscale (e.g. Fiji: Image > Type > 8-bit or 32-bit)")
        if key is not None and n_pages > 1 and tif.series[0].shape[0] == n_pages:
            idx = range(n_pages)[key]
            arr = tif.asarray(key=list(idx)) if len(idx) else np.zeros((0,) + tif.pages[0].shape, tif.pages[0].dtype)
            if arr.ndim == 2:
                arr = arr[np.newaxis]
            return arr, voxel
        arr = tif.asarray()
        if arr.ndim == 2 and tif.imagej_metadata is not None:
            arr = arr[np.newaxis]  # a one-slice ImageJ stack
    if key is not None:
        arr = arr[key]
    return arr, voxel
