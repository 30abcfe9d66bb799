"""tomoflow.runner: thread limits take effect even when NumPy/TensorFlow were imported first; clean failure."""

from __future__ import annotations

import ctypes
import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(SCRIPTS), TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e, timeout=300)


def _numpy_openblas() -> str:
    libs = glob.glob(str(Path(np.__file__).parent.parent / "numpy.libs" / "*openblas*.so*"))
    if not libs:
        pytest.skip("NumPy here does not bundle OpenBLAS")
    return libs[0]


def test_blas_limit_applies_after_numpy_was_imported():
    lib = _numpy_openblas()
    getter = next((s for s in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads")
                   if hasattr(ctypes.CDLL(lib), s)), None)
    if getter is None:
        pytest.skip("unknown OpenBLAS symbol names")
    proc = _python(f"""
        import ctypes, json
        import numpy                      # a rule script importing NumPy at the top, before run_rule
        get = getattr(ctypes.CDLL({lib!r}), {getter!r})
        before = get()
        from tomoflow.runner import limit_threads
        limit_threads(1)
        print(json.dumps([before, get()]))
    """, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    assert proc.returncode == 0, proc.stderr
    before, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert before == 2 and after == 1


def test_run_rule_limits_threads_of_the_job_and_its_children():
    proc = _python("""
        import json, os, subprocess, sys, types
        import numpy
        from tomoflow.runner import native_thread_counts, run_rule
        seen = {}
        def main(smk):
            seen["blas"] = sorted(set(native_thread_counts().values()))
            seen["child"] = subprocess.run([sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"],
                                           capture_output=True, text=True).stdout.strip()
        run_rule(types.SimpleNamespace(threads=1, log=[], output=[], rule="t"), main)
        print(json.dumps(seen))
    """, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["blas"] in ([1], []) and seen["child"] == "1"


@pytest.mark.slow
def test_tensorflow_imported_first_gets_the_limit():
    pytest.importorskip("tensorflow")
    proc = _python("""
        import json
        import tensorflow as tf           # imported at the top of a rule script, runtime not started yet
        from tomoflow.runner import limit_threads
        limit_threads(1)
        print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads()]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [1, 1]


def test_failed_job_leaves_no_output_and_one_line(tmp_path):
    out = tmp_path / "out.txt"
    logf = tmp_path / "job.log"
    proc = _python(f"""
        import types
        from tomoflow.errors import InputError
        from tomoflow.runner import run_rule
        def main(smk):
            open({str(out)!r}, "w").write("half")
            raise InputError("data/x.mrc", "truncated", "re-copy it")
        run_rule(types.SimpleNamespace(threads=1, log=[{str(logf)!r}], output=[{str(out)!r}], rule="t"), main)
    """)
    assert proc.returncode == 1
    assert not out.exists()
    assert "data/x.mrc: truncated. Fix: re-copy it" in logf.read_text()
