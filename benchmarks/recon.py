"""Benchmark of tomoflow.recon: per-slice ASTRA loop vs batched sparse MLEM (+ TomoPy, ETSpy, GPU), OSEM head start.

Run from the repository root (one run at a time on a shared machine)::

    . .venv/bin/activate && PYTHONPATH=workflow/scripts flock /tmp/tomoflow_cpu.lock \\
        python benchmarks/recon.py [--sizes 256x256,512x512,1024x512] [--slices 16,64] [--iterations 3]

Prints, in one run and side by side (load average before and after):

1. MLEM cost, 69 tilts over ±68°, ``line`` projector, for each slice size (width × thickness) and slab
   depth: rows per-slice ASTRA loop | batched CPU | TomoPy ``mlem`` (where importable) | ETSpy (SIRT;
   installed into ``benchmarks/results/etspy-venv`` on first use, skipped with a message when it cannot
   install/run) | GPU (batched on CuPy, where present).  Columns: seconds per slice per iteration
   (iterations only), matrix build seconds, wall seconds of the whole call (build included), speed-up
   over the per-slice loop with the build included (measured with ``--iterations``, and projected to
   50 iterations), peak resident memory of the process during the call (Linux ``VmHWM`` after a
   reset; includes the interpreter, the input stack and ASTRA's buffers) and the relative RMS
   difference to the per-slice volume.  A few iterations are
   enough: the per-iteration cost is constant, the build is paid once.
2. The paper's volume (702 slices, 50 iterations) projected on this machine from the largest size, and
   the measured time of one slab at that size.
3. Memory of a batched slab job at 1× and 2× slab depth (peak vs. matrix + buffers formula).
4. OSEM (4, 8, 16 subsets): passes and seconds to reach MLEM-50's misfit (the ≥ 4× head start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tomoflow.projector import forward_project
from tomoflow.recon import clear_matrix_cache, reconstruct
from tomoflow.slabs import batched_memory_mb, matrix_nnz_estimate

ANGLES = np.arange(-68.0, 68.1, 2.0)  # 69 tilts
RESULTS = Path(__file__).resolve().parent / "results"


def phantom(n_slices: int, width: int, thick: int, seed: int = 0) -> np.ndarray:
    """A plate (half the thickness) with elliptical pores and dense particles, slices (thick, width)."""
    rng = np.random.default_rng(seed)
    zz, xx = np.mgrid[:thick, :width].astype(np.float32)
    vol = np.zeros((n_slices, thick, width), np.float32)
    plate = (np.abs(zz - thick / 2) < thick / 4) & (np.abs(xx - width / 2) < 0.42 * width)
    for y in range(n_slices):
        s = plate.astype(np.float32)
        for _ in range(12):
            cz, cx, r = rng.uniform(0.3, 0.7) * thick, rng.uniform(0.15, 0.85) * width, rng.uniform(0.02, 0.06) * thick
            s[(zz - cz) ** 2 + ((xx - cx) / 2) ** 2 < r * r] = 0.0
        for _ in range(6):
            cz, cx, r = rng.uniform(0.3, 0.7) * thick, rng.uniform(0.15, 0.85) * width, rng.uniform(0.005, 0.015) * thick
            s[(zz - cz) ** 2 + (xx - cx) ** 2 < r * r] = 5.0
        vol[y] = s
    return vol


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn, *args, **kw):
    """(result, wall s, peak RSS MB of the process during the call - everything incl. ASTRA's buffers)."""
    ok = _peak_rss_reset()
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    dt = time.perf_counter() - t0
    return out, dt, _peak_rss_mb() if ok else float("nan")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2) / np.mean(b.astype(np.float64) ** 2)))


def _row(name, s, n, it, per_iter, build, wall, base_wall, base_iter, peak, rel):
    proj50 = (base_iter * n * 50) / (per_iter * n * 50 + build) if per_iter else float("nan")
    print(f"{s:>10} {n:>4} {name:>16} {per_iter:>12.4f} {build:>8.1f} {wall:>8.1f} {base_wall / wall:>11.2f}"
          f" {proj50:>13.2f} {peak:>9.0f} {rel:>10.2e}", flush=True)


def _etspy(ts: np.ndarray, thick: int, iterations: int, threads: int) -> tuple[np.ndarray, float] | str:
    """ETSpy's SIRT of the same data in its own venv (installed on first use); volume and seconds, or why not."""
    venv = RESULTS / "etspy-venv"
    py = venv / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "etspy"], check=True, capture_output=True,
                           timeout=600)
        np.save(RESULTS / "etspy_in.npy", ts)
        np.save(RESULTS / "etspy_angles.npy", ANGLES)
        code = (
            "import sys, time, numpy as np\nfrom etspy.api import TomoStack\n"
            f"d = np.load(r'{RESULTS / 'etspy_in.npy'}'); a = np.load(r'{RESULTS / 'etspy_angles.npy'}')\n"
            # ETSpy's sinograms run along the last image axis: (tilts, n_det, n_slices) -> (n_slices, thick, n_det)
            "s = TomoStack(np.ascontiguousarray(d.transpose(0, 2, 1))); s.set_tilts(float(a[0]), float(a[1] - a[0]))\n"
            "t0 = time.perf_counter()\n"
            f"r = s.reconstruct('SIRT', iterations={iterations}, cuda=False, thickness={thick}, ncores={threads}, "
            "show_progressbar=False)\n"
            "dt = time.perf_counter() - t0\n"
            f"np.save(r'{RESULTS / 'etspy_out.npy'}', np.asarray(r.data, np.float32)); print(dt)\n"
        )
        out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True, timeout=900)
        return np.load(RESULTS / "etspy_out.npy"), float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        err = err.decode() if isinstance(err, bytes) else err
        return f"{type(exc).__name__}: {(err.strip().splitlines() or [str(exc)])[-1][:150]}"


def _has_cupy_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cost_table(sizes: list[tuple[int, int]], depths: list[int], iterations: int, threads: int,
               etspy: bool) -> dict:
    print(f"\n== MLEM cost: 69 tilts (±68°), line projector, threads={threads}, {iterations} iterations measured ==")
    print("s/slice/iter: iterations only (build excluded); wall: whole call incl. matrix build; speed-up: per-slice "
          "wall / wall (build included);\n'at 50 it.': speed-up projected to 50 iterations with the build paid "
          "once; peak: process peak RSS MB during the call; rel RMS: to the per-slice volume")
    head = (f"{'slice':>10} {'S':>4} {'method':>16} {'s/slice/iter':>12} {'build s':>8} {'wall s':>8} "
            f"{'speed-up':>11} {'at 50 it.':>13} {'peak RSS':>9} {'rel RMS':>10}")
    print(head)
    print("-" * len(head))
    try:
        import tomopy
    except ImportError:
        tomopy = None
    gpu = _has_cupy_gpu()
    last = {}
    for width, thick in sizes:
        for n in depths:
            size = f"{width}x{thick}"
            ts = forward_project(phantom(n, width, thick), ANGLES, threads=threads) * 100.0
            kw = dict(thickness_px=thick, iterations=iterations, threads=threads, signal_check=False)
            ref, w_ps, p_ps = _timed(reconstruct, ts, ANGLES, method="per_slice", **kw)
            it_ps = w_ps / (n * iterations)
            _row("per-slice ASTRA", size, n, iterations, it_ps, 0.0, w_ps, w_ps, it_ps, p_ps, 0.0)
            clear_matrix_cache()
            got, w_b, p_b = _timed(reconstruct, ts, ANGLES, method="batched", **kw)
            build = got.info["matrix_build_s"]
            it_b = (w_b - build) / (n * iterations)
            _row("batched CPU", size, n, iterations, it_b, build, w_b, w_ps, it_ps, p_b, _rel(got.volume, ref.volume))
            last = {"size": (width, thick), "n": n, "it_ps": it_ps, "it_b": it_b, "build": build, "w_b": w_b,
                    "w_ps": w_ps, "peak": p_b, "nnz": got.info["matrix_nnz"]}
            if tomopy is not None:
                t, w_t, p_t = _timed(reconstruct, ts, ANGLES, backend="tomopy", **kw)
                _row("TomoPy mlem", size, n, iterations, w_t / (n * iterations), 0.0, w_t, w_ps, it_ps, p_t,
                     _rel(t.volume, ref.volume))
            else:
                print(f"{size:>10} {n:>4} {'TomoPy mlem':>16}   skipped: TomoPy is not importable (conda-forge only)")
            if gpu:
                clear_matrix_cache()
                g, w_g, p_g = _timed(reconstruct, ts, ANGLES, method="batched", device="gpu", **kw)
                _row("batched GPU", size, n, iterations, (w_g - g.info["matrix_build_s"]) / (n * iterations),
                     g.info["matrix_build_s"], w_g, w_ps, it_ps, p_g, _rel(g.volume, ref.volume))
            else:
                print(f"{size:>10} {n:>4} {'GPU (CuPy)':>16}   skipped: no CuPy CUDA device here")
            if etspy and n == depths[0]:  # one depth per size: ETSpy runs slice by slice anyway
                res = _etspy(ts, thick, iterations, threads)
                if isinstance(res, str):
                    print(f"{size:>10} {n:>4} {'ETSpy SIRT':>16}   skipped: {res}")
                    etspy = False
                else:
                    _, dt = res
                    print(f"{size:>10} {n:>4} {'ETSpy SIRT':>16} {dt / (n * iterations):>12.4f} {'':>8} {dt:>8.1f} "
                          f"{w_ps / dt:>11.2f} {'':>13} {'':>9} {'(SIRT)':>10}", flush=True)
    return last


def paper_projection(last: dict, threads: int) -> None:
    (width, thick), n = last["size"], last["n"]
    print(f"\n== Paper volume (702 slices of {width}x{thick}, 50 MLEM iterations) on {threads} cores, projected ==")
    ps = last["it_ps"] * 702 * 50
    slabs = -(-702 // n)
    bt = last["it_b"] * 702 * 50 + last["build"]
    print(f"per-slice ASTRA loop: {ps / 60:.1f} min;  batched: {bt / 60:.1f} min (one build of {last['build']:.1f} s; "
          f"{slabs} slabs of {n} share it through recon.matrix_cache)  -> {ps / bt:.1f}x")
    one = last["it_b"] * n * 50 + last["build"]
    print(f"one {n}-slice slab at {width}x{thick}: measured {last['w_b']:.1f} s for the run above (build included; "
          f"per-slice {last['w_ps']:.1f} s); at 50 iterations {one:.0f} s batched vs {last['it_ps'] * n * 50:.0f} s per-slice")


def memory_table(width: int, thick: int, n: int, threads: int) -> None:
    print(f"\n== Batched slab memory at 1x and 2x depth ({width}x{thick}, 1 iteration) ==")
    nnz = matrix_nnz_estimate(thick, width, ANGLES, width)
    for depth in (n, 2 * n):
        ts = forward_project(phantom(depth, width, thick, seed=2), ANGLES, threads=threads) * 100.0
        clear_matrix_cache()
        r, dt, peak = _timed(reconstruct, ts, ANGLES, thickness_px=thick, iterations=1, threads=threads,
                             signal_check=False, method="batched")
        print(f"{depth:>4} slices: peak RSS {peak:7.0f} MB (input stack {ts.nbytes / 1e6:.0f} MB), matrix held "
              f"{r.info['matrix_nnz'] * 8 / 1e6:.0f} MB (nnz {r.info['matrix_nnz']}), formula for the job "
              f"{batched_memory_mb(69, depth, width, thick, nnz):.0f} MB, {dt:.1f} s", flush=True)


def osem_table(n: int, n_slices: int, threads: int, subsets_list: list[int], mlem_iterations: int = 50) -> None:
    print(f"\n== OSEM vs MLEM-{mlem_iterations} (batched): {n_slices} slices of {n}², 69 tilts, Poisson noise ==")
    rng = np.random.default_rng(1)
    clean = forward_project(phantom(n_slices, n, n, seed=3), ANGLES, threads=threads)
    ts = rng.poisson(clean * 2000.0 / clean.max()).astype(np.float32)
    reconstruct(ts, ANGLES, iterations=1, threads=threads)  # builds and caches the matrix: not timed below
    t0 = time.perf_counter()
    mlem = reconstruct(ts, ANGLES, iterations=mlem_iterations, threads=threads)
    t_mlem = time.perf_counter() - t0
    target = mlem.misfit[-1]
    print(f"MLEM-{mlem_iterations}: misfit {target:.5f}, {t_mlem:.2f} s")
    print(f"{'subsets':>8} {'passes to reach':>16} {'seconds':>8} {'speed-up':>9} {'misfit':>9}")
    for s in subsets_list:
        probe = reconstruct(ts, ANGLES, algorithm="osem", subsets=s, iterations=25, threads=threads)
        hit = np.nonzero(probe.misfit <= target)[0]
        if not hit.size:
            print(f"{s:>8} {'not within 25':>16}")
            continue
        passes = int(hit[0]) + 1
        t0 = time.perf_counter()
        r = reconstruct(ts, ANGLES, algorithm="osem", subsets=s, iterations=passes, threads=threads)
        dt = time.perf_counter() - t0
        print(f"{s:>8} {passes:>16} {dt:>8.2f} {t_mlem / dt:>9.1f} {r.misfit[-1]:>9.5f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256x256,512x512,1024x512", help="slice sizes width x thickness")
    ap.add_argument("--slices", default="16,64", help="slab depths (slices per slab)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-etspy", action="store_true", help="skip the ETSpy row (it installs a venv on first use)")
    ap.add_argument("--osem-size", type=int, default=128, help="slice size of the OSEM table (0 = skip)")
    ap.add_argument("--memory-depth", type=int, default=64, help="1x depth of the memory table (0 = skip)")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    depths = [int(v) for v in args.slices.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()})")
    last = cost_table(sizes, depths, args.iterations, args.threads, not args.no_etspy)
    paper_projection(last, args.threads)
    if args.memory_depth:
        memory_table(*last["size"], args.memory_depth, args.threads)
    if args.osem_size:
        osem_table(args.osem_size, 4, args.threads, [4, 8, 16])
    print(f"\nload average after: {os.getloadavg()}")
    for f in ("etspy_in.npy", "etspy_out.npy", "etspy_angles.npy"):
        (RESULTS / f).unlink(missing_ok=True)
    shutil.rmtree(RESULTS / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
