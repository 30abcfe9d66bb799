"""Evaluation of one sample (the ``evaluate_segmentation`` rule): settings and :func:`evaluate_sample`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import io
from ..errors import InputError
from ..metrics import DEFAULT_PERCENTILES, aggregate_metrics
from .figures import error_maps_figure, rhd_figure
from .patches import cut_patches, evaluate_stack, evaluate_volume, predict_validation_patches, select_examples, validation_records
from .tables import metrics_document, rhd_table, table1

log = logging.getLogger(__name__)

Pathish = str | PathLike[str]


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings of the ``evaluate_segmentation`` rule.

    Attributes
    ----------
    percentiles : tuple of float
        Percentiles of the robust Hausdorff distance (``evaluate.percentiles``).
    patch_size : (int, int)
        Model patch size, px (``train.patch_size``), for predicting the validation slices.
    batch_size : int
        Prediction batch size (``predict.batch_size``).
    tta : bool
        8-fold test-time augmentation (``predict.tta``).
    error_examples : int
        Images shown in the error-map figure (those with the most pixels of the last, sparsest class).
    """

    percentiles: tuple[float, ...] = tuple(DEFAULT_PERCENTILES)
    patch_size: tuple[int, int] = (128, 128)
    batch_size: int = 8
    tta: bool = False
    error_examples: int = 4


@dataclass
class EvaluationResult:
    """Outputs of :func:`evaluate_sample`: ``metrics.json`` document, Table 1, RHD table and the two figures."""

    metrics: dict[str, Any]
    table1: pd.DataFrame
    rhd: pd.DataFrame
    rhd_figure: Figure
    errors_figure: Figure


@dataclass
class _Set:
    aggregate: dict[int, dict[str, Any]]
    detail: dict[str, Any]
    examples: dict[str, Any]
    pixel_size_nm: float


def _validation_set(sample: str, names: list[str], settings: EvaluationSettings, split: Pathish, images: Pathish,
                    labels: Pathish, model: Pathish, pixel_size_nm: float | None) -> _Set | None:
    """Validation patches of the training split that belong to ``sample`` (None when it has none)."""
    records = validation_records(io.read_json(split), sample, where=str(split))
    if not records:
        log.info("no validation patches of sample %s in %s", sample, split)
        return None
    imgs, vox = io.read_volume(images)
    labs, _ = io.read_labels(labels, len(names))
    if imgs.shape != labs.shape:
        raise InputError(labels, f"labels {labs.shape} and images {imgs.shape} differ in shape", "re-run extract_annotations")
    pixel_nm = io.voxel_size_or(images, vox, pixel_size_nm)
    from ..io.models import load_model  # Keras: only when there is a model to run

    pred = predict_validation_patches(load_model(model, compile=False), imgs, records, n_classes=len(names),
                                      patch_size=settings.patch_size, batch_size=settings.batch_size, tta=settings.tta)
    truth = cut_patches(labs, records, where=str(labels))
    classes = list(range(len(names)))
    per_patch = evaluate_stack(truth, pred, pixel_size_nm=pixel_nm, classes=classes,
                               percentiles=settings.percentiles, what="validation patch")
    agg = aggregate_metrics(per_patch, classes)
    pick = select_examples(truth, settings.error_examples, classes[-1])
    examples = {"truth": truth[pick], "prediction": pred[pick], "images": cut_patches(imgs, records)[pick],
                "titles": [f"slice {records[k]['index']} y{records[k]['y0']} x{records[k]['x0']}" for k in pick]}
    return _Set(agg, {"records": records, "per_patch": per_patch, "aggregate": agg}, examples, pixel_nm)


def _volume_set(names: list[str], settings: EvaluationSettings, true_labels: Pathish, segmentation: Pathish,
                pixel_size_nm: float | None) -> tuple[_Set, dict[int, dict[str, Any]]]:
    """The predicted volume against the true labels: slice by slice and in 3-D."""
    truth, vt = io.read_labels(true_labels, len(names))
    pred, vp = io.read_labels(segmentation, len(names))
    vox_nm = io.voxel_size_or(segmentation, vp, vt if vt is not None else pixel_size_nm)
    if vt is not None and abs(vt - vox_nm) > 1e-3 * vox_nm:
        log.warning("voxel size of %s (%.4g nm) differs from %s (%.4g nm); using %.4g nm", true_labels, vt,
                    segmentation, vox_nm, vox_nm)
    classes = list(range(len(names)))
    per_slice, vol3d = evaluate_volume(truth, pred, voxel_size_nm=vox_nm, classes=classes,
                                       percentiles=settings.percentiles)
    agg = aggregate_metrics(per_slice, classes)
    pick = select_examples(truth, settings.error_examples, classes[-1])
    examples = {"truth": truth[pick], "prediction": pred[pick], "images": None, "titles": [f"slice {k}" for k in pick]}
    detail = {"shape": truth.shape, "per_slice": per_slice, "aggregate": agg, "volume_3d": vol3d}
    return _Set(agg, detail, examples, vox_nm), vol3d


def evaluate_sample(sample: str, classes: Sequence[str], settings: EvaluationSettings, *,
                    pixel_size_nm: float | None = None, split: Pathish | None = None, images: Pathish | None = None,
                    labels: Pathish | None = None, model: Pathish | None = None, true_labels: Pathish | None = None,
                    segmentation: Pathish | None = None) -> EvaluationResult:
    """DSC / precision / recall and (robust) Hausdorff distances of one sample's segmentation.

    Evaluates what the sample has (see :mod:`tomoflow.evaluation` for the sets): its validation patches of
    the training split (``split``, ``images``, ``labels``, ``model`` given together) and/or its predicted
    volume against true labels (``true_labels``, ``segmentation``).

    Parameters
    ----------
    sample : str
        Sample name (as in ``split.json``).
    classes : sequence of str
        Class names, index = label value.
    settings : EvaluationSettings
    pixel_size_nm : float, optional
        Voxel size (nm) where a file's header has none.
    split, images, labels, model : path, optional
        ``results/models/{model}/split.json``, the sample's annotation images and labels ``(n, H, W)``, the model.
    true_labels, segmentation : path, optional
        True and predicted label volumes ``(n_y, n_z, n_x)``.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    InputError
        When there is nothing to evaluate (no validation patches of the sample and no true labels).
    """
    names = [str(c) for c in classes]
    sets: dict[str, dict[int, dict[str, Any]]] = {}
    val = vol = None
    if split is not None and images is not None and labels is not None and model is not None:
        val = _validation_set(sample, names, settings, split, images, labels, model, pixel_size_nm)
        if val is not None:
            sets["validation_patches"] = val.aggregate
    if true_labels is not None and segmentation is not None:
        vol, vol3d = _volume_set(names, settings, true_labels, segmentation, pixel_size_nm)
        sets["volume_slices"] = vol.aggregate
        sets["volume_3d"] = aggregate_metrics([vol3d], list(range(len(names))))
    if val is None and vol is None:
        raise InputError(f"sample {sample}", "nothing to evaluate: no validation patches of this sample and no true labels",
                         "list the sample in train.samples or give it a true_labels volume in the sample table")
    shown = val if val is not None else vol
    assert shown is not None
    doc = metrics_document(sample=sample, class_names=names, percentiles=settings.percentiles,
                           pixel_size_nm=shown.pixel_size_nm, validation=None if val is None else val.detail,
                           volume=None if vol is None else vol.detail)
    t1, rhd = table1(sets, names), rhd_table(sets, names)
    log.info("Table 1 (%s):\n%s", sample, t1.to_string(index=False))
    for name, agg in sets.items():
        log.info("%s: %s", name, ", ".join(f"{names[c]} DSC {a['dsc']['mean']:.3f}" for c, a in agg.items()
                                           if np.isfinite(a["dsc"]["mean"])))
    ex = shown.examples
    errors = error_maps_figure(ex["truth"], ex["prediction"], names, images=ex["images"], titles=ex["titles"],
                               pixel_size_nm=shown.pixel_size_nm)
    return EvaluationResult(doc, t1, rhd, rhd_figure(rhd, names, title=f"{sample}: robust Hausdorff distance"), errors)
