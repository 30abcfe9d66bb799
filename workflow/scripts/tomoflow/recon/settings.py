"""Settings, result type and progress reporting shared by every reconstruction backend."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..projector import CPU_PROJECTORS
from ..validate import MIN_TILTS

log = logging.getLogger("tomoflow.recon")

ALGORITHMS = ("mlem", "osem", "sirt", "fbp")
BACKENDS = ("astra", "tomopy")
DEVICES = ("auto", "cpu", "gpu")
METHODS = ("auto", "batched", "per_slice")

ProgressFn = Callable[[int, float], Any]


@dataclass(frozen=True)
class ReconSettings:
    """Everything that decides a reconstruction except the data (one object instead of loose keywords).

    Attributes
    ----------
    thickness_px : int or None
        Reconstructed z extent, pixels, centred on the rotation axis; None = ``n_det``.
    algorithm : {'mlem', 'osem', 'sirt', 'fbp'}
    iterations : int
        MLEM/SIRT iterations or OSEM passes (ignored by FBP).
    subsets : int
        OSEM angle subsets (ignored otherwise).
    projector : {'line', 'linear', 'strip', 'distance_driven', 'cuda'}
        ASTRA projector; ``cuda`` demands the GPU.  TomoPy uses its own ``line``-equivalent tracer.
    backend : {'astra', 'tomopy'}
    method : {'auto', 'batched', 'per_slice'}
        ASTRA backend only.  ``batched``: one sparse system matrix for the whole slab
        (:mod:`tomoflow.recon.batched`); ``per_slice``: ASTRA projections slice by slice
        (:mod:`tomoflow.recon.astra_cpu`); ``auto``: batched where it applies (MLEM/OSEM/SIRT, a
        projector with a matrix, the matrix fits ``memory_budget_mb``), per-slice otherwise.
    center_offset_px : float
        The rotation axis projects to detector coordinate ``n_det / 2 + center_offset_px``.
    threads : int
        Threads over slices / column blocks, or TomoPy ``ncore``.
    device : {'auto', 'cpu', 'gpu'}
        ``auto`` uses a CUDA device when present (CuPy for the batched path, else ASTRA CUDA).
    memory_budget_mb : float or None
        Memory the job may use (the rule's ``resources.mem_mb``); None = half the machine's RAM.
    matrix_cache_dir : str or None
        Folder for system matrices kept between processes (slab jobs); None = in-process cache only.
    signal_check : bool
        Run :func:`tomoflow.validate.check_signal` on the input.
    min_tilts : int
        Fewest tilts accepted.
    where : str
        Name of the input in error messages.
    """

    thickness_px: int | None = None
    algorithm: str = "mlem"
    iterations: int = 50
    subsets: int = 8
    projector: str = "line"
    backend: str = "astra"
    method: str = "auto"
    center_offset_px: float = 0.0
    threads: int = 1
    device: str = "auto"
    memory_budget_mb: float | None = None
    matrix_cache_dir: str | None = None
    signal_check: bool = True
    min_tilts: int = MIN_TILTS
    where: str = "tilt series"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names (the keywords :func:`tomoflow.recon.reconstruct` accepts)."""
        return tuple(f.name for f in fields(cls))

    def check(self, n_tilts: int, thickness: int) -> None:
        """Raise :class:`InputError` for a setting outside its range (``n_tilts`` bounds ``subsets``)."""
        def bad(key: str, problem: str, fix: str) -> None:
            raise InputError(f"config recon.{key}" if key != "device" else "device", problem, fix)

        for key, allowed in (("algorithm", ALGORITHMS), ("backend", BACKENDS), ("device", DEVICES),
                             ("method", METHODS), ("projector", CPU_PROJECTORS + ("cuda",))):
            if getattr(self, key) not in allowed:
                shown = CPU_PROJECTORS if key == "projector" else allowed
                bad(key, f"unknown {key} {getattr(self, key)!r}", f"use one of {', '.join(shown)}")
        it, sub = self.iterations, self.subsets
        if self.algorithm != "fbp" and (int(it) != it or it < 1):
            bad("iterations", f"iterations must be a positive integer, got {it!r}", "set e.g. 50 for MLEM, 10 for OSEM")
        if self.algorithm == "osem" and (int(sub) != sub or not 1 <= sub <= n_tilts):
            bad("subsets", f"subsets must be 1..{n_tilts} (number of tilts), got {sub!r}", "use e.g. 8")
        if thickness < 1:
            raise InputError("thickness_px", f"thickness must be ≥ 1 px, got {thickness}",
                             "set thickness_px in the sample table (empty = detector width)")


@dataclass
class ReconResult:
    """A reconstruction and its convergence record.

    Attributes
    ----------
    volume : ndarray, shape (n_slices, thickness_px, n_det), float32
        Reconstructed density, counts per pixel of path length (see :mod:`tomoflow.recon`).
    misfit : ndarray, shape (n_iterations,), float64
        Relative data misfit ``‖Ax − y‖ / ‖y‖`` after each iteration (MLEM/OSEM/SIRT); empty for FBP.
    residual_ss : ndarray, shape (n_iterations + 1,), float64
        ``‖Ax − y‖²`` summed over the slices, for the start estimate (index 0) and after each
        iteration; lets slabs be combined into one misfit: ``sqrt(Σ residual_ss / Σ data_ss)``.
    data_ss : float
        ``‖y‖²`` of the data as fitted.
    info : dict
        Algorithm, backend, method, device, projector, subsets, clipped fraction, seconds.
    """

    volume: npt.NDArray[np.float32]
    misfit: npt.NDArray[np.float64]
    residual_ss: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    data_ss: float = 0.0
    info: dict = field(default_factory=dict)


def report(k: int, n: int, rss: float, dss: float, progress: ProgressFn | None) -> None:
    """Log iteration ``k`` of ``n`` with its relative misfit ``sqrt(rss / dss)`` and call ``progress``."""
    m = math.sqrt(rss / dss) if dss > 0 else 0.0
    log.info("iteration %d/%d: relative misfit %.6f", k, n, m)
    if progress is not None:
        progress(k, m)
