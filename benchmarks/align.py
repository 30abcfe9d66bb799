"""Benchmark tomoflow.align: the synthetic demo (truth vs estimate, runtime, reconstruction against a perfectly
aligned series, volume position in the documented frame) or the real ETSpy needle (tilt axis vs ETSpy's,
row-band reprojection misfit, optionally side by side with an ETSpy-aligned stack under the same SIRT).

    python benchmarks/align.py [--seed 7] [--threads 2] [--iterations 30]
    python benchmarks/align.py --needle ../shared/data/etspy_needle [--bin 2] [--etspy-stack etspy_aligned.npy]

``--etspy-stack``: a (n_tilts, n_y, n_x) .npy of the needle aligned by ETSpy (tilt axis horizontal, as ETSpy
writes it; e.g. ``stack_register("PC").tilt_align("CoM", slices=[64, 128, 192])``); it is transposed into
tomoflow's axis-along-y frame and binned like ours.  Every run prints the load average (2 shared cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from skimage.registration import phase_cross_correlation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from tomoflow import align, geometry, synthetic
from tomoflow.projector import forward_project
from tomoflow.recon import reconstruct


def _bands(stack: np.ndarray, angles: np.ndarray, iterations: int, threads: int, n_bands: int = 4) -> list[float]:
    """Relative reprojection misfit of SIRT over n_bands bands of rows (rows with the specimen, 8 px margins)."""
    prof = stack.sum(axis=(0, 2))
    rows = np.flatnonzero(prof > 0.2 * prof.max())
    r0, r1 = rows[0] + 8, rows[-1] - 8
    sub = stack[:, r0:r1]
    vol = reconstruct(sub, angles, thickness_px=stack.shape[2], algorithm="sirt", iterations=iterations, threads=threads, signal_check=False).volume
    pr = forward_project(np.asarray(vol, np.float32), angles, n_det=sub.shape[2], threads=threads)
    out = []
    for b in np.array_split(np.arange(sub.shape[1]), n_bands):
        d = sub[:, b].astype(np.float64)
        out.append(float(np.sum((pr[:, b] - d) ** 2) / np.sum(d**2)))
    return out


def needle(a: argparse.Namespace) -> None:
    from tomoflow import io

    ts = io.read_tilt_series(Path(a.needle) / "HAADF.mrc", angles=Path(a.needle) / "HAADF.rawtlt", pixel_size_nm=3.36)
    data = align.bin_images(ts.data, a.bin)
    t0 = time.perf_counter()
    res = align.align_tilt_series(data, ts.angles_deg, params=align.AlignParams(projection_matching_rounds=1), tilt_axis_prior_deg=90.0,
                                  threads=a.threads)
    dt = time.perf_counter() - t0
    al = res.alignment
    info = al.residuals["tilt_axis"]
    print(f"needle bin {a.bin}: {data.shape}, alignment {dt:.1f} s, load average {os.getloadavg()}")
    print(f"tilt axis {al.tilt_axis_deg:.3f} ± {info['uncertainty_deg']:.3f} deg (ETSpy 92.8; prior 90; hit bound {info['hit_bound']})")
    print(f"row bands (tomoflow gate): {al.residuals['row_bands']['misfit']} worst/median {al.residuals['row_bands']['worst_to_median']:.2f}")
    ours = _bands(res.aligned, ts.angles_deg, a.iterations, a.threads)
    print(f"{'SIRT ' + str(a.iterations) + ' misfit per band':34s}" + " ".join(f"{v:8.4f}" for v in ours) + f"   mean {np.mean(ours):.4f}  (tomoflow)")
    if a.etspy_stack:
        et = np.load(a.etspy_stack).astype(np.float32).transpose(0, 2, 1)
        et = align.bin_images(et - float(np.percentile(et, 5)), a.bin)
        theirs = _bands(et, ts.angles_deg, a.iterations, a.threads)
        print(f"{'':34s}" + " ".join(f"{v:8.4f}" for v in theirs) + f"   mean {np.mean(theirs):.4f}  (ETSpy-aligned)")


def demo(a: argparse.Namespace) -> None:
    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    syn = dict(cfg["synthetic"])
    if a.seed is not None:
        syn["seed"] = a.seed
    spec, ts = synthetic.simulate(syn, threads=a.threads)
    params = align.AlignParams.from_config(cfg["align"])
    t0 = time.perf_counter()
    res = align.align_tilt_series(ts.data, ts.angles_deg, params=params, thickness_px=spec.density.shape[1], threads=a.threads)
    dt = time.perf_counter() - t0
    al = res.alignment
    ref = al.reference_index
    t_gauge, c_gauge = geometry.fix_gauge(geometry.rot(-ts.tilt_axis_deg, ts.shifts_px), ts.center_offset_px, ts.angles_deg, ref)
    t_est, _ = geometry.fix_gauge(al.aligned_frame_shifts(), al.center_offset_px, ts.angles_deg, ref)
    rms = float(np.sqrt(np.mean(np.sum((t_est - t_gauge) ** 2, axis=1))))
    print(f"demo seed {syn['seed']}: {ts.data.shape[0]} tilts of {ts.data.shape[1]}x{ts.data.shape[2]} px, alignment {dt:.1f} s, "
          f"load average {os.getloadavg()}")
    print(f"{'':28s}{'estimate':>10s}{'truth':>10s}")
    print(f"{'tilt axis (deg)':28s}{al.tilt_axis_deg:10.3f}{ts.tilt_axis_deg:10.3f}   ± {al.residuals['tilt_axis']['uncertainty_deg']:.3f}")
    print(f"{'centre offset (px, gauge)':28s}{al.center_offset_px:10.3f}{c_gauge:10.3f}")
    print(f"shift RMS error (minimum-drift gauge) {rms:.3f} px; residual {al.residual_px:.3f} px; bands {al.residuals['row_bands']['misfit']}")
    thick = spec.density.shape[1]
    ours = reconstruct(res.aligned, ts.angles_deg, thickness_px=thick, algorithm="sirt", iterations=a.iterations, threads=a.threads).volume
    perfect = reconstruct(ts.aligned, ts.angles_deg, thickness_px=thick, algorithm="sirt", iterations=a.iterations, threads=a.threads).volume
    shift, _, _ = phase_cross_correlation(spec.density, ours, upsample_factor=20, normalization=None)

    def corr(v: np.ndarray) -> float:
        return float(np.corrcoef(v.ravel(), spec.density.ravel())[0, 1])

    print(f"correlation with true density (SIRT {a.iterations}): perfectly aligned {corr(perfect):.4f}, ours {corr(ours):.4f}; "
          f"volume offset from the truth (y, z, x) = {np.round(shift, 2)} voxels (frame: {al.frame['z']})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=30, help="SIRT iterations of the quality reconstructions")
    ap.add_argument("--needle", default=None, help="folder of the ETSpy needle (HAADF.mrc, HAADF.rawtlt)")
    ap.add_argument("--bin", type=int, default=2)
    ap.add_argument("--etspy-stack", default=None)
    a = ap.parse_args()
    needle(a) if a.needle else demo(a)


if __name__ == "__main__":
    main()
