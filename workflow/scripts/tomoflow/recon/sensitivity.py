"""OSEM subsets and sensitivities (``Aᵀ1`` and ``A1``: back-/forward-projected ones), shared by all backends.

Every backend (per-slice ASTRA, batched matrix, ASTRA CUDA, TomoPy start estimate) takes its
normalisations from :func:`sensitivities`, so they agree to the last bit on start value, zero
handling and OSEM keep-masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import astra
import numpy as np
import numpy.typing as npt

from ..projector import projection_geometry


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


def subset_layout(angles_deg: npt.ArrayLike, subsets: int) -> tuple[npt.NDArray[np.intp], list[int]]:
    """Tilt permutation that puts the subsets one block after another, and the block offsets.

    Returns
    -------
    perm : ndarray, shape (n_tilts,)
        ``data[perm]`` holds subset 0's tilts, then subset 1's, ...
    offsets : list of int, length subsets + 1
        Subset ``s`` is ``perm[offsets[s]:offsets[s + 1]]``.
    """
    n = np.asarray(angles_deg).size
    groups = subset_order(angles_deg, subsets) if subsets > 1 else [np.arange(n)]
    perm = np.concatenate(groups)
    offsets = np.concatenate([[0], np.cumsum([g.size for g in groups])]).astype(int).tolist()
    return perm, offsets


def backproject_ones(angles_deg: npt.ArrayLike, n_det: int, n_z: int, n_x: int, center_offset_px: float,
                     projector: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``Aᵀ1`` and ``A1`` of one slice with ASTRA (the one "back-project ones" of the package).

    Parameters
    ----------
    angles_deg : array_like, shape (n_tilts,)
    n_det, n_z, n_x : int
        Detector pixels and slice shape (rows z, columns x), pixels.
    center_offset_px : float
    projector : str
        ASTRA projector (``cuda`` for the GPU).

    Returns
    -------
    bp : ndarray, shape (n_z, n_x), float32
        Back-projection of a sinogram of ones (voxel sensitivity).
    fp : ndarray, shape (n_tilts, n_det), float32
        Forward projection of a volume of ones (ray lengths).
    """
    angles = np.atleast_1d(np.asarray(angles_deg, np.float64))
    vg = astra.create_vol_geom(int(n_z), int(n_x))
    pid = astra.create_projector(projector, projection_geometry(angles, int(n_det), center_offset_px), vg)
    try:
        bid, bp = astra.create_backprojection(np.ones((angles.size, int(n_det)), np.float32), pid)
        sid, fp = astra.create_sino(np.ones((int(n_z), int(n_x)), np.float32), pid)
        astra.data2d.delete([bid, sid])
    finally:
        astra.projector.delete(pid)
    return np.asarray(bp, np.float32), np.asarray(fp, np.float32)


def safe_inverse(a: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``1 / a`` where ``a`` exceeds 1e-6 of its maximum, else 0 (voxels/rays that see nothing)."""
    a = np.asarray(a, np.float64)
    return np.where(a > 1e-6 * max(a.max(), 1e-30), 1.0 / np.where(a > 0, a, 1.0), 0.0).astype(np.float32)


@dataclass
class Sensitivities:
    """Normalisations of one slice geometry, tilts in subset order.

    Attributes
    ----------
    inv_norms : list of ndarray, each shape (n_z, n_x), float32
        Per-subset ``1/Aₛᵀ1`` (0 where the subset sees nothing).
    keep : list of (ndarray or None)
        Per subset: 1 where the subset does not see a voxel the whole set sees (the voxel keeps its
        value in that sub-iteration), else 0; None when there is no such voxel.
    inv_rows : ndarray, shape (n_tilts, n_det), float32
        ``1/A1`` (SIRT).
    inv_cols : ndarray, shape (n_z, n_x), float32
        ``1/Aᵀ1`` of the whole set.
    """

    inv_norms: list[npt.NDArray[np.float32]]
    keep: list[npt.NDArray[np.float32] | None]
    inv_rows: npt.NDArray[np.float32]
    inv_cols: npt.NDArray[np.float32]

    @property
    def total(self) -> float:
        """``Σ Aᵀ1`` over the voxels seen (the MLEM start divides the counts by it)."""
        c = self.inv_cols
        return float(np.sum(1.0 / c[c > 0], dtype=np.float64))

    def em_start(self, sino: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """MLEM/OSEM start: per slice the constant ``Σy / Σ Aᵀ1``.

        Parameters
        ----------
        sino : ndarray, shape (n_slices, n_tilts, n_det)

        Returns
        -------
        ndarray, shape (n_slices,), float32
        """
        total, sens = sino.sum(axis=(1, 2), dtype=np.float64), self.total
        return (total / sens).astype(np.float32) if sens > 0 else np.zeros(sino.shape[0], np.float32)


def sensitivities(n_z: int, n_x: int, angles_sub: np.ndarray, offsets: Sequence[int], n_det: int, center: float,
                  projector: str) -> Sensitivities:
    """:class:`Sensitivities` of a slice for tilts ``angles_sub`` in subset order (see :func:`subset_layout`)."""
    n_sub = len(offsets) - 1
    full_bp, full_fp = backproject_ones(angles_sub, n_det, n_z, n_x, center, projector)
    inv_full = safe_inverse(full_bp)
    inv_norms = [inv_full] if n_sub == 1 else [
        safe_inverse(backproject_ones(angles_sub[offsets[s]:offsets[s + 1]], n_det, n_z, n_x, center, projector)[0])
        for s in range(n_sub)]
    keep = [((inv_s == 0) & (inv_full > 0)).astype(np.float32) for inv_s in inv_norms]
    return Sensitivities(inv_norms, [k if k.any() else None for k in keep], safe_inverse(full_fp), inv_full)
