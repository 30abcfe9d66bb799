"""Tomographic reconstruction: MLEM, OSEM, SIRT and FBP on ASTRA projectors, or TomoPy's MLEM.

Geometry is the one of :mod:`tomoflow.projector` (see :mod:`tomoflow` for axes): sinogram
``tilt_series[:, y, :]`` (n_tilts, n_det) reconstructs slice ``volume[y]`` (thickness_px, n_det); at 0°
tilt the projection of a slice is its sum over z; the rotation axis sits at the centre of the
reconstructed slice and projects to detector coordinate ``n_det / 2 + center_offset_px`` (pixel-edge
coordinates), so a stack with a known centre offset is reconstructed without resampling.

Algorithms (``A`` = system matrix of one slice, ``y`` = its sinogram, products and quotients
element-wise):

* ``mlem`` - ``x ← x · Aᵀ(y / Ax) / Aᵀ1`` (Shepp & Vardi 1982).  ``y`` is clipped at 0 first
  (HAADF data are counts; negative background noise has no meaning to a Poisson model), ``y / Ax``
  is taken as 0 where ``Ax`` vanishes and voxels that no ray sees (``Aᵀ1 = 0``) stay 0.  The start
  is a per-slice constant ``Σy / Σ Aᵀ1`` (so the first forward projection carries the measured
  total), which keeps every slice independent of how the slices are split into slabs.
* ``osem`` - the same update on ``subsets`` interleaved angle subsets in turn (Hudson & Larkin
  1994); one *iteration* is one pass over all subsets.  ``subsets=1`` is exactly MLEM.  A voxel that
  one subset does not see (possible with a centre offset) keeps its value in that sub-iteration.
* ``sirt`` - ``x ← max(0, x + C Aᵀ R (y − Ax))`` with ``R = 1/A1``, ``C = 1/Aᵀ1`` (ASTRA's SIRT with
  ``MinConstraint=0``), starting from 0.
* ``fbp`` - Ram-Lak filtered back-projection with angle weights ``Δθ`` (radians) for uneven or
  limited tilt ranges; no iterations, empty misfit.

Units: the volume is in "counts per pixel of path length": the forward projection of the volume
(voxel = 1 px) reproduces the measured counts, so ``volume.sum(axis=1)`` of a reconstruction from a
0° image is that image.  Multiply by ``1 / pixel_size_nm`` for counts per nm.

Backends (one module each; :func:`reconstruct` in :mod:`~tomoflow.recon.dispatch` picks one).
``batched`` (:mod:`~tomoflow.recon.batched`, ``recon.method: auto`` default): every slice of a slab
has the same system matrix, exported once from ASTRA's own projector and cached
(:mod:`~tomoflow.recon.matrix`); a slab is then one sparse × dense product per projection, threaded
over column blocks (CPU) or on CuPy (GPU).  It applies to MLEM/OSEM/SIRT with the ``line``,
``linear`` and ``strip`` projectors when the matrix fits the memory budget; otherwise (FBP,
``distance_driven``, too little memory - logged) ``astra_cpu`` runs ASTRA's 2-D projectors slice by
slice in Python threads (ASTRA releases the GIL).  Where ``astra.use_cuda()`` is true (and
``device`` is ``"auto"`` or ``"gpu"``) and CuPy is absent, MLEM runs ASTRA's ``EM_CUDA``
(``astra_cuda``) and the other algorithms ASTRA's ``FP_CUDA``/``BP_CUDA``; the GPU paths follow
the documented APIs but have not been run on a GPU by the authors.  ``tomopy`` calls TomoPy's
``recon`` one iteration at a time (:mod:`~tomoflow.recon.tomopy`).  All backends share one
start estimate and one set of normalisations (:mod:`~tomoflow.recon.sensitivity`), so batched and
per-slice outputs agree to float rounding (relative RMS < 1e-5).

Misfit.  ``ReconResult.misfit[k]`` is ``‖A x_(k+1) − y‖₂ / ‖y‖₂`` over all slices for the estimate
after ``k + 1`` iterations (passes), with ``y`` the data as fitted (clipped at 0 for MLEM/OSEM).
It is exact: the forward projection that starts the next pass provides it (one extra forward
projection at the end), so it costs nothing for MLEM/SIRT and one full forward projection per pass
for OSEM.
"""

from __future__ import annotations

from ..validate import MIN_TILTS, check_signal, check_tilt_series, neighbour_correlation
from .astra_cpu import angle_weights, ramp_filter, reconstruct_per_slice
from .dispatch import choose_method, default_memory_budget_mb, reconstruct
from .figures import misfit_figure, orthoslices_figure
from .matrix import SystemMatrix, clear_matrix_cache, matrix_cache_stats, system_matrix
from .sensitivity import Sensitivities, backproject_ones, sensitivities, subset_layout, subset_order
from .settings import ALGORITHMS, BACKENDS, DEVICES, METHODS, ProgressFn, ReconResult, ReconSettings
from .slabs import (
    combine_misfit,
    gather_misfit,
    misfit_table,
    reconstruct_slab,
    reconstruct_slab_job,
    tomogram_outputs,
)

__all__ = [
    "ALGORITHMS", "BACKENDS", "DEVICES", "METHODS", "MIN_TILTS", "ProgressFn", "ReconResult", "ReconSettings",
    "Sensitivities", "SystemMatrix", "angle_weights", "backproject_ones", "check_signal", "check_tilt_series",
    "choose_method", "clear_matrix_cache", "combine_misfit", "default_memory_budget_mb", "gather_misfit",
    "matrix_cache_stats", "misfit_figure", "misfit_table", "neighbour_correlation", "orthoslices_figure",
    "ramp_filter", "reconstruct", "reconstruct_per_slice", "reconstruct_slab", "reconstruct_slab_job",
    "sensitivities", "subset_layout", "subset_order", "system_matrix", "tomogram_outputs",
]
