"""Helpers for tests that run the real Snakemake workflow in a scratch copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What a working copy of the workflow needs (results go into the copy, never into the repository).
WORKFLOW_PATHS = ("Snakefile", "workflow", "config", "envs", "profiles", "tests/configs")
TINY = "tests/configs/tiny.yaml"


def make_workdir(dest: Path) -> Path:
    """Copy the workflow (not results/, .snakemake/ or caches) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for rel in WORKFLOW_PATHS:
        src = REPO / rel
        target = dest / rel
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def workflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VTK_DEFAULT_OPENGL_WINDOW="vtkOSOpenGLRenderWindow",
        KERAS_BACKEND=env.get("KERAS_BACKEND", "tensorflow"),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    # the venv's bin first, so that Snakemake's jobs run the same Python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake ARGS`` in ``workdir`` (local profile), capturing output."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=workflow_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's "Job stats" table of a dry run."""
    jobs: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                jobs[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total") or (not line.strip() and jobs):
                break
    return jobs
