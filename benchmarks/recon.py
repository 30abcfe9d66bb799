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


def _raw_fp_bp(n: int, repeats: int) -> float:
    """Seconds per bare ASTRA FP + BP pair of one n x n slice (line projector, linked buffers, 1 thread)."""
    import astra

    from tomoflow.projector import projection_geometry

    vg = astra.create_vol_geom(n, n)
    pg = projection_geometry(ANGLES, n)
    pid = astra.create_projector("line", pg, vg)
    x = np.random.default_rng(0).random((n, n), dtype=np.float32)
    p = np.zeros((ANGLES.size, n), np.float32)
    b = np.zeros_like(x)
    ids = [astra.data2d.link("-vol", vg, x), astra.data2d.link("-sino", pg, p), astra.data2d.link("-vol", vg, b)]
    fp = astra.astra_dict("FP")
    fp.update(ProjectorId=pid, VolumeDataId=ids[0], ProjectionDataId=ids[1])
    bp = astra.astra_dict("BP")
    bp.update(ProjectorId=pid, ReconstructionDataId=ids[2], ProjectionDataId=ids[1])
    algs = [astra.algorithm.create(fp), astra.algorithm.create(bp)]
    t0 = time.perf_counter()
    for _ in range(repeats):
        astra.algorithm.run(algs[0])
        astra.algorithm.run(algs[1])
    dt = (time.perf_counter() - t0) / repeats
    astra.algorithm.delete(algs)
    astra.data2d.delete(ids)
    astra.projector.delete(pid)
    return dt


def cost_table(sizes: list[int], slices: dict[int, int], iterations: int, threads: int) -> None:
    print("\n== MLEM cost per projector (69 tilts, ±68°, threads=%d) ==" % threads)
    print("updates = nnz(A) x 2 per iteration: nnz(A) = ray-pixel pairs with non-zero weight in ASTRA's system")
    print("matrix of one slice (counted from astra.projector.matrix, angle by angle); one iteration does one forward")
    print("and one back projection, each nnz(A) multiply-adds.  s/slice/iter = marginal wall time of the")
    print("iterations / (slices x iterations), threads over slices.")
    tomopy = None
    try:
        import tomopy as _tp

        tomopy = _tp
    except ImportError:
        pass
    print("'line-equiv.' divides the line projector's updates by each projector's time (a common yardstick);")
    print("ASTRA exports no system matrix for distance_driven, so its own count is n/a.")
    print("Wall-clock columns depend on the machine's load; 'CPU s' is process CPU time per slice-iteration and")
    print(f"'M/s on {threads} idle cores' = {threads} x 2 nnz(A) / CPU s, the throughput with the cores to ourselves.")
    head = (f"{'slice':>6} {'projector':>16} {'nnz/(angle*px)':>15} {'s/slice/iter':>13} {'M updates/s':>12}"
            f" {'line-equiv. M/s':>16} {'CPU s':>8} {f'M/s on {threads} idle cores':>22}")
    print(head)
    print("-" * len(head))
    for n in sizes:
        ts = forward_project(phantom(slices[n], n), ANGLES, threads=threads) * 1000.0
        nnz_line = system_matrix_nnz(n, n, ANGLES, projector="line")
        for proj in CPU_PROJECTORS:
            nnz = system_matrix_nnz(n, n, ANGLES, projector=proj) if proj != "distance_driven" else None
            # Marginal cost of `iterations` iterations: time(1 + iterations) - time(1), which removes the
            # fixed costs (checks, sensitivities, the final misfit projection) from the per-iteration figure.
            wall, cpus = [], []
            for its in (1, 1 + iterations):
                t0, c0 = time.perf_counter(), time.process_time()
                reconstruct(ts, ANGLES, iterations=its, projector=proj, threads=threads, signal_check=False)
                wall.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            dt = (wall[1] - wall[0]) / (slices[n] * iterations)
            cpu = (cpus[1] - cpus[0]) / (slices[n] * iterations)
            own = (f"{nnz / (ANGLES.size * n * n):>15.3f} {dt:>13.4f} {2 * nnz / dt / 1e6:>12.0f}" if nnz
                   else f"{'n/a':>15} {dt:>13.4f} {'n/a':>12}")
            idle = threads * 2 * (nnz or nnz_line) / cpu / 1e6
            mark = "" if nnz else " (line-equiv.)"
            print(f"{n:>5}² {proj:>16} {own} {2 * nnz_line / dt / 1e6:>16.0f} {cpu:>8.4f} {idle:>22.0f}{mark}", flush=True)
        c0 = time.process_time()
        raw = _raw_fp_bp(n, iterations * slices[n])
        cpu = (time.process_time() - c0) / (slices[n] * iterations)
        print(f"{n:>5}² {'raw FP+BP line':>16} {'(1 thread)':>15} {raw:>13.4f} {2 * nnz_line / raw / 1e6:>12.0f}"
              f" {'':>16} {cpu:>8.4f} {threads * 2 * nnz_line / cpu / 1e6:>22.0f}", flush=True)
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
    ap.add_argument("--iterations", type=int, default=4, help="MLEM iterations timed per projector and size")
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
