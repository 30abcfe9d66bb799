"""Tilt-series alignment: translations, tilt-axis angle, rotation centre, projection matching, frame.

Model: :mod:`tomoflow.geometry` (the one shared with :mod:`tomoflow.synthetic`).  Raw image ``i`` is the
ideal projection rotated by the in-plane tilt-axis angle φ and shifted by ``s_i``; the aligned stack has
the tilt axis along y at the detector centre; ``A_i(q) = P_i(q + c e_x + t_i)`` with ``t_i = R_φ⁻¹ s_i``.

Frame (what users see).  The data fix ``T_i = c + t_x,i`` only up to ``dX cos θ + dZ sin θ`` (a specimen
translation).  The aligner works in the minimum-drift gauge (:func:`tomoflow.geometry.fix_gauge`, in which
``c`` is reported) and then places the specimen in a documented frame, recorded in ``alignment.json``
``"frame"``:

* x (across the axis): where the reference (lowest-tilt, ≈ 0°) raw image shows it — the aligned
  reference image is the raw one rotated about the image centre, not shifted (``T_ref = 0``);
* z (thickness): the specimen's centre of mass on the rotation axis, i.e. at the centre of the
  reconstructed volume's thickness (fitted from the projected centres of mass ``X cos θ + Z sin θ``);
  when the specimen is not fully in view across the axis the centre of mass is unusable and z stays in
  the minimum-drift gauge (the frame entry says so);
* y (along the axis): as the reference image shows it (``t_y,ref = 0``).

:mod:`tomoflow.synthetic` writes its truth (labels, density) in this frame.

Pipeline (:func:`align_tilt_series`, module :mod:`.pipeline`):

1. coarse translations: band-passed, tapered, cosine-stretched cross-correlation of neighbouring tilts,
   accumulated outward from the reference tilt, in the frame rotated by the prior φ (:mod:`.registration`);
2. tilt axis: the signed axis error of the row centre-of-mass tracking criterion (ETSpy's ``tilt_com``;
   common lines when the specimen leaves the field of view) is bracketed on a coarse grid around the prior
   (widened up to ``max_tilt_axis_change_deg``, failing when no zero is found) and refined by
   secant/bisection; value, jackknife uncertainty, the score curve and ``hit_bound`` go to
   ``alignment.json`` ``"tilt_axis"`` and the QC figure (:mod:`.tilt_axis`);
3. optional centre-of-mass x alignment; gauge fix; rotation centre ``c`` by a grid scan of the sharpness
   of an FBP of a block of rows (extended while the best value is at an end, parabola refinement)
   (:mod:`.refine`);
4. projection matching: reconstruct → reproject → register every tilt against its reprojection, a few
   rounds (binned first for large images), ``c`` re-scanned between rounds, then one measured round;
5. frame (above);
6. diagnostics: reprojection misfit per row band, neighbour correlations, sinogram continuity;
7. quality gate: RMS of the last registration corrections (px) and the worst/median row-band misfit.

Exports (:mod:`.export`): IMOD ``.xf``, per-tilt table; QC figure (:mod:`.qc`).
"""

from ..geometry import fix_gauge, output_shape_for
from .export import alignment_table, format_xf, imod_xf, write_imod_xf
from .model import Alignment, AlignmentQualityError, AlignmentResult, AlignParams
from .outputs import AlignmentOutputs, align_sample
from .pipeline import align_tilt_series, frame_offsets, preprocess_raw_stack
from .qc import alignment_qc_figure, check_row_bands, sinogram_continuity
from .refine import Reconstructor, estimate_center, projection_matching_round, sharpness
from .registration import center_of_mass_x, neighbour_chain
from .tilt_axis import (
    AxisSearch,
    axis_error_from_common_lines,
    axis_error_from_row_com,
    search_tilt_axis,
    specimen_in_view,
)
from .warp import BIN_ABOVE_PX, apply_alignment, bin_images, warp_stack, working_binning

__all__ = [
    "BIN_ABOVE_PX",
    "AlignParams",
    "Alignment",
    "AlignmentOutputs",
    "AlignmentQualityError",
    "AlignmentResult",
    "AxisSearch",
    "Reconstructor",
    "align_sample",
    "align_tilt_series",
    "alignment_qc_figure",
    "alignment_table",
    "apply_alignment",
    "axis_error_from_common_lines",
    "axis_error_from_row_com",
    "bin_images",
    "center_of_mass_x",
    "check_row_bands",
    "estimate_center",
    "fix_gauge",
    "format_xf",
    "frame_offsets",
    "imod_xf",
    "neighbour_chain",
    "output_shape_for",
    "preprocess_raw_stack",
    "projection_matching_round",
    "search_tilt_axis",
    "sharpness",
    "sinogram_continuity",
    "specimen_in_view",
    "warp_stack",
    "working_binning",
    "write_imod_xf",
]
