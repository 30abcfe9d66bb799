"""Tilt angles: IMOD ``.tlt``/``.rawtlt`` files, their checks and where a stack's angles come from."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .. import validate
from ..errors import InputError
from .common import PathLike, _require_file, atomic_path


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
