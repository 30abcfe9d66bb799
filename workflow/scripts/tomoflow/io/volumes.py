"""Tilt series, angle files, volumes and label stacks (MRC and TIFF), JSON/TSV tables and figures.

Every writer writes to a temporary file beside the target and renames it into place, so an
interrupted job never leaves a half-written output behind.  Every reader turns a missing, truncated
or corrupt file into one :class:`~tomoflow.errors.InputError` line naming the file, the problem and
the fix.

Voxel sizes are in nm at this API; MRC headers store Å (×10), ImageJ TIFFs store ``unit='nm'``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import validate
from ..errors import InputError
from .probe import MRC_SUFFIXES, TIFF_SUFFIXES, require_file, stack_kind

PathLike = str | os.PathLike[str]

#: Size of one record in a legacy FEI extended header (no EXTTYP); the first float32 is alpha tilt.
FEI_RECORD_BYTES = 128


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


# --------------------------------------------------------------------------- atomic writing
@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success, delete it on error."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the user's normal mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- checks
def _require_file(path: PathLike, what: str) -> Path:
    return require_file(path, what)


def check_finite(path: PathLike, data: np.ndarray) -> None:
    """Raise :class:`InputError` if ``data`` holds NaN or Inf."""
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad:
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                path,
                f"{n_bad} NaN/Inf pixel(s), first at index {first}",
                "replace them (e.g. by the local background) before running tomoflow",
            )


def check_angles(where: PathLike, angles_deg: npt.ArrayLike, n_images: int | None = None) -> np.ndarray:
    """Validate tilt angles read from a file: :func:`tomoflow.validate.check_angles` with a strictly
    monotonic order required (the order of the stack on disk).

    Returns
    -------
    ndarray, shape (n_tilts,), float64
    """
    return validate.check_angles(where, angles_deg, n_images, monotonic=True)


# --------------------------------------------------------------------------- angles
def read_angles(path: PathLike) -> npt.NDArray[np.float64]:
    """Read an IMOD ``.tlt``/``.rawtlt`` file: one angle in degrees per line (blank lines ignored).

    Returns
    -------
    ndarray, shape (n_tilts,), float64
        Angles in degrees, unchecked for count (see :func:`check_angles`).
    """
    p = _require_file(path, "tilt-angle file")
    values = []
    for lineno, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        try:
            values.append(float(s.split()[0]))
        except ValueError:
            raise InputError(
                p, f"line {lineno} is not a number: {s[:40]!r}", "write one tilt angle in degrees per line (IMOD .tlt format)"
            ) from None
    return check_angles(p, values)


def write_angles(path: PathLike, angles_deg: npt.ArrayLike) -> None:
    """Write angles (degrees) one per line, IMOD ``.tlt``/``.rawtlt`` style."""
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{v:9.3f}\n" for v in a))


# --------------------------------------------------------------------------- MRC
def _open_mrc(path: Path, mmap: bool = False):
    import mrcfile

    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        return opener(path, mode="r")
    except ValueError as strict_error:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mrc = opener(path, mode="r", permissive=True)
            except Exception as exc:
                raise InputError(path, f"not a readable MRC file ({exc})", "check that the file is a complete MRC/ST stack") from None
        msgs = " ".join(str(w.message) for w in caught)
        if mrc.data is None or "could only read" in msgs or "Expected" in msgs and "bytes" in msgs:
            mrc.close()
            raise InputError(
                path,
                f"truncated or corrupt MRC data block ({msgs or strict_error})",
                "re-copy the file completely from the microscope PC / archive",
            ) from None
        return mrc
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read MRC file ({exc})", "check that the file is a complete MRC/ST stack") from None


def _fei_tilt_angles(mrc: Any) -> np.ndarray | None:
    """Alpha tilts (degrees) from an FEI extended header (FEI1/FEI2 or legacy 128-byte records)."""
    ext = mrc.extended_header
    if ext is None or len(ext) == 0:
        return None
    n = int(mrc.header.nz)
    names = getattr(ext.dtype, "names", None)
    if names and "Alpha tilt" in names:
        return np.asarray(ext["Alpha tilt"], dtype=np.float64)[:n]
    exttyp = bytes(mrc.header.exttyp).strip(b"\x00 ")
    raw = np.frombuffer(ext.tobytes(), dtype=np.uint8)
    if exttyp in (b"", b"FEI1", b"FEI2") and raw.size % FEI_RECORD_BYTES == 0 and raw.size // FEI_RECORD_BYTES >= n:
        rec = raw[: n * FEI_RECORD_BYTES].view("<f4").reshape(n, FEI_RECORD_BYTES // 4)
        alpha = rec[:, 0].astype(np.float64)
        if np.all(np.isfinite(alpha)) and np.all(np.abs(alpha) <= 90) and np.ptp(alpha) > 0:
            return alpha
    return None


def _has_fei_header(mrc: Any) -> bool:
    return _fei_tilt_angles(mrc) is not None


def _mrc_voxel_nm(mrc: Any) -> float | None:
    """Voxel size in nm from the MRC header, or None when uncalibrated (0 or 1 Å placeholder)."""
    vs = mrc.voxel_size
    x = float(vs.x)
    if not math.isfinite(x) or x <= 0 or x == 1.0:
        return None
    return x / 10.0


def _mrc_array(path: Path, mrc: Any, index: Any = slice(None)) -> np.ndarray:
    """The (3-D) data block, or ``data[index]`` of it, with FEI signed-int16 counts made physical.

    Only the indexed part is read (memory-mapped files stay mapped) and converted.
    """
    data = mrc.data
    if data is None:
        raise InputError(path, "MRC file has no data block", "re-copy the file completely")
    mode = int(mrc.header.mode)
    if mode not in (0, 1, 2, 6, 12):
        raise InputError(path, f"unsupported MRC mode {mode} (complex or packed data)", "convert the stack to float32 (mode 2), e.g. with IMOD newstack -mode 2")
    if data.ndim == 2:
        data = data[np.newaxis]
    arr = np.asarray(data[index])
    if mode == 1 and _has_fei_header(mrc) and int(np.min(data[: min(len(data), 4)])) < 0:
        # FEI software writes unsigned counts as signed int16 with a -32768 offset.
        return arr.astype(np.float32) + np.float32(32768.0)
    return arr


# --------------------------------------------------------------------------- TIFF
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


def _resolve_angles(
    stack: Path, angles: PathLike | Sequence[float] | np.ndarray | None, fei_angles: np.ndarray | None, n: int
) -> tuple[np.ndarray, str]:
    """Checked tilt angles of a stack of ``n`` images, and where they came from.

    Order: ``angles`` (a file or values), the FEI header, a ``.rawtlt``/``.tlt`` beside the stack.
    """
    if angles is not None and not (isinstance(angles, str) and angles == ""):
        if isinstance(angles, (str, os.PathLike)):
            return check_angles(angles, read_angles(angles), n), f"file:{angles}"
        return check_angles(stack, angles, n), "given"
    if fei_angles is not None:
        return check_angles(stack, fei_angles, n), "fei-header"
    for suffix in (".rawtlt", ".tlt"):
        cand = stack.with_suffix(suffix)
        if cand.exists():
            return check_angles(cand, read_angles(cand), n), f"file:{cand}"
    raise InputError(stack, "no tilt angles: none given, none in the header, no .rawtlt/.tlt beside it", "set the `angles` column of the sample table to the .rawtlt/.tlt file")



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


# --------------------------------------------------------------------------- tables, JSON, figures
class _NumpyJSON(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        return super().default(o)


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NumPy scalars/arrays converted; NaN/Infinity kept as tokens)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, cls=_NumpyJSON, allow_nan=True) + "\n")


def read_json(path: PathLike) -> Any:
    """Read a JSON file (InputError when missing or malformed)."""
    p = _require_file(path, "JSON file")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(p, f"malformed JSON ({exc})", "regenerate the file (delete it and rerun the rule that makes it)") from None


def write_tsv(path: PathLike, df: Any) -> None:
    """Write a pandas DataFrame (or list of dicts) as a tab-separated table without index."""
    import pandas as pd

    frame = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def read_tsv(path: PathLike) -> Any:
    """Read a tab-separated table into a pandas DataFrame."""
    import pandas as pd

    p = _require_file(path, "table")
    try:
        return pd.read_csv(p, sep="\t")
    except Exception as exc:
        raise InputError(p, f"not a readable TSV table ({exc})", "regenerate the file") from None


def save_figure(fig: Any, path: PathLike, dpi: int = 120) -> None:
    """Save a matplotlib ``Figure`` as PNG (atomically)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png", bbox_inches="tight")


def save_png(path: PathLike, rgb: npt.ArrayLike) -> None:
    """Save an RGB(A) uint8 image array, shape (H, W, 3|4), as PNG."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


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
