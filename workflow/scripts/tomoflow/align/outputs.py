"""Everything the rule ``align_tilt_series`` writes, from one call (:func:`align_sample`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from .export import alignment_table
from .model import Alignment, AlignParams
from .pipeline import align_tilt_series
from .qc import alignment_qc_figure

log = logging.getLogger("tomoflow.align")


@dataclass
class AlignmentOutputs:
    """The products of :func:`align_sample`: aligned stack (n_tilts, n_y', n_x') float32, per-tilt table
    (pandas.DataFrame), ``alignment.json`` content, QC figure, and the :class:`Alignment` (for ``.xf``/``.tlt``)."""

    alignment: Alignment
    aligned: Any
    table: Any
    summary: dict[str, Any]
    figure: Figure


def align_sample(ts: Any, align_config: dict[str, Any], *, tilt_axis_prior_deg: float | None, thickness_px: int | None,
                 threads: int, name: str) -> AlignmentOutputs:
    """Align a tilt series read by :func:`tomoflow.io.read_tilt_series` with the config section ``align``.

    Parameters
    ----------
    ts : tomoflow.io.TiltSeries
        ``data`` (n_tilts, n_y, n_x) counts, ``angles_deg`` degrees, ``pixel_size_nm``, ``path``, ``angles_source``.
    align_config : dict
        Config section ``align``.
    tilt_axis_prior_deg : float or None
        The sample's prior tilt-axis angle, degrees (None: 0).
    thickness_px : int or None
        Reconstruction thickness for projection matching, px.
    threads : int
    name : str
        Sample name (figure title).

    Returns
    -------
    AlignmentOutputs
    """
    log.info("%s: %d tilts of %dx%d px, %.1f..%.1f deg, %.3f nm/px (angles: %s)", ts.path, *ts.data.shape,
             ts.angles_deg.min(), ts.angles_deg.max(), ts.pixel_size_nm, ts.angles_source)
    params = AlignParams.from_config(align_config)
    res = align_tilt_series(ts.data, ts.angles_deg, params=params, tilt_axis_prior_deg=float(tilt_axis_prior_deg or 0.0),
                            thickness_px=thickness_px, threads=threads, where=ts.path)
    a = res.alignment
    summary = a.to_json() | {"pixel_size_nm": ts.pixel_size_nm, "tilt_series": ts.path, "angles_source": ts.angles_source,
                             "params": vars(params)}
    return AlignmentOutputs(a, res.aligned, alignment_table(a), summary, alignment_qc_figure(ts.data, res.aligned, a, title=name))
