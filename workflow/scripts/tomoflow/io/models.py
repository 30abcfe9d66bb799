"""Saving and loading trained Keras models (``.keras`` zip archives).

Models saved here contain only built-in Keras objects (see :func:`tomoflow.train.export_model`), so
``keras.saving.load_model(path)`` loads them with no ``custom_objects``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import keras

from ..errors import InputError
from .volumes import atomic_path

__all__ = ["save_model", "load_model"]


def save_model(model: keras.Model, path: str | PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, compile settings) atomically to a ``.keras`` file."""
    target = Path(path)
    if target.suffix != ".keras":
        raise InputError(target, "model files must end in .keras", "name the output *.keras")
    with atomic_path(target) as tmp:
        model.save(tmp)


def load_model(path: str | PathLike[str], compile: bool = True) -> keras.Model:
    """Load a ``.keras`` model written by :func:`save_model` (no custom objects needed).

    Raises
    ------
    InputError
        If the file is missing or not a loadable Keras archive.
    """
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "model file not found", "run the train_unet rule first or fix the path")
    if not zipfile.is_zipfile(p):
        raise InputError(p, "not a complete .keras archive (truncated or not a zip file)",
                         "re-copy the model completely, or re-run train_unet to write a fresh one")
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
