"""Benchmark: tomoflow.metrics vs the DeepMind ``surface-distance`` package on one 1024×512 slice.

Same work on both sides: for each of the 3 classes, confusion counts/DSC, the surface distances and the
robust Hausdorff distance at 12 percentiles.  Prints the best-of-N wall time of each and the largest
difference of the results (nm).  Acceptance target: tomoflow < 0.5 s on one core.

Run::

    . .venv/bin/activate && OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/metrics.py [--repeats 5] [--size 1024 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from tomoflow.metrics import DEFAULT_PERCENTILES, segmentation_metrics  # noqa: E402

PIXEL_NM = 0.4


def phantom(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A catalyst-like slice (porous support + ~0.5 % particles) and an imperfect prediction of it."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 12)
    truth = (field > np.quantile(field, 0.6)).astype(np.uint8)  # 40 % support
    yy, xx = np.indices(shape)
    edge = np.argwhere(ndimage.binary_dilation(truth == 1) & (truth == 0))
    target = 0.005 * truth.size
    n_px = 0
    for y, x in edge[rng.permutation(len(edge))]:
        r = rng.uniform(1.2, 5.0)
        disk = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        truth[disk] = 2
        n_px = int((truth == 2).sum())
        if n_px >= target:
            break
    pred = truth.copy()
    # boundary noise on the support, a few missed and a few spurious particles
    noisy = ndimage.gaussian_filter(rng.standard_normal(shape), 2)
    noisy *= 0.3 * field.std() / noisy.std()
    pred[(truth != 2)] = (field + noisy > np.quantile(field, 0.6))[truth != 2].astype(np.uint8)
    lab, n = ndimage.label(truth == 2)
    for i in rng.choice(np.arange(1, n + 1), size=max(1, n // 10), replace=False):
        pred[lab == i] = 1
    for y, x in rng.integers(0, shape, size=(5, 2)):
        pred[(yy - y) ** 2 + (xx - x) ** 2 <= 4] = 2
    return truth, pred


def reference(truth: np.ndarray, pred: np.ndarray, percentiles: list[float]) -> dict[int, list[float]]:
    """The same metrics with the DeepMind ``surface-distance`` package."""
    np.Inf, np.NaN = np.inf, np.nan  # type: ignore[attr-defined]  # removed in NumPy 2; the package uses them
    import surface_distance as sd

    out = {}
    for c in (0, 1, 2):
        a, b = truth == c, pred == c
        sd.compute_dice_coefficient(a, b)
        dist = sd.compute_surface_distances(a, b, (PIXEL_NM, PIXEL_NM))
        out[c] = [float(sd.compute_robust_hausdorff(dist, p)) for p in percentiles]
    return out


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, res = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, nargs=2, default=[1024, 512], metavar=("H", "W"))
    args = ap.parse_args()
    shape = (args.size[0], args.size[1])
    truth, pred = phantom(shape)
    ps = list(DEFAULT_PERCENTILES)
    print(f"slice {shape[0]}x{shape[1]}, {PIXEL_NM} nm/px, classes 0/1/2 = {[(truth == c).mean().round(4) for c in (0, 1, 2)]} of pixels, {len(ps)} percentiles")
    segmentation_metrics(truth, pred, pixel_size_nm=PIXEL_NM, percentiles=ps)  # warm-up (lookup tables)
    t_ours, ours = best_of(lambda: segmentation_metrics(truth, pred, pixel_size_nm=PIXEL_NM, percentiles=ps), args.repeats)
    t_ref, ref = best_of(lambda: reference(truth, pred, ps), max(1, min(args.repeats, 2)))
    diff = max(abs(a - b) for c in (0, 1, 2) for a, b in zip(ours[c]["rhd_nm"], ref[c]) if np.isfinite(a) or np.isfinite(b))  # type: ignore[index]
    print(f"{'implementation':<28}{'best time (s)':>14}")
    print(f"{'tomoflow.metrics':<28}{t_ours:>14.3f}")
    print(f"{'surface-distance 0.1':<28}{t_ref:>14.3f}")
    print(f"speed-up {t_ref / t_ours:.1f}x; largest RHD difference {diff:.2e} nm; target < 0.5 s: {'met' if t_ours < 0.5 else 'NOT met'}")
    for c in (0, 1, 2):
        m = ours[c]  # type: ignore[index]
        print(f"  class {c}: DSC {m['dsc']:.4f}  HD95 {m['rhd_nm'][ps.index(95)]:.2f} nm  HD {m['hausdorff_nm']:.2f} nm")


if __name__ == "__main__":
    main()
