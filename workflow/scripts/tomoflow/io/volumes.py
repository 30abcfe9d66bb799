"""Tilt series, angle files, volumes and label stacks (MRC and TIFF), JSON/TSV tables and figures.

Every writer writes to a temporary file beside the target and renames it into place, so an
interrupted job never leaves a half-written output behind.  Every reader turns a missing, truncated
or corrupt file into one :class:`~tomoflow.errors.InputError` line naming the file, the problem and
the fix.

The format helpers live in :mod:`.mrc`, :mod:`.tiff`, :mod:`.angles` (tilt-angle files),
:mod:`.tables` (JSON/TSV/figures) and :mod:`.common` (atomic writing); every name they define is
re-exported here, so ``tomoflow.io.volumes`` keeps working for all of them.

Voxel sizes are in nm at this API; MRC headers store Å (×10), ImageJ TIFFs store ``unit='nm'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .angles import _resolve_angles, check_angles, read_angles, write_angles
from .common import PathLike, _require_file, atomic_path, check_finite
from .mrc import FEI_RECORD_BYTES, _fei_tilt_angles, _has_fei_header, _mrc_array, _mrc_voxel_nm, _open_mrc
from .probe import MRC_SUFFIXES, TIFF_SUFFIXES, stack_kind
from .tables import _NumpyJSON, read_json, read_tsv, save_figure, save_png, write_json, write_tsv
from .tiff import _read_tiff, _tiff, _tiff_voxel_nm

__all__ = [
    "FEI_RECORD_BYTES", "PathLike", "TiltSeries", "atomic_path", "check_angles", "check_finite", "preflight_tilt_series",
    "read_angles", "read_image", "read_image_stack", "read_json", "read_labels", "read_slab", "read_tilt_series", "read_tsv",
    "read_volume", "save_figure", "save_png", "volume_shape", "voxel_size_or", "write_angles", "write_json", "write_labels",
    "write_tsv", "write_volume",
    # private helpers kept importable from here for older imports
    "_NumpyJSON", "_fei_tilt_angles", "_has_fei_header", "_mrc_array", "_mrc_voxel_nm", "_open_mrc", "_read_tiff",
    "_require_file", "_resolve_angles", "_tiff", "_tiff_voxel_nm",
]


@dataclass
class TiltSeries:
    """A tilt series read from disk.

    Attributes
    ----------
    data : ndarray, shape (n_tilts, n_y, n_x), float32
        Images in physical counts (FEI signed-int16 offset removed).
    angles_deg : ndarray, shape (n_tilts,), float64
        Tilt angles, degrees.
    pixel_size_nm : float
        Image pixel size, nm.
    path : str
        The file read.
    angles_source : str
        Where the angles came from (``"file:<path>"``, ``"fei-header"``, ``"given"``).
    """

    data: npt.NDArray[np.float32]
    angles_deg: npt.NDArray[np.float64]
    pixel_size_nm: float
    path: str
    angles_source: str = ""

# --------------------------------------------------------------------------- public readers
def read_volume(path: PathLike) -> tuple[np.ndarray, float | None]:
    """Read a 3-D volume or label stack from MRC or TIFF.

    Returns
    -------
    data : ndarray, shape (n_y, n_z, n_x)
        Native dtype (FEI signed-int16 counts converted to float32 counts).
    voxel_size_nm : float or None
        From the header; None when the file is uncalibrated.
    """
    p = Path(path)
    if stack_kind(p, "volume") == "mrc":
        with _open_mrc(p) as mrc:
            data = np.array(_mrc_array(p, mrc))
            voxel = _mrc_voxel_nm(mrc)
    else:
        data, voxel = _read_tiff(p)
    if data.ndim != 3:
        raise InputError(p, f"expected a 3-D stack, got shape {data.shape}", "save the data as one 3-D stack (slices, rows, columns)")
    check_finite(p, data)
    return data, voxel


def read_slab(path: PathLike, start: int, stop: int, axis: int = 0) -> tuple[np.ndarray, float | None]:
    """Read index range ``[start, stop)`` along ``axis`` of an MRC/TIFF stack without loading the rest.

    Parameters
    ----------
    path : path-like
    start, stop : int
        Range along ``axis``.
    axis : {0, 1}
        0: slices of a volume (sections); 1: rows of every image of a tilt series (the sinograms of
        reconstruction slices ``start … stop-1``).  MRC files are memory-mapped; TIFF stacks are read
        page by page.

    Returns
    -------
    data : ndarray
        Shape (stop - start, n_z, n_x) for axis 0, (n_tilts, stop - start, n_x) for axis 1.
    voxel_size_nm : float or None
    """
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    p = Path(path)
    if stack_kind(p, "volume") == "mrc":
        with _open_mrc(p, mmap=True) as mrc:
            if axis == 0:
                data = np.array(_mrc_array(p, mrc, slice(start, stop)))
            else:
                data = np.array(_mrc_array(p, mrc, (slice(None), slice(start, stop))))
            voxel = _mrc_voxel_nm(mrc)
    elif axis == 0:
        data, voxel = _read_tiff(p, slice(start, stop))
    else:
        with _tiff(p) as tif:
            voxel = _tiff_voxel_nm(tif)
            data = np.stack([page.asarray()[start:stop] for page in tif.pages])
    if data.ndim != 3:
        raise InputError(p, f"expected a 3-D stack, got shape {data.shape}", "save the data as one 3-D stack")
    check_finite(p, data)
    return data, voxel


def volume_shape(path: PathLike) -> tuple[int, ...]:
    """Shape of an MRC/TIFF stack, read from its header only."""
    p = Path(path)
    if stack_kind(p, "volume") == "mrc":
        with _open_mrc(p, mmap=True) as mrc:
            return tuple(int(s) for s in (mrc.data.shape if mrc.data.ndim == 3 else (1,) + mrc.data.shape))
    with _tiff(p) as tif:
        return tuple(int(s) for s in tif.series[0].shape)


def read_labels(path: PathLike, n_classes: int) -> tuple[npt.NDArray[np.uint8], float | None]:
    """Read a label volume and check that every value is a class index ``0 … n_classes-1``.

    Returns
    -------
    labels : ndarray, shape (n_y, n_z, n_x), uint8
    voxel_size_nm : float or None
    """
    data, voxel = read_volume(path)
    if not (np.issubdtype(data.dtype, np.integer) or np.all(np.mod(data, 1) == 0)):
        raise InputError(path, f"labels must be integers, got dtype {data.dtype}", "save the label stack as 8-bit integers (0 = background/pores, 1 = support, 2 = particles)")
    lo, hi = int(data.min()), int(data.max())
    if lo < 0 or hi >= n_classes:
        bad = sorted(set(np.unique(data).tolist()) - set(range(n_classes)))[:5]
        raise InputError(
            path,
            f"label values {bad} outside the class list 0..{n_classes - 1}",
            "relabel (0 = background/pores, 1 = support, 2 = particles) or extend `classes` in the config",
        )
    return data.astype(np.uint8, copy=False), voxel


def _tilt_series_array(path: Path) -> tuple[np.ndarray, float | None, np.ndarray | None]:
    if stack_kind(path, "tilt series") == "mrc":
        with _open_mrc(path) as mrc:
            data = np.asarray(_mrc_array(path, mrc), dtype=np.float32)
            return data, _mrc_voxel_nm(mrc), _fei_tilt_angles(mrc)
    data, voxel = _read_tiff(path)
    return np.asarray(data, dtype=np.float32), voxel, None


def read_tilt_series(
    path: PathLike,
    angles: PathLike | Sequence[float] | np.ndarray | None = None,
    pixel_size_nm: float | None = None,
) -> TiltSeries:
    """Read a tilt series with its angles and pixel size.

    Parameters
    ----------
    path : path-like
        MRC (modes 0/1/2/6, FEI extended headers, permissive-only files) or TIFF stack,
        shape (n_tilts, n_y, n_x).
    angles : path-like or sequence of float, optional
        An IMOD ``.tlt``/``.rawtlt`` file or the angles (degrees).  Default: the FEI extended
        header's alpha tilts, else a ``.rawtlt``/``.tlt`` beside the stack with the same stem.
    pixel_size_nm : float, optional
        Used when the header is uncalibrated (MRC voxel size 0 or 1 Å; TIFF without unit).

    Returns
    -------
    TiltSeries

    Raises
    ------
    InputError
        Missing/truncated/corrupt file, not 3-D, NaN/Inf pixels, no angles, angle count ≠ images,
        angles outside ±90° or not monotonic, no pixel size.
    """
    p = _require_file(path, "tilt series")
    data, header_px, fei_angles = _tilt_series_array(p)
    if data.ndim != 3:
        raise InputError(p, f"expected a 3-D tilt series (tilts, rows, columns), got shape {data.shape}", "save all tilt images in one stack")
    check_finite(p, data)
    a, source = _resolve_angles(p, angles, fei_angles, data.shape[0])
    px = voxel_size_or(p, header_px, pixel_size_nm, "pixel size")
    return TiltSeries(data=data, angles_deg=a, pixel_size_nm=px, path=str(p), angles_source=source)


# --------------------------------------------------------------------------- writers
def write_volume(path: PathLike, data: npt.ArrayLike, voxel_size_nm: float | Sequence[float]) -> None:
    """Write a 3-D array as MRC (``.mrc`` etc.) or ImageJ TIFF (``.tif``) carrying the voxel size.

    Parameters
    ----------
    path : path-like
        Target; format from the suffix.
    data : array_like, shape (n_y, n_z, n_x)
        float32, uint8, int16 or uint16 (float64 is stored as float32).
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm (MRC header in Å; ImageJ ``spacing`` + resolution with ``unit='nm'``).
    """
    arr = np.asarray(data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim != 3:
        raise ValueError(f"write_volume expects a 3-D array, got shape {arr.shape}")
    vs = np.broadcast_to(np.asarray(voxel_size_nm, dtype=np.float64), (3,))  # (dy, dz, dx)
    suffix = Path(path).suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in MRC_SUFFIXES:
            import mrcfile

            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(arr))
                # mrcfile voxel_size is (x, y, z) in Å for the array's (columns, rows, sections).
                mrc.voxel_size = (vs[2] * 10.0, vs[1] * 10.0, vs[0] * 10.0)
        elif suffix in TIFF_SUFFIXES:
            import tifffile

            if arr.dtype not in (np.uint8, np.uint16, np.float32):
                arr = arr.astype(np.float32)
            tifffile.imwrite(
                tmp,
                np.ascontiguousarray(arr),
                imagej=True,
                resolution=(1.0 / vs[2], 1.0 / vs[1]),
                metadata={"spacing": float(vs[0]), "unit": "nm", "axes": "ZYX"},
            )
        else:
            raise ValueError(f"unknown volume suffix {suffix!r}: use .mrc or .tif")


def write_labels(path: PathLike, labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float]) -> None:
    """Write a uint8 label volume (MRC or ImageJ TIFF) with its voxel size in nm."""
    write_volume(path, np.asarray(labels).astype(np.uint8), voxel_size_nm)


def voxel_size_or(path: PathLike, voxel: float | None, fallback: float | None, what: str = "voxel size") -> float:
    """The calibrated header's voxel size (nm), else ``fallback``; InputError when neither is known."""
    px = voxel if voxel is not None else fallback
    if px is None or not (isinstance(px, (int, float)) and math.isfinite(px) and px > 0):
        raise InputError(path, f"no {what}: the header is uncalibrated and none was given", "set `pixel_size_nm` for this sample in the sample table")
    return float(px)

def preflight_tilt_series(
    path: PathLike,
    angles: PathLike | Sequence[float] | None = None,
    pixel_size_nm: float | None = None,
) -> tuple[int, ...]:
    """Cheap start-up check of a tilt series: readable header, complete data block, 3-D, angles.

    Reads headers and the angle file only (no pixel data beyond the first image), so the workflow
    can refuse a broken input before any job starts.

    Returns
    -------
    tuple of int
        Stack shape (n_tilts, n_y, n_x).

    Raises
    ------
    InputError
        As :func:`read_tilt_series`, except for NaN/Inf pixels (checked when the stack is read).
    """
    from .probe import probe_stack

    info = probe_stack(path, "tilt series")
    p = Path(path)
    if info.shape[0] == 1:
        raise InputError(p, f"one {info.shape[1]}×{info.shape[2]} image, not a tilt series",
                         "save all tilt images in one stack (one image per tilt angle)")
    if info.kind == "mrc":
        with _open_mrc(p, mmap=True) as mrc:
            _mrc_array(p, mrc, slice(0, 1))
    fei = None if info.fei_angles is None else np.asarray(info.fei_angles)
    _resolve_angles(p, angles, fei, info.shape[0])
    voxel_size_or(p, info.voxel_size_nm, pixel_size_nm, "pixel size")
    return info.shape


def read_image(path: PathLike) -> np.ndarray:
    """Read one 2-D TIFF image (an annotated slice from napari, Fiji or ilastik).

    Returns
    -------
    ndarray, shape (n_rows, n_cols)
        Native dtype.
    """
    p = Path(path)
    if stack_kind(p, "image") != "tiff":
        raise InputError(p, "an MRC file where one TIFF image per slice is expected", "save annotated slices as .tif/.tiff")
    arr, _ = _read_tiff(p)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(p, f"expected one 2-D image, got shape {arr.shape}", "save one slice per file, or give a TIFF stack instead of a folder")
    check_finite(p, arr)
    return arr


def read_image_stack(path: PathLike) -> tuple[np.ndarray, float | None]:
    """Read a TIFF/MRC stack, accepting a single 2-D TIFF as a stack of one.

    Returns
    -------
    data : ndarray, shape (n, n_rows, n_cols)
    voxel_size_nm : float or None
    """
    p = Path(path)
    if stack_kind(p, "image stack") == "tiff":
        arr, voxel = _read_tiff(p)
        if arr.ndim == 2:
            check_finite(p, arr)
            return arr[np.newaxis], voxel
    return read_volume(p)
