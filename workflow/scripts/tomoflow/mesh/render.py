"""Offscreen renders of surfaces, made in a child process (see :func:`render_views`).

Offscreen rendering on machines without a display uses Mesa's OSMesa through VTK, selected by the
environment variable ``VTK_DEFAULT_OPENGL_WINDOW=vtkOSOpenGLRenderWindow`` before the first render window
is created.  The package sets it in one place, :func:`offscreen_environment`, for the rendering child
process; callers of :func:`render` / :func:`render_views` need not set anything (a value already set,
e.g. ``vtkEGLRenderWindow`` on a GPU node, is kept).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyvista as pv

from ..errors import InputError

log = logging.getLogger(__name__)

#: Environment for offscreen rendering with VTK wheels + Mesa (``libosmesa6``), see :func:`offscreen_environment`.
OFFSCREEN_ENV = {"VTK_DEFAULT_OPENGL_WINDOW": "vtkOSOpenGLRenderWindow"}

#: Render viewpoints: name -> (direction of view, view-up vector), in mesh coordinates.
#: ``xy`` looks along the beam (z) and shows x to the right and y down, like the 0° image;
#: ``xz`` looks along the tilt axis (y) and shows x to the right and z down, like a reconstruction slice;
#: ``yz`` looks along x and shows z to the right and y down; ``iso`` is an oblique overview from the
#: high-z side with z up.  (A camera cannot mirror; handedness is fixed by the axis mapping above.)
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "xy": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    "xz": ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
    "yz": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "iso": ((-1.0, 0.8, -0.7), (0.0, 0.0, 1.0)),
}

#: Colours by class name (the paper: light-grey support, red particles); others cycle through PALETTE.
CLASS_COLORS = {"support": (0.80, 0.80, 0.80), "particles": (0.86, 0.08, 0.06)}
PALETTE = ((0.12, 0.47, 0.71), (0.17, 0.63, 0.17), (1.0, 0.5, 0.05), (0.58, 0.40, 0.74), (0.55, 0.34, 0.29))


def offscreen_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables for an offscreen VTK render process.

    Parameters
    ----------
    env : mapping, optional
        Base environment (default: ``os.environ``).

    Returns
    -------
    dict
        A copy of ``env`` with :data:`OFFSCREEN_ENV` added where not already set.
    """
    import os

    out = dict(os.environ if env is None else env)
    for key, value in OFFSCREEN_ENV.items():
        out.setdefault(key, value)
    return out


def class_color(name: str, label: int) -> tuple[float, float, float]:
    """Colour of a class: light grey for ``support``, red for ``particles``, a palette colour otherwise."""
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    low = name.lower()
    if "support" in low:
        return CLASS_COLORS["support"]
    if "particle" in low:
        return CLASS_COLORS["particles"]
    return PALETTE[(label - 1) % len(PALETTE)]


def render(meshes: Mapping[str, pv.PolyData], view: str = "iso", size: Sequence[int] = (800, 600),
           colors: Mapping[str, Sequence[float]] | None = None, background: str = "white") -> npt.NDArray[np.uint8]:
    """Render surfaces together offscreen and return the picture (see :func:`render_views`).

    Parameters
    ----------
    meshes : mapping
        ``{class name: PolyData}`` in mesh coordinates (nm); empty meshes are skipped.
    view : str
        One of :data:`VIEWS` (``xy``, ``xz``, ``yz``, ``iso``).  The orthogonal views use a parallel
        projection; ``iso`` a perspective one.
    size : (width, height)
        Picture size in pixels.
    colors : mapping, optional
        RGB in [0, 1] per class name; default :func:`class_color` (light-grey support, red particles).
    background : str
        Background colour.

    Returns
    -------
    ndarray, shape (height, width, 3), uint8
        The RGB picture.
    """
    return render_views(meshes, [view], size, colors, background)[view]


def render_views(meshes: Mapping[str, pv.PolyData], views: Sequence[str], size: Sequence[int] = (800, 600),
                 colors: Mapping[str, Sequence[float]] | None = None,
                 background: str = "white") -> dict[str, npt.NDArray[np.uint8]]:
    """Render surfaces from several viewpoints, offscreen, in a fresh process.

    The OpenGL context (Mesa's OSMesa/llvmpipe on machines without a display) is never created in the
    calling process: Mesa's LLVM and TensorFlow's cannot share one process (a segmentation fault in
    whichever loads second, seen with VTK 9.7 + TensorFlow 2.21), and a workflow or notebook may do both.

    Parameters
    ----------
    meshes, size, colors, background
        As :func:`render`.
    views : sequence of str
        Viewpoints from :data:`VIEWS`.

    Returns
    -------
    dict
        ``{view: ndarray (height, width, 3) uint8}``.
    """
    for view in views:
        if view not in VIEWS:
            raise InputError("render view", f"unknown view {view!r}", f"use one of {', '.join(VIEWS)}")
    width, height = (int(s) for s in size)
    if width < 16 or height < 16:
        raise InputError("mesh.render_size", f"render size must be at least 16×16 px, got {list(size)}", "use e.g. [800, 600]")
    import os
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    job = pickle.dumps((dict(meshes), list(views), (width, height), colors, background))
    env = offscreen_environment()
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", "from tomoflow.mesh.render import _render_child; _render_child()"],
                          input=job, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"offscreen rendering failed (exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:] or ''}")
    return pickle.loads(proc.stdout)


def _render_child() -> None:
    """Entry point of the rendering process: pickled job on stdin, pickled pictures on stdout."""
    import pickle
    import sys

    meshes, views, size, colors, background = pickle.loads(sys.stdin.buffer.read())
    pictures = _render_here(meshes, views, size, colors, background)
    sys.stdout.buffer.write(pickle.dumps(pictures))
    sys.stdout.buffer.flush()


def _render_here(meshes: Mapping[str, pv.PolyData], views: Sequence[str], size: tuple[int, int],
                 colors: Mapping[str, Sequence[float]] | None, background: str) -> dict[str, npt.NDArray[np.uint8]]:
    """:func:`render_views` in this process (the child)."""
    return {view: _render_one(meshes, view, size, colors, background) for view in views}


def _render_one(meshes: Mapping[str, pv.PolyData], view: str, size: tuple[int, int],
                colors: Mapping[str, Sequence[float]] | None, background: str) -> npt.NDArray[np.uint8]:
    width, height = size
    pl: Any = pv.Plotter(off_screen=True, window_size=[width, height])  # Any: PyVista's decorated methods defeat mypy
    try:
        pl.set_background(background)
        bounds = None
        for k, (name, mesh) in enumerate(meshes.items(), start=1):
            if mesh is None or mesh.n_cells == 0:
                continue
            col = tuple(colors[name]) if colors and name in colors else class_color(name, k)
            mesh = mesh.copy(deep=False)
            mesh.clear_data()
            pl.add_mesh(mesh, color=col, smooth_shading=True, specular=0.25, specular_power=20, ambient=0.15,
                        diffuse=0.8, name=name)
            b = np.asarray(mesh.bounds, dtype=float).reshape(3, 2)
            bounds = b if bounds is None else np.stack([np.minimum(bounds[:, 0], b[:, 0]), np.maximum(bounds[:, 1], b[:, 1])], axis=1)
        if bounds is None:
            log.warning("render %s: nothing to show (all meshes empty)", view)
            return np.full((height, width, 3), 255 if background == "white" else 0, dtype=np.uint8)
        direction, up = (np.asarray(v, dtype=float) for v in VIEWS[view])
        centre = bounds.mean(axis=1)
        radius = float(np.linalg.norm(bounds[:, 1] - bounds[:, 0])) / 2 or 1.0
        direction /= np.linalg.norm(direction)
        pl.camera.focal_point = tuple(centre)
        pl.camera.position = tuple(centre - direction * radius * 4.0)
        pl.camera.up = tuple(up)
        if view != "iso":
            pl.enable_parallel_projection()
        pl.reset_camera(bounds=tuple(bounds.ravel()))
        pl.camera.zoom(1.1)
        pl.add_axes(xlabel="x", ylabel="y", zlabel="z", line_width=2, color="black")
        img = pl.screenshot(return_img=True)
    finally:
        pl.close()
    return np.ascontiguousarray(np.asarray(img)[..., :3], dtype=np.uint8)
