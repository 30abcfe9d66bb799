"""Shared pytest set-up: quiet, deterministic, display-free."""

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def needle_dir() -> Path:
    """The real ETSpy HAADF needle tilt series in ../shared (skips where it is absent)."""
    d = SHARED / "data" / "etspy_needle"
    if not (d / "HAADF.mrc").exists():
        pytest.skip("../shared/data/etspy_needle is not present")
    return d
