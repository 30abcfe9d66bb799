"""JSON and TSV tables, matplotlib figures and PNG images, all written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .common import PathLike, _require_file, atomic_path


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
