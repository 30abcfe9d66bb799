"""Surface meshes (VTK XML ``.vtp``, binary ``.stl``) and rendered pictures (PNG).

Meshes are :class:`pyvista.PolyData` in nanometres (axis mapping: :data:`tomoflow.mesh.AXIS_MAPPING`).
``.vtp`` keeps the field data (class name, voxel size, units, axis mapping); ``.stl`` has no units, so
its 80-byte header says ``units=nm``.  Empty meshes are written as valid empty files (an STL with zero
triangles; VTK's own STL writer refuses those).  Every write is atomic (temporary file + rename).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Union

import numpy as np
import numpy.typing as npt
import pyvista as pv

from ..errors import InputError
from .volumes import atomic_path, save_png

Pathish = Union[str, "PathLike[str]"]

_STL_DTYPE = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def write_stl(path: Pathish, mesh: pv.PolyData, name: str = "") -> None:
    """Write a triangle mesh as binary STL (units nm, stated in the header); empty meshes allowed."""
    tri = mesh.triangulate() if mesh.n_cells and not mesh.is_all_triangles else mesh
    faces = tri.faces.reshape(-1, 4)[:, 1:] if tri.n_cells else np.zeros((0, 3), dtype=np.int64)
    pts = np.asarray(tri.points, dtype=np.float64) if tri.n_points else np.zeros((0, 3))
    rec = np.zeros(len(faces), dtype=_STL_DTYPE)
    if len(faces):
        v = pts[faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        rec["normal"] = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
        rec["v"] = v
    header = f"tomoflow {name} units=nm".encode("ascii", "replace")[:80].ljust(80, b" ")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(np.uint32(len(rec)).tobytes())
        fh.write(rec.tobytes())


def write_mesh(path: Pathish, mesh: pv.PolyData, name: str = "") -> None:
    """Write a mesh by suffix: ``.vtp`` (VTK XML PolyData, binary, with field data) or ``.stl``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".stl":
        write_stl(p, mesh, name)
    elif suffix == ".vtp":
        with atomic_path(p) as tmp:
            mesh.save(tmp, binary=True)
    else:
        raise InputError(p, f"unknown mesh format {suffix!r}", "use a .vtp or .stl file name")


def read_mesh(path: Pathish) -> pv.PolyData:
    """Read a ``.vtp`` or ``.stl`` mesh (an empty STL gives an empty PolyData)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "mesh file not found", "run the export_meshes rule first or check the path")
    if p.suffix.lower() == ".stl":
        raw = p.read_bytes()
        if len(raw) >= 84 and not raw[:5].lower().startswith(b"solid"):
            n = int(np.frombuffer(raw[80:84], "<u4")[0])
            if len(raw) != 84 + n * _STL_DTYPE.itemsize:
                raise InputError(p, "truncated binary STL", "rewrite the file")
            rec = np.frombuffer(raw[84:], dtype=_STL_DTYPE, count=n)
            if n == 0:
                return pv.PolyData()
            pts = rec["v"].reshape(-1, 3).astype(np.float32)
            faces = np.c_[np.full(n, 3), np.arange(3 * n).reshape(n, 3)].ravel()
            return pv.PolyData(pts, faces).clean()
    mesh = pv.read(p)
    if not isinstance(mesh, pv.PolyData):
        mesh = mesh.extract_surface()
    return mesh


def write_render(path: Pathish, rgb: npt.ArrayLike) -> None:
    """Write a rendered picture, an RGB(A) uint8 array of shape (height, width, 3|4), as PNG."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise InputError(path, f"expected an RGB uint8 picture (H, W, 3), got {img.dtype} {img.shape}",
                         "pass the array returned by tomoflow.mesh.render")
    save_png(path, img)
