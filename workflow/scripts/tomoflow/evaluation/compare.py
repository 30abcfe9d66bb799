"""Several models of one run side by side (rule ``compare_models``): training record and Table 1 numbers.

For every named model (``results/models/{model}/``): the best epoch and its validation loss
(``history.tsv``, ``class_weights.json``), the Keras validation DSC per class at that epoch, and Table 1
numbers - DSC, precision and recall per class as mean ± 95 % CI over patches, and the robust Hausdorff
distance RHD90 (nm, mean ± 95 % CI) with the counts of patches where a value is undefined (NaN: class
absent from truth and prediction; inf: absent from one of them) - on the split's **test** patches when the
split has a non-empty ``"test"`` list, otherwise on its **validation** patches (column ``evaluated_on``
says which; validation patches also chose the best epoch, so they flatter every model alike).

Each patch is cut from its annotated slice predicted whole (:func:`predict_validation_patches`), as in
:func:`tomoflow.evaluation.evaluate_sample`; per-patch metrics from
:func:`tomoflow.metrics.segmentation_metrics`, aggregates from :func:`tomoflow.metrics.aggregate_metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import io
from ..errors import InputError
from ..metrics import DEFAULT_PERCENTILES, aggregate_metrics
from ..unet import metric_name
from .patches import cut_patches, evaluate_stack, predict_validation_patches, validation_records
from .tables import _fmt

log = logging.getLogger(__name__)

Pathish = str | PathLike[str]

__all__ = ["ModelFiles", "compare_models", "comparison_figure", "evaluation_set"]


@dataclass(frozen=True)
class ModelFiles:
    """The files of one trained model (``results/models/{name}/``)."""

    name: str
    model: Pathish
    history: Pathish
    class_weights: Pathish
    split: Pathish


def evaluation_set(split: Mapping[str, Any], where: str = "split.json") -> tuple[str, list[dict[str, int | str]]]:
    """``("test", records)`` when the split has a non-empty test list, else ``("validation", records)``."""
    test = validation_records(split, None, where, key="test")
    if test:
        return "test", test
    return "validation", validation_records(split, None, where, key="validation")


def _scores(files: ModelFiles, images: Mapping[str, Any], labels: Mapping[str, Any], pixel_nm: Mapping[str, float],
            classes: Sequence[str], percentiles: Sequence[float], batch_size: int, tta: bool) -> tuple[str, int, dict[int, dict[str, Any]]]:
    from ..io.models import load_model

    which, records = evaluation_set(io.read_json(files.split), str(files.split))
    if not records:
        raise InputError(files.split, f"no {which} patches to compare the models on", "re-run train_unet with more annotated slices")
    model = load_model(files.model, compile=False)
    results: list[dict[int, dict[str, Any]]] = []
    ids = list(range(len(classes)))
    for sample in dict.fromkeys(str(r["sample"]) for r in records):
        if sample not in images:
            raise InputError(files.split, f"{which} patches of sample {sample!r}, whose annotations are not an input",
                             "re-run train_unet: the split must match train.samples")
        recs = [r for r in records if r["sample"] == sample]
        pred = predict_validation_patches(model, images[sample], recs, n_classes=len(classes),
                                          patch_size=(int(recs[0]["height"]), int(recs[0]["width"])),
                                          batch_size=batch_size, tta=tta)
        truth = cut_patches(labels[sample], recs, where=f"{sample} annotations")
        results += evaluate_stack(truth, pred, pixel_size_nm=pixel_nm[sample], classes=ids, percentiles=percentiles,
                                  what=f"{files.name} {which} patch")
    return which, len(records), aggregate_metrics(results, ids)


def compare_models(models: Sequence[ModelFiles], samples: Sequence[str], images: Sequence[Pathish], labels: Sequence[Pathish],
                   classes: Sequence[str], *, percentiles: Sequence[float] = DEFAULT_PERCENTILES, batch_size: int = 8,
                   tta: bool = False, pixel_size_nm: float | None = None) -> pd.DataFrame:
    """One row per model: training record and Table 1 numbers on the test (or validation) patches.

    Parameters
    ----------
    models : sequence of ModelFiles
    samples : sequence of str
        ``train.samples``; ``images``/``labels`` are their annotation stacks ``(n, H, W)``, in that order.
    images, labels : sequence of path
    classes : sequence of str
    percentiles : sequence of float
        Robust Hausdorff percentiles; 90 must be among them for the RHD90 column (else it is NaN).
    batch_size, tta
        Prediction settings (``predict.batch_size``, ``predict.tta``).
    pixel_size_nm : float, optional
        Where an annotation file's header has none.

    Returns
    -------
    DataFrame
        Columns ``model, best_epoch, epochs, monitor, val_loss_best, val_loss_min, evaluated_on, n_patches``
        and per class ``c``: ``val_dsc_<c>`` (Keras, best epoch), ``dsc_<c>``, ``precision_<c>``,
        ``recall_<c>`` (``"mean ± ci95"`` with undefined counts), ``dsc_mean_<c>``, ``dsc_ci95_<c>``,
        ``rhd90_nm_<c>`` (``"mean ± ci95"``), ``n_nan_<c>`` (patches whose DSC is NaN: the class is in
        neither truth nor prediction) and ``n_inf_<c>`` (patches whose RHD90 is inf: the class is in only
        one of them).
    """
    names = [str(c) for c in classes]
    imgs, labs, px = {}, {}, {}
    for s, im, lab in zip(samples, images, labels):
        stack, vs = io.read_volume(im)
        imgs[s], px[s] = stack.astype(np.float32), io.voxel_size_or(im, vs, pixel_size_nm)
        labs[s] = io.read_labels(lab, len(names))[0]
    pct = [float(p) for p in percentiles]
    rows = []
    for m in models:
        hist = io.read_tsv(m.history)
        cw = io.read_json(m.class_weights)
        best = int(cw.get("best_epoch") or int(np.nanargmin(hist["val_loss"].to_numpy())) + 1)
        which, n, agg = _scores(m, imgs, labs, px, names, pct, batch_size, tta)
        row: dict[str, Any] = {
            "model": m.name, "best_epoch": best, "epochs": len(hist), "monitor": cw.get("monitor", "val_loss"),
            "val_loss_best": float(hist["val_loss"].iloc[best - 1]), "val_loss_min": float(np.nanmin(hist["val_loss"])),
            "evaluated_on": which if which == "test" else "validation (no test set)", "n_patches": n,
        }
        for name in names:
            key = f"val_{metric_name(name)}"
            row[f"val_dsc_{name}"] = float(hist[key].iloc[best - 1]) if key in hist else math.nan
        for c, name in enumerate(names):
            a: dict[str, Any] = agg[c]
            for metric in ("dsc", "precision", "recall"):
                row[f"{metric}_{name}"] = _fmt(a[metric], "ci95", 3)
            row[f"dsc_mean_{name}"], row[f"dsc_ci95_{name}"] = a["dsc"]["mean"], a["dsc"]["ci95"]
            r90 = a["rhd_nm"][pct.index(90.0)] if 90.0 in pct else None
            row[f"rhd90_nm_{name}"] = _fmt(r90, "ci95", 2) if r90 is not None else "n/a"
            row[f"n_nan_{name}"] = int(a["dsc"]["n_nan"])  # class absent from truth and prediction
            row[f"n_inf_{name}"] = int(r90["n_inf"]) if r90 is not None else 0
            for p, r in zip(pct, a["rhd_nm"]):  # the RHD curve: mean over the patches where it is finite
                row[f"rhd_p{p:g}_nm_{name}"] = float(r["mean"])
        rows.append(row)
        log.info("%s: best epoch %d, val_loss %.4f, %s DSC %s", m.name, best, row["val_loss_best"], which,
                 ", ".join(f"{n} {row[f'dsc_{n}']}" for n in names))
    return pd.DataFrame(rows)


def comparison_figure(table: pd.DataFrame, histories: Mapping[str, pd.DataFrame], classes: Sequence[str]) -> Figure:
    """Validation loss per epoch of every model (left), DSC per class ± 95 % CI (middle) and the robust
    Hausdorff curves, mean RHD (nm) against percentile per class (right; one line style per model)."""
    fig = Figure(figsize=(16, 4), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for name, hist in histories.items():
        ax1.plot(hist["epoch"], hist["val_loss"], "-", label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("validation loss (each model's own loss)")
    ax1.legend()
    names = [str(c) for c in classes]
    width = 0.8 / max(1, len(table))
    x = np.arange(len(names))
    for k, (_, row) in enumerate(table.iterrows()):
        means = [row[f"dsc_mean_{n}"] for n in names]
        cis = [row[f"dsc_ci95_{n}"] if math.isfinite(row[f"dsc_ci95_{n}"]) else 0.0 for n in names]
        ax2.bar(x + (k - (len(table) - 1) / 2) * width, means, width, yerr=cis, capsize=3, label=str(row["model"]))
    ax2.set_xticks(x, names)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("DSC (mean ± 95 % CI over patches)")
    on = sorted(set(table["evaluated_on"])) if len(table) else []
    ax2.set_title(f"evaluated on: {', '.join(on)}", fontsize=9)
    ax2.legend(loc="lower right")
    styles = ["-", "--", ":", "-."]
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k, (_, row) in enumerate(table.iterrows()):
        for c, n in enumerate(names):
            cols = [col for col in table.columns if col.startswith("rhd_p") and col.endswith(f"_nm_{n}")]
            pts = sorted((float(col[len("rhd_p"):-len(f"_nm_{n}")]), float(row[col])) for col in cols)
            if pts:
                ax3.plot([p for p, _ in pts], [v for _, v in pts], styles[k % len(styles)], color=colors[c % len(colors)],
                         label=f"{row['model']}: {n}")
    ax3.set_xlabel("percentile")
    ax3.set_ylabel("robust Hausdorff distance (nm, mean over patches)")
    ax3.legend(fontsize=7)
    fig.suptitle("Models side by side")
    return fig
