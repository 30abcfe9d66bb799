"""Surface meshes of label volumes in nanometres, and offscreen renders.

Pipeline of :func:`isosurface` (one binary mask, e.g. one class of a label volume):

1. crop the mask to its bounding box and pad it (zeros: every object, also one cut by the volume border,
   gets a closed surface; or ``closed=False``: edge-replicated padding, see below);
2. marching cubes (VTK flying edges) at level 0.5 on the 0/1 mask, in physical coordinates (nm);
3. windowed-sinc smoothing (``vtkWindowedSincPolyDataFilter``, Taubin's low-pass filter) that removes the
   voxel staircase without the shrinkage of Laplacian smoothing;
4. volume restoration: every closed connected piece of the smoothed surface is moved along its vertex
   normals (a uniform offset per piece, Newton steps) until it encloses the same volume as before smoothing
   (the sinc filter does not shrink large objects, but a particle a few voxels across is all "high
   frequency" and would lose up to half its volume); optionally (``volume_nm3``) to a given volume;
5. optional quadric decimation (with volume preservation) to a target size.

:func:`object_surfaces` / :func:`class_meshes` mesh every connected object on its own crop and offset it to
enclose its voxel-count volume (marching cubes at 0.5 on a binary mask cuts corners: −6 % volume at a
radius of 2.5 voxels, −35 % at 1.25), so small particles keep their size, and tag it with cell data
``component_id`` (= ``particle_id`` in ``particles.tsv``).

Accuracy on voxelised spheres (``benchmarks/mesh.py``, mean over sub-voxel centre offsets; ``tests/
test_mesh.py`` checks r = 10 voxels): at r ≥ 10 voxels, isotropic or anisotropic, the area of
:func:`class_meshes` surfaces is +0.7…+1.0 % of 4πr² and the volume within 0.1 % of 4/3πr³ (plain
:func:`isosurface`: area +0.4…+0.8 %, volume −0.1…−0.5 %); at r = 5 / 2.5 / 1.25 voxels the area is within
+1 / +2 / +7 % (unsmoothed marching cubes: +8…+10 % at every size ≥ 5 voxels; voxel faces: +50 %).
Surfaces are closed 2-manifolds (no boundary edges).

Axis mapping.  Label volumes are ``(n_slices, n_z, n_x)`` = (y, z, x) with voxel size ``(dy, dz, dx)`` nm.
Mesh coordinates are nanometres with

    mesh (X, Y, Z) = volume axes (2, 0, 1) = (x, y, z),

so the voxel with index ``(iy, iz, ix)`` has its centre at ``(ix·dx, iy·dy, iz·dz)`` nm.  The mapping is a
cyclic permutation of the axes (determinant +1): right-handed, nothing is mirrored.

Offscreen rendering (:mod:`tomoflow.mesh.render`) happens in a child process whose environment comes
from :func:`offscreen_environment` (the one place that sets ``VTK_DEFAULT_OPENGL_WINDOW``).

Modules: :mod:`~tomoflow.mesh.surfaces` (surfaces and their checks), :mod:`~tomoflow.mesh.render`,
:mod:`~tomoflow.mesh.sample` (:func:`mesh_sample`, the ``export_meshes`` rule's one call).
"""

from .render import (
    CLASS_COLORS,
    OFFSCREEN_ENV,
    PALETTE,
    VIEWS,
    class_color,
    offscreen_environment,
    render,
    render_views,
)
from .sample import MeshSettings, SampleMeshes, mesh_sample
from .surfaces import (
    AXIS_MAPPING,
    AXIS_ORDER,
    class_meshes,
    empty_mesh,
    index_to_nm,
    isosurface,
    mask_to_image,
    merge_surfaces,
    mesh_stats,
    n_boundary_edges,
    object_surfaces,
    signed_volume,
    voxel_size_3,
)

__all__ = [
    "AXIS_MAPPING",
    "AXIS_ORDER",
    "CLASS_COLORS",
    "OFFSCREEN_ENV",
    "PALETTE",
    "VIEWS",
    "MeshSettings",
    "SampleMeshes",
    "class_color",
    "class_meshes",
    "empty_mesh",
    "index_to_nm",
    "isosurface",
    "mask_to_image",
    "merge_surfaces",
    "mesh_sample",
    "mesh_stats",
    "n_boundary_edges",
    "object_surfaces",
    "offscreen_environment",
    "render",
    "render_views",
    "signed_volume",
    "voxel_size_3",
]
