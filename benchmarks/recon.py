"""Benchmark of tomoflow.recon: MLEM cost per projector and slice size, and OSEM vs MLEM-50.

Run from the repository root::

    . .venv/bin/activate && PYTHONPATH=workflow/scripts python benchmarks/recon.py [--threads 2] [--quick]

Prints, in one run and side by side:

1. For each ASTRA CPU projector and slice size (256², 512², 1024²; 69 tilts over ±68°): seconds per
   slice per MLEM iteration and ray-pixel updates per second (definition printed with the table),
   plus TomoPy's ``mlem`` where TomoPy is importable.
2. OSEM (4, 8, 16 subsets): passes and seconds needed to reach the data misfit of MLEM after 50
   iterations, on a noisy 256² phantom slab.

Timings depend on the machine's load; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tomoflow.projector import CPU_PROJECTORS, forward_project, system_matrix_nnz
from tomoflow.recon import reconstruct

ANGLES = np.arange(-68.0, 68.1, 2.0)  # 69 tilts


def phantom(n_slices: int, n: int, seed: int = 0) -> np.ndarray:
    """A plate (thickness n/2) with ellipsoidal pores and dense particles, in an n x n slice."""
    rng = np.random.default_rng(seed)
    zz, xx = np.mgrid[:n, :n].astype(np.float32)
    vol = np.zeros((n_slices, n, n), np.float32)
    plate = (np.abs(zz - n / 2) < n / 4) & (np.abs(xx - n / 2) < 0.42 * n)
    for y in range(n_slices):
        s = plate.astype(np.float32)
        for _ in range(12):
            cz, cx, r = rng.uniform(0.3 * n, 0.7 * n), rng.uniform(0.15 * n, 0.85 * n), rng.uniform(0.02, 0.06) * n
            s[(zz - cz) ** 2 + ((xx - cx) / 2) ** 2 < r * r] = 0.0
        for _ in range(6):
            cz, cx, r = rng.uniform(0.25 * n, 0.75 * n), rng.uniform(0.15 * n, 0.85 * n), rng.uniform(0.005, 0.015) * n
            s[(zz - cz) ** 2 + (xx - cx) ** 2 < r * r] = 5.0
        vol[y] = s
    return vol


def cost_table(sizes: list[int], slices: dict[int, int], iterations: int, threads: int) -> None:
    print("\n== MLEM cost per projector (69 tilts, ±68°, threads=%d) ==" % threads)
    print("updates = nnz(A) x 2 per iteration: nnz(A) = ray-pixel pairs with non-zero weight in ASTRA's system")
    print("matrix of one slice (counted from astra.projector.matrix, angle by angle); one iteration does one forward")
    print("and one back projection, each nnz(A) multiply-adds.  s/slice/iter = wall time / (slices x iterations).")
    tomopy = None
    try:
        import tomopy as _tp

        tomopy = _tp
    except ImportError:
        pass
    print("'line-equiv.' divides the line projector's updates by each projector's time (a common yardstick);")
    print("ASTRA exports no system matrix for distance_driven, so its own count is n/a.")
    head = (f"{'slice':>6} {'projector':>16} {'nnz/(angle*px)':>15} {'s/slice/iter':>13} {'M updates/s':>12}"
            f" {'line-equiv. M/s':>16}")
    print(head)
    print("-" * len(head))
    for n in sizes:
        ts = forward_project(phantom(slices[n], n), ANGLES, threads=threads) * 1000.0
        nnz_line = system_matrix_nnz(n, n, ANGLES, projector="line")
        for proj in CPU_PROJECTORS:
            nnz = system_matrix_nnz(n, n, ANGLES, projector=proj) if proj != "distance_driven" else None
            reconstruct(ts[:, :1], ANGLES, iterations=1, projector=proj, signal_check=False)  # warm-up
            t0 = time.perf_counter()
            reconstruct(ts, ANGLES, iterations=iterations, projector=proj, threads=threads, signal_check=False)
            dt = (time.perf_counter() - t0) / (slices[n] * iterations)
            own = (f"{nnz / (ANGLES.size * n * n):>15.3f} {dt:>13.4f} {2 * nnz / dt / 1e6:>12.0f}" if nnz
                   else f"{'n/a':>15} {dt:>13.4f} {'n/a':>12}")
            print(f"{n:>5}² {proj:>16} {own} {2 * nnz_line / dt / 1e6:>16.0f}", flush=True)
        if tomopy is not None:
            t0 = time.perf_counter()
            tomopy.recon(ts, np.deg2rad(ANGLES), algorithm="mlem", num_iter=iterations, ncore=threads)
            dt = (time.perf_counter() - t0) / (slices[n] * iterations)
            print(f"{n:>5}² {'tomopy mlem':>16} {'(line)':>15} {dt:>13.4f} {2 * nnz_line / dt / 1e6:>12.0f}"
                  f" {2 * nnz_line / dt / 1e6:>16.0f}", flush=True)
        else:
            print(f"{n:>5}² {'tomopy mlem':>16} {'not importable (conda-forge only)':>42}")


def osem_table(n: int, n_slices: int, threads: int, subsets_list: list[int], mlem_iterations: int = 50) -> None:
    print(f"\n== OSEM vs MLEM-{mlem_iterations}: {n_slices} slices of {n}², 69 tilts, Poisson noise (dose 2000) ==")
    rng = np.random.default_rng(1)
    clean = forward_project(phantom(n_slices, n, seed=3), ANGLES, threads=threads)
    ts = rng.poisson(clean * 2000.0 / clean.max()).astype(np.float32)
    t0 = time.perf_counter()
    mlem = reconstruct(ts, ANGLES, iterations=mlem_iterations, threads=threads)
    t_mlem = time.perf_counter() - t0
    target = mlem.misfit[-1]
    print(f"MLEM-{mlem_iterations}: misfit {target:.5f}, {t_mlem:.2f} s "
          f"({t_mlem / (n_slices * mlem_iterations):.4f} s/slice/iter)")
    head = f"{'subsets':>8} {'passes to reach':>16} {'seconds':>8} {'speed-up':>9} {'misfit':>9}"
    print(head)
    print("-" * len(head))
    for s in subsets_list:
        probe = reconstruct(ts, ANGLES, algorithm="osem", subsets=s, iterations=25, threads=threads)
        hit = np.nonzero(probe.misfit <= target)[0]
        if not hit.size:
            print(f"{s:>8} {'not within 25':>16}")
            continue
        k = int(hit[0]) + 1
        t0 = time.perf_counter()
        res = reconstruct(ts, ANGLES, algorithm="osem", subsets=s, iterations=k, threads=threads)
        dt = time.perf_counter() - t0
        print(f"{s:>8} {k:>16} {dt:>8.2f} {t_mlem / dt:>8.1f}x {res.misfit[-1]:>9.5f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3, help="MLEM iterations timed per projector and size")
    ap.add_argument("--quick", action="store_true", help="256² and 512² only, fewer slices")
    args = ap.parse_args()
    print(f"CPU cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    sizes = [256, 512] if args.quick else [256, 512, 1024]
    slices = {256: 8 if args.quick else 16, 512: 4 if args.quick else 8, 1024: 2}
    cost_table(sizes, slices, args.iterations, args.threads)
    osem_table(256, 8, args.threads, [4, 8, 16])
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
