"""Shared pieces of :mod:`tomoflow.io`: the path type, atomic writing and the finite-pixel check.

Every writer writes to a temporary file beside the target and renames it into place (:func:`atomic_path`),
so an interrupted job never leaves a half-written output behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError
from .probe import require_file

PathLike = str | os.PathLike[str]


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
