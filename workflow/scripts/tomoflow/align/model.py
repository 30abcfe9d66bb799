"""Data types of the alignment: settings, the alignment itself, the result, the quality-gate error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..geometry import rot


class AlignmentQualityError(InputError):
    """The alignment failed its quality gate (residual or row-band misfit; the stack would be unusable)."""


@dataclass
class AlignParams:
    """Alignment settings (config section ``align``; see config/README.md).

    Attributes
    ----------
    coarse : bool
        Cross-correlate neighbouring tilts for the initial translations.
    cosine_stretch : bool
        Stretch the higher tilt by ``cos θ_inner / cos θ_outer`` across the axis before correlating.
    upsample : int
        Sub-pixel factor of the cross-correlation (1/upsample px).
    bandpass_px : (float, float)
        Gaussian band-pass before correlation: (low sigma, high sigma), px.  0 disables a side.
    center_of_mass : bool
        Replace the x translations by centre-of-mass alignment (specimen fully in view, empty background).
    estimate_tilt_axis : bool
        Search φ from the data (else the prior is used).
    tilt_axis_search_deg : float
        Half-width of the first tilt-axis scan around the prior, degrees (widened while the best value
        lies on an edge, up to ``max_tilt_axis_change_deg``).
    max_tilt_axis_change_deg : float
        Largest accepted distance of φ from the prior, degrees; a best value on this bound fails the rule.
    estimate_center : bool
        Estimate the rotation-centre offset ``c`` (else 0).
    projection_matching_rounds : int
        Rounds of reconstruct → reproject → register (0 disables refinement).
    projection_matching_iterations : int
        SIRT iterations per projection-matching reconstruction.
    max_residual_px : float
        Quality gate on the RMS residual translation, px.
    max_band_misfit_ratio : float
        Quality gate: worst row band's reprojection misfit over the median band's (a wrong tilt axis makes
        the bands far from the centre much worse); above it the rule fails.
    remove_hot_pixels : bool
        Replace hot pixels / X-ray spikes by the local median before aligning (:mod:`tomoflow.preprocess`).
    hot_pixel_threshold : float
        Spike detection threshold, robust SDs of the local noise.
    max_band_axis_spread_px : float
        Quality gate: largest spread (px) of the rotation-axis position between row bands (specimen in view);
        a wrong tilt axis moves the axis across the bands; above it the rule fails.
    """

    coarse: bool = True
    cosine_stretch: bool = True
    upsample: int = 20
    bandpass_px: tuple[float, float] = (1.0, 30.0)
    center_of_mass: bool = False
    estimate_tilt_axis: bool = True
    tilt_axis_search_deg: float = 6.0
    max_tilt_axis_change_deg: float = 20.0
    estimate_center: bool = True
    projection_matching_rounds: int = 2
    projection_matching_iterations: int = 10
    max_residual_px: float = 1.0
    max_band_misfit_ratio: float = 3.0
    max_band_axis_spread_px: float = 2.0
    remove_hot_pixels: bool = True
    hot_pixel_threshold: float = 10.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> AlignParams:
        """Build from a config ``align:`` mapping (unknown keys are ignored)."""
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in dict(cfg).items() if k in names}
        if "bandpass_px" in kw:
            kw["bandpass_px"] = tuple(float(v) for v in kw["bandpass_px"])
        return cls(**kw)


@dataclass
class Alignment:
    """An alignment of one tilt series (everything needed to re-apply or export it).

    Attributes
    ----------
    angles_deg : ndarray, shape (n_tilts,)
        Tilt angles, degrees (order of the stack).
    shifts_px : ndarray, shape (n_tilts, 2)
        ``s_i = (shift_x, shift_y)`` in the raw frame, px (see :mod:`tomoflow.geometry`).
    tilt_axis_deg : float
        In-plane tilt-axis angle φ, degrees.
    center_offset_px : float
        Rotation-centre offset ``c`` along x of the axis-vertical frame, px, in the minimum-drift gauge
        (:func:`tomoflow.geometry.fix_gauge`); the frame translation is carried by the shifts.
    reference_index : int
        Index of the reference tilt (closest to 0°).
    input_shape : (int, int)
        Raw image shape (n_y, n_x).
    output_shape : (int, int)
        Aligned image shape.
    residual_px : float
        RMS residual translation of the last consistency check, px (the quality-gate value).
    residuals : dict
        Diagnostics (JSON-ready): ``per_tilt_px``, ``method``, misfits, the tilt-axis search, row bands,
        neighbour correlations, history.
    frame : dict
        The frame of the aligned stack (see the package docstring): ``dx_px``/``dz_px`` specimen translation
        applied from the minimum-drift gauge and a description.
    """

    angles_deg: npt.NDArray[np.float64]
    shifts_px: npt.NDArray[np.float64]
    tilt_axis_deg: float
    center_offset_px: float
    reference_index: int
    input_shape: tuple[int, int]
    output_shape: tuple[int, int]
    residual_px: float = float("nan")
    residuals: dict[str, Any] = field(default_factory=dict)
    frame: dict[str, Any] = field(default_factory=dict)

    def aligned_frame_shifts(self) -> npt.NDArray[np.float64]:
        """``t_i = R_φ⁻¹ s_i``, shape (n_tilts, 2) as (x, y), px."""
        return rot(-self.tilt_axis_deg, self.shifts_px)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (``alignment.json``)."""
        return {
            "tilt_axis_deg": float(self.tilt_axis_deg),
            "center_offset_px": float(self.center_offset_px),
            "reference_index": int(self.reference_index),
            "reference_angle_deg": float(self.angles_deg[self.reference_index]),
            "input_shape": [int(v) for v in self.input_shape],
            "output_shape": [int(v) for v in self.output_shape],
            "residual_px": float(self.residual_px),
            "tilt_axis": self.residuals.get("tilt_axis", {}),
            "row_bands": self.residuals.get("row_bands", {}),
            "frame": self.frame,
            "residuals": self.residuals,
            "convention": (
                "raw_i(p) = P_i(R_phi^-1 (p - o - s_i) + o), p=(x,y)=(column,row), o=((nx-1)/2,(ny-1)/2); "
                "aligned A_i(q) = raw_i(R_phi (q + c e_x - o') + o + s_i); tilt axis along y at the detector centre"
            ),
        }


@dataclass
class AlignmentResult:
    """Output of :func:`tomoflow.align.align_tilt_series`.

    Attributes
    ----------
    alignment : Alignment
    aligned : ndarray, shape (n_tilts, n_y', n_x'), float32
        Shifted and rotated stack, tilt axis along y at the detector centre, vacuum background
        (``alignment.residuals['background_counts']``, 0 when the images have no vacuum) subtracted.
    """

    alignment: Alignment
    aligned: npt.NDArray[np.float32]
