"""ASTRA parallel-beam projection of volumes slice by slice (CPU, threaded over slices).

Geometry (see :mod:`tomoflow` for axis conventions): slice ``volume[y]`` of shape ``(n_z, n_x)`` is an
ASTRA 2-D volume; its sinogram is ``tilt_series[:, y, :]`` of shape ``(n_tilts, n_det)``.  At 0° tilt the
projection sums over z (``volume[y].sum(axis=0)``) and detector pixel ``i`` sees column ``x = i`` when
``n_det == n_x`` and the centre offset is zero.  A rotation-centre offset ``c`` (px) puts the projected
rotation axis at detector coordinate ``n_det / 2 + c`` (pixel-edge coordinates), i.e. the whole
projection is moved by ``+c`` along x.

In centred pixel coordinates ``x_c = x + 0.5 - n_x / 2`` and ``z_c = z + 0.5 - n_z / 2`` (``z`` = row index
of a slice), a voxel projects at tilt ``θ`` to detector coordinate ``t = x_c cos θ - z_c sin θ + c``, i.e.
to pixel index ``t + n_det / 2 - 0.5``: positive tilts move voxels above the centre (small ``z``) towards
larger x.  This is ASTRA's ``parallel`` geometry (and TomoPy's ``theta``), with ASTRA's y axis pointing
towards row 0.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import astra
import numpy as np
import numpy.typing as npt

CPU_PROJECTORS = ("line", "linear", "strip", "distance_driven")


def _check_projector(projector: str) -> None:
    if projector not in CPU_PROJECTORS + ("cuda",):
        raise ValueError(f"unknown ASTRA projector {projector!r}; use one of {CPU_PROJECTORS}")


def over_slices(work: Callable[[range], None], n_slices: int, threads: int) -> None:
    """Run ``work(range)`` on interleaved slice ranges in ``threads`` Python threads (ASTRA releases
    the GIL, so threads scale across cores); each thread builds its own ASTRA objects once."""
    n_workers = max(1, min(int(threads), n_slices))
    chunks = [range(i, n_slices, n_workers) for i in range(n_workers)]
    with ThreadPoolExecutor(n_workers) as pool:
        list(pool.map(work, chunks))


def projection_geometry(
    angles_deg: npt.ArrayLike, n_det: int, center_offset_px: float = 0.0
) -> dict:
    """ASTRA ``parallel_vec`` geometry for a detector of ``n_det`` unit pixels.

    Parameters
    ----------
    angles_deg : array_like, shape (n_tilts,)
        Projection angles in degrees (ASTRA ``parallel`` convention).
    n_det : int
        Detector pixels.
    center_offset_px : float
        Rotation-centre offset along the detector, pixels (see module docstring).

    Returns
    -------
    dict
        ASTRA projection geometry.
    """
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    vectors = np.zeros((theta.size, 6))
    # ASTRA's own parallel -> parallel_vec conversion: ray (sin, -cos), detector u (cos, sin).
    vectors[:, 0] = np.sin(theta)
    vectors[:, 1] = -np.cos(theta)
    vectors[:, 4] = np.cos(theta)
    vectors[:, 5] = np.sin(theta)
    # Detector centre at -c * u: the origin then projects to detector coordinate +c.
    vectors[:, 2] = -center_offset_px * vectors[:, 4]
    vectors[:, 3] = -center_offset_px * vectors[:, 5]
    return astra.create_proj_geom("parallel_vec", int(n_det), vectors)


def forward_project(
    volume: npt.NDArray[np.floating],
    angles_deg: npt.ArrayLike,
    *,
    n_det: int | None = None,
    center_offset_px: float = 0.0,
    projector: str = "line",
    threads: int = 1,
) -> npt.NDArray[np.float32]:
    """Forward-project a volume slice by slice.

    Parameters
    ----------
    volume : ndarray, shape (n_slices, n_z, n_x)
        Attenuation/scattering density per voxel (voxel = 1 px).
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees.
    n_det : int, optional
        Detector pixels; default ``n_x``.
    center_offset_px : float
        Rotation-centre offset, pixels.
    projector : {'line', 'linear', 'strip', 'distance_driven'}
        ASTRA CPU projector.
    threads : int
        Python threads over slices (ASTRA releases the GIL).

    Returns
    -------
    ndarray, shape (n_tilts, n_slices, n_det), float32
        Line integrals in units of (density × px).
    """
    _check_projector(projector)
    vol = np.ascontiguousarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (n_slices, n_z, n_x), got shape {vol.shape}")
    n_slices, n_z, n_x = vol.shape
    n_det = int(n_det or n_x)
    angles = np.asarray(angles_deg, dtype=np.float64)
    vol_geom = astra.create_vol_geom(n_z, n_x)
    proj_geom = projection_geometry(angles, n_det, center_offset_px)
    out = np.zeros((angles.size, n_slices, n_det), dtype=np.float32)

    def work(rng: range) -> None:
        pid = astra.create_projector(projector, proj_geom, vol_geom)
        vid = astra.data2d.create("-vol", vol_geom, 0.0)
        sid = astra.data2d.create("-sino", proj_geom, 0.0)
        cfg = astra.astra_dict("FP")
        cfg["ProjectorId"], cfg["VolumeDataId"], cfg["ProjectionDataId"] = pid, vid, sid
        aid = astra.algorithm.create(cfg)
        try:
            for y in rng:
                astra.data2d.store(vid, vol[y])
                astra.algorithm.run(aid)
                out[:, y, :] = astra.data2d.get_shared(sid)
        finally:
            astra.algorithm.delete(aid)
            astra.data2d.delete([vid, sid])
            astra.projector.delete(pid)

    over_slices(work, n_slices, threads)
    return out


def back_project(
    tilt_series: npt.NDArray[np.floating],
    angles_deg: npt.ArrayLike,
    *,
    n_z: int | None = None,
    n_x: int | None = None,
    center_offset_px: float = 0.0,
    projector: str = "line",
    threads: int = 1,
) -> npt.NDArray[np.float32]:
    """Back-project a tilt series slice by slice (the adjoint of :func:`forward_project`).

    Parameters
    ----------
    tilt_series : ndarray, shape (n_tilts, n_slices, n_det)
        Projections.
    angles_deg : array_like, shape (n_tilts,)
        Tilt angles, degrees.
    n_z, n_x : int, optional
        Slice size, pixels; default ``n_det`` for both.
    center_offset_px : float
        Rotation-centre offset, pixels.
    projector : {'line', 'linear', 'strip', 'distance_driven'}
        ASTRA CPU projector.
    threads : int
        Python threads over slices.

    Returns
    -------
    ndarray, shape (n_slices, n_z, n_x), float32
        ``Aᵀ p`` for every slice (no filtering, no normalisation).
    """
    _check_projector(projector)
    data = np.asarray(tilt_series, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"tilt_series must be 3-D (n_tilts, n_slices, n_det), got shape {data.shape}")
    n_tilts, n_slices, n_det = data.shape
    n_z, n_x = int(n_z or n_det), int(n_x or n_det)
    angles = np.asarray(angles_deg, dtype=np.float64)
    if angles.size != n_tilts:
        raise ValueError(f"{angles.size} angles for {n_tilts} projections")
    vol_geom = astra.create_vol_geom(n_z, n_x)
    proj_geom = projection_geometry(angles, n_det, center_offset_px)
    out = np.zeros((n_slices, n_z, n_x), dtype=np.float32)

    def work(rng: range) -> None:
        pid = astra.create_projector(projector, proj_geom, vol_geom)
        sino = np.zeros((n_tilts, n_det), np.float32)
        vid = astra.data2d.create("-vol", vol_geom, 0.0)
        sid = astra.data2d.link("-sino", proj_geom, sino)
        cfg = astra.astra_dict("BP")
        cfg["ProjectorId"], cfg["ReconstructionDataId"], cfg["ProjectionDataId"] = pid, vid, sid
        aid = astra.algorithm.create(cfg)
        try:
            for y in rng:
                sino[:] = data[:, y, :]
                astra.algorithm.run(aid)
                out[y] = astra.data2d.get_shared(vid)
        finally:
            astra.algorithm.delete(aid)
            astra.data2d.delete([vid, sid])
            astra.projector.delete(pid)

    over_slices(work, n_slices, threads)
    return out


def system_matrix_nnz(
    n_z: int,
    n_x: int,
    angles_deg: npt.ArrayLike,
    *,
    n_det: int | None = None,
    center_offset_px: float = 0.0,
    projector: str = "line",
) -> int:
    """Number of non-zero weights of one slice's ASTRA system matrix (ray-pixel pairs).

    Counted angle by angle from ASTRA's own sparse matrix (``astra.projector.matrix``), so memory stays
    at one angle's matrix even for 1024² slices.

    Parameters
    ----------
    n_z, n_x : int
        Slice size, pixels.
    angles_deg : array_like, shape (n_tilts,)
    n_det : int, optional
        Detector pixels; default ``n_x``.
    center_offset_px : float
    projector : {'line', 'linear', 'strip'}
        ``distance_driven`` is refused: ASTRA 2.5's matrix export returns one weight per ray for it.

    Returns
    -------
    int
        Σ over angles of the non-zeros; one forward or one back projection of a slice performs this
        many multiply-adds.
    """
    _check_projector(projector)
    if projector not in ("line", "linear", "strip"):
        raise ValueError(f"ASTRA exports no valid system matrix for the {projector!r} projector (it returns one "
                         "weight per ray); count non-zeros for 'line', 'linear' or 'strip'")
    vol_geom = astra.create_vol_geom(int(n_z), int(n_x))
    total = 0
    for a in np.atleast_1d(np.asarray(angles_deg, dtype=np.float64)):
        pid = astra.create_projector(projector, projection_geometry([a], int(n_det or n_x), center_offset_px), vol_geom)
        mid = astra.projector.matrix(pid)
        try:
            total += int(astra.matrix.get(mid).nnz)
        finally:
            astra.matrix.delete(mid)
            astra.projector.delete(pid)
    return total
