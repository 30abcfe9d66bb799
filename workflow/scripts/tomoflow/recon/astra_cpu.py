"""Per-slice ASTRA backend (CPU, or ASTRA's CUDA FP/BP): one slice at a time in Python threads, plus FBP.

ASTRA's 2-D projectors (``line``, ``linear``, ``strip``, ``distance_driven``) run slice by slice in
Python threads (ASTRA releases the GIL), with projector, data and FP/BP algorithm objects created once
per thread on buffers reused for every slice and iteration.  The updates are those of
:mod:`tomoflow.recon` (module docstring); normalisations come from
:func:`tomoflow.recon.sensitivity.sensitivities`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import astra
import numpy as np
import numpy.typing as npt

from ..projector import projection_geometry
from .sensitivity import sensitivities, subset_layout
from .settings import ProgressFn, report


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
            k = keep[s]
            if k is not None:
                self.bp += k
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


def reconstruct_per_slice(data: np.ndarray, angles: np.ndarray, thickness: int, algorithm: str, iterations: int,
                          n_sub: int, projector: str, center: float, threads: int, gpu: bool,
                          progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    """MLEM/OSEM/SIRT/FBP slice by slice with ASTRA.

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_slices, n_det), float32
        Checked tilt series (clipped at 0 for MLEM/OSEM).
    angles : ndarray, shape (n_tilts,)
        Degrees.
    thickness, iterations, n_sub : int
        Slice rows (px), iterations (passes), OSEM subsets (1 = MLEM).
    projector : str
    center : float
        Centre offset, px.
    threads : int
    gpu : bool
        Use ASTRA's ``FP_CUDA``/``BP_CUDA`` (one thread).
    progress : callable, optional

    Returns
    -------
    volume : ndarray, shape (n_slices, thickness, n_det), float32
    residual_ss : ndarray, shape (iterations + 1,), float64
    data_ss : float
    """
    _, n_slices, n_det = data.shape
    perm, offsets = subset_layout(angles, n_sub)
    angles_sub = angles[perm]
    # Sinograms of all slices, rows in subset order: (n_slices, n_tilts, n_det), contiguous per slice.
    sino = np.ascontiguousarray(data[perm].transpose(1, 0, 2))
    vol = np.zeros((n_slices, thickness, n_det), np.float32)
    threads = 1 if gpu else min(threads, max(1, n_slices))
    sens = sensitivities(thickness, n_det, angles_sub, offsets, n_det, center, "cuda" if gpu else projector)
    dss = float(np.einsum("ijk,ijk->", sino, sino, dtype=np.float64))
    rss = np.zeros((n_slices, iterations + 1))
    workers = [_SliceWorker(thickness, n_det, angles_sub, offsets, n_det, center, projector, gpu) for _ in range(threads)]
    chunks = [range(t, n_slices, threads) for t in range(threads)]
    try:
        with ThreadPoolExecutor(threads) as pool:
            def each(fn: Callable[..., None], *extra: Sequence) -> None:
                list(pool.map(fn, workers, chunks, *extra))

            if algorithm == "fbp":
                w = angle_weights(angles_sub).astype(np.float32)[:, None]

                def fbp(wk: _SliceWorker, rng: range) -> None:
                    for y in rng:
                        wk.backproject(ramp_filter(sino[y]) * w, vol[y])

                each(fbp)
                return vol, np.zeros(0), dss
            if algorithm in ("mlem", "osem"):
                vol[:] = sens.em_start(sino)[:, None, None]
                thr = float(max(sino.max(), 1e-30)) * 1e-9

                def step(wk: _SliceWorker, rng: range, k: int) -> None:
                    for y in rng:
                        rss[y, k] = wk.em_pass(vol[y], sino[y], sens.inv_norms, sens.keep, thr)
            else:
                def step(wk: _SliceWorker, rng: range, k: int) -> None:
                    for y in rng:
                        rss[y, k] = wk.sirt_pass(vol[y], sino[y], sens.inv_rows, sens.inv_cols)

            for k in range(iterations):
                each(step, [k] * threads)
                if k > 0:
                    report(k, iterations, float(rss[:, k].sum()), dss, progress)

            def final(wk: _SliceWorker, rng: range) -> None:
                for y in rng:
                    rss[y, iterations] = wk.residual(vol[y], sino[y])

            each(final)
            report(iterations, iterations, float(rss[:, iterations].sum()), dss, progress)
    finally:
        for wk in workers:
            wk.close()
    return vol, rss.sum(axis=0), dss
