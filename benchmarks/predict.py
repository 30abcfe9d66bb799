"""Benchmark of blended stack prediction (tomoflow.predict): speed, peak memory and DSC side by side.

Configurations (each in its own subprocess, so that peak memory figures are independent):

* no test-time augmentation vs the paper's reference method (8 rotations/mirrors),
* the stack as it is (1x) vs the stack repeated twice along the slice axis (2x depth).

Every run predicts the whole stack as one slab through :func:`tomoflow.predict.predict_volume_slab`,
reading its input chunk by chunk from the MRC file (:func:`tomoflow.io.read_slab`), as the rule
``predict_slab`` does.  Reported: slices per second (model loading and one warm-up batch excluded), peak
resident memory of the process (``ru_maxrss``) and its growth over the state after loading the model,
and the Dice coefficient of every class against the true labels - so that speed is never bought with
accuracy silently.

Inputs: the trained model ``results/model/unet.keras`` and the demo volume ``results/demo/volume.mrc``
with its true labels (``true_labels`` of ``config/samples.tsv``) where they exist; otherwise, with a
printed notice, a freshly built (untrained) ``tomoflow.unet.build_unet`` and the synthetic specimen's
density plus noise (DSC is then meaningless; speed and memory are still valid).

Usage (from the repository root)::

    python benchmarks/predict.py                 # full stack
    python benchmarks/predict.py --slices 16     # first 16 slices only (quick)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


# --------------------------------------------------------------------------- worker (one configuration)
def worker(args: argparse.Namespace) -> None:
    import resource

    import numpy as np

    t_start = time.perf_counter()
    import keras

    from tomoflow import io
    from tomoflow.predict import predict_volume_slab

    model = keras.saving.load_model(args.model, compile=False)
    n = io.volume_shape(args.volume)[0]
    patch = tuple(int(v) for v in args.patch_size)

    def read(a: int, b: int) -> np.ndarray:
        return io.read_slab(args.volume, a, b)[0]

    # warm-up: trace the model on one full batch (not timed)
    model.predict_on_batch(np.zeros((args.batch_size,) + patch + (1,), np.float32))
    rss_model_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    labels, _ = predict_volume_slab(model, read, 0, n, patch_size=patch, batch_size=args.batch_size, tta=args.tta)
    dt = time.perf_counter() - t0
    rss_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    truth, _ = io.read_labels(args.labels, args.n_classes)
    dsc = []
    for c in range(args.n_classes):
        p, t = labels == c, truth == c
        denom = int(p.sum()) + int(t.sum())
        dsc.append(2.0 * int((p & t).sum()) / denom if denom else float("nan"))
    print(json.dumps({
        "n_slices": int(n), "shape": list(labels.shape[1:]), "seconds": dt, "slices_per_s": n / dt,
        "rss_model_mib": rss_model_kib / 1024, "rss_peak_mib": rss_peak_kib / 1024, "dsc": dsc,
        "startup_s": t0 - t_start,
    }))


# --------------------------------------------------------------------------- parent
def _prepare(tmp: Path, args: argparse.Namespace, cfg: dict) -> tuple[str, Path, Path, list[str], str]:
    """Model path, 1x volume, 1x labels, class names and a description of the inputs."""
    import numpy as np
    import pandas as pd

    from tomoflow import io

    classes = list(cfg["classes"])
    model = REPO / "results" / "model" / "unet.keras"
    volume = REPO / "results" / "demo" / "volume.mrc"
    samples = pd.read_csv(REPO / cfg["samples"], sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    truth = REPO / samples.loc["demo", "true_labels"] if "demo" in samples.index else None
    notes = []
    if not model.exists():
        notes.append(f"NOTICE: {model.relative_to(REPO)} not found - using a freshly built, UNTRAINED "
                     "tomoflow.unet.build_unet (speed/memory valid, DSC meaningless)")
        model = tmp / "fresh_unet.keras"
        t = cfg["train"]
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from tomoflow.unet import build_unet; "
            f"build_unet(depth={int(t['depth'])}, base_filters={int(t['base_filters'])}, n_classes={len(classes)}, "
            f"patch_size={list(t['patch_size'])}).save(sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", code, str(REPO / "workflow" / "scripts"), str(model)], check=True, env=_env(args))
    if volume.exists() and truth is not None and truth.exists():
        vol, vs = io.read_volume(volume)
        lab, _ = io.read_labels(truth, len(classes))
        source = f"demo volume {volume.relative_to(REPO)} with true labels {truth.relative_to(REPO)}"
    else:
        notes.append("NOTICE: results/demo/volume.mrc or its true labels not found - using the synthetic "
                     "specimen's density + Gaussian noise (sigma 0.3) as the volume")
        from tomoflow.synthetic import make_specimen

        s = cfg["synthetic"]
        spec = make_specimen(seed=s["seed"], shape=s["shape"], pixel_size_nm=s["pixel_size_nm"],
                             particle_diameter_nm=s["particle_diameter_nm"], particle_fraction=s["particle_fraction"],
                             support_fraction=s["support_fraction"], particle_contrast=s["particle_contrast"])
        rng = np.random.default_rng(0)
        vol = (spec.density + rng.normal(0, 0.3, spec.density.shape)).astype(np.float32)
        lab, vs = spec.labels, spec.pixel_size_nm
        source = f"synthetic specimen {tuple(vol.shape)} (seed {s['seed']})"
    if args.slices:
        vol, lab = vol[: args.slices], lab[: args.slices]
    vs = vs or 1.0
    for k in (1, 2):
        io.write_volume(tmp / f"volume_{k}x.mrc", np.concatenate([vol] * k), vs)
        io.write_labels(tmp / f"labels_{k}x.tif", np.concatenate([lab] * k), vs)
    return str(model), tmp / "volume_1x.mrc", tmp / "labels_1x.tif", classes, source + "\n" + "\n".join(notes)


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    n = str(args.threads)
    env.update(OMP_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=env.get("KERAS_BACKEND", "tensorflow"))
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=0, help="use only the first N slices (0: all)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: predict.batch_size of the config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-tta-2x", action="store_true", help="skip the 8-fold TTA run at 2x depth")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--volume", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--patch-size", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n-classes", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    batch = args.batch_size or int(cfg["predict"]["batch_size"])
    patch = [int(v) for v in cfg["train"]["patch_size"]]
    with tempfile.TemporaryDirectory(prefix="tomoflow_bench_predict_") as d:
        tmp = Path(d)
        model, _, _, classes, source = _prepare(tmp, args, cfg)
        print(f"inputs: {source.strip()}")
        print(f"model {model}; patch {patch[0]}x{patch[1]}, batch {batch}, {args.threads} threads; one subprocess per row\n")
        runs = [("none", 1), ("8-fold (reference)", 1), ("none", 2)]
        if not args.no_tta_2x:
            runs.append(("8-fold (reference)", 2))
        rows = []
        for tta_name, depth in runs:
            cmd = [sys.executable, __file__, "--worker", "--model", model, "--volume", str(tmp / f"volume_{depth}x.mrc"),
                   "--labels", str(tmp / f"labels_{depth}x.tif"), "--patch-size", *map(str, patch),
                   "--n-classes", str(len(classes)), "--batch-size", str(batch)]
            if tta_name != "none":
                cmd.append("--tta")
            res = subprocess.run(cmd, capture_output=True, text=True, env=_env(args))
            if res.returncode:
                sys.exit(f"worker failed ({tta_name}, {depth}x):\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append((tta_name, depth, r))
            print(f"  done: TTA {tta_name}, {depth}x depth ({r['seconds']:.1f} s)", flush=True)
        head = f"{'TTA':<20}{'depth':>6}{'slices':>8}{'slice':>11}{'slices/s':>10}{'peak MiB':>10}{'Δ model MiB':>13}"
        head += "".join(f"{'DSC ' + c[:10]:>16}" for c in classes)
        print("\n" + head)
        print("-" * len(head))
        for tta_name, depth, r in rows:
            line = (f"{tta_name:<20}{str(depth) + 'x':>6}{r['n_slices']:>8}{'x'.join(map(str, r['shape'])):>11}"
                    f"{r['slices_per_s']:>10.2f}{r['rss_peak_mib']:>10.0f}{r['rss_peak_mib'] - r['rss_model_mib']:>13.0f}")
            line += "".join(f"{v:>16.4f}" for v in r["dsc"])
            print(line)
        by = {(t, dep): r for t, dep, r in rows}
        base, tta8 = by[("none", 1)], by[("8-fold (reference)", 1)]
        print(f"\n8-fold TTA: {base['slices_per_s'] / tta8['slices_per_s']:.1f}x slower; "
              f"DSC change {', '.join(f'{c} {b - a:+.4f}' for c, a, b in zip(classes, base['dsc'], tta8['dsc']))}")
        two = by[("none", 2)]
        print(f"2x depth: peak memory {two['rss_peak_mib']:.0f} vs {base['rss_peak_mib']:.0f} MiB "
              f"({two['rss_peak_mib'] - base['rss_peak_mib']:+.0f} MiB; the uint8 labels of the extra slices are "
              f"{base['n_slices'] * base['shape'][0] * base['shape'][1] / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
