"""Exports of an alignment: IMOD ``.xf`` transforms, the per-tilt table."""

from __future__ import annotations

import math
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import Alignment


def imod_xf(alignment: Alignment) -> npt.NDArray[np.float64]:
    """IMOD ``.xf`` transforms (raw image → aligned image), one row ``A11 A12 A21 A22 DX DY`` per tilt.

    IMOD maps raw coordinates ``X`` (relative to the raw image centre) to aligned coordinates
    ``X' = A X + D`` (relative to the aligned image centre); with our model ``A = R_φ⁻¹`` and
    ``D = −R_φ⁻¹ s_i − c e_x``.  Apply with ``newstack -xform aligned.xf`` (output size = ``output_shape``).

    Returns
    -------
    ndarray, shape (n_tilts, 6)
    """
    a = math.radians(alignment.tilt_axis_deg)
    c, s = math.cos(a), math.sin(a)
    t = alignment.aligned_frame_shifts()
    D = -t - np.array([alignment.center_offset_px, 0.0])
    n = t.shape[0]
    return np.column_stack([np.full(n, c), np.full(n, s), np.full(n, -s), np.full(n, c), D[:, 0], D[:, 1]])


def format_xf(xf: npt.ArrayLike) -> str:
    """Text of an IMOD ``.xf`` file (IMOD's fixed-width ``%12.7f ×4 %12.3f ×2`` layout)."""
    lines = ["".join(f"{v:12.7f}" for v in r[:4]) + "".join(f"{v:12.3f}" for v in r[4:]) for r in np.asarray(xf, dtype=np.float64)]
    return "\n".join(lines) + "\n"


def write_imod_xf(path: str | PathLike[str], alignment: Alignment) -> None:
    """Write the IMOD ``.xf`` file of ``alignment`` atomically (through :func:`tomoflow.io.atomic_path`)."""
    from .. import io

    with io.atomic_path(path) as tmp:
        tmp.write_text(format_xf(imod_xf(alignment)))


def alignment_table(alignment: Alignment) -> Any:
    """Per-tilt table (``alignment.tsv``): angle_deg, shift_x_px, shift_y_px (raw-frame ``s_i``), residual_px."""
    import pandas as pd

    per = np.asarray(alignment.residuals.get("per_tilt_px", np.full(alignment.angles_deg.size, np.nan)), dtype=np.float64)
    return pd.DataFrame(
        {
            "angle_deg": alignment.angles_deg,
            "shift_x_px": alignment.shifts_px[:, 0],
            "shift_y_px": alignment.shifts_px[:, 1],
            "residual_px": per,
        }
    )
