"""Synthetic γ-Al2O3 / Pt catalyst specimen and its misaligned HAADF-STEM tilt series.

The specimen imitates the one of the reference study: a plate-like γ-Al2O3 particle with a roughly
rhombic outline (in the y–x plane, broad faces normal to the beam at 0° tilt), whose broad faces carry
periodic ridge facets and small ledges, an internal network of elongated pores aligned with the facets,
and Pt nanoparticles of 1–4 nm diameter anchored on the faces, preferentially on facet apexes
(ridge crests).  Background is empty.

The tilt series is the ASTRA parallel-beam projection of a 2× supersampled density (so the
reconstruction does not commit the "inverse crime" of using the simulation's own discretisation),
scaled to counts at a configurable dose, misaligned, then corrupted by Poisson and Gaussian read noise.

Misalignment model (what :mod:`tomoflow.align` inverts).  For tilt ``i`` with ideal projection ``P_i``
(tilt axis along image y, projected rotation axis at ``x = n_x/2 + c``: the centre offset ``c``), the raw
image is::

    raw_i(p) = P_i(R_φ⁻¹ (p − o − s_i) + o),   p = (x, y) = (column, row),
    o = ((n_x − 1)/2, (n_y − 1)/2),  R_φ = [[cos φ, −sin φ], [sin φ, cos φ]],

with φ the in-plane tilt-axis angle (degrees) and ``s_i = (shift_x_px, shift_y_px)``, drawn independent
Gaussian (std ``shift_sigma_px``, 0 at the tilt closest to 0°, the reference) and then moved into the frame.

Frame.  The truth (labels, density) is written in the frame that :mod:`tomoflow.align` documents: the
specimen's centre of mass (of the density) lies at the centre of the volume's thickness (``center_mass_z``),
and the shifts carry the specimen translation ``−c cos θ / cos θ_ref`` so that the reference raw image shows the
specimen where the volume has it across the axis (:func:`frame_shifts`); then the reconstruction of a
correct alignment lines up with ``labels`` voxel for voxel.  The model is :mod:`tomoflow.geometry`.
"""

from ..geometry import remove_translation_gauge
from .pretrain import AnnotatedSlices, annotated_slices
from .specimen import BACKGROUND, PAPER_TEXTURE, PARTICLE, SUPPORT, Specimen, SupportTexture, make_specimen
from .tilt_series import (
    SimulationOutputs,
    TiltSeriesSim,
    forward_project_fine,
    frame_shifts,
    misalign_image,
    required_margin_px,
    simulate,
    simulate_outputs,
    simulate_tilt_series,
    specimen_figure,
    tilt_angles,
    truth_tables,
)

__all__ = [
    "AnnotatedSlices", "annotated_slices", "BACKGROUND", "PAPER_TEXTURE", "PARTICLE", "SupportTexture", "SUPPORT", "SimulationOutputs", "Specimen", "TiltSeriesSim", "forward_project_fine", "frame_shifts", "make_specimen",
    "misalign_image", "remove_translation_gauge", "required_margin_px", "simulate", "simulate_outputs", "simulate_tilt_series", "specimen_figure",
    "tilt_angles", "truth_tables",
]
