"""TomoPy backend: ``tomopy.recon(..., algorithm='mlem' | 'osem' | 'sirt' | 'gridrec')`` (conda-forge only).

One iteration per call (``init_recon`` = previous result, same start as ASTRA) with
``center = n_det/2 + center_offset_px``, ``num_gridx = thickness_px`` (rows, z) and
``num_gridy = n_det`` (columns, x); the per-iteration misfit is measured with ASTRA's ``line`` forward
projector.  TomoPy's ray tracer equals ASTRA's ``line`` projector to float rounding, except that
TomoPy nudges a centre lying within 0.01 px of a pixel boundary by 0.01 px.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..projector import forward_project
from .sensitivity import sensitivities, subset_order
from .settings import ProgressFn, report


def _import_tomopy() -> Any:
    try:
        import tomopy
    except ImportError:
        raise InputError("config recon.backend", "TomoPy is not importable in this environment",
                         "use the conda env envs/recon.yaml (conda-forge tomopy) or set recon.backend: astra") from None
    return tomopy


def reconstruct_tomopy(data: np.ndarray, angles: np.ndarray, thickness: int, algorithm: str, iterations: int,
                       n_sub: int, center: float, threads: int,
                       progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    """TomoPy reconstruction; arguments and returns as :func:`tomoflow.recon.astra_cpu.reconstruct_per_slice`."""
    tomopy = _import_tomopy()
    n_tilts, n_slices, n_det = data.shape
    theta = np.deg2rad(angles).astype(np.float32)
    ctr = np.float32(n_det / 2.0 + center)
    dss = float(np.einsum("ijk,ijk->", data, data, dtype=np.float64))
    if algorithm == "fbp":
        if thickness > n_det or (n_det - thickness) % 2:
            raise InputError("thickness_px", "TomoPy gridrec needs thickness ≤ n_det with the same parity",
                             "use recon.backend: astra for FBP, or change thickness_px")
        rec = tomopy.recon(data, theta, center=ctr, algorithm="gridrec", filter_name="ramlak", ncore=threads)
        lo = (n_det - thickness) // 2
        return np.ascontiguousarray(rec[:, lo:lo + thickness], np.float32), np.zeros(0), dss
    if algorithm in ("mlem", "osem"):
        sens = sensitivities(thickness, n_det, angles, [0, n_tilts], n_det, center, "line")
        rec = np.empty((n_slices, thickness, n_det), np.float32)
        rec[:] = sens.em_start(np.ascontiguousarray(data.transpose(1, 0, 2)))[:, None, None]
    else:
        rec = np.zeros((n_slices, thickness, n_det), np.float32)
    kw: dict[str, Any] = {"algorithm": algorithm, "num_iter": 1, "ncore": threads,
                          "num_gridx": thickness, "num_gridy": n_det}
    if algorithm == "osem":
        kw["num_block"] = n_sub
        kw["ind_block"] = np.concatenate(subset_order(angles, n_sub)).astype(np.int32)
    rss = np.zeros(iterations + 1)

    def resid(v: np.ndarray) -> float:
        p = forward_project(v, angles, n_det=n_det, center_offset_px=center, projector="line", threads=threads)
        return float(np.sum((p - data) ** 2, dtype=np.float64))

    rss[0] = resid(rec)
    for k in range(iterations):
        rec = tomopy.recon(data, theta, center=ctr, init_recon=rec, **kw)
        rss[k + 1] = resid(rec)
        report(k + 1, iterations, rss[k + 1], dss, progress)
    return np.ascontiguousarray(rec, np.float32), rss, dss
