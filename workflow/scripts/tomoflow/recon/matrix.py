"""One slice's system matrix from ASTRA's own projector, built once per geometry and cached.

In parallel-beam tomography every slice along the tilt axis has the same system matrix ``A``
(rows = rays ``tilt × n_det + det`` with tilts in subset order, columns = voxels ``z × n_x + x``).
ASTRA exports it (``astra.projector.matrix`` → ``astra.matrix.get``, a SciPy CSR); it is kept as the
CSR of ``Aᵀ`` in float32 with int32 indices, one block per OSEM subset, i.e. ``nnz × 8`` bytes.  The
same arrays serve both products: the back projection ``Aᵀ R`` is a CSR product (gathers from the
small sinogram block, writes the volume in order) and the forward projection ``A X`` is the CSC
product of the transposed view (reads the volume once, in order, scatters into the small sinogram
block) - both stream the large voxel-sized array once, which is what makes them fast.

The build peaks at about ``2 × nnz × 8`` bytes (chunks of ``Aᵀ`` plus their concatenation).
Matrices are cached in-process (least recently used, :data:`CACHE_SIZE` entries) keyed by angles
(subset order), subset offsets, detector width, slice shape, centre offset and projector; with a
``cache_dir`` they are also written there (``sysmat_<key>.npz``, written atomically) for other
processes, e.g. the other slab jobs of a sample.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import astra
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..projector import projection_geometry
from ..slabs import NNZ_FACTOR, matrix_memory_mb

log = logging.getLogger("tomoflow.recon")

#: Matrices kept in the in-process cache (each is nnz × 8 bytes: 375 MB at 1024 × 512 px, 69 tilts).
CACHE_SIZE = 2
#: Tilts per ASTRA export call: bounds the float64 copy ASTRA's Python binding makes.
CHUNK_TILTS = 12

_cache: OrderedDict[tuple, SystemMatrix] = OrderedDict()
_stats = {"hits": 0, "misses": 0, "disk_hits": 0}


@dataclass
class SystemMatrix:
    """``Aᵀ`` of one slice as CSR blocks, one per OSEM subset (one block for MLEM/SIRT).

    Attributes
    ----------
    blocks_t : list of scipy.sparse.csr_matrix
        Block ``s``: shape (n_z · n_x, n_tilts_s · n_det), float32 - the transpose of the rows of
        ``A`` for subset ``s``'s tilts.
    n_det : int
    build_seconds : float
        Export + conversion time of this call (0 when it came from a cache).
    """

    blocks_t: list[sp.csr_matrix]
    n_det: int
    build_seconds: float = 0.0

    @property
    def nnz(self) -> int:
        return int(sum(b.nnz for b in self.blocks_t))

    @property
    def rows(self) -> list[int]:
        """Row offsets of the subsets in ``A`` (rays), length n_subsets + 1."""
        return np.concatenate([[0], np.cumsum([b.shape[1] for b in self.blocks_t])]).astype(int).tolist()

    @property
    def memory_mb(self) -> float:
        """Memory held, MB."""
        return sum(b.data.nbytes + b.indices.nbytes + b.indptr.nbytes for b in self.blocks_t) / 1e6


def has_matrix(projector: str) -> bool:
    """Whether ASTRA exports a valid system matrix for ``projector`` (not ``distance_driven``, ``cuda``)."""
    return projector in NNZ_FACTOR


def _key(angles_sub: np.ndarray, offsets: Sequence[int], n_det: int, n_z: int, n_x: int, center: float,
         projector: str) -> tuple:
    return (np.round(np.asarray(angles_sub, np.float64), 9).tobytes(), tuple(int(o) for o in offsets), int(n_det),
            int(n_z), int(n_x), round(float(center), 9), projector)


def _export_t(angles: np.ndarray, n_det: int, vg: dict, center: float, projector: str) -> sp.csr_matrix:
    """``Aᵀ`` (CSR, float32) for ``angles`` from ASTRA, exported :data:`CHUNK_TILTS` tilts at a time."""
    parts = []
    for lo in range(0, angles.size, CHUNK_TILTS):
        pid = astra.create_projector(projector, projection_geometry(angles[lo:lo + CHUNK_TILTS], n_det, center), vg)
        mid = astra.projector.matrix(pid)
        try:
            a = astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
            astra.projector.delete(pid)
        parts.append(sp.csr_matrix(a, dtype=np.float32).T.tocsr())
        del a
    out = parts[0] if len(parts) == 1 else sp.hstack(parts, format="csr")
    out.sort_indices()
    return sp.csr_matrix((out.data.astype(np.float32, copy=False), out.indices.astype(np.int32, copy=False),
                          out.indptr.astype(np.int32 if out.nnz < 2**31 else np.int64, copy=False)), shape=out.shape)


def _disk_path(cache_dir: str, key: tuple) -> Path:
    return Path(cache_dir) / f"sysmat_{hashlib.sha1(repr(key).encode()).hexdigest()[:20]}.npz"


def _load(path: Path, n_det: int) -> SystemMatrix | None:
    try:
        with np.load(path) as z:
            n = int(z["n_blocks"])
            blocks = [sp.csr_matrix((z[f"data{i}"], z[f"indices{i}"], z[f"indptr{i}"]), shape=tuple(z[f"shape{i}"]))
                      for i in range(n)]
    except (OSError, KeyError, ValueError) as exc:
        log.info("system matrix cache %s unreadable (%s): rebuilding", path, exc)
        return None
    return SystemMatrix(blocks, n_det)


def _save(path: Path, m: SystemMatrix) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"n_blocks": np.array(len(m.blocks_t))}
    for i, b in enumerate(m.blocks_t):
        arrays.update({f"data{i}": b.data, f"indices{i}": b.indices, f"indptr{i}": b.indptr,
                       f"shape{i}": np.array(b.shape)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("system matrix not written to %s (%s)", path, exc)
        Path(tmp).unlink(missing_ok=True)


def system_matrix(angles_sub: npt.ArrayLike, offsets: Sequence[int], n_det: int, n_z: int, n_x: int,
                  center_offset_px: float = 0.0, projector: str = "line",
                  cache_dir: str | None = None) -> SystemMatrix:
    """The slice system matrix for a geometry, from the cache or built with ASTRA.

    Parameters
    ----------
    angles_sub : array_like, shape (n_tilts,)
        Tilt angles, degrees, in subset order (:func:`tomoflow.recon.sensitivity.subset_layout`).
    offsets : sequence of int
        Subset boundaries in ``angles_sub`` (``[0, n_tilts]`` for MLEM/SIRT).
    n_det, n_z, n_x : int
        Detector pixels and slice shape (rows z = thickness, columns x), pixels.
    center_offset_px : float
    projector : {'line', 'linear', 'strip'}
    cache_dir : str, optional
        Also look for / store the matrix there.

    Returns
    -------
    SystemMatrix
    """
    angles = np.asarray(angles_sub, np.float64)
    key = _key(angles, offsets, n_det, n_z, n_x, center_offset_px, projector)
    if key in _cache:
        _stats["hits"] += 1
        _cache.move_to_end(key)
        log.info("system matrix: in-process cache hit (%d non-zeros, %.0f MB)", _cache[key].nnz, _cache[key].memory_mb)
        return replace(_cache[key], build_seconds=0.0)
    _stats["misses"] += 1
    path = _disk_path(cache_dir, key) if cache_dir else None
    m = _load(path, n_det) if path is not None and path.is_file() else None
    if m is not None:
        _stats["disk_hits"] += 1
        log.info("system matrix: loaded from %s (%d non-zeros, %.0f MB)", path, m.nnz, m.memory_mb)
    else:
        t0 = time.perf_counter()
        vg = astra.create_vol_geom(int(n_z), int(n_x))
        blocks = [_export_t(angles[offsets[s]:offsets[s + 1]], int(n_det), vg, center_offset_px, projector)
                  for s in range(len(offsets) - 1)]
        m = SystemMatrix(blocks, int(n_det), time.perf_counter() - t0)
        log.info("system matrix (%s, %d tilts, %dx%d px, %d subset(s)): %d non-zeros, %.0f MB held "
                 "(build peak %.0f MB = 2 × nnz × 8 bytes), built in %.1f s", projector, angles.size, n_z, n_x,
                 len(blocks), m.nnz, m.memory_mb, matrix_memory_mb(m.nnz, angles.size * n_det, n_z * n_x),
                 m.build_seconds)
        if path is not None:
            _save(path, m)
    _cache[key] = m
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return m


def clear_matrix_cache() -> None:
    """Empty the in-process cache and reset its counters."""
    _cache.clear()
    _stats.update(hits=0, misses=0, disk_hits=0)


def matrix_cache_stats() -> dict[str, int]:
    """Counters of the in-process cache: ``hits``, ``misses``, ``disk_hits`` (misses served from disk)."""
    return dict(_stats)
