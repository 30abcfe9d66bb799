"""Models as artefacts: the metadata a trained model carries, and the checks that use it.

A model written by the workflow (``results/models/{model}/unet.keras``) carries its metadata inside the
``.keras`` archive (:func:`tomoflow.io.models.save_model`, member ``tomoflow.json``): classes, pixel size
of the training images, intensity normalisation, patch size, depth, base filters, focal γ/α, tomoflow
version and training sources.  Before a model segments anything (at start-up for an external
``predict.model`` file, and again in every prediction job) it is checked against the run:

* **Classes** - the names (and so the number) must equal config ``classes``; a model without metadata
  is accepted with a warning when its output layer has ``len(classes)`` channels
  (:func:`check_classes_metadata`).
* **Pixel size** - a U-Net learns features of a given size in pixels, so a sample whose pixel size
  differs from the training images' by more than ``predict.pixel_size_tolerance`` (relative, default
  3 %) is either resampled to the model's pixel size for prediction and back (``predict.resample:
  auto``; :mod:`tomoflow.predict.resample`) or refused (``never``; :func:`pixel_scale`).
* **Architecture** for fine-tuning (``train.init_model``): depth, base filters and classes must match
  the configured network (:func:`check_architecture`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .errors import InputError

log = logging.getLogger(__name__)

__all__ = ["RESAMPLE_MODES", "OVERRIDABLE", "build_metadata", "check_classes_metadata", "pixel_scale", "check_architecture",
           "model_settings", "model_file", "init_model_path", "segment_model", "check_models"]

#: Values of ``predict.resample``.
RESAMPLE_MODES = ("auto", "never")


def build_metadata(
    *,
    classes: Sequence[str],
    pixel_size_nm: float | None,
    normalization: Mapping[str, float],
    patch_size: Sequence[int],
    depth: int,
    base_filters: int,
    focal_gamma: float,
    focal_alpha: Sequence[float],
    sources: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The metadata document stored in a model file (JSON-ready).

    Parameters
    ----------
    classes : sequence of str
        Class names, label value = index.
    pixel_size_nm : float or None
        Pixel size of the training images (nm); None when unknown.
    normalization : mapping
        ``mean`` and ``std`` of the raw training intensities (applied by the model's first layer).
    patch_size : (int, int)
        Training patch ``[h, w]`` (px).
    depth, base_filters : int
    focal_gamma : float
    focal_alpha : sequence of float
    sources : mapping
        Training data: samples and annotation files.
    **extra
        Further JSON-ready fields (``model``, ``init_model``, ``best_epoch`` ...).
    """
    return {
        "classes": [str(c) for c in classes],
        "pixel_size_nm": None if pixel_size_nm is None else float(pixel_size_nm),
        "normalization": {"mean": float(normalization["mean"]), "std": float(normalization["std"])},
        "patch_size": [int(v) for v in patch_size],
        "depth": int(depth),
        "base_filters": int(base_filters),
        "focal_gamma": float(focal_gamma),
        "focal_alpha": [float(v) for v in focal_alpha],
        "tomoflow_version": __version__,
        "sources": dict(sources),
        **extra,
    }


def check_classes_metadata(metadata: Mapping[str, Any] | None, classes: Sequence[str], where: str,
                           n_outputs: int | None = None) -> None:
    """Refuse a model made for other classes than config ``classes``.

    Parameters
    ----------
    metadata : mapping or None
        The model's metadata (None: a model without it - only ``n_outputs`` can be checked).
    classes : sequence of str
        Configured class names.
    where : str
        The model file, named in the message.
    n_outputs : int, optional
        Channels of the model's output layer, where known.

    Raises
    ------
    InputError
        Different class names or count (one line naming the model file, both lists and the fix).
    """
    want = [str(c) for c in classes]
    if metadata is not None and "classes" in metadata:
        got = [str(c) for c in metadata["classes"]]
        if got != want:
            raise InputError(where, f"the model was trained for classes {got} but config classes is {want}",
                             f"use a model trained for {want}, or set `classes: {got}` if the label values mean the same")
    if n_outputs is not None and int(n_outputs) != len(want):
        raise InputError(where, f"the model predicts {int(n_outputs)} classes but config classes has {len(want)} ({', '.join(want)})",
                         f"use a model trained for these {len(want)} classes or set classes to the model's {int(n_outputs)} class names")
    if metadata is None:
        log.warning("%s has no tomoflow metadata (an older or external model): only its number of output classes "
                    "is checked, not their names or its pixel size", where)


def pixel_scale(model_px: float | None, data_px: float | None, *, tolerance: float = 0.03, resample: str = "auto",
                where: str = "model", what: str = "the sample") -> float:
    """Zoom factor from the data grid to the model's grid (``data_px / model_px``), or 1.0.

    Parameters
    ----------
    model_px : float or None
        Pixel size (nm) of the model's training images (None: unknown, no check).
    data_px : float or None
        Pixel size (nm) of the images to segment (None: unknown, no check).
    tolerance : float
        Relative difference ``|data_px / model_px - 1|`` accepted without resampling
        (``predict.pixel_size_tolerance``).
    resample : {"auto", "never"}
        ``predict.resample``: resample beyond the tolerance, or refuse.
    where, what : str
        The model file and the data, named in the message.

    Returns
    -------
    float
        1.0 within the tolerance (or when a size is unknown), else ``data_px / model_px``: a slice of
        ``n`` px becomes ``n * factor`` px of the model's size.

    Raises
    ------
    InputError
        ``resample == "never"`` and the sizes differ beyond the tolerance; invalid arguments.
    """
    if resample not in RESAMPLE_MODES:
        raise InputError("predict.resample", f"{resample!r} is not one of {list(RESAMPLE_MODES)}", "use auto or never")
    if model_px is None or data_px is None:
        return 1.0
    m, d = float(model_px), float(data_px)
    if not (m > 0 and d > 0 and math.isfinite(m) and math.isfinite(d)):
        raise InputError(where, f"pixel sizes must be positive, got model {m:g} nm and {what} {d:g} nm",
                         "fix the pixel size in the model metadata or the sample table")
    ratio = d / m
    if abs(ratio - 1.0) <= tolerance:
        return 1.0
    if resample == "never":
        raise InputError(where, f"the model was trained at {m:.4g} nm/px but {what} has {d:.4g} nm/px "
                         f"({100 * (ratio - 1):+.1f} %, more than predict.pixel_size_tolerance {100 * tolerance:g} %)",
                         "set predict.resample: auto to resample each slice to the model's pixel size and back, "
                         "or use a model trained at this pixel size")
    return ratio


def check_architecture(metadata: Mapping[str, Any] | None, *, depth: int, base_filters: int, classes: Sequence[str],
                       where: str, key: str = "train.init_model") -> None:
    """Refuse an initial model (fine-tuning) whose network differs from the configured one.

    Raises
    ------
    InputError
        Depth, base filters or classes differ (from the metadata, where there is some).
    """
    if metadata is None:
        return
    got: dict[str, Any] = {k: metadata.get(k) for k in ("depth", "base_filters")}
    want = {"depth": int(depth), "base_filters": int(base_filters)}
    diff = [f"{k} {got[k]} (configured {want[k]})" for k in want if got[k] is not None and int(got[k]) != want[k]]
    if diff:
        raise InputError(where, f"{key}: the model's network differs: {', '.join(diff)}",
                         f"set train.depth: {got['depth']} and train.base_filters: {got['base_filters']} for this model "
                         "(fine-tuning keeps the architecture), or start from a matching model")
    check_classes_metadata(metadata, classes, where)


# --------------------------------------------------------------------------- configuration (start-up)
#: Keys of ``train`` a ``models:`` entry may override (the schema lists the same).
OVERRIDABLE = ("seed", "patch_size", "base_filters", "depth", "epochs", "batch_size", "learning_rate", "focal_gamma",
               "class_weights", "monitor", "augment", "init_model", "freeze_encoder_epochs", "lr_schedule",
               "early_stopping_patience", "particle_oversampling", "steps_per_epoch", "max_minutes", "precision")
#: ``train.init_model`` / ``predict.model`` prefix naming a model of this run.
RUN_PREFIX = "models/"


def model_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Effective training settings of model ``name``: ``train`` with the overrides of ``models[name]``.

    ``augment`` is merged key by key; ``samples`` and ``val_fraction`` always come from ``train`` (all
    models of a run share the training data and split).
    """
    import copy

    eff = copy.deepcopy(dict(config["train"]))
    for key, value in dict(config["models"][name]).items():
        if key == "augment":
            eff["augment"] = {**eff.get("augment", {}), **dict(value)}
        else:
            eff[key] = copy.deepcopy(value)
    return eff


def model_file(name: str) -> str:
    """The model file of a named model configuration of this run."""
    return f"results/models/{name}/unet.keras"


def init_model_path(config: Mapping[str, Any], name: str) -> str:
    """The resolved ``init_model`` of model ``name``: ``""``, a run model's file, or the external path."""
    ref = str(model_settings(config, name).get("init_model") or "").strip()
    if ref.startswith(RUN_PREFIX):
        return model_file(ref[len(RUN_PREFIX):])
    return ref


def trains(config: Mapping[str, Any]) -> bool:
    """Whether this run trains its models: some training data (``train.samples`` or rows of
    ``annotations.table``)."""
    return bool(config["train"]["samples"]) or bool(str(config.get("annotations", {}).get("table") or "").strip())


def segment_model(config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Which model segments the samples: ``(name, file)`` of a run model, ``(None, path)`` of an external
    ``.keras`` file, or ``(None, None)`` when nothing is segmented (no training and no external model)."""
    names = list(config["models"])
    ref = str(config["predict"].get("model") or "").strip()
    trained = trains(config)
    if not ref:
        return (names[0], model_file(names[0])) if trained else (None, None)
    if ref.startswith(RUN_PREFIX) and ref[len(RUN_PREFIX):] in names:
        ref = ref[len(RUN_PREFIX):]
    if ref in names:
        return ref, model_file(ref)
    return None, ref


def _sample_pixel_size(row: Any, config: Mapping[str, Any]) -> float | None:
    """A sample's pixel size (nm) as known at start-up: a calibrated tilt-series header wins, else the
    table's ``pixel_size_nm`` (as in alignment); ``synthetic.pixel_size_nm`` for the built-in data."""
    cells = row.cells
    path = str(cells.get("tilt_series", ""))
    if path.replace("\\", "/").startswith("results/synthetic/"):
        return float(config["synthetic"]["pixel_size_nm"])
    header = None
    try:
        from .io.probe import probe_stack

        header = probe_stack(path, "tilt series").voxel_size_nm
    except (InputError, OSError):
        pass
    if header is not None:
        return float(header)
    return float(cells["pixel_size_nm"]) if cells.get("pixel_size_nm") else None


def check_models(config: Mapping[str, Any], rows: Sequence[Any] = ()) -> None:
    """Start-up checks of ``models``, ``train.init_model`` and ``predict.model`` (one line each).

    * every ``init_model`` names a model of this run (``models/<name>``, not itself, no cycle) or an
      existing ``.keras`` file whose metadata fit the model's depth, base filters and classes;
    * ``predict.model`` is empty, a name in ``models`` (with training data: ``train.samples`` or ``annotations.table``) or an existing
      ``.keras`` file made for config ``classes`` whose pixel size fits every sample (or
      ``predict.resample: auto``).

    Parameters
    ----------
    config : mapping
        Schema-valid config (defaults filled).
    rows : sequence of SampleRow
        The sample table's rows (``name``, ``cells``), for the pixel sizes.
    """
    from pathlib import Path

    from .io.models import read_metadata

    names = list(config["models"])
    classes = [str(c) for c in config["classes"]]
    trained = trains(config)
    for name in names:  # overrides obey train's cross-key constraints
        eff = model_settings(config, name)
        f = 2 ** (int(eff["depth"]) - 1)
        if any(int(v) % f for v in eff["patch_size"]):
            raise InputError(f"config key `models.{name}`", f"patch_size {list(eff['patch_size'])} is not divisible by "
                             f"2^(depth−1) = {f} (depth {eff['depth']})", f"use multiples of {f} or a smaller depth for this model")
        w = eff["class_weights"]
        if not isinstance(w, str) and len(w) != len(classes):
            raise InputError(f"config key `models.{name}.class_weights`", f"{len(w)} weights for {len(classes)} classes {classes}",
                             "give one weight per class, in the order of `classes`, or `auto`")
    if trained:
        for name in names:
            seen = [name]
            ref = str(model_settings(config, name).get("init_model") or "").strip()
            key = f"config key `models.{name}.init_model`" if "init_model" in config["models"][name] else "config key `train.init_model`"
            while ref.startswith(RUN_PREFIX):
                target = ref[len(RUN_PREFIX):]
                if target not in names:
                    raise InputError(key, f"{ref!r} names no model of this run (models: {names})",
                                     f"use models/<name> with a name from {names}, a .keras file, or \"\"")
                if target in seen:
                    raise InputError(key, f"model {name!r} would start from itself ({' -> '.join(seen + [target])})",
                                     "start it from another model, a .keras file, or \"\" (set init_model per model under models:)")
                seen.append(target)
                ref = str(model_settings(config, target).get("init_model") or "").strip()
            if ref and len(seen) == 1:
                _external(ref, key, read_metadata)
                eff = model_settings(config, name)
                check_architecture(read_metadata(ref), depth=int(eff["depth"]), base_filters=int(eff["base_filters"]),
                                   classes=classes, where=f"{key} ({ref})")
    name, path = segment_model(config)
    ref = str(config["predict"].get("model") or "").strip()
    if name is not None and not trained:
        raise InputError("config key `predict.model`", f"{ref!r} is a model of this run, but there is no training data "
                         "(train.samples and annotations.table are empty) so none is trained",
                         "list annotated samples in train.samples or an annotations.table, or give the path of a trained .keras file")
    if name is None and path is not None:
        key = "config key `predict.model`"
        if not (path.endswith(".keras") or Path(path).exists()):
            raise InputError(key, f"{path!r} is neither a name in models ({names}) nor a .keras file",
                             f"use one of {names}, \"\" (the first), or the path of a .keras model")
        _external(path, key, read_metadata)
        meta = read_metadata(path)
        check_classes_metadata(meta, classes, f"{key} ({path})")
        model_px = None if meta is None else meta.get("pixel_size_nm")
        for row in rows:
            pixel_scale(model_px, _sample_pixel_size(row, config), tolerance=float(config["predict"]["pixel_size_tolerance"]),
                        resample=str(config["predict"]["resample"]), where=f"{key} ({path})", what=f"sample {row.name!r}")


def _external(path: str, key: str, read_metadata: Any) -> None:
    """An external model file exists and is a Keras archive (one line naming the config key)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise InputError(f"{key} ({path})", "model file not found",
                         "give the path of a .keras model relative to the working directory where snakemake runs")
    if not path.endswith(".keras"):
        raise InputError(f"{key} ({path})", "not a .keras file", "save the model with keras.Model.save('name.keras')")
    try:
        read_metadata(path)
    except InputError as exc:
        raise InputError(f"{key} ({path})", exc.problem, exc.fix) from None
