"""The entry point :func:`reconstruct`: checks, then one backend (see :mod:`tomoflow.recon`)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Any

import astra
import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..projector import CPU_PROJECTORS
from ..slabs import batched_memory_mb, matrix_nnz_estimate
from ..validate import check_signal, check_tilt_series
from .settings import ProgressFn, ReconResult, ReconSettings

log = logging.getLogger("tomoflow.recon")


def default_memory_budget_mb() -> float:
    """Half the machine's physical memory, MB (the budget when the caller gives none)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2e6
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4000.0


def _cupy_device() -> bool:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def choose_method(s: ReconSettings, n_tilts: int, n_slices: int, n_det: int, thickness: int,
                  angles: np.ndarray) -> tuple[str, str]:
    """``('batched' | 'per_slice', reason)`` for these settings and this slab (ASTRA backend)."""
    from .matrix import has_matrix

    if s.method == "per_slice":
        return "per_slice", "recon.method is per_slice"
    if s.algorithm == "fbp":
        return "per_slice", "FBP is one back projection (no iterations to share a matrix over)"
    if not has_matrix(s.projector):
        return "per_slice", f"ASTRA exports no system matrix for the {s.projector!r} projector"
    nnz = matrix_nnz_estimate(thickness, n_det, angles, n_det, s.projector)
    need = batched_memory_mb(n_tilts, n_slices, n_det, thickness, nnz)
    budget = float(s.memory_budget_mb) if s.memory_budget_mb else default_memory_budget_mb()
    log.info("batched reconstruction needs about %.0f MB (system matrix ~%d non-zeros estimated, A and Aᵀ "
             "%.0f MB at the build peak); memory budget %.0f MB", need, nnz, 16 * nnz / 1e6, budget)
    if need > budget:
        if s.method == "batched":
            log.warning("recon.method batched: %.0f MB needed exceeds the budget of %.0f MB; building anyway",
                        need, budget)
            return "batched", "recon.method is batched"
        return "per_slice", (f"the system matrix and slab buffers (~{need:.0f} MB) would not fit the memory "
                             f"budget of {budget:.0f} MB")
    return "batched", "one system matrix for all slices of the slab"


def _run(data: np.ndarray, angles: np.ndarray, thickness: int, s: ReconSettings, n_sub: int,
         progress: ProgressFn | None, info: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Pick and run the backend; records ``device``/``method``/``projector`` in ``info``."""
    from . import astra_cpu, astra_cuda, batched, matrix, sensitivity, tomopy

    center, threads = float(s.center_offset_px), max(1, int(s.threads))
    if s.backend == "tomopy":
        info.update(device="cpu", method="tomopy")
        return tomopy.reconstruct_tomopy(data, angles, thickness, s.algorithm, int(s.iterations), n_sub, center,
                                         threads, progress)
    if s.projector == "cuda" and not astra.use_cuda():
        raise InputError("config recon.projector", "projector 'cuda' needs an ASTRA CUDA device and there is none here",
                         f"use one of {', '.join(CPU_PROJECTORS)}")
    want_gpu = s.device in ("auto", "gpu") or s.projector == "cuda"
    astra_gpu, cupy_gpu = want_gpu and bool(astra.use_cuda()), want_gpu and s.projector != "cuda" and _cupy_device()
    if s.device == "gpu" and not (astra_gpu or cupy_gpu):
        raise InputError("device", "a GPU was requested but neither ASTRA nor CuPy sees a CUDA device here",
                         "use device 'auto' or 'cpu'")
    n_tilts, n_slices, n_det = data.shape
    method, why = choose_method(s, n_tilts, n_slices, n_det, thickness, angles)
    if method == "batched" and (cupy_gpu or not astra_gpu):
        info.update(device="gpu" if cupy_gpu else "cpu", method="batched")
        log.info("method batched (%s, %s): %s", info["device"], "CuPy" if cupy_gpu else "SciPy threads", why)
        perm, offsets = sensitivity.subset_layout(angles, n_sub)
        m = matrix.system_matrix(angles[perm], offsets, n_det, thickness, n_det, center, s.projector,
                                 s.matrix_cache_dir)
        info["matrix_build_s"], info["matrix_nnz"] = m.build_seconds, m.nnz
        sens = sensitivity.sensitivities(thickness, n_det, angles[perm], offsets, n_det, center, s.projector)
        return batched.reconstruct_batched(data, perm, m, sens, thickness, s.algorithm, int(s.iterations), threads,
                                           progress, gpu=cupy_gpu)
    info.update(device="gpu" if astra_gpu else "cpu", method="per_slice")
    log.info("method per_slice (ASTRA %s): %s", "CUDA" if astra_gpu else "CPU threads",
             why if method == "per_slice" else "ASTRA CUDA device in use")
    if astra_gpu:
        info["projector"] = "cuda"
        if s.algorithm == "mlem":
            return astra_cuda.mlem_cuda(data, angles, thickness, int(s.iterations), center, progress)
    return astra_cpu.reconstruct_per_slice(data, angles, thickness, s.algorithm, int(s.iterations), n_sub,
                                           s.projector, center, threads, astra_gpu, progress)


def reconstruct(tilt_series: npt.ArrayLike, angles_deg: npt.ArrayLike, settings: ReconSettings | None = None, *,
                progress: ProgressFn | None = None, **overrides: Any) -> ReconResult:
    """Reconstruct a volume from an aligned tilt series.

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)
        Aligned images, background ≈ 0 (counts).  Negative values are clipped to 0 for MLEM/OSEM.
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees (any order).
    settings : ReconSettings, optional
        Default ``ReconSettings()`` (MLEM, 50 iterations, ``line``, method ``auto``).
    progress : callable(iteration, misfit), optional
        Called after each iteration (1-based) with the relative misfit of that iteration.
    **overrides
        :class:`ReconSettings` fields (``thickness_px=..., algorithm=..., threads=...``) replacing
        those of ``settings``; the keyword style of earlier versions.

    Returns
    -------
    ReconResult
        ``info['method']`` says which backend ran (``batched``, ``per_slice``, ``tomopy``).

    Raises
    ------
    InputError
        Bad data/angles (:func:`tomoflow.validate.check_tilt_series`, :func:`~tomoflow.validate.check_signal`)
        or settings.
    """
    t0 = time.perf_counter()
    s = replace(settings or ReconSettings(), **overrides)
    data, angles = check_tilt_series(tilt_series, angles_deg, where=s.where, min_tilts=s.min_tilts, max_abs_deg=None)
    n_tilts, n_slices, n_det = data.shape
    thickness = int(s.thickness_px) if s.thickness_px else n_det
    s.check(n_tilts, thickness)
    if s.signal_check:
        check_signal(data, angles, where=s.where)
    if s.algorithm == "fbp":
        s = replace(s, iterations=0)
    n_sub = int(s.subsets) if s.algorithm == "osem" else 1
    clipped = 0.0
    if s.algorithm in ("mlem", "osem"):
        neg = data < 0
        clipped = float(neg.mean())
        if clipped > 0:
            log.info("clipping %.2f %% negative pixels to 0 for %s (min %.4g)", 100 * clipped, s.algorithm,
                     float(data.min()))
            data = np.where(neg, np.float32(0), data)
    info: dict[str, Any] = {"algorithm": s.algorithm, "backend": s.backend, "iterations": int(s.iterations),
                            "subsets": n_sub, "projector": s.projector, "center_offset_px": float(s.center_offset_px),
                            "thickness_px": thickness, "clipped_fraction": clipped, "threads": int(s.threads)}
    vol, rss, dss = _run(data, angles, thickness, s, n_sub, progress, info)
    misfit = np.sqrt(rss[1:] / dss) if dss > 0 and rss.size else np.zeros(0)
    info["seconds"] = time.perf_counter() - t0
    log.info("%s (%s %s, %s) of %d slices of %dx%d px from %d tilts: %.1f s%s", s.algorithm, s.backend,
             info["method"], info["device"], n_slices, thickness, n_det, n_tilts, info["seconds"],
             f", final misfit {misfit[-1]:.5f}" if misfit.size else "")
    return ReconResult(volume=vol, misfit=misfit.astype(np.float64), residual_ss=rss, data_ss=dss, info=info)
