"""Closed, smoothed surfaces of label volumes in nm (pipeline and accuracy: :mod:`tomoflow.mesh`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyvista as pv
from scipy import ndimage

from ..errors import InputError

log = logging.getLogger(__name__)

#: Mesh axes (X, Y, Z) in terms of the volume axes (0 = y, 1 = z, 2 = x).
AXIS_ORDER = (2, 0, 1)
AXIS_MAPPING = "mesh (X, Y, Z) nm = volume axes (2, 0, 1) = (x, y, z); voxel (iy, iz, ix) centre at (ix*dx, iy*dy, iz*dz)"

# --------------------------------------------------------------------------- helpers
def voxel_size_3(voxel_size_nm: float | Sequence[float], where: str = "voxel_size_nm") -> tuple[float, float, float]:
    """Return the voxel size as ``(dy, dz, dx)`` nm from a scalar or a 3-sequence; InputError if not > 0."""
    vs = np.atleast_1d(np.asarray(voxel_size_nm, dtype=float)).ravel()
    if vs.size == 1:
        vs = np.repeat(vs, 3)
    if vs.size != 3 or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(where, f"voxel size must be one positive number or (dy, dz, dx) in nm, got {voxel_size_nm!r}",
                         "set `pixel_size_nm` in the sample table or write the voxel size into the volume header")
    return float(vs[0]), float(vs[1]), float(vs[2])


def _check_volume(arr: np.ndarray, where: str) -> None:
    if arr.ndim != 3:
        raise InputError(where, f"expected a 3-D volume (n_slices, n_z, n_x), got shape {arr.shape}",
                         "pass a label volume, not a single slice or a stack of RGB images")


def index_to_nm(index_yzx: npt.ArrayLike, voxel_size_nm: float | Sequence[float]) -> np.ndarray:
    """Map voxel indices ``(..., 3)`` in volume order (iy, iz, ix) to mesh coordinates (X, Y, Z) nm."""
    vs = np.asarray(voxel_size_3(voxel_size_nm))
    idx = np.asarray(index_yzx, dtype=float)
    return (idx * vs)[..., list(AXIS_ORDER)]


def mask_to_image(mask: npt.ArrayLike, voxel_size_nm: float | Sequence[float], offset_index: Sequence[int] = (0, 0, 0),
                  pad: int = 2, pad_mode: str = "constant") -> pv.ImageData:
    """Wrap a 3-D 0/1 mask as a :class:`pyvista.ImageData` in mesh coordinates (nm).

    Parameters
    ----------
    mask : array_like, shape (n_y, n_z, n_x)
        Binary mask (any dtype; non-zero = inside).
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm.
    offset_index : (iy, iz, ix)
        Index of ``mask[0, 0, 0]`` in the full volume (for crops), so coordinates stay those of the volume.
    pad : int
        Voxels of padding added on every side.
    pad_mode : {"constant", "edge"}
        Zero padding (closes surfaces at the border) or edge replication (surfaces run straight out).

    Returns
    -------
    pyvista.ImageData
        Point scalars ``"mask"`` (uint8), points at voxel centres, spacing ``(dx, dy, dz)``.
    """
    dy, dz, dx = voxel_size_3(voxel_size_nm)
    m = np.asarray(mask).astype(bool, copy=False).view(np.uint8)
    if pad:
        m = np.pad(m, pad, mode="edge" if pad_mode == "edge" else "constant")
    arr = np.transpose(m, AXIS_ORDER)  # (X, Y, Z)
    origin = index_to_nm(np.asarray(offset_index, dtype=float) - pad, (dy, dz, dx))
    img = pv.ImageData(dimensions=arr.shape, spacing=(dx, dy, dz), origin=tuple(float(o) for o in origin))
    img.point_data["mask"] = arr.ravel(order="F")
    return img


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Smallest index box holding all non-zero voxels (None when empty)."""
    sl: list[slice] = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        sl.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return sl[0], sl[1], sl[2]


def _faces(mesh: pv.PolyData) -> np.ndarray:
    """Triangles of an all-triangle mesh as an ``(n, 3)`` int array."""
    if mesh.n_cells == 0:
        return np.zeros((0, 3), dtype=np.int64)
    return mesh.faces.reshape(-1, 4)[:, 1:]


def signed_volume(mesh: pv.PolyData) -> float:
    """Enclosed volume (divergence theorem, nm³) of a closed, outward-oriented triangle mesh."""
    f = _faces(mesh)
    if len(f) == 0:
        return 0.0
    p = np.asarray(mesh.points, dtype=np.float64)
    return float(np.einsum("ij,ij->i", p[f[:, 0]], np.cross(p[f[:, 1]], p[f[:, 2]])).sum() / 6.0)


def n_boundary_edges(mesh: pv.PolyData) -> int:
    """Number of edges used by exactly one triangle (0 for a closed surface)."""
    f = _faces(mesh)
    if len(f) == 0:
        return 0
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1).astype(np.int64)
    key = e[:, 0] * (int(f.max()) + 1) + e[:, 1]
    _, counts = np.unique(key, return_counts=True)
    return int(np.count_nonzero(counts == 1))


def _face_terms(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle: signed volume term (nm³), area (nm²) and area-weighted normal (cross product / 2)."""
    p0, p1, p2 = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    cross = np.cross(p1 - p0, p2 - p0)
    vol = np.einsum("ij,ij->i", p0, np.cross(p1, p2)) / 6.0
    return vol, 0.5 * np.linalg.norm(cross, axis=1), 0.5 * cross


def _offset_to_volumes(points: np.ndarray, faces: np.ndarray, region: np.ndarray, target: np.ndarray,
                       iterations: int = 4, max_offset: float = np.inf) -> np.ndarray:
    """Move every closed piece of a surface along its vertex normals until it encloses its target volume.

    Parameters
    ----------
    points : ndarray, shape (n_points, 3), nm
    faces : ndarray, shape (n_faces, 3)
    region : ndarray, shape (n_points,)
        Piece index of every point (0 … n_regions-1).
    target : ndarray, shape (n_regions,)
        Signed volume (nm³) each piece should enclose (outer shells positive, cavity shells negative).
    max_offset : float
        Largest total offset of a piece, nm (half a voxel keeps the surface between the voxel centres
        inside and outside; it stops a Newton step from running away on thin or non-manifold pieces).

    Returns
    -------
    ndarray, shape (n_points, 3)
        The offset points.  The offset is uniform per piece (δ = ΔV / area, Newton steps), so the shape is
        kept; outer shells and cavity walls move the same way (outward from the solid for δ > 0).
    """
    pts = points.astype(np.float64, copy=True)
    n_reg = len(target)
    rf = region[faces[:, 0]]
    moved = np.zeros(n_reg)
    for _ in range(iterations):
        vol, area, wn = _face_terms(pts, faces)
        v = np.bincount(rf, weights=vol, minlength=n_reg)
        a = np.bincount(rf, weights=area, minlength=n_reg)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(a > 0, (target - v) / a, 0.0)
        delta = np.clip(moved + delta, -max_offset, max_offset) - moved
        moved += delta
        if np.all(np.abs(delta) < 1e-6 * np.sqrt(np.maximum(a, 1e-30))):
            break
        idx = faces.ravel()
        normals = np.stack([np.bincount(idx, weights=np.repeat(wn[:, c], 3), minlength=len(pts)) for c in range(3)], axis=1)
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)
        pts += delta[region][:, None] * normals
    return pts


def empty_mesh() -> pv.PolyData:
    """An empty but valid surface (no points, no cells)."""
    return pv.PolyData()


# --------------------------------------------------------------------------- surfaces
def _cropped_image(m: np.ndarray, box: tuple[slice, slice, slice], vs: tuple[float, float, float], base: np.ndarray,
                   closed: bool, pad: int = 2) -> pv.ImageData:
    """The image :func:`isosurface` contours: ``m`` cropped to ``box`` and padded by ``pad`` voxels.

    ``closed``: zero padding.  Otherwise the crop grows by ``pad`` voxels inside the volume so smoothing sees
    the real neighbourhood, and edges are replicated only where the crop meets the volume border.  ``base``
    is the index of ``m[0, 0, 0]`` in the full volume.
    """
    if closed:
        crop = m[box]
        return mask_to_image(crop, vs, base + [s.start for s in box], pad=pad, pad_mode="constant")
    lo = [max(s.start - pad, 0) for s in box]
    hi = [min(s.stop + pad, n) for s, n in zip(box, m.shape)]
    crop = m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return mask_to_image(crop, vs, base + lo, pad=pad, pad_mode="edge")


def _smooth(surf: pv.PolyData, f: np.ndarray, regions: np.ndarray | None, iterations: int, pass_band: float,
            vs: tuple[float, float, float]) -> pv.PolyData:
    """Windowed-sinc smoothing of ``surf`` (faces ``f``); with ``regions`` (point region ids), every closed
    piece is offset back to its pre-smoothing volume (at most half the smallest voxel side)."""
    if regions is not None:
        vol0 = np.bincount(regions[f[:, 0]], weights=_face_terms(np.asarray(surf.points, np.float64), f)[0],
                           minlength=int(regions.max()) + 1)
    surf = surf.smooth_taubin(n_iter=iterations, pass_band=pass_band, normalize_coordinates=True,
                              boundary_smoothing=False, non_manifold_smoothing=True)
    if regions is not None:
        surf.points = _offset_to_volumes(np.asarray(surf.points), f, regions, vol0,
                                         max_offset=0.5 * min(vs)).astype(np.float32)
    return surf


def isosurface(mask: npt.ArrayLike, voxel_size_nm: float | Sequence[float], *, smoothing_iterations: int = 20,
               pass_band: float = 0.05, target_reduction: float = 0.0, preserve_volume: bool = True,
               closed: bool = True, volume_nm3: float | None = None,
               offset_index: Sequence[int] = (0, 0, 0)) -> pv.PolyData:
    """Smooth triangle surface of a binary mask, in nm (mesh X, Y, Z = volume x, y, z).

    Parameters
    ----------
    mask : array_like, shape (n_y, n_z, n_x)
        Binary mask (non-zero = inside).
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm (anisotropic voxels allowed).
    smoothing_iterations : int
        Degree of the windowed-sinc polynomial (``vtkWindowedSincPolyDataFilter`` iterations); 0 = none.
    pass_band : float
        Windowed-sinc pass band in (0, 2); smaller = smoother.
    target_reduction : float
        Fraction of triangles removed by quadric decimation, in [0, 1); 0 = none.
    preserve_volume : bool
        Give every closed piece back its pre-smoothing (marching-cubes) volume, see the module docstring.
    closed : bool
        True: zero padding, so every object has a closed surface, including where it is cut by the volume
        border (the cut face is part of the surface).  False: the mask is padded by edge replication and the
        surface is clipped to the volume's box (voxel boundaries), so cut faces are *not* part of it
        (for measuring the real surface inside the field of view; the result has boundary edges).
    volume_nm3 : float, optional
        Finally offset the whole surface along its normals so that it encloses this volume (e.g. the
        voxel-count volume of one object).  Only with ``closed=True``.
    offset_index : (iy, iz, ix)
        Index of ``mask[0, 0, 0]`` in the full volume when ``mask`` is a crop (coordinates stay the volume's).

    Returns
    -------
    pyvista.PolyData
        All-triangle surface, points in nm; empty (0 points) when the mask is empty.
    """
    m = np.asarray(mask)
    _check_volume(m, "mask")
    vs = voxel_size_3(voxel_size_nm)
    if not 0.0 <= target_reduction < 1.0:
        raise InputError("mesh.target_reduction", f"must be in [0, 1), got {target_reduction}", "set a fraction such as 0.5")
    if smoothing_iterations < 0 or not 0.0 < pass_band < 2.0:
        raise InputError("mesh.smoothing_iterations/pass_band",
                         f"need iterations >= 0 and 0 < pass_band < 2, got {smoothing_iterations}, {pass_band}",
                         "use e.g. smoothing_iterations: 20, pass_band: 0.05")
    m = m.astype(bool, copy=False)
    box = _bounding_box(m)
    if box is None:
        return empty_mesh()
    img = _cropped_image(m, box, vs, np.asarray(offset_index, dtype=int), closed)
    surf = img.contour([0.5], scalars="mask", method="flying_edges", compute_scalars=False)
    surf = surf.triangulate().clean()
    if surf.n_cells == 0:
        return empty_mesh()
    surf.clear_data()
    regions = None
    if closed and (preserve_volume or volume_nm3 is not None):
        surf = surf.connectivity("all")  # point array RegionId; point order is kept by the smoother
        regions = np.asarray(surf.point_data["RegionId"]).astype(np.int64)
        surf.clear_data()
    f = _faces(surf)
    if smoothing_iterations > 0:
        surf = _smooth(surf, f, regions if preserve_volume else None, int(smoothing_iterations), float(pass_band), vs)
    if volume_nm3 is not None and closed and volume_nm3 > 0:
        one = np.zeros(surf.n_points, dtype=np.int64)
        surf.points = _offset_to_volumes(np.asarray(surf.points), f, one, np.array([float(volume_nm3)]),
                                         max_offset=0.5 * min(vs)).astype(np.float32)
    if target_reduction > 0:
        surf = surf.decimate(float(target_reduction), volume_preservation=True)
    if not closed:
        surf = _clip_to_volume(surf, m.shape, vs)
    surf.clear_data()
    return surf


def _clip_to_volume(surf: pv.PolyData, shape: Sequence[int], vs: Sequence[float]) -> pv.PolyData:
    """Clip a surface to the volume's outer voxel boundaries (mesh coordinates)."""
    lo = index_to_nm(np.full(3, -0.5), vs)
    hi = index_to_nm(np.asarray(shape, dtype=float) - 0.5, vs)
    for ax in range(3):
        n = np.zeros(3)
        n[ax] = 1.0
        # clip(normal, origin, invert=True) keeps the half-space below the plane (dot(p - origin, normal) <= 0)
        surf = surf.clip(normal=tuple(n), origin=tuple(hi), invert=True)
        surf = surf.clip(normal=tuple(-n), origin=tuple(lo), invert=True)
        if surf.n_cells == 0:
            break
    return surf.triangulate() if surf.n_cells else empty_mesh()


def merge_surfaces(parts: Sequence[pv.PolyData], ids: Sequence[int] | None = None, id_name: str = "component_id") -> pv.PolyData:
    """Concatenate triangle surfaces into one, with cell data ``id_name`` = ``ids[k]`` for part ``k``."""
    parts_ids = [(p, (ids[k] if ids is not None else k)) for k, p in enumerate(parts) if p.n_cells]
    if not parts_ids:
        return empty_mesh()
    points, faces, cid = [], [], []
    n0 = 0
    for p, i in parts_ids:
        f = _faces(p)
        points.append(np.asarray(p.points, dtype=np.float32))
        faces.append(f + n0)
        cid.append(np.full(len(f), i, dtype=np.int32))
        n0 += p.n_points
    f = np.concatenate(faces)
    out = pv.PolyData(np.concatenate(points), np.c_[np.full(len(f), 3), f].ravel())
    out.cell_data[id_name] = np.concatenate(cid)
    return out


def object_surfaces(mask: npt.ArrayLike, voxel_size_nm: float | Sequence[float], *, connectivity: int = 3,
                    smoothing_iterations: int = 20, pass_band: float = 0.05,
                    target_reduction: float = 0.0) -> tuple[pv.PolyData, npt.NDArray[np.float64]]:
    """Closed surface of every connected object of a mask, each enclosing its voxel-count volume.

    Each object (3-D connected component, ``connectivity`` 1/2/3 = 6/18/26-neighbourhood, numbered as by
    ``scipy.ndimage.label``: the ``particle_id`` of :mod:`tomoflow.quantify`) is meshed on its own crop by
    :func:`isosurface` with ``volume_nm3`` = voxel count × voxel volume, so that small objects keep their
    size, and the pieces are merged.

    Parameters
    ----------
    mask : array_like, shape (n_y, n_z, n_x)
    voxel_size_nm : float or (dy, dz, dx)
    connectivity : {1, 2, 3}
    smoothing_iterations, pass_band, target_reduction
        See :func:`isosurface`.

    Returns
    -------
    mesh : pyvista.PolyData
        Points in nm; cell data ``component_id`` (1 … N).
    areas : ndarray, shape (N,)
        Surface area (nm²) of each object's surface (index = id − 1).
    """
    m = np.asarray(mask).astype(bool, copy=False)
    _check_volume(m, "mask")
    vs = voxel_size_3(voxel_size_nm)
    if connectivity not in (1, 2, 3):
        raise InputError("connectivity", f"must be 1, 2 or 3, got {connectivity!r}", "use 1 (faces), 2 (edges) or 3 (vertices)")
    comp, n = ndimage.label(m, structure=ndimage.generate_binary_structure(3, connectivity))
    vvox = float(np.prod(vs))
    counts = np.bincount(comp.ravel(), minlength=n + 1)
    parts: list[pv.PolyData] = []
    ids: list[int] = []
    areas = np.zeros(n)
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        s = isosurface(comp[sl] == i, vs, smoothing_iterations=smoothing_iterations, pass_band=pass_band,
                       target_reduction=target_reduction, volume_nm3=counts[i] * vvox,
                       offset_index=[x.start for x in sl])
        areas[i - 1] = s.area if s.n_cells else 0.0
        parts.append(s)
        ids.append(i)
        if i % 500 == 0:
            log.info("surfaces: %d / %d objects", i, n)
    return merge_surfaces(parts, ids), areas


def class_meshes(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float], classes: Sequence[str], *,
                 smoothing_iterations: int = 20, pass_band: float = 0.05, target_reduction: float = 0.0,
                 connectivity: int = 3) -> dict[str, pv.PolyData]:
    """Closed surface of every non-background class of a label volume (see :func:`object_surfaces`).

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x), integer
        Label volume; value ``k`` is ``classes[k]``; 0 is background.
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm.
    classes : sequence of str
        Class names, index = label value (``classes[0]`` is background and gets no mesh).
    smoothing_iterations, pass_band, target_reduction
        See :func:`isosurface`.
    connectivity : {1, 2, 3}
        Neighbourhood of one object (the ``component_id`` cell data; as ``quantify.connectivity``).

    Returns
    -------
    dict
        ``{class name: PolyData}`` for ``classes[1:]``; an absent class gives an empty mesh.  Every mesh
        carries cell data ``component_id`` (for the particle class: the ``particle_id`` of
        ``particles.tsv``) and field data ``label``, ``class_name``, ``voxel_size_nm`` (dy, dz, dx), ``units``,
        ``axis_mapping``.
    """
    lab = np.asarray(labels)
    _check_volume(lab, "labels")
    vs = voxel_size_3(voxel_size_nm)
    if len(classes) < 2:
        raise InputError("classes", f"need background plus at least one class, got {list(classes)}",
                         "set `classes: [background, support, particles]` in the config")
    out: dict[str, pv.PolyData] = {}
    for k, name in enumerate(classes):
        if k == 0:
            continue
        mesh, _ = object_surfaces(lab == k, vs, connectivity=connectivity, smoothing_iterations=smoothing_iterations,
                                  pass_band=pass_band, target_reduction=target_reduction)
        mesh.field_data["label"] = np.array([k])
        mesh.field_data["class_name"] = np.array([str(name)])
        mesh.field_data["voxel_size_nm"] = np.array(vs)
        mesh.field_data["units"] = np.array(["nm"])
        mesh.field_data["axis_mapping"] = np.array([AXIS_MAPPING])
        log.info("mesh %s (label %d): %d triangles, area %.4g nm², volume %.4g nm³, %d boundary edges",
                 name, k, mesh.n_cells, mesh.area if mesh.n_cells else 0.0, signed_volume(mesh), n_boundary_edges(mesh))
        out[str(name)] = mesh
    return out


def mesh_stats(mesh: pv.PolyData) -> dict[str, float | int]:
    """Size, area (nm²), enclosed volume (nm³), boundary edges and connected pieces of a surface."""
    if mesh.n_cells == 0:
        return {"n_points": 0, "n_triangles": 0, "area_nm2": 0.0, "volume_nm3": 0.0, "n_boundary_edges": 0, "n_pieces": 0}
    pieces = int(np.asarray(mesh.connectivity("all").point_data["RegionId"]).max()) + 1
    return {"n_points": int(mesh.n_points), "n_triangles": int(mesh.n_cells), "area_nm2": float(mesh.area),
            "volume_nm3": signed_volume(mesh), "n_boundary_edges": n_boundary_edges(mesh), "n_pieces": pieces}
