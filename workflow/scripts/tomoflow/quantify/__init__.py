"""Catalyst quantification from a label volume: particles, support, pores.

Label values follow the package convention (0 background/pores, 1 support, 2 particles; names are
configurable, values are not).  Volumes are ``(n_slices, n_z, n_x)`` = (y, z, x) with voxel size
``(dy, dz, dx)`` nm; voxel ``(iy, iz, ix)`` has its centre at ``(iy·dy, iz·dz, ix·dx)`` nm (the frame of
:mod:`tomoflow.mesh`, whose mesh X, Y, Z are these x, y, z).

Definitions (per particle = one connected component of the particle class, ``connectivity`` 1/2/3 =
6/18/26-neighbourhood):

* ``volume_nm3``: voxel count × voxel volume (exact for the labels; marching-cubes volumes are biased low
  for objects a few voxels across).
* ``equivalent_diameter_nm``: diameter of the sphere of that volume, (6V/π)^(1/3).
* ``centroid_{y,z,x}_nm``: mean voxel-centre position.
* ``surface_area_nm2``: area of the particle's own closed, smoothed surface (:func:`tomoflow.mesh.isosurface`,
  as in the meshes that ``export_meshes`` writes), scaled to enclose exactly ``volume_nm3`` (so that
  ``sphericity`` <= 1 up to the estimator's error).  On voxelised spheres (mean over sub-voxel centre
  offsets, ``benchmarks/mesh.py``) it is +0.7…+1 % of 4πr² at r >= 5 voxels, within +2 % at 2.5–3.75 and
  +4…+7 % at 1.25 voxels (voxel-face counting: +50 % at every size).  A particle cut by the volume border includes
  the cut face (``touches_border``).
* ``sphericity``: π^(1/3)(6V)^(2/3)/A (1 for a sphere).
* ``distance_to_support_nm``: gap between the particle's and the support's voxels, treating voxels as
  boxes: for every particle voxel the nearest support voxel centre (SciPy ``distance_transform_edt`` with
  ``sampling=`` voxel size) and the box-to-box gap ‖max(|Δindex| − 1, 0)·voxel‖; the minimum over the
  particle.  0 = face, edge or corner contact.  NaN without support.
* ``touches_support``: ``distance_to_support_nm <= contact_distance_nm``.

Support (label 1):

* ``support_surface_area_nm2``: all support/non-support interfaces inside the field of view, pore walls
  included, faces where the volume border cuts the support excluded (:func:`tomoflow.mesh.isosurface` with
  ``closed=False``).
* envelope = support after a morphological closing with a ball of radius ``envelope_closing_nm`` (pores
  connected to the outside through necks narrower than ~2× that radius count as inside) and 3-D hole
  filling (cavities not connected to the volume border); the volume is edge-padded for the closing so the
  border does not erode it.  ``support_external_surface_area_nm2`` is the envelope's surface area
  (field-of-view clipped as above); ``pore_volume_fraction`` = empty (label 0) voxels in the envelope /
  envelope voxels.
* ``particle_density_per_external_area_nm2`` = particles / external area (1/nm²);
  ``particle_density_per_support_area_nm2`` = particles / total support area.

Minimum size and clean-up (:mod:`tomoflow.quantify.cleanup`): a component of the particle label whose
equivalent diameter is below ``min_particle_diameter_nm`` (config ``quantify.min_particle_diameter_nm``,
default :data:`MIN_PARTICLE_DIAMETER_NM` = 0.5 nm) is not a particle: it gets no row and is not counted
(``n_below_min_size`` in the summary).  With ``quantify.remove_specks`` (default on) such specks of the
*predicted* segmentation are relabelled with the label of their surroundings by
:func:`clean_segmentation` (their number is ``n_specks_removed`` in ``summary.json``); the ``quantify``
and ``export_meshes`` rules both apply this same function with the same settings, so the meshes and the
numbers describe the same cleaned labels.  True labels are measured as they are (with the same minimum).

Modules: :mod:`~tomoflow.quantify.measure` (one label volume), :mod:`~tomoflow.quantify.cleanup`,
:mod:`~tomoflow.quantify.reference` (the generator's particles, comparison, histogram),
:mod:`~tomoflow.quantify.sample` (:func:`quantify_sample`, the ``quantify`` rule's one call).
"""

from .cleanup import remove_specks
from .measure import (
    PARTICLE_COLUMNS,
    PARTICLES,
    SUPPORT,
    label_summary,
    min_particle_voxels,
    particle_table,
    quantify,
    support_envelope,
    support_gap_nm,
)
from .reference import (
    COMPARED,
    compare,
    match_specimen,
    size_histogram,
    specimen_particles,
)
from .sample import (
    MIN_PARTICLE_DIAMETER_NM,
    QuantifyResult,
    QuantifySettings,
    clean_segmentation,
    quantify_sample,
)

__all__ = [
    "COMPARED",
    "MIN_PARTICLE_DIAMETER_NM",
    "PARTICLES",
    "PARTICLE_COLUMNS",
    "SUPPORT",
    "QuantifyResult",
    "QuantifySettings",
    "clean_segmentation",
    "compare",
    "label_summary",
    "match_specimen",
    "min_particle_voxels",
    "particle_table",
    "quantify",
    "quantify_sample",
    "remove_specks",
    "size_histogram",
    "specimen_particles",
    "support_envelope",
    "support_gap_nm",
]
