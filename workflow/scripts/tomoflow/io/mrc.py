"""MRC reading helpers: permissive opening, FEI extended-header tilts, voxel size (Å in the header, nm here)
and the data block with FEI signed-int16 counts made physical."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: Size of one record in a legacy FEI extended header (no EXTTYP); the first float32 is alpha tilt.
FEI_RECORD_BYTES = 128


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
