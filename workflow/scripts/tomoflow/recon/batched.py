"""Batched backend: MLEM, OSEM and SIRT of a whole slab as sparse × dense products (CPU threads or CuPy).

Every slice of a slab has the same system matrix ``A`` (:mod:`tomoflow.recon.matrix`), so with the
slab's slices as the columns of ``X`` (voxels × slices) and of ``Y`` (rays × slices) one iteration is
``A X`` and ``Aᵀ R`` for all slices at once: ``A`` is read once per iteration instead of once per slice.
The updates, start estimate, clipping, zero handling, OSEM keep rule and misfit are exactly those of
the per-slice path (:mod:`tomoflow.recon` docstring), with the normalisations of
:func:`tomoflow.recon.sensitivity.sensitivities`, so the output equals it to float rounding.

CPU: the slices are split into ``threads`` column blocks, each a C-contiguous float32 array owned by
one thread; SciPy's sparse kernels (``csr_matvecs`` / ``csc_matvecs``, which release the GIL) write
into preallocated buffers.  Measured on the paper's slice size this beats one multithreaded call per
product (rows split across threads) because each thread streams its own block (see
``benchmarks/recon.py``).  GPU: the same loop on CuPy arrays with ``cupyx.scipy.sparse`` (cuSPARSE),
one block; CuPy is imported only when a GPU is asked for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .matrix import SystemMatrix
from .sensitivity import Sensitivities
from .settings import ProgressFn, report

try:  # the in-place kernels behind ``csr @ dense``; fall back to the public product if SciPy moves them
    from scipy.sparse._sparsetools import csc_matvecs, csr_matvecs
except ImportError:  # pragma: no cover - depends on the SciPy version
    csc_matvecs = csr_matvecs = None


class _CpuOps:
    """``A X`` and ``Aᵀ R`` into preallocated float32 buffers with SciPy's kernels (GIL released)."""

    xp = np

    def __init__(self, m: SystemMatrix) -> None:
        self.blocks_t = m.blocks_t

    def forward(self, s: int, x: np.ndarray, out: np.ndarray) -> None:
        """``out = Aₛ x``; x (n_vox, k), out (rays of subset s, k)."""
        b = self.blocks_t[s]
        if csc_matvecs is None:
            out[...] = b.T @ x
            return
        out.fill(0.0)
        csc_matvecs(b.shape[1], b.shape[0], x.shape[1], b.indptr, b.indices, b.data, x.ravel(), out.ravel())

    def back(self, s: int, r: np.ndarray, out: np.ndarray) -> None:
        """``out = Aₛᵀ r``; r (rays of subset s, k), out (n_vox, k)."""
        b = self.blocks_t[s]
        if csr_matvecs is None:
            out[...] = b @ r
            return
        out.fill(0.0)
        csr_matvecs(b.shape[0], b.shape[1], r.shape[1], b.indptr, b.indices, b.data, r.ravel(), out.ravel())


class _GpuOps:
    """The same products with CuPy / cuSPARSE on the current CUDA device."""

    def __init__(self, m: SystemMatrix) -> None:
        import cupy
        import cupyx.scipy.sparse as csp

        self.xp = cupy
        self.blocks_t = [csp.csr_matrix(b) for b in m.blocks_t]
        self.blocks = [b.T.tocsr() for b in self.blocks_t]

    def forward(self, s: int, x: Any, out: Any) -> None:
        out[...] = self.blocks[s] @ x

    def back(self, s: int, r: Any, out: Any) -> None:
        out[...] = self.blocks_t[s] @ r


def _column_ss(xp: Any, d: Any) -> Any:
    """Σ over rows of ``d²`` per column, accumulated in float64."""
    if xp is np:
        return np.einsum("ij,ij->j", d, d, dtype=np.float64)
    return (d.astype(xp.float64) ** 2).sum(axis=0)


def _block_pass(ops: Any, rows: list[int], x: Any, y: Any, pf: Any, bp: Any, sens: dict, algorithm: str,
                thr: float) -> Any:
    """One iteration (pass) on one column block; returns ``‖Ax − y‖²`` per column of the estimate on entry.

    ``x`` (n_vox, k) is updated in place; ``pf`` (n_rays, k) and ``bp`` (n_vox, k) are work buffers;
    ``y`` (n_rays, k) the data, rays in subset order.
    """
    xp = ops.xp
    n_sub = len(rows) - 1
    for s in range(n_sub):
        ops.forward(s, x, pf[rows[s]:rows[s + 1]])
    rss = _column_ss(xp, pf - y)
    if algorithm == "sirt":
        xp.subtract(y, pf, out=pf)
        pf *= sens["inv_rows"]
        ops.back(0, pf, bp)
        bp *= sens["inv_cols"]
        x += bp
        xp.maximum(x, 0.0, out=x)
        return rss
    for s in range(n_sub):
        r = pf[rows[s]:rows[s + 1]]
        if s > 0:
            ops.forward(s, x, r)
        xp.maximum(r, thr, out=r)
        xp.divide(y[rows[s]:rows[s + 1]], r, out=r)
        ops.back(s, r, bp)
        bp *= sens["inv_norms"][s]
        if sens["keep"][s] is not None:
            bp += sens["keep"][s]
        x *= bp
    return rss


def _column_sens(sens: Sensitivities, xp: Any) -> dict:
    def col(a: np.ndarray) -> Any:
        return xp.asarray(np.ascontiguousarray(a, np.float32).reshape(-1, 1))

    return {"inv_norms": [col(a) for a in sens.inv_norms], "keep": [None if k is None else col(k) for k in sens.keep],
            "inv_rows": col(sens.inv_rows), "inv_cols": col(sens.inv_cols)}


def reconstruct_batched(data: np.ndarray, perm: np.ndarray, m: SystemMatrix, sens: Sensitivities, thickness: int,
                        algorithm: str, iterations: int, threads: int, progress: ProgressFn | None,
                        gpu: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """MLEM/OSEM/SIRT of a slab with one system matrix.

    Parameters
    ----------
    data : ndarray, shape (n_tilts, n_slices, n_det), float32
        Checked tilt series (clipped at 0 for MLEM/OSEM), tilts in input order.
    perm : ndarray, shape (n_tilts,)
        Subset order of the tilts (rows of ``m``).
    m : SystemMatrix
    sens : Sensitivities
        Of the same geometry, tilts in subset order.
    thickness : int
    algorithm : {'mlem', 'osem', 'sirt'}
        MLEM and OSEM differ only by the subsets of ``m``.
    iterations, threads : int
    progress : callable, optional
    gpu : bool
        Run on CuPy (one block).

    Returns
    -------
    volume : ndarray, shape (n_slices, thickness, n_det), float32
    residual_ss : ndarray, shape (iterations + 1,), float64
    data_ss : float
    """
    n_tilts, n_slices, n_det = data.shape
    ops: Any = _GpuOps(m) if gpu else _CpuOps(m)
    xp = ops.xp
    # Y: rays (tilt in subset order × det) × slices.
    y_all = np.ascontiguousarray(data[perm].transpose(0, 2, 1).reshape(n_tilts * n_det, n_slices))
    dss = float(np.einsum("ij,ij->", y_all, y_all, dtype=np.float64))
    thr = float(max(y_all.max(), 1e-30)) * 1e-9
    start = sens.em_start(data.transpose(1, 0, 2)) if algorithm != "sirt" else np.zeros(n_slices, np.float32)
    n_blocks = 1 if gpu else max(1, min(int(threads), n_slices))
    cols = np.array_split(np.arange(n_slices), n_blocks)
    n_vox = thickness * n_det
    blocks = [{"y": xp.asarray(np.ascontiguousarray(y_all[:, c])),
               "x": xp.asarray(np.repeat(start[c][None, :], n_vox, axis=0)),
               "pf": xp.empty((n_tilts * n_det, c.size), np.float32), "bp": xp.empty((n_vox, c.size), np.float32)}
              for c in cols]
    del y_all
    sc = _column_sens(sens, xp)
    rows = m.rows
    rss = np.zeros((n_slices, iterations + 1))

    def step(i: int, k: int, final: bool = False) -> None:
        b = blocks[i]
        if final:
            for s in range(len(rows) - 1):
                ops.forward(s, b["x"], b["pf"][rows[s]:rows[s + 1]])
            r = _column_ss(xp, b["pf"] - b["y"])
        else:
            r = _block_pass(ops, rows, b["x"], b["y"], b["pf"], b["bp"], sc, algorithm, thr)
        rss[cols[i], k] = r.get() if gpu else r

    with ThreadPoolExecutor(n_blocks) as pool:
        for k in range(iterations + 1):
            list(pool.map(step, range(n_blocks), [k] * n_blocks, [k == iterations] * n_blocks))
            if k > 0:
                report(k, iterations, float(rss[:, k].sum()), dss, progress)
    vol = np.empty((n_slices, thickness, n_det), np.float32)
    for c, b in zip(cols, blocks):
        x = b["x"].get() if gpu else b["x"]
        vol[c] = x.T.reshape(c.size, thickness, n_det)
    return vol, rss.sum(axis=0), dss
