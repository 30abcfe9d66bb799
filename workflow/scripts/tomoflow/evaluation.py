"""Evaluation of a segmentation: validation patches (the paper's protocol) and full volumes.

Evaluation sets (names used in ``metrics.json``, ``table1.tsv`` and ``rhd.tsv``):

* ``validation_patches`` - the validation patches of the training split (``results/model/split.json``)
  that belong to the sample.  The annotated slices they come from are predicted whole with the same
  blended patch prediction as the volume (:func:`tomoflow.predict.predict_images`), then the patches are
  cut from the predicted label maps and compared with the annotation labels, patch by patch.
* ``volume_slices`` - where a true label volume exists (synthetic data): every slice ``volume[y]``
  (axis 0, ``(n_z, n_x)``) of the predicted volume against the true one.
* ``volume_3d`` - the same volumes once in 3-D.

Per patch/slice metrics come from :func:`tomoflow.metrics.segmentation_metrics` (conventions there);
aggregates are mean ± 95 % CI (precision, recall, DSC: Table 1) and mean ± SE (HD/RHD: Fig. 4) with
explicit counts of NaN/inf cases (:func:`tomoflow.metrics.summarize`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .errors import InputError
from .metrics import DEFAULT_PERCENTILES, Spacing, aggregate_metrics, segmentation_metrics

log = logging.getLogger(__name__)

__all__ = [
    "SET_LABELS",
    "validation_records",
    "cut_patches",
    "predict_validation_patches",
    "evaluate_stack",
    "evaluate_volume",
    "select_examples",
    "class_columns",
    "table1",
    "rhd_table",
    "metrics_document",
    "rhd_figure",
    "error_maps_figure",
]

#: Human-readable names of the evaluation sets.
SET_LABELS = {
    "validation_patches": "validation patches",
    "volume_slices": "volume, slice by slice",
    "volume_3d": "volume, 3-D",
}

_CLASS_COLORS = ("#000000", "#4a90d9", "#ffb000", "#d62728", "#2ca02c", "#9467bd")
_LINE_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")
#: RGB of true negative, true positive, false negative, false positive pixels in error maps.
ERROR_COLORS = {"TN": (1.0, 1.0, 1.0), "TP": (0.72, 0.72, 0.72), "FN": (0.84, 0.15, 0.16), "FP": (0.12, 0.47, 0.71)}


# --------------------------------------------------------------------------- validation patches
def validation_records(split: Mapping[str, Any], sample: str, where: str = "split.json") -> list[dict[str, int | str]]:
    """The validation records of ``sample`` in a training split.

    Parameters
    ----------
    split : mapping
        ``{"seed", "patch_size": [h, w], "train": [rec...], "validation": [rec...]}`` with
        ``rec = {"sample", "index", "y0", "x0", "height", "width"}`` (px).
    sample : str
    where : str
        File name for error messages.

    Returns
    -------
    list of dict
        The records of this sample, in file order (empty when none).
    """
    recs = split.get("validation") if isinstance(split, Mapping) else None
    if not isinstance(recs, list):
        raise InputError(where, "no 'validation' list of patch records", "re-run train_unet to write a complete split.json")
    keys = ("sample", "index", "y0", "x0", "height", "width")
    out = []
    for k, r in enumerate(recs):
        if not isinstance(r, Mapping) or any(key not in r for key in keys):
            raise InputError(where, f"validation record {k} lacks one of {list(keys)}", "re-run train_unet to write a complete split.json")
        if r["sample"] == sample:
            out.append({"sample": str(r["sample"]), **{key: int(r[key]) for key in keys[1:]}})
    return out


def cut_patches(stack: npt.ArrayLike, records: Sequence[Mapping[str, Any]], where: str = "annotations") -> np.ndarray:
    """Cut the patches named by split records out of an annotation stack.

    Parameters
    ----------
    stack : array_like, shape (n, H, W)
        Annotation images or labels of one sample.
    records : sequence of dict
        Split records (``index``, ``y0``, ``x0``, ``height``, ``width`` in px).
    where : str
        File name for error messages.

    Returns
    -------
    ndarray, shape (len(records), h, w)
        Same dtype as ``stack``; all records must have the same size.
    """
    a = np.asarray(stack)
    if a.ndim != 3:
        raise InputError(where, f"expected an (n, H, W) stack, got shape {a.shape}", "re-run extract_annotations")
    if not records:
        return np.zeros((0, 0, 0), a.dtype)
    sizes = {(int(r["height"]), int(r["width"])) for r in records}
    if len(sizes) != 1:
        raise InputError(where, f"validation patches of different sizes {sorted(sizes)}", "re-run train_unet")
    h, w = sizes.pop()
    out = np.empty((len(records), h, w), a.dtype)
    for k, r in enumerate(records):
        i, y0, x0 = int(r["index"]), int(r["y0"]), int(r["x0"])
        if not (0 <= i < a.shape[0] and 0 <= y0 and y0 + h <= a.shape[1] and 0 <= x0 and x0 + w <= a.shape[2]):
            raise InputError(
                where,
                f"validation patch {k} (slice {i}, y {y0}:{y0 + h}, x {x0}:{x0 + w}) lies outside the stack of shape {a.shape}",
                "the split does not match the annotations: re-run train_unet after extract_annotations",
            )
        out[k] = a[i, y0 : y0 + h, x0 : x0 + w]
    return out


def predict_validation_patches(
    model: Any,
    images: npt.ArrayLike,
    records: Sequence[Mapping[str, Any]],
    *,
    n_classes: int,
    patch_size: int | Sequence[int],
    batch_size: int = 8,
    tta: bool = False,
) -> np.ndarray:
    """Predicted labels of validation patches (whole annotated slices predicted, then cut).

    Parameters
    ----------
    model : keras.Model or callable
        ``(B, Hp, Wp, 1)`` raw intensities -> ``(B, Hp, Wp, C)`` probabilities.
    images : array_like, shape (n, H, W)
        The sample's annotation images (raw reconstructed intensities).
    records : sequence of dict
        Validation records of this sample.
    n_classes : int
        Expected number of model outputs ``C``.
    patch_size : int or (int, int)
        Model patch size (px), ``train.patch_size``.
    batch_size : int
    tta : bool
        8-fold rotation/mirror test-time augmentation.

    Returns
    -------
    ndarray, shape (len(records), h, w), uint8
        Arg-max labels of each patch.
    """
    from .predict import predict_images

    imgs = np.asarray(images)
    idx = sorted({int(r["index"]) for r in records})
    if imgs.ndim != 3 or (idx and idx[-1] >= imgs.shape[0]):
        raise InputError("annotations/images.tif", f"stack of shape {imgs.shape} lacks slices named in the split", "re-run train_unet after extract_annotations")
    labels = np.zeros(imgs.shape, np.uint8)
    for k, i in enumerate(idx):
        prob = predict_images(model, imgs[i : i + 1].astype(np.float32), patch_size=patch_size, batch_size=batch_size, tta=tta)
        if prob.shape[-1] != n_classes:
            raise InputError("model", f"predicts {prob.shape[-1]} classes but {n_classes} are configured", "set `classes` to the classes the model was trained with")
        labels[i] = np.argmax(prob[0], axis=-1).astype(np.uint8)
        log.info("predicted annotated slice %d (%d/%d)", i, k + 1, len(idx))
    return cut_patches(labels, records, where="annotations/images.tif")


# --------------------------------------------------------------------------- evaluation
def evaluate_stack(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    *,
    pixel_size_nm: Spacing,
    classes: Sequence[int] = (0, 1, 2),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    what: str = "slice",
) -> list[dict[int, dict[str, Any]]]:
    """2-D metrics of every image of a stack (patches or volume slices).

    Parameters
    ----------
    truth, prediction : array_like of int, shape (n, H, W)
        Label stacks.
    pixel_size_nm : float or (float, float)
        Pixel size of each image in nm (rows, columns).
    classes, percentiles
        See :func:`tomoflow.metrics.segmentation_metrics`.
    what : str
        Word used in progress lines.

    Returns
    -------
    list of dict
        One :func:`~tomoflow.metrics.segmentation_metrics` result per image.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3:
        raise InputError("prediction", f"shape {p.shape} does not match the truth {t.shape} (need two (n, H, W) stacks)", "compare stacks of the same shape")
    out = []
    step = max(1, len(t) // 10)
    for i in range(len(t)):
        out.append(segmentation_metrics(t[i], p[i], pixel_size_nm=pixel_size_nm, classes=classes, percentiles=percentiles))
        if (i + 1) % step == 0 or i + 1 == len(t):
            log.info("evaluated %s %d/%d", what, i + 1, len(t))
    return out


def evaluate_volume(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    *,
    voxel_size_nm: Spacing,
    classes: Sequence[int] = (0, 1, 2),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> tuple[list[dict[int, dict[str, Any]]], dict[int, dict[str, Any]]]:
    """Slice-by-slice (axis 0) and 3-D metrics of a predicted label volume.

    Parameters
    ----------
    truth, prediction : array_like of int, shape (n_slices, n_z, n_x)
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size in nm.

    Returns
    -------
    per_slice : list of dict
        One 2-D result per slice ``volume[y]`` (pixel size ``(dz, dx)``).
    volume : dict
        The 3-D result.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3:
        raise InputError("segmentation.tif", f"predicted volume {p.shape} and true labels {t.shape} differ in shape", "predict the same volume the true labels describe")
    vox = (float(voxel_size_nm),) * 3 if np.ndim(voxel_size_nm) == 0 else tuple(float(v) for v in voxel_size_nm)  # type: ignore[union-attr, arg-type]
    per_slice = evaluate_stack(t, p, pixel_size_nm=vox[1:], classes=classes, percentiles=percentiles, what="volume slice")
    log.info("evaluating the %s volume in 3-D", "x".join(map(str, t.shape)))
    vol = segmentation_metrics(t, p, pixel_size_nm=vox, classes=classes, percentiles=percentiles)
    return per_slice, vol


def select_examples(truth: npt.ArrayLike, n: int, cls: int) -> list[int]:
    """Indices of the ``n`` images with most pixels of class ``cls`` (ties: lower index), ascending.

    Parameters
    ----------
    truth : array_like of int, shape (m, H, W)
    n : int
    cls : int
    """
    t = np.asarray(truth)
    counts = (t == cls).reshape(len(t), -1).sum(axis=1)
    order = np.lexsort((np.arange(len(t)), -counts))
    return sorted(int(i) for i in order[: max(0, n)])


# --------------------------------------------------------------------------- tables
def class_columns(class_names: Sequence[str]) -> list[tuple[int, str]]:
    """Table columns as ``(label, header)``: foreground classes first, then background/pores (label 0)."""
    cols = [(i, str(n)) for i, n in enumerate(class_names) if i != 0]
    if class_names:
        name = str(class_names[0])
        cols.append((0, f"{name}/pores" if name == "background" else name))
    return cols


def _fmt(s: Mapping[str, Any], key: str, digits: int) -> str:
    mean, spread = s["mean"], s[key]
    if not math.isfinite(mean):
        text = "n/a"
    elif math.isfinite(spread):
        text = f"{mean:.{digits}f} ± {spread:.{digits}f}"
    else:
        text = f"{mean:.{digits}f}"
    if s["n_used"] < s["n"]:
        parts = [f"{s['n_used']}/{s['n']} used"]
        if s["n_nan"]:
            parts.append(f"{s['n_nan']} NaN")
        if s["n_inf"]:
            parts.append(f"{s['n_inf']} inf")
        text += f" ({', '.join(parts)})"
    return text


def table1(sets: Mapping[str, Mapping[int, Mapping[str, Any]]], class_names: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """Table 1: precision, recall and DSC per class as "mean ± 95 % CI".

    Parameters
    ----------
    sets : mapping set name -> :func:`~tomoflow.metrics.aggregate_metrics` output
        In the order the rows should appear (e.g. validation patches first).
    class_names : sequence of str
        Name of each label value.
    digits : int

    Returns
    -------
    DataFrame
        Columns ``evaluation, metric, <classes...>``; three rows (precision, recall, DSC) per set.  A cell
        is ``"mean ± ci95"`` (just the mean where the CI is undefined) with ``"(k/n used, … NaN, … inf)"``
        appended when some patches/slices were undefined.
    """
    cols = class_columns(class_names)
    rows = []
    for name, agg in sets.items():
        for key, label in (("precision", "precision"), ("recall", "recall"), ("dsc", "DSC")):
            row = {"evaluation": name, "metric": label}
            for c, header in cols:
                row[header] = _fmt(agg[c][key], "ci95", digits) if c in agg else "n/a"
            rows.append(row)
    return pd.DataFrame(rows, columns=["evaluation", "metric"] + [h for _, h in cols])


def rhd_table(sets: Mapping[str, Mapping[int, Mapping[str, Any]]], class_names: Sequence[str]) -> pd.DataFrame:
    """Robust Hausdorff distance per set, class and percentile (Fig. 4 data), long format.

    Returns
    -------
    DataFrame
        Columns ``evaluation, class, label, percentile, mean_nm, sem_nm, ci95_nm, n, n_used, n_nan,
        n_inf``; mean and spread over the finite values.
    """
    rows = []
    for name, agg in sets.items():
        for c, a in agg.items():
            for p, s in zip(a["percentiles"], a["rhd_nm"]):
                rows.append(
                    {
                        "evaluation": name,
                        "class": class_names[c] if c < len(class_names) else str(c),
                        "label": int(c),
                        "percentile": float(p),
                        "mean_nm": s["mean"],
                        "sem_nm": s["sem"],
                        "ci95_nm": s["ci95"],
                        "n": s["n"],
                        "n_used": s["n_used"],
                        "n_nan": s["n_nan"],
                        "n_inf": s["n_inf"],
                    }
                )
    cols = ["evaluation", "class", "label", "percentile", "mean_nm", "sem_nm", "ci95_nm", "n", "n_used", "n_nan", "n_inf"]
    return pd.DataFrame(rows, columns=cols)


def _named(d: Mapping[int, Any], class_names: Sequence[str]) -> dict[str, Any]:
    return {(class_names[c] if c < len(class_names) else str(c)): v for c, v in d.items()}


def metrics_document(
    *,
    sample: str,
    class_names: Sequence[str],
    percentiles: Sequence[float],
    pixel_size_nm: float,
    validation: Mapping[str, Any] | None = None,
    volume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything for ``metrics.json``, keyed by class *name*.

    Parameters
    ----------
    sample : str
    class_names : sequence of str
    percentiles : sequence of float
    pixel_size_nm : float
    validation : mapping, optional
        ``{"records": [...], "per_patch": [result...], "aggregate": agg}``.
    volume : mapping, optional
        ``{"shape": [...], "per_slice": [result...], "aggregate": agg, "volume_3d": result}``.

    Returns
    -------
    dict
        JSON-ready (NaN/inf stay floats).
    """
    doc: dict[str, Any] = {
        "sample": sample,
        "classes": list(class_names),
        "percentiles": [float(p) for p in percentiles],
        "pixel_size_nm": float(pixel_size_nm),
        "conventions": {
            "hausdorff": "surface-distance method (Nikolov et al. 2021): surface elements on voxel corners weighted by "
            "contour length/area; per direction the inverse weighted CDF at the percentile; the larger direction; p100 = HD",
            "empty": "one mask empty: HD inf, DSC 0; both empty: DSC/precision/recall/HD NaN; 0/0 ratios NaN",
            "aggregate": "mean over finite values; ci95 = Student-t 95% half-width; sem = sd/sqrt(n_used); "
            "n_nan/n_inf count the values left out",
            "units": "distances nm, contour length nm (2-D), surface area nm^2 (3-D)",
        },
    }
    if validation is not None:
        doc["validation_patches"] = {
            "n": len(validation["per_patch"]),
            "records": list(validation["records"]),
            "aggregate": _named(validation["aggregate"], class_names),
            "per_patch": [_named(r, class_names) for r in validation["per_patch"]],
        }
    if volume is not None:
        doc["volume_slices"] = {
            "shape": list(volume["shape"]),
            "n": len(volume["per_slice"]),
            "aggregate": _named(volume["aggregate"], class_names),
            "per_slice": [_named(r, class_names) for r in volume["per_slice"]],
        }
        doc["volume_3d"] = _named(volume["volume_3d"], class_names)
    return doc


# --------------------------------------------------------------------------- figures
def rhd_figure(rhd: pd.DataFrame, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Robust Hausdorff distance vs percentile per class (Fig. 4), one panel per evaluation set.

    Parameters
    ----------
    rhd : DataFrame
        Output of :func:`rhd_table`.
    class_names : sequence of str
    title : str, optional

    Returns
    -------
    Figure
        Mean ± SE error bars; the legend gives the number of patches/slices with a finite value.
    """
    sets = list(dict.fromkeys(rhd["evaluation"])) or ["(none)"]
    fig = Figure(figsize=(4.6 * len(sets), 3.8), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, name in zip(axes, sets):
        part = rhd[rhd["evaluation"] == name]
        for c, cname in enumerate(class_names):
            d = part[part["label"] == c].sort_values("percentile")
            if d.empty or not np.isfinite(d["mean_nm"]).any():
                continue
            n_used, n = int(d["n_used"].min()), int(d["n"].max())
            label = cname if n == 1 else f"{cname} (n={n_used}/{n})"
            err = np.nan_to_num(d["sem_nm"].to_numpy(float), nan=0.0)
            ax.errorbar(d["percentile"], d["mean_nm"], yerr=err, marker="o", ms=3.5, capsize=2.5, lw=1.3, color=_LINE_COLORS[c % len(_LINE_COLORS)], label=label)
        ax.set_title(SET_LABELS.get(name, name) + ("" if name == "volume_3d" else " (mean ± SE)"), fontsize=10)
        ax.set_xlabel("percentile (%)")
        ax.set_ylabel("robust Hausdorff distance (nm)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _error_rgb(truth: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    t, p = truth == c, pred == c
    rgb = np.empty(truth.shape + (3,))
    rgb[:] = ERROR_COLORS["TN"]
    rgb[t & p] = ERROR_COLORS["TP"]
    rgb[t & ~p] = ERROR_COLORS["FN"]
    rgb[~t & p] = ERROR_COLORS["FP"]
    return rgb


def error_maps_figure(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    class_names: Sequence[str],
    *,
    images: npt.ArrayLike | None = None,
    titles: Sequence[str] | None = None,
    pixel_size_nm: float | None = None,
) -> Figure:
    """Ground truth, prediction and per-class false-negative/false-positive maps (Fig. 3).

    Parameters
    ----------
    truth, prediction : array_like of int, shape (m, H, W)
        A few label patches/slices (one row each).
    class_names : sequence of str
    images : array_like, shape (m, H, W), optional
        The raw images, shown first.
    titles : sequence of str, optional
        Row labels.
    pixel_size_nm : float, optional
        Adds the image width in nm to the first panel.

    Returns
    -------
    Figure
        Per class panel: false negatives red, false positives blue, true positives grey.
    """
    t, p = np.asarray(truth), np.asarray(prediction)
    if t.shape != p.shape or t.ndim != 3 or len(t) == 0:
        raise InputError("error maps", f"need two equal non-empty (m, H, W) stacks, got {t.shape} and {p.shape}", "pass the patches to show")
    imgs = None if images is None else np.asarray(images, dtype=np.float64)
    n_cls = len(class_names)
    cols = (["image"] if imgs is not None else []) + ["ground truth", "prediction"] + [f"{c}: FN / FP" for c in class_names]
    m, (h, w) = len(t), t.shape[1:]
    pw = 2.1
    fig = Figure(figsize=(pw * len(cols), pw * h / w * m + 0.9), layout="constrained")
    axes = fig.subplots(m, len(cols), squeeze=False)
    cmap = ListedColormap([_CLASS_COLORS[i % len(_CLASS_COLORS)] for i in range(n_cls)])
    for r in range(m):
        panels: list[tuple[str, Any]] = []
        if imgs is not None:
            lo, hi = np.percentile(imgs[r], [0.5, 99.5])
            panels.append(("image", (imgs[r], dict(cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1))))
        kw = dict(cmap=cmap, vmin=-0.5, vmax=n_cls - 0.5)
        panels += [("truth", (t[r], kw)), ("prediction", (p[r], kw))]
        panels += [(f"class{c}", (_error_rgb(t[r], p[r], c), {})) for c in range(n_cls)]
        for k, (_, (arr, style)) in enumerate(panels):
            ax = axes[r, k]
            ax.imshow(arr, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[k], fontsize=9)
        if titles is not None:
            axes[r, 0].set_ylabel(str(titles[r]), fontsize=8)
    if pixel_size_nm:
        axes[-1, 0].set_xlabel(f"{w * pixel_size_nm:.0f} nm wide", fontsize=8)
    handles = [Patch(facecolor=_CLASS_COLORS[i % len(_CLASS_COLORS)], edgecolor="0.5", label=n) for i, n in enumerate(class_names)]
    handles += [Patch(facecolor=ERROR_COLORS[k], edgecolor="0.5", label=lab) for k, lab in (("TP", "true positive"), ("FN", "false negative"), ("FP", "false positive"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig
