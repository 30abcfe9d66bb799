"""Saving and loading trained Keras models (``.keras`` zip archives) and their tomoflow metadata.

Models saved here contain only built-in Keras objects (see :func:`tomoflow.train.export_model`), so
``keras.saving.load_model(path)`` loads them with no ``custom_objects``.

Metadata
--------
:func:`save_model` adds one small JSON member, ``tomoflow.json``, to the ``.keras`` zip archive (beside
Keras' own ``metadata.json``, ``config.json`` and ``model.weights.h5``).  Keras ignores members it does not
know, so the file still loads with plain ``keras.saving.load_model``; :func:`read_metadata` reads the
member back with :mod:`zipfile` alone (no TensorFlow, no model built), which is what the start-up check
uses.  Fields (:data:`METADATA_FIELDS`): ``classes`` (names, label value = index), ``pixel_size_nm`` (of
the training images), ``normalization`` (``mean``, ``std`` of the raw training intensities; the model's
first layer applies them), ``patch_size`` ``[h, w]`` px, ``depth``, ``base_filters``, ``focal_gamma``,
``focal_alpha``, ``tomoflow_version``, ``sources`` (training samples and annotation files), plus
``model`` (the configuration name), ``init_model`` and ``best_epoch``.  Models without the member (older
files, models trained elsewhere) have no metadata: prediction then checks the classes against the output
layer only and logs a warning.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .volumes import atomic_path

if TYPE_CHECKING:  # Keras is imported only where a model is loaded or saved (start-up reads metadata without it)
    import keras

__all__ = ["save_model", "load_model", "read_metadata", "METADATA_MEMBER", "METADATA_FIELDS"]

#: Name of the tomoflow metadata member inside the ``.keras`` zip archive.
METADATA_MEMBER = "tomoflow.json"
#: Fields every model written by the workflow carries (see the module docstring).
METADATA_FIELDS = ("classes", "pixel_size_nm", "normalization", "patch_size", "depth", "base_filters",
                   "focal_gamma", "focal_alpha", "tomoflow_version", "sources")


def save_model(model: keras.Model, path: str | PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``model`` (architecture, weights, compile settings) atomically to a ``.keras`` file.

    Parameters
    ----------
    model : keras.Model
    path : path
        Output ``*.keras``.
    metadata : mapping, optional
        JSON-serialisable tomoflow metadata, stored as the archive member :data:`METADATA_MEMBER`.
    """
    target = Path(path)
    if target.suffix != ".keras":
        raise InputError(target, "model files must end in .keras", "name the output *.keras")
    with atomic_path(target) as tmp:
        model.save(tmp)
        if metadata is not None:
            text = json.dumps(dict(metadata), indent=1, sort_keys=True, allow_nan=True)
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(METADATA_MEMBER, text)


def _check_archive(p: Path) -> None:
    """InputError unless ``p`` is an existing, complete zip archive."""
    if not p.is_file():
        raise InputError(p, "model file not found", "run the train_unet rule first or fix the path")
    if not zipfile.is_zipfile(p):
        raise InputError(p, "not a complete .keras archive (truncated or not a zip file)",
                         "re-copy the model completely, or re-run train_unet to write a fresh one")


def read_metadata(path: str | PathLike[str]) -> dict[str, Any] | None:
    """The tomoflow metadata of a ``.keras`` file, read from the zip archive without Keras.

    Returns
    -------
    dict or None
        The :data:`METADATA_MEMBER` document, or None for a model without one (older or external file).

    Raises
    ------
    InputError
        Missing file, not a zip archive, no Keras ``config.json`` inside, or unreadable metadata.
    """
    p = Path(path)
    _check_archive(p)
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise InputError(p, "a zip file but not a Keras 3 .keras model (no config.json inside)",
                                 "give a model saved with keras.Model.save('name.keras')")
            if METADATA_MEMBER not in names:
                return None
            doc = json.loads(z.read(METADATA_MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(p, f"cannot read the model's metadata ({type(exc).__name__}: {exc})",
                         "re-copy the model completely, or re-run train_unet to write a fresh one") from exc
    if not isinstance(doc, dict):
        raise InputError(p, f"{METADATA_MEMBER} inside the model is not a JSON object", "re-run train_unet")
    return doc


def load_model(path: str | PathLike[str], compile: bool = True) -> keras.Model:
    """Load a ``.keras`` model written by :func:`save_model` (no custom objects needed).

    Raises
    ------
    InputError
        If the file is missing or not a loadable Keras archive.
    """
    import keras

    p = Path(path)
    _check_archive(p)
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        bad = str(exc)
    if bad is not None:
        raise InputError(p, f"corrupt .keras archive (member {bad} fails its checksum)",
                         "re-copy the model completely, or re-run train_unet to write a fresh one")
    try:
        return keras.saving.load_model(p, compile=compile)
    except Exception as exc:
        raise InputError(p, f"cannot load the Keras model ({type(exc).__name__}: {exc})",
                         "re-run train_unet to write a fresh model") from exc
