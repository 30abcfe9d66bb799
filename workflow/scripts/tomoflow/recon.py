"""Tomographic reconstruction: MLEM, OSEM, SIRT and FBP on ASTRA projectors, or TomoPy's MLEM.

Geometry is the one of :mod:`tomoflow.projector` (see :mod:`tomoflow` for axes): sinogram
``tilt_series[:, y, :]`` (n_tilts, n_det) reconstructs slice ``volume[y]`` (thickness_px, n_det); at 0°
tilt the projection of a slice is its sum over z; the rotation axis sits at the centre of the
reconstructed slice and projects to detector coordinate ``n_det / 2 + center_offset_px`` (pixel-edge
coordinates), so a stack with a known centre offset is reconstructed without resampling.

Algorithms (``A`` = system matrix of one slice, ``y`` = its sinogram, products and quotients
element-wise):

* ``mlem`` - ``x ← x · Aᵀ(y / Ax) / Aᵀ1`` (Shepp & Vardi 1982).  ``y`` is clipped at 0 first
  (HAADF data are counts; negative background noise has no meaning to a Poisson model), ``y / Ax``
  is taken as 0 where ``Ax`` vanishes and voxels that no ray sees (``Aᵀ1 = 0``) stay 0.  The start
  is a per-slice constant ``Σy / Σ Aᵀ1`` (so the first forward projection carries the measured
  total), which keeps every slice independent of how the slices are split into slabs.
* ``osem`` - the same update on ``subsets`` interleaved angle subsets in turn (Hudson & Larkin
  1994); one *iteration* is one pass over all subsets.  ``subsets=1`` is exactly MLEM.  A voxel that
  one subset does not see (possible with a centre offset) keeps its value in that sub-iteration.
* ``sirt`` - ``x ← max(0, x + C Aᵀ R (y − Ax))`` with ``R = 1/A1``, ``C = 1/Aᵀ1`` (ASTRA's SIRT with
  ``MinConstraint=0``), starting from 0.
* ``fbp`` - Ram-Lak filtered back-projection with angle weights ``Δθ`` (radians) for uneven or
  limited tilt ranges; no iterations, empty misfit.

Units: the volume is in "counts per pixel of path length": the forward projection of the volume
(voxel = 1 px) reproduces the measured counts, so ``volume.sum(axis=1)`` of a reconstruction from a
0° image is that image.  Multiply by ``1 / pixel_size_nm`` for counts per nm.

Backends.  ``astra`` on the CPU runs ASTRA's 2-D projectors (``line``, ``linear``, ``strip``,
``distance_driven``) slice by slice in Python threads (ASTRA releases the GIL), with projector, data
and FP/BP algorithm objects created once per thread on buffers that are reused for every slice and
iteration.  Where ``astra.use_cuda()`` is true (and ``device`` is ``"auto"`` or ``"gpu"``) MLEM runs
ASTRA's ``EM_CUDA`` and the other algorithms ASTRA's ``FP_CUDA``/``BP_CUDA`` (projector ``cuda``); the
GPU path follows ASTRA's documented API but has not been run on a GPU by the authors.
``tomopy`` calls ``tomopy.recon(..., algorithm='mlem' | 'osem' | 'sirt')`` one iteration at a time
(``init_recon`` = previous result, same start as ASTRA) with ``center = n_det/2 + center_offset_px``,
``num_gridx = thickness_px`` (rows, z) and ``num_gridy = n_det`` (columns, x); the per-iteration misfit
is then measured with ASTRA's ``line`` forward projector.  TomoPy's ray tracer equals ASTRA's
``line`` projector to float rounding, except that TomoPy nudges a centre lying within 0.01 px of a
pixel boundary by 0.01 px.

Misfit.  ``ReconResult.misfit[k]`` is ``‖A x_(k+1) − y‖₂ / ‖y‖₂`` over all slices for the estimate
after ``k + 1`` iterations (passes), with ``y`` the data as fitted (clipped at 0 for MLEM/OSEM).
It is exact: the forward projection that starts the next pass provides it (one extra forward
projection at the end), so it costs nothing for MLEM/SIRT and one full forward projection per pass
for OSEM.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import astra
import numpy as np
import numpy.typing as npt

from .errors import InputError
from .projector import CPU_PROJECTORS, forward_project, projection_geometry
from .validate import MIN_TILTS, check_signal, check_tilt_series, neighbour_correlation

log = logging.getLogger(__name__)

ALGORITHMS = ("mlem", "osem", "sirt", "fbp")
BACKENDS = ("astra", "tomopy")
DEVICES = ("auto", "cpu", "gpu")

ProgressFn = Callable[[int, float], Any]


@dataclass
class ReconResult:
    """A reconstruction and its convergence record.

    Attributes
    ----------
    volume : ndarray, shape (n_slices, thickness_px, n_det), float32
        Reconstructed density, counts per pixel of path length (see module docstring).
    misfit : ndarray, shape (n_iterations,), float64
        Relative data misfit ``‖Ax − y‖ / ‖y‖`` after each iteration (MLEM/OSEM/SIRT); empty for FBP.
    residual_ss : ndarray, shape (n_iterations + 1,), float64
        ``‖Ax − y‖²`` summed over the slices, for the start estimate (index 0) and after each
        iteration; lets slabs be combined into one misfit: ``sqrt(Σ residual_ss / Σ data_ss)``.
    data_ss : float
        ``‖y‖²`` of the data as fitted.
    info : dict
        Algorithm, backend, device, projector, subsets, clipped fraction, seconds.
    """

    volume: npt.NDArray[np.float32]
    misfit: npt.NDArray[np.float64]
    residual_ss: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    data_ss: float = 0.0
    info: dict = field(default_factory=dict)


def _check_options(algorithm: str, iterations: int, subsets: int, projector: str, backend: str, device: str,
                   n_tilts: int, thickness: int) -> None:
    if algorithm not in ALGORITHMS:
        raise InputError("config recon.algorithm", f"unknown algorithm {algorithm!r}", f"use one of {', '.join(ALGORITHMS)}")
    if backend not in BACKENDS:
        raise InputError("config recon.backend", f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise InputError("device", f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")
    if projector not in CPU_PROJECTORS + ("cuda",):
        raise InputError("config recon.projector", f"unknown projector {projector!r}", f"use one of {', '.join(CPU_PROJECTORS)}")
    if algorithm != "fbp" and (int(iterations) != iterations or iterations < 1):
        raise InputError("config recon.iterations", f"iterations must be a positive integer, got {iterations!r}", "set e.g. 50 for MLEM, 10 for OSEM")
    if algorithm == "osem" and (int(subsets) != subsets or not 1 <= subsets <= n_tilts):
        raise InputError("config recon.subsets", f"subsets must be 1..{n_tilts} (number of tilts), got {subsets!r}", "use e.g. 8")
    if thickness < 1:
        raise InputError("thickness_px", f"thickness must be ≥ 1 px, got {thickness}", "set thickness_px in config/samples.tsv (empty = detector width)")


# --------------------------------------------------------------------------- helpers
def subset_order(angles_deg: npt.ArrayLike, subsets: int) -> list[npt.NDArray[np.intp]]:
    """Interleaved angle subsets for OSEM.

    Parameters
    ----------
    angles_deg : array_like, shape (n_tilts,)
    subsets : int

    Returns
    -------
    list of ndarray
        ``subsets`` index arrays into the tilt axis; subset ``s`` holds every ``subsets``-th tilt
        in angle order starting at rank ``b(s)``, where the starting ranks ``b`` are visited in
        bit-reversed order so that consecutive subsets are far apart in angle.
    """
    order = np.argsort(np.asarray(angles_deg, dtype=np.float64), kind="stable")
    bits = max(1, (subsets - 1).bit_length())
    starts = sorted(range(subsets), key=lambda s: int(format(s, f"0{bits}b")[::-1], 2))
    return [order[s::subsets] for s in starts]


def angle_weights(angles_deg: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Angular integration weights Δθ (radians) for filtered back-projection.

    Half the distance to each neighbour in angle; the end tilts get the spacing of their single
    neighbour.  For an even 180° set this gives ``π / n_tilts`` everywhere.

    Parameters
    ----------
    angles_deg : array_like, shape (n_tilts,)

    Returns
    -------
    ndarray, shape (n_tilts,), float64
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    order = np.argsort(a)
    s = a[order]
    d = np.diff(s)
    w = np.empty_like(s)
    if s.size == 1:
        w[:] = math.pi
    else:
        w[1:-1] = 0.5 * (d[:-1] + d[1:])
        w[0], w[-1] = d[0], d[-1]
    out = np.empty_like(w)
    out[order] = w
    return out


def ramp_filter(sinogram: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Ram-Lak filter along the last axis (spatial-domain discretisation, Kak & Slaney eq. 61).

    Parameters
    ----------
    sinogram : ndarray, shape (..., n_det)

    Returns
    -------
    ndarray, same shape, float32
        Filtered projections; zero padding to ≥ 2·n_det avoids wrap-around.
    """
    n = sinogram.shape[-1]
    size = int(2 ** math.ceil(math.log2(max(64, 2 * n))))
    k = np.concatenate([np.arange(0, size // 2 + 1), np.arange(-size // 2 + 1, 0)])
    h = np.zeros(size)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    hf = np.fft.rfft(h)
    f = np.fft.irfft(np.fft.rfft(sinogram, size, axis=-1) * hf, size, axis=-1)[..., :n]
    return f.astype(np.float32)


# --------------------------------------------------------------------------- ASTRA slice workers
class _SliceWorker:
    """ASTRA objects of one thread: projectors, linked buffers and FP/BP algorithms, reused for all slices.

    Sinogram rows are held in *subset order* (the subsets' tilts one block after another) so that
    subset ``s`` is the contiguous block ``rows[offsets[s]:offsets[s+1]]``.
    """

    def __init__(self, n_z: int, n_x: int, angles_sub: npt.NDArray[np.float64], offsets: Sequence[int],
                 n_det: int, center: float, projector: str, gpu: bool) -> None:
        self.vol_geom = astra.create_vol_geom(n_z, n_x)
        self.x = np.zeros((n_z, n_x), np.float32)
        self.bp = np.zeros((n_z, n_x), np.float32)
        self.offsets = list(offsets)
        self.n_sub = len(self.offsets) - 1
        n_tilts = int(self.offsets[-1])
        self.pf = np.zeros((n_tilts, n_det), np.float32)
        self.ratio = np.zeros((n_tilts, n_det), np.float32)
        self._data = [astra.data2d.link("-vol", self.vol_geom, self.x), astra.data2d.link("-vol", self.vol_geom, self.bp)]
        vid, bid = self._data
        self._proj: list[int] = []
        self._alg: list[int] = []
        fp_name, bp_name = ("FP_CUDA", "BP_CUDA") if gpu else ("FP", "BP")
        kind = "cuda" if gpu else projector

        def make(geom: dict, sino: np.ndarray) -> tuple[int, int]:
            sid = astra.data2d.link("-sino", geom, sino)
            self._data.append(sid)
            pid = astra.create_projector(kind, geom, self.vol_geom)
            self._proj.append(pid)
            ids = []
            for name, vol in ((fp_name, vid), (bp_name, bid)):
                cfg = astra.astra_dict(name)
                cfg["ProjectorId"], cfg["ProjectionDataId"] = pid, sid
                cfg["VolumeDataId" if name.startswith("FP") else "ReconstructionDataId"] = vol
                ids.append(astra.algorithm.create(cfg))
            self._alg.extend(ids)
            return ids[0], ids[1]

        full_geom = projection_geometry(angles_sub, n_det, center)
        # Full FP writes pf; full BP reads ratio (a second link on a second buffer, same geometry).
        self.fp_full, _ = make(full_geom, self.pf)
        _, self.bp_full = make(full_geom, self.ratio)
        # Subset FP/BP work on views of `ratio`: FP writes the subset's forward projection there, the
        # ratio is formed in place and BP reads it back.
        self.fp_sub: list[int] = []
        self.bp_sub: list[int] = []
        if self.n_sub > 1:
            for s in range(self.n_sub):
                lo, hi = self.offsets[s], self.offsets[s + 1]
                f, b = make(projection_geometry(angles_sub[lo:hi], n_det, center), self.ratio[lo:hi])
                self.fp_sub.append(f)
                self.bp_sub.append(b)

    def close(self) -> None:
        astra.algorithm.delete(self._alg)
        astra.projector.delete(self._proj)
        astra.data2d.delete(self._data)

    # -- one pass of one slice; returns ‖Ax − y‖² of the estimate on entry
    def em_pass(self, vol_y: np.ndarray, y: np.ndarray, inv_norms: list[np.ndarray], keep: list[np.ndarray | None],
                thr: float) -> float:
        x, pf, ratio = self.x, self.pf, self.ratio
        np.copyto(x, vol_y)
        astra.algorithm.run(self.fp_full)
        d = pf - y
        rss = float(np.dot(d.ravel(), d.ravel()))
        for s in range(self.n_sub):
            lo, hi = self.offsets[s], self.offsets[s + 1]
            r = ratio[lo:hi]
            if s == 0:
                np.maximum(pf[lo:hi], thr, out=r)
            else:
                astra.algorithm.run(self.fp_sub[s])
                np.maximum(r, thr, out=r)
            np.divide(y[lo:hi], r, out=r)
            astra.algorithm.run(self.bp_full if self.n_sub == 1 else self.bp_sub[s])
            self.bp *= inv_norms[s]
            if keep[s] is not None:
                self.bp += keep[s]
            x *= self.bp
        np.copyto(vol_y, x)
        return rss

    def sirt_pass(self, vol_y: np.ndarray, y: np.ndarray, inv_rows: np.ndarray, inv_cols: np.ndarray) -> float:
        x, pf, ratio = self.x, self.pf, self.ratio
        np.copyto(x, vol_y)
        astra.algorithm.run(self.fp_full)
        np.subtract(y, pf, out=ratio)
        rss = float(np.dot(ratio.ravel(), ratio.ravel()))
        ratio *= inv_rows
        astra.algorithm.run(self.bp_full)
        self.bp *= inv_cols
        x += self.bp
        np.maximum(x, 0.0, out=x)
        np.copyto(vol_y, x)
        return rss

    def residual(self, vol_y: np.ndarray, y: np.ndarray) -> float:
        np.copyto(self.x, vol_y)
        astra.algorithm.run(self.fp_full)
        d = self.pf - y
        return float(np.dot(d.ravel(), d.ravel()))

    def backproject(self, sino: np.ndarray, out: np.ndarray) -> None:
        np.copyto(self.ratio, sino)
        astra.algorithm.run(self.bp_full)
        np.copyto(out, self.bp)


def _sensitivities(n_z: int, n_x: int, angles_sub: np.ndarray, offsets: Sequence[int], n_det: int, center: float,
                   projector: str, gpu: bool) -> tuple[list[np.ndarray], list[np.ndarray | None], np.ndarray, np.ndarray]:
    """Per-subset ``1/Aₛᵀ1`` (0 where unseen) and keep-masks, full ``1/A1`` (rows) and full ``1/Aᵀ1`` (columns)."""
    kind = "cuda" if gpu else projector
    vg = astra.create_vol_geom(n_z, n_x)

    def bp_ones(angles: np.ndarray) -> np.ndarray:
        pg = projection_geometry(angles, n_det, center)
        pid = astra.create_projector(kind, pg, vg)
        try:
            bid, b = astra.create_backprojection(np.ones((angles.size, n_det), np.float32), pid)
            sid, p = astra.create_sino(np.ones((n_z, n_x), np.float32), pid)
            astra.data2d.delete([bid, sid])
        finally:
            astra.projector.delete(pid)
        return b, p

    def inv(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        return np.where(a > 1e-6 * max(a.max(), 1e-30), 1.0 / np.where(a > 0, a, 1.0), 0.0).astype(np.float32)

    n_sub = len(offsets) - 1
    full_bp, full_fp = bp_ones(angles_sub)
    inv_full = inv(full_bp)
    inv_norms = [inv_full] if n_sub == 1 else [
        inv(bp_ones(angles_sub[offsets[s]:offsets[s + 1]])[0]) for s in range(n_sub)]
    # OSEM: a voxel that subset s does not see (but the whole set does) keeps its value in that sub-iteration;
    # keep[s] is added to the update factor there (the factor is 0 there otherwise).
    keep = [((inv_s == 0) & (inv_full > 0)).astype(np.float32) for inv_s in inv_norms]
    keep = [k if k.any() else None for k in keep]
    return inv_norms, keep, inv(full_fp), inv_full


def _use_gpu(device: str) -> bool:
    has = bool(astra.use_cuda())
    if device == "gpu" and not has:
        raise InputError("device", "a GPU was requested but ASTRA has no CUDA device here", "use device 'auto' or 'cpu'")
    return has and device in ("auto", "gpu")


# --------------------------------------------------------------------------- main entry
def reconstruct(
    tilt_series: npt.ArrayLike,
    angles_deg: npt.ArrayLike,
    *,
    thickness_px: int | None = None,
    algorithm: str = "mlem",
    iterations: int = 50,
    subsets: int = 8,
    projector: str = "line",
    backend: str = "astra",
    center_offset_px: float = 0.0,
    threads: int = 1,
    progress: ProgressFn | None = None,
    device: str = "auto",
    signal_check: bool = True,
    min_tilts: int = MIN_TILTS,
    where: str = "tilt series",
) -> ReconResult:
    """Reconstruct a volume from an aligned tilt series.

    Parameters
    ----------
    tilt_series : array_like, shape (n_tilts, n_slices, n_det)
        Aligned images, background ≈ 0 (counts).  Negative values are clipped to 0 for MLEM/OSEM.
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees (any order).
    thickness_px : int, optional
        Reconstructed z extent, pixels, centred on the rotation axis; default ``n_det``.
    algorithm : {'mlem', 'osem', 'sirt', 'fbp'}
    iterations : int
        MLEM/SIRT iterations or OSEM passes (ignored by FBP).
    subsets : int
        OSEM angle subsets (ignored otherwise).
    projector : {'line', 'linear', 'strip', 'distance_driven', 'cuda'}
        ASTRA CPU projector; ``cuda`` demands the GPU (which is used with ``device='auto'`` whenever
        present, whatever the projector); TomoPy uses its own, ``line``-equivalent, ray tracer.
    backend : {'astra', 'tomopy'}
    center_offset_px : float
        The rotation axis projects to detector coordinate ``n_det / 2 + center_offset_px``.
    threads : int
        Threads over slices (ASTRA CPU) or TomoPy ``ncore``.
    progress : callable(iteration, misfit), optional
        Called after each iteration (1-based) with the relative misfit of that iteration.
    device : {'auto', 'cpu', 'gpu'}
        ASTRA device; ``auto`` uses CUDA when ``astra.use_cuda()``.
    signal_check : bool
        Run :func:`check_signal` (turn off for slabs that may legitimately be empty; the slab
        rule checks a subsample of the whole stack instead).
    min_tilts : int
        Fewest tilts accepted.
    where : str
        Name of the input in error messages.

    Returns
    -------
    ReconResult

    Raises
    ------
    InputError
        Bad data/angles (see :func:`check_tilt_series`, :func:`check_signal`) or settings.
    """
    t0 = time.perf_counter()
    data, angles = check_tilt_series(tilt_series, angles_deg, where=where, min_tilts=min_tilts, max_abs_deg=None)
    n_tilts, n_slices, n_det = data.shape
    thickness = int(thickness_px) if thickness_px else n_det
    _check_options(algorithm, iterations, subsets, projector, backend, device, n_tilts, thickness)
    if signal_check:
        check_signal(data, angles, where=where)
    iterations = 0 if algorithm == "fbp" else int(iterations)
    n_sub = int(subsets) if algorithm == "osem" else 1

    clipped = 0.0
    if algorithm in ("mlem", "osem"):
        neg = data < 0
        clipped = float(neg.mean())
        if clipped > 0:
            log.info("clipping %.2f %% negative pixels to 0 for %s (min %.4g)", 100 * clipped, algorithm, float(data.min()))
            data = np.where(neg, np.float32(0), data)

    info: dict[str, Any] = {"algorithm": algorithm, "backend": backend, "iterations": iterations, "subsets": n_sub,
                            "projector": projector, "center_offset_px": float(center_offset_px),
                            "thickness_px": thickness, "clipped_fraction": clipped, "threads": int(threads)}
    if backend == "tomopy":
        vol, rss, dss = _reconstruct_tomopy(data, angles, thickness, algorithm, iterations, n_sub,
                                            float(center_offset_px), int(threads), progress)
        info["device"] = "cpu"
    else:
        if projector == "cuda" and not astra.use_cuda():
            raise InputError("config recon.projector", "projector 'cuda' needs an ASTRA CUDA device and there is none here",
                             f"use one of {', '.join(CPU_PROJECTORS)}")
        gpu = _use_gpu("gpu" if projector == "cuda" else device)
        info["device"] = "gpu" if gpu else "cpu"
        if gpu:
            info["projector"] = "cuda"
            log.info("ASTRA CUDA device in use (projector 'cuda'; GPU path not verified by the authors)")
        if gpu and algorithm == "mlem":
            vol, rss, dss = _mlem_cuda(data, angles, thickness, iterations, float(center_offset_px), progress)
        else:
            vol, rss, dss = _reconstruct_astra(data, angles, thickness, algorithm, iterations, n_sub, projector,
                                               float(center_offset_px), max(1, int(threads)), gpu, progress)
    misfit = np.sqrt(rss[1:] / dss) if dss > 0 and rss.size else np.zeros(0)
    info["seconds"] = time.perf_counter() - t0
    log.info("%s (%s, %s) of %d slices of %dx%d px from %d tilts: %.1f s%s", algorithm, backend, info["device"],
             n_slices, thickness, n_det, n_tilts, info["seconds"],
             f", final misfit {misfit[-1]:.5f}" if misfit.size else "")
    return ReconResult(volume=vol, misfit=misfit.astype(np.float64), residual_ss=rss, data_ss=dss, info=info)


def _report(k: int, n: int, rss: float, dss: float, progress: ProgressFn | None) -> None:
    m = math.sqrt(rss / dss) if dss > 0 else 0.0
    log.info("iteration %d/%d: relative misfit %.6f", k, n, m)
    if progress is not None:
        progress(k, m)


def _reconstruct_astra(data: np.ndarray, angles: np.ndarray, thickness: int, algorithm: str, iterations: int,
                       n_sub: int, projector: str, center: float, threads: int, gpu: bool,
                       progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    n_tilts, n_slices, n_det = data.shape
    groups = subset_order(angles, n_sub) if n_sub > 1 else [np.arange(n_tilts)]
    perm = np.concatenate(groups)
    offsets = np.concatenate([[0], np.cumsum([g.size for g in groups])]).tolist()
    angles_sub = angles[perm]
    # Sinograms of all slices, rows in subset order: (n_slices, n_tilts, n_det), contiguous per slice.
    sino = np.ascontiguousarray(data[perm].transpose(1, 0, 2))
    vol = np.zeros((n_slices, thickness, n_det), np.float32)
    threads = 1 if gpu else min(threads, max(1, n_slices))
    inv_norms, keep, inv_rows, inv_cols = _sensitivities(thickness, n_det, angles_sub, offsets, n_det, center, projector, gpu)
    dss = float(np.einsum("ijk,ijk->", sino, sino, dtype=np.float64))
    rss = np.zeros((n_slices, iterations + 1))
    workers = [_SliceWorker(thickness, n_det, angles_sub, offsets, n_det, center, projector, gpu) for _ in range(threads)]
    chunks = [range(t, n_slices, threads) for t in range(threads)]
    try:
        with ThreadPoolExecutor(threads) as pool:
            def each(fn: Callable[[_SliceWorker, range], None]) -> None:
                list(pool.map(fn, workers, chunks))

            if algorithm == "fbp":
                w = angle_weights(angles_sub).astype(np.float32)[:, None]

                def fbp(wk: _SliceWorker, rng: range) -> None:
                    for y in rng:
                        wk.backproject(ramp_filter(sino[y]) * w, vol[y])

                each(fbp)
                return vol, np.zeros(0), dss

            if algorithm in ("mlem", "osem"):
                total = sino.sum(axis=(1, 2), dtype=np.float64)
                sens = float(np.sum(1.0 / inv_cols[inv_cols > 0], dtype=np.float64))
                vol[:] = (total / sens).astype(np.float32)[:, None, None] if sens > 0 else 0.0
                thr = float(max(sino.max(), 1e-30)) * 1e-9

                def step(wk: _SliceWorker, rng: range, k: int) -> None:
                    for y in rng:
                        rss[y, k] = wk.em_pass(vol[y], sino[y], inv_norms, keep, thr)
            else:
                def step(wk: _SliceWorker, rng: range, k: int) -> None:
                    for y in rng:
                        rss[y, k] = wk.sirt_pass(vol[y], sino[y], inv_rows, inv_cols)

            for k in range(iterations):
                list(pool.map(step, workers, chunks, [k] * threads))
                if k > 0:
                    _report(k, iterations, float(rss[:, k].sum()), dss, progress)

            def final(wk: _SliceWorker, rng: range) -> None:
                for y in rng:
                    rss[y, iterations] = wk.residual(vol[y], sino[y])

            each(final)
            _report(iterations, iterations, float(rss[:, iterations].sum()), dss, progress)
    finally:
        for wk in workers:
            wk.close()
    return vol, rss.sum(axis=0), dss


def _mlem_cuda(data: np.ndarray, angles: np.ndarray, thickness: int, iterations: int, center: float,
               progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    """MLEM with ASTRA's ``EM_CUDA``, one iteration per ``run`` call (continues from the volume)."""
    n_tilts, n_slices, n_det = data.shape
    sino = np.ascontiguousarray(data.transpose(1, 0, 2))
    vol = np.zeros((n_slices, thickness, n_det), np.float32)
    vg = astra.create_vol_geom(thickness, n_det)
    pg = projection_geometry(angles, n_det, center)
    pid = astra.create_projector("cuda", pg, vg)
    bid, ones_bp = astra.create_backprojection(np.ones((n_tilts, n_det), np.float32), pid)
    astra.data2d.delete(bid)
    astra.projector.delete(pid)
    sens = float(ones_bp.sum(dtype=np.float64))
    dss = float(np.einsum("ijk,ijk->", sino, sino, dtype=np.float64))
    rss = np.zeros((n_slices, iterations + 1))
    pf = np.zeros((n_tilts, n_det), np.float32)
    for y in range(n_slices):
        vol[y] = sino[y].sum(dtype=np.float64) / sens if sens > 0 else 0.0
        vid = astra.data2d.link("-vol", vg, vol[y])
        sid = astra.data2d.link("-sino", pg, sino[y])
        fid = astra.data2d.link("-sino", pg, pf)
        cfg = astra.astra_dict("EM_CUDA")
        cfg["ReconstructionDataId"], cfg["ProjectionDataId"] = vid, sid
        em = astra.algorithm.create(cfg)
        cfg = astra.astra_dict("FP_CUDA")
        cfg["VolumeDataId"], cfg["ProjectionDataId"] = vid, fid
        fp = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(fp)
            rss[y, 0] = float(np.sum((pf - sino[y]) ** 2, dtype=np.float64))
            for k in range(iterations):
                astra.algorithm.run(em, 1)
                astra.algorithm.run(fp)
                rss[y, k + 1] = float(np.sum((pf - sino[y]) ** 2, dtype=np.float64))
        finally:
            astra.algorithm.delete([em, fp])
            astra.data2d.delete([vid, sid, fid])
        if (y + 1) % max(1, n_slices // 10) == 0:
            log.info("EM_CUDA: %d/%d slices", y + 1, n_slices)
    total = rss.sum(axis=0)
    for k in range(1, iterations + 1):
        _report(k, iterations, float(total[k]), dss, progress)
    return vol, total, dss


def _reconstruct_tomopy(data: np.ndarray, angles: np.ndarray, thickness: int, algorithm: str, iterations: int,
                        n_sub: int, center: float, threads: int,
                        progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    try:
        import tomopy
    except ImportError:
        raise InputError("config recon.backend", "TomoPy is not importable in this environment",
                         "use the conda env envs/recon.yaml (conda-forge tomopy) or set recon.backend: astra") from None
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
    grid = {"num_gridx": thickness, "num_gridy": n_det}
    if algorithm in ("mlem", "osem"):
        vg = astra.create_vol_geom(thickness, n_det)
        pid = astra.create_projector("line", projection_geometry(angles, n_det, center), vg)
        bid, ones_bp = astra.create_backprojection(np.ones((n_tilts, n_det), np.float32), pid)
        astra.data2d.delete(bid)
        astra.projector.delete(pid)
        sens = float(ones_bp.sum(dtype=np.float64))
        rec = np.empty((n_slices, thickness, n_det), np.float32)
        rec[:] = (data.sum(axis=(0, 2), dtype=np.float64) / sens).astype(np.float32)[:, None, None]
    else:
        rec = np.zeros((n_slices, thickness, n_det), np.float32)
    kw: dict[str, Any] = {"algorithm": algorithm, "num_iter": 1, "ncore": threads, **grid}
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
        _report(k + 1, iterations, rss[k + 1], dss, progress)
    return np.ascontiguousarray(rec, np.float32), rss, dss


# --------------------------------------------------------------------------- slab entry
def reconstruct_slab(
    read_rows: Callable[[int, int], npt.ArrayLike],
    n_slices: int,
    slab: int,
    n_slabs: int,
    angles_deg: npt.ArrayLike,
    **kwargs: Any,
) -> tuple[tuple[int, int], ReconResult]:
    """Reconstruct one slab of slices (the scatter step).

    Parameters
    ----------
    read_rows : callable(start, stop) -> ndarray, shape (n_tilts, stop - start, n_det)
        Reads slices ``[start, stop)`` of the tilt series (rows along the tilt axis); supplied by
        the rule script (file I/O stays in :mod:`tomoflow.io`).
    n_slices : int
        Slices of the whole tilt series (axis 1).
    slab, n_slabs : int
        This slab's index and the number of slabs (:func:`tomoflow.slabs.slab_ranges`).
    angles_deg : array_like, shape (n_tilts,)
    **kwargs
        Passed to :func:`reconstruct` (``signal_check`` defaults to False here: a slab of vacuum
        is legitimate; check the whole stack with :func:`check_signal`).

    Returns
    -------
    (start, stop), ReconResult
        The slice range and its reconstruction, shape (stop - start, thickness_px, n_det).  Empty
        slabs (more slabs than slices) give a volume with 0 slices.
    """
    from .slabs import slab_ranges

    start, stop = slab_ranges(int(n_slices), int(n_slabs))[int(slab)]
    kwargs.setdefault("signal_check", False)
    log.info("slab %d/%d: slices [%d, %d)", slab, n_slabs, start, stop)
    if stop <= start:
        angles = np.asarray(angles_deg, dtype=np.float64)
        probe = np.asarray(read_rows(0, min(1, n_slices)))
        n_det = probe.shape[2]
        thick = int(kwargs.get("thickness_px") or n_det)
        n_it = 0 if kwargs.get("algorithm", "mlem") == "fbp" else int(kwargs.get("iterations", 50))
        check_tilt_series(probe, angles, where=kwargs.get("where", "tilt series"),
                          min_tilts=kwargs.get("min_tilts", MIN_TILTS), max_abs_deg=None)
        return (start, stop), ReconResult(np.zeros((0, thick, n_det), np.float32), np.zeros(0),
                                          np.zeros(n_it + 1 if n_it else 0), 0.0, {"empty": True})
    return (start, stop), reconstruct(read_rows(start, stop), angles_deg, **kwargs)


def combine_misfit(residual_ss: Sequence[npt.ArrayLike], data_ss: Sequence[float]) -> npt.NDArray[np.float64]:
    """Misfit of the whole volume from per-slab residuals (the gather step).

    Parameters
    ----------
    residual_ss : sequence of array_like, each shape (n_iterations + 1,)
        ``ReconResult.residual_ss`` of each slab (empty slabs may pass an empty array).
    data_ss : sequence of float

    Returns
    -------
    ndarray, shape (n_iterations,)
        ``sqrt(Σ residual_ss[k] / Σ data_ss)`` for iterations 1..n.
    """
    arrs = [np.asarray(r, np.float64) for r in residual_ss if np.asarray(r).size]
    total = float(np.sum(data_ss))
    if not arrs or total <= 0:
        return np.zeros(0)
    return np.sqrt(np.sum(arrs, axis=0)[1:] / total)


def misfit_table(result: ReconResult, slab: int | str, start: int, stop: int) -> Any:
    """Per-iteration misfit of one slab as a table (written as ``recon/slab_{i}_misfit.tsv``).

    Parameters
    ----------
    result : ReconResult
    slab : int or str
        Slab index (``"all"`` for a whole volume).
    start, stop : int
        The slab's slice range.

    Returns
    -------
    pandas.DataFrame
        Columns ``slab, start, stop, iteration`` (0 = start estimate), ``misfit`` (relative),
        ``residual_ss``, ``data_ss``; no rows for FBP.
    """
    import pandas as pd

    rss = np.asarray(result.residual_ss, np.float64)
    dss = float(result.data_ss)
    rel = np.sqrt(rss / dss) if dss > 0 else np.zeros_like(rss)
    return pd.DataFrame({"slab": [slab] * rss.size, "start": start, "stop": stop, "iteration": np.arange(rss.size),
                         "misfit": rel, "residual_ss": rss, "data_ss": dss})


def gather_misfit(tables: Sequence[Any]) -> Any:
    """Concatenate per-slab misfit tables and append the whole volume's rows (``slab = "all"``).

    Parameters
    ----------
    tables : sequence of pandas.DataFrame
        Outputs of :func:`misfit_table`.

    Returns
    -------
    pandas.DataFrame
        Same columns; the ``all`` rows hold ``sqrt(Σ residual_ss / Σ data_ss)`` per iteration.
    """
    import pandas as pd

    parts = [t for t in tables if len(t)]
    if not parts:
        return pd.DataFrame(columns=["slab", "start", "stop", "iteration", "misfit", "residual_ss", "data_ss"])
    df = pd.concat(parts, ignore_index=True)
    df["slab"] = df["slab"].astype(str)
    dss = float(df.groupby("slab")["data_ss"].first().sum())
    agg = df.groupby("iteration", sort=True)["residual_ss"].sum()
    whole = pd.DataFrame({"slab": "all", "start": int(df["start"].min()), "stop": int(df["stop"].max()),
                          "iteration": agg.index.to_numpy(), "residual_ss": agg.to_numpy(), "data_ss": dss})
    whole["misfit"] = np.sqrt(whole["residual_ss"] / dss) if dss > 0 else 0.0
    return pd.concat([df, whole[df.columns]], ignore_index=True)


# --------------------------------------------------------------------------- figures
def orthoslices_figure(volume: npt.NDArray[np.floating], voxel_size_nm: float, *, position: Sequence[int] | None = None,
                       title: str = "", scale_bar_nm: float | None = None) -> "Figure":  # noqa: F821
    """Three orthogonal slices through a volume with nm scale bars (like Fig. 2 of the paper).

    Parameters
    ----------
    volume : ndarray, shape (n_slices, n_z, n_x)
        Axes (y along the tilt axis, z along the beam, x).
    voxel_size_nm : float
        Cubic voxel edge, nm.
    position : (y, z, x), optional
        Voxel the three planes pass through; default the centre.
    title : str
    scale_bar_nm : float, optional
        Bar length; default a round number near 1/4 of the x extent.

    Returns
    -------
    matplotlib.figure.Figure
        Panels: x-z plane (slice ``volume[y]``), x-y plane (``volume[:, z]``, the view along the beam),
        y-z plane (``volume[:, :, x]``); grey scale clipped to the 0.5-99.5 percentiles.
    """
    from matplotlib.figure import Figure

    v = np.asarray(volume, dtype=np.float32)
    ny, nz, nx = v.shape
    py, pz, px = position if position is not None else (ny // 2, nz // 2, nx // 2)
    planes = [("x–z (slice y = %d)" % py, v[py], "x", "z"),
              ("x–y (z = %d, beam view)" % pz, v[:, pz, :], "x", "y"),
              ("z–y (x = %d)" % px, v[:, :, px], "z", "y")]
    finite = v[np.isfinite(v)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    if scale_bar_nm is None:
        target = nx * voxel_size_nm / 4
        mag = 10 ** math.floor(math.log10(target)) if target > 0 else 1.0
        scale_bar_nm = max(m * mag for m in (1, 2, 5) if m * mag <= target) if target >= mag else mag
    widths = [nx, nx, nz]
    inch_per_px = 12.0 / sum(widths)
    fig = Figure(figsize=(12.5, max(2.5, max(nz, ny) * inch_per_px + 1.3)), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=widths)
    for ax, (name, img, xl, yl) in zip(axes, planes):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", origin="upper")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"{xl} (px)", fontsize=8)
        ax.set_ylabel(f"{yl} (px)", fontsize=8)
        ax.tick_params(labelsize=7)
        bar_px = scale_bar_nm / voxel_size_nm
        h, w = img.shape
        x0, y0 = 0.05 * w, 0.92 * h
        ax.plot([x0, x0 + bar_px], [y0, y0], color="yellow", lw=3, solid_capstyle="butt")
        ax.text(x0 + bar_px / 2, y0 - 0.03 * h, f"{scale_bar_nm:g} nm", color="yellow", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def misfit_figure(table: Any, *, title: str = "") -> "Figure":  # noqa: F821
    """Relative data misfit per iteration, one line per slab and the whole volume.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``slab`` (int, or ``"all"`` for the whole volume), ``iteration``, ``misfit``
        (:func:`gather_misfit`); iteration 0 (the start estimate) is not drawn.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    table = table[table["iteration"] > 0] if "iteration" in table else table
    for slab, grp in table.groupby(table["slab"].astype(str), sort=False):
        grp = grp.sort_values("iteration")
        style = {"color": "k", "lw": 2.0} if slab == "all" else {"lw": 0.8, "alpha": 0.7}
        ax.plot(grp["iteration"], grp["misfit"], label="whole volume" if slab == "all" else f"slab {slab}", **style)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("relative misfit ‖Ax − y‖ / ‖y‖")
    ax.grid(True, which="both", alpha=0.3)
    if len(ax.lines):
        ax.legend(fontsize=7)
    ax.set_title(title or "reconstruction convergence", fontsize=10)
    return fig
