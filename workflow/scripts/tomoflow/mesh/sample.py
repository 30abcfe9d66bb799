"""Meshes and renders of one sample (the ``export_meshes`` rule): settings and :func:`mesh_sample`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike

import numpy as np
import numpy.typing as npt
import pyvista as pv

from .. import io
from .render import render_views
from .surfaces import class_meshes, mesh_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshSettings:
    """Settings of the ``export_meshes`` rule (config ``mesh:``; the clean-up keys from ``quantify:``).

    Attributes
    ----------
    smoothing_iterations, pass_band, target_reduction
        Surface smoothing and decimation (:func:`tomoflow.mesh.isosurface`).
    render_size : (width, height)
        Render size in pixels.
    connectivity : {1, 2, 3}
        Neighbourhood of one object (``component_id``; ``quantify.connectivity``).
    min_particle_diameter_nm, remove_specks
        The clean-up shared with quantification (:func:`tomoflow.quantify.clean_segmentation`).
    """

    smoothing_iterations: int = 20
    pass_band: float = 0.05
    target_reduction: float = 0.0
    render_size: tuple[int, int] = (800, 600)
    connectivity: int = 3
    min_particle_diameter_nm: float = 0.5
    remove_specks: bool = True


@dataclass
class SampleMeshes:
    """Outputs of :func:`mesh_sample`: ``{class name: surface}`` (nm) and ``{view: RGB uint8 picture}``."""

    meshes: dict[str, pv.PolyData]
    renders: dict[str, npt.NDArray[np.uint8]] = field(default_factory=dict)
    n_specks_removed: int = 0


def mesh_sample(labels_path: str | PathLike[str], classes: Sequence[str], settings: MeshSettings,
                views: Sequence[str], *, pixel_size_nm: float | None = None) -> SampleMeshes:
    """Closed surfaces of every non-background class of a segmentation, and their offscreen renders.

    Parameters
    ----------
    labels_path : path
        Label volume ``(n_y, n_z, n_x)`` (e.g. ``results/{sample}/segmentation.tif``); cleaned first as for
        quantification (:func:`tomoflow.quantify.clean_segmentation`), so mesh ``component_id`` =
        ``particle_id`` of ``particles.tsv``.
    classes : sequence of str
        Class names, index = label value.
    settings : MeshSettings
    views : sequence of str
        Render viewpoints (:data:`tomoflow.mesh.VIEWS`).
    pixel_size_nm : float, optional
        Voxel size (nm) where the file's header has none.

    Returns
    -------
    SampleMeshes
    """
    from ..quantify import (  # quantify imports mesh: import here
        QuantifySettings,
        clean_segmentation,
    )

    names = [str(c) for c in classes]
    labels, voxel = io.read_labels(labels_path, len(names))
    vs = io.voxel_size_or(labels_path, voxel, pixel_size_nm)
    log.info("labels %s, voxel %.4g nm; meshing classes %s", labels.shape, vs, names[1:])
    clean = QuantifySettings(connectivity=settings.connectivity, remove_specks=settings.remove_specks,
                             min_particle_diameter_nm=settings.min_particle_diameter_nm)
    labels, n_specks = clean_segmentation(labels, vs, clean)
    meshes = class_meshes(labels, vs, names, smoothing_iterations=settings.smoothing_iterations,
                          pass_band=settings.pass_band, target_reduction=settings.target_reduction,
                          connectivity=settings.connectivity)
    for name, m in meshes.items():
        st = mesh_stats(m)
        log.info("%s: %d connected surface pieces, %d triangles, area %.6g nm², volume %.6g nm³, %d boundary edges",
                 name, st["n_pieces"], st["n_triangles"], st["area_nm2"], st["volume_nm3"], st["n_boundary_edges"])
    renders = render_views(meshes, list(views), settings.render_size) if views else {}
    return SampleMeshes(meshes, renders, n_specks)
