"""Plumbing shared by the thin rule scripts in ``workflow/scripts``.

Rule scripts call :func:`run_rule` with Snakemake's injected ``snakemake`` object (duck-typed: only its
``input``, ``output``, ``params``, ``threads``, ``log`` and ``wildcards`` attributes are read, so this module
does not import Snakemake).  It

* sends :mod:`logging` output (level INFO, one line per message) to the rule's ``log:`` file and stderr,
* pins NumPy/BLAS thread pools to ``threads``,
* turns :class:`~tomoflow.errors.InputError` (and any other exception) into one clear line in the log and
  on stderr plus a non-zero exit, after deleting every output the job had started to write, so that no
  partial output is left behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError

log = logging.getLogger("tomoflow")


def _paths(named: Any) -> list[str]:
    try:
        return [str(p) for p in named]
    except TypeError:
        return []


def optional(named: Any, key: str) -> str | None:
    """A named input/output of a rule as ``str``, or None when the rule did not declare it
    (rules whose inputs depend on the sample, e.g. true labels only for synthetic data)."""
    try:
        return str(getattr(named, key))
    except AttributeError:
        return None


def setup_logging(logfile: str | os.PathLike[str] | None, level: int = logging.INFO) -> None:
    """Log ``tomoflow.*`` messages as timestamped lines to ``logfile`` (if given) and stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)


#: Thread-count setters of native libraries, by exported symbol (OpenBLAS as bundled by NumPy/SciPy
#: wheels, plain OpenBLAS, ILP64 OpenBLAS, MKL, OpenMP runtimes).
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads", "MKL_Set_Num_Threads", "omp_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads", "MKL_Get_Max_Threads", "omp_get_max_threads")
_LIB_NAME = re.compile(r"(/\S*(?:blas|mkl_rt|gomp|libomp|iomp)\S*\.so[.\d]*)")


def _loaded_thread_libraries() -> list[str]:
    """Paths of BLAS/OpenMP shared libraries loaded in this process (Linux ``/proc/self/maps``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted(set(_LIB_NAME.findall(maps)))


def native_thread_counts() -> dict[str, int]:
    """Current thread count of every loaded BLAS/OpenMP library, ``{library file name: threads}``."""
    import ctypes

    out = {}
    for path in _loaded_thread_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in _GETTERS:
            if hasattr(lib, sym):
                out[Path(path).name] = int(getattr(lib, sym)())
                break
    return out


def _limit_loaded_libraries(n: int) -> list[str]:
    """Set the thread pools of already-loaded BLAS/OpenMP libraries to ``n`` (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(limits=n)
        return ["threadpoolctl"]
    import ctypes

    done = []
    for path in _loaded_thread_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in _SETTERS:
            if hasattr(lib, sym):
                getattr(lib, sym)(ctypes.c_int(n))
                done.append(Path(path).name)
                break
    return done


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads in BLAS/OpenMP/TensorFlow, also when they are already loaded.

    * environment variables (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
      ``TF_NUM_INTRAOP_THREADS``) for libraries loaded later and for child processes;
    * thread pools of BLAS/OpenMP libraries already loaded (a rule script that imported NumPy before
      :func:`run_rule`): threadpoolctl where installed, else the libraries' own setters through ctypes;
    * TensorFlow when already imported: ``tf.config.threading`` (impossible once its runtime has
      started; a warning is logged then).
    """
    n = max(1, int(threads))
    # TensorFlow's inter-op pool gets the same count as its intra-op pool: at 1 a plain Keras fit of the demo
    # U-Net ran 1.3-1.6x slower on 2 cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _limit_loaded_libraries(n)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError as exc:  # TensorFlow's runtime already started
            log.warning("TensorFlow was initialised before run_rule; its thread limit stays as it was (%s)", exc)


def remove_outputs(paths: list[str]) -> None:
    """Delete files/directories in ``paths`` that exist (used after a failure)."""
    for p in paths:
        path = Path(p)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()


def run_rule(smk: Any, main: Callable[[Any], None]) -> None:
    """Run ``main(smk)`` as a Snakemake rule script with logging and clean failure.

    Parameters
    ----------
    smk : snakemake.script.Snakemake
        The object Snakemake injects into ``script:`` rules.
    main : callable
        Does the rule's work given ``smk``; raises :class:`InputError` for bad input.
    """
    logs = _paths(getattr(smk, "log", []))
    setup_logging(logs[0] if logs else None)
    threads = int(getattr(smk, "threads", 1) or 1)
    limit_threads(threads)
    rule = getattr(smk, "rule", "?")
    outputs = _paths(getattr(smk, "output", []))
    t0 = time.perf_counter()
    slurm_job = os.environ.get("SLURM_JOB_ID")
    where = f", SLURM_JOB_ID={slurm_job}" if slurm_job else ""
    log.info("rule %s started (threads=%d%s)", rule, threads, where)
    try:
        main(smk)
    except InputError as exc:
        remove_outputs(outputs)
        log.error("%s", exc)
        sys.exit(1)
    except Exception as exc:
        remove_outputs(outputs)
        log.error("rule %s failed: %s: %s (full traceback in the log)", rule, type(exc).__name__, exc)
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.FileHandler) and h.stream is not None:
                h.stream.write(traceback.format_exc())
        sys.exit(1)
    log.info("rule %s finished in %.1f s", rule, time.perf_counter() - t0)
