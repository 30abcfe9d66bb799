"""Quantification of one sample (the ``quantify`` rule): settings, the shared clean-up, :func:`quantify_sample`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from .. import io
from ..errors import InputError
from .cleanup import remove_specks
from .measure import quantify
from .reference import compare, match_specimen, size_histogram, specimen_particles

log = logging.getLogger(__name__)

Pathish = str | PathLike[str]

#: Default minimum particle diameter (nm).  A Pt particle is at least a few atoms: the smallest
#: closed-shell cluster, Pt13 (cuboctahedron, Pt–Pt 0.277 nm), measures 0.55 nm between opposite atom
#: centres and ~0.8 nm including the atoms.  0.5 nm keeps every physically possible particle; at the demo's
#: 0.4 nm voxels it drops exactly the one-voxel components (equivalent diameter 0.496 nm; two voxels: 0.625).
MIN_PARTICLE_DIAMETER_NM = 0.5


@dataclass(frozen=True)
class QuantifySettings:
    """Settings of quantification and of the clean-up shared with the meshes (config ``quantify:``,
    smoothing from ``mesh:``).

    Attributes
    ----------
    connectivity : {1, 2, 3}
        Neighbourhood of one particle (6 / 18 / 26 neighbours).
    contact_distance_nm : float
        A particle touches the support within this gap (nm).
    envelope_closing_nm : float
        Closing radius of the support envelope (nm).
    min_particle_diameter_nm : float
        Components of the particle label with a smaller equivalent diameter (nm) are not particles.
    remove_specks : bool
        Relabel those components of the *predicted* segmentation with their surroundings' label before
        quantification and meshing (:func:`clean_segmentation`); without it they stay in the labels
        (meshes, volume fractions) but are still not counted.
    smoothing_iterations, pass_band
        Surface smoothing (:func:`tomoflow.mesh.isosurface`).
    """

    connectivity: int = 3
    contact_distance_nm: float = 0.5
    envelope_closing_nm: float = 1.0
    min_particle_diameter_nm: float = MIN_PARTICLE_DIAMETER_NM
    remove_specks: bool = True
    smoothing_iterations: int = 20
    pass_band: float = 0.05


@dataclass
class QuantifyResult:
    """Outputs of :func:`quantify_sample`.

    Attributes
    ----------
    particles : pandas.DataFrame
        One row per particle; column ``labels`` = ``predicted`` | ``true``, then :data:`PARTICLE_COLUMNS`.
    summary : dict
        JSON-ready: predicted, true and generator numbers side by side, settings, ``n_specks_removed``.
    size_hist : matplotlib.figure.Figure
        Histogram of equivalent diameters.
    """

    particles: pd.DataFrame
    summary: dict[str, Any]
    size_hist: Figure


def clean_segmentation(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float],
                       settings: QuantifySettings) -> tuple[np.ndarray, int]:
    """The clean-up both ``quantify`` and ``export_meshes`` apply to a predicted segmentation.

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x), uint8
    voxel_size_nm : float or (dy, dz, dx)
    settings : QuantifySettings

    Returns
    -------
    labels : ndarray, shape (n_y, n_z, n_x)
        :func:`tomoflow.quantify.remove_specks` of the labels when ``settings.remove_specks``, else them.
    n_removed : int
        Specks relabelled (0 without clean-up).
    """
    if not settings.remove_specks:
        return np.asarray(labels), 0
    return remove_specks(labels, voxel_size_nm, settings.min_particle_diameter_nm, connectivity=settings.connectivity)


def _measure(labels: np.ndarray, voxel_nm: float, settings: QuantifySettings, what: str,
             path: Pathish) -> tuple[pd.DataFrame, dict[str, Any]]:
    table, summary = quantify(labels, voxel_nm, connectivity=settings.connectivity,
                              contact_distance_nm=settings.contact_distance_nm,
                              envelope_closing_nm=settings.envelope_closing_nm,
                              smoothing_iterations=settings.smoothing_iterations, pass_band=settings.pass_band,
                              min_particle_diameter_nm=settings.min_particle_diameter_nm)
    summary["file"] = str(path)
    log.info("%s: %d particles, mean equivalent diameter %s nm", what, summary["n_particles"],
             summary["mean_equivalent_diameter_nm"])
    return table, summary


def quantify_sample(sample: str, classes: Sequence[str], segmentation: Pathish, settings: QuantifySettings, *,
                    pixel_size_nm: float | None = None, true_labels: Pathish | None = None,
                    specimen: Pathish | None = None) -> QuantifyResult:
    """Quantify a sample's predicted segmentation, beside its true labels and the generator's particles.

    Parameters
    ----------
    sample : str
        Sample name (titles, summary).
    classes : sequence of str
        Class names, index = label value: background, support, particles.
    segmentation : path
        Predicted label volume ``(n_y, n_z, n_x)``; cleaned by :func:`clean_segmentation`.
    settings : QuantifySettings
    pixel_size_nm : float, optional
        Voxel size (nm) where a file's header has none.
    true_labels : path, optional
        True label volume of the same shape (measured as is, with the same minimum size).
    specimen : path, optional
        The generator's ``specimen.json`` (needs ``true_labels``).

    Returns
    -------
    QuantifyResult
    """
    names = [str(c) for c in classes]
    if len(names) < 3:
        raise InputError("classes", f"quantification needs background, support and particles, got {names}",
                         "use `classes: [background, support, particles]` (label values 0, 1, 2)")
    labels, voxel = io.read_labels(segmentation, len(names))
    vs = io.voxel_size_or(segmentation, voxel, pixel_size_nm)
    log.info("predicted labels %s (%s), voxel %.4g nm", labels.shape, segmentation, vs)
    labels, n_specks = clean_segmentation(labels, vs, settings)
    pred_table, pred = _measure(labels, vs, settings, "predicted", segmentation)
    pred["n_specks_removed"] = n_specks
    tables = {"predicted": pred_table}
    true = match = reference = None
    if true_labels is not None:
        truth, voxel_t = io.read_labels(true_labels, len(names))
        if truth.shape != labels.shape:
            raise InputError(true_labels, f"true labels have shape {truth.shape}, the segmentation {labels.shape}",
                             "give true labels of the same volume (sample table column true_labels)")
        vs_true = io.voxel_size_or(true_labels, voxel_t, pixel_size_nm)
        tables["true"], true = _measure(truth, vs_true, settings, "true", true_labels)
        if specimen is not None:
            reference = specimen_particles(io.read_json(specimen), vs_true)
            match = match_specimen(tables["true"], reference)
            log.info("generator: %d particles (mean diameter %s nm); %d matched in the true labels",
                     match["n_reference"], match["mean_reference_diameter_nm"], match["n_matched"])
    summary: dict[str, Any] = {
        "sample": str(sample),
        "classes": {"support": names[1], "particles": names[2]},
        "settings": asdict(settings),
        "n_specks_removed": n_specks,
        "predicted": pred,
        "true": true,
        "generator": match,
        "comparison": compare(pred, true, match),
    }
    if reference is not None:
        summary["generator_vs_predicted"] = match_specimen(pred_table, reference)
    table = pd.concat([t.assign(labels=name) for name, t in tables.items()], ignore_index=True)
    table = table[["labels"] + [c for c in table.columns if c != "labels"]]
    fig = size_histogram(tables, None if reference is None else reference["diameter_nm"],
                         title=f"{sample}: particle sizes")
    return QuantifyResult(table, summary, fig)
