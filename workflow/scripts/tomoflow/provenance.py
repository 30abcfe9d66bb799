"""Provenance record of a run: config values used, package versions, seeds, input checksums."""

from __future__ import annotations

import hashlib
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

#: Distributions whose versions decide the numbers tomoflow produces.
PACKAGES = (
    "numpy",
    "scipy",
    "scikit-image",
    "astra-toolbox",
    "tomopy",
    "tensorflow",
    "keras",
    "jax",
    "torch",
    "pyvista",
    "vtk",
    "mrcfile",
    "tifffile",
    "pandas",
    "matplotlib",
    "snakemake",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def seeds(config: Mapping[str, Any]) -> dict[str, int]:
    """Every ``seed`` key of the config, by section."""
    return {section: int(values["seed"]) for section, values in config.items() if isinstance(values, Mapping) and "seed" in values}


def provenance(
    sample: str,
    config: Mapping[str, Any],
    sample_row: Mapping[str, str],
    inputs: Mapping[str, str | Path],
    outputs: Iterable[str | Path] = (),
) -> dict[str, Any]:
    """Assemble the provenance record of one sample.

    Parameters
    ----------
    sample : str
    config : mapping
        The validated config (defaults filled) the run used.
    sample_row : mapping
        The sample's row of the sample table.
    inputs : mapping of name -> path
        Input files to checksum (tilt series, angles, true labels, annotations).
    outputs : iterable of path
        Final outputs to checksum.

    Returns
    -------
    dict
        JSON-ready record.
    """
    return {
        "sample": sample,
        "tomoflow_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": seeds(config),
        "config": dict(config),
        "sample_table_row": dict(sample_row),
        "inputs": {name: {"path": str(p), "sha256": sha256(p)} for name, p in inputs.items() if p and Path(p).is_file()},
        "outputs": {str(p): sha256(p) for p in outputs if Path(p).is_file()},
        "model": model_record(config, inputs.get("model")),
    }


def model_record(config: Mapping[str, Any], path: str | Path | None) -> dict[str, Any] | None:
    """Which model segmented the sample: name in ``models:`` (None for an external file), path, sha256 and
    the metadata stored in the file (:func:`tomoflow.io.models.read_metadata`); None when none did."""
    if not path or not Path(path).is_file():
        return None
    from .io.models import read_metadata
    from .models import segment_model

    name = segment_model(config)[0] if "models" in config and "predict" in config else None
    return {"name": name, "path": str(path), "sha256": sha256(path), "metadata": read_metadata(path)}
