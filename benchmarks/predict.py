"""Benchmark of U-Net prediction (tomoflow.predict): paper protocol | blended | one pass, side by side.

Rows (each configuration in its own subprocess, so that peak-memory figures are independent; the same
trained model and the same slices for every row):

* ``paper``   - the reference method: 512×512 patches, 50 % overlap, spline blending, 8-fold TTA;
* ``blended`` - the same patches without TTA;
* ``whole``   - one network pass per slice (``predict.mode: whole``; what ``auto`` picks when a slice fits),
  without and with 8-fold TTA,

at 1× stack depth, and ``blended``/``whole`` again at 2× depth (the stack repeated), for the peak memory.
Every run predicts the stack as one slab through :func:`tomoflow.predict.predict_volume_slab`, reading its
input chunk by chunk from an MRC file (:func:`tomoflow.io.read_slab`), as the rule ``predict_slab`` does.
Reported: seconds per slice (model loading and one warm-up call of each input shape excluded), peak resident
memory (``ru_maxrss``) and its growth over the state after loading the model, the planner's activation
estimate, and the Dice coefficient of every class against the true labels - so that speed is never bought
with accuracy silently - plus the load average before and after.

Inputs (``--source``):

* ``synthetic`` (default): 1024-wide × 512-thick slices of the built-in specimen
  (:func:`tomoflow.synthetic.make_specimen`, 0.4 nm/px), blurred (σ 1 px) with Gaussian noise, and a
  U-Net (depth 6, 8 base filters, the demo's network) trained here in a subprocess on 128² patches of
  other slices of the same specimen.  Model and data are cached in ``benchmarks/results/predict/``
  (delete it to retrain).
* ``paper-like``: the model of the CPU-recipe acceptance run of ``benchmarks/train_recipe.py`` (``run --name
  real_data --save <cache>/real_data.weights.h5``) on the first ``--slices`` of its 8 held-out 512×1024 slices
  of an independent paper-like specimen (0.12 nm/px), against the generator's labels.
* ``demo``: the demo's ``results/models/<first of models:>/unet.keras`` and its whole ``results/demo/volume.mrc`` against the
  true labels of ``config/samples.tsv`` (run ``make demo`` first): the demo's whole-volume DSC per method.

Measured 2026-11-30 (2 shared cores, load average 1.7-2.0; synthetic, 2 test slices 512x1024, batch 8, budget
2000 MiB)::

    method                               depth  s/slice  peak MiB  Δ MiB  est MiB  DSC bg / support / Pt
    paper (512², 50 %, spline, 8-fold TTA)  1x    31.10     1395    734      -   0.9991 / 0.9969 / 0.9616
    blended, no TTA                         1x     3.54     1238    575      -   0.9991 / 0.9971 / 0.9493
    one pass per slice                      1x     0.43      963    302    564   0.9991 / 0.9971 / 0.9493
    one pass per slice, 8-fold TTA (*)      1x     3.85     1045    381    564   0.9991 / 0.9969 / 0.9616
    blended, no TTA                         2x     3.29     1341    678      -   (same)
    one pass per slice                      2x     0.48     1115    453   1127   (same)

One pass is 73x faster than the paper protocol and 8x faster than blended patches, with the DSC of blended
patches to 4 decimals; the paper protocol's +0.012 Pt DSC comes from its 8-fold TTA (an 8-model ensemble),
not from the patches: ``mode: whole`` with ``tta: true`` gives the paper's DSC (within 0.0001) 8x faster.
(*) measured by the same worker on the same cached model and slices in a separate call right after.
Memory grows with the slices per call (here 2 then 4, at most ``batch_size`` and the budget), not with
the stack; the planner's estimate (all layer outputs kept) is about twice the measured growth.

Usage (from the repository root; heavy, so under the shared CPU lock)::

    flock /tmp/tomoflow_cpu.lock python benchmarks/predict.py               # 2 test slices, 1024x512
    flock /tmp/tomoflow_cpu.lock python benchmarks/predict.py --source demo
    flock /tmp/tomoflow_cpu.lock python benchmarks/predict.py --source paper-like --slices 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
CACHE = REPO / "benchmarks" / "results" / "predict"
CLASSES = ["background", "support", "particles"]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    n = str(threads)
    env.update(OMP_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=env.get("KERAS_BACKEND", "tensorflow"))
    return env


def _dsc(labels, truth, n_classes: int) -> list[float]:
    out = []
    for c in range(n_classes):
        p, t = labels == c, truth == c
        denom = int(p.sum()) + int(t.sum())
        out.append(2.0 * int((p & t).sum()) / denom if denom else float("nan"))
    return out


# --------------------------------------------------------------------------- worker: data + training
def prepare_synthetic(args: argparse.Namespace) -> None:
    """Specimen (24 slices of 512 x 1024), volume = blur + noise, U-Net trained away from the test slices."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from tomoflow import io
    from tomoflow.io.models import save_model
    from tomoflow.synthetic import make_specimen
    from tomoflow.train import AugmentSettings, TrainSettings, export_model, train_unet

    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spec = make_specimen(seed=3, shape=(24, 512, 1024), supersample=1, margin_px=0)
    rng = np.random.default_rng(0)
    vol = gaussian_filter(spec.density, (0, 1.0, 1.0)) + rng.normal(0, 0.3, spec.density.shape)
    vol = vol.astype(np.float32)
    lab = spec.labels.astype(np.uint8)
    if not 1 <= args.slices <= 4:
        sys.exit("--slices must be 1-4 (test slices 11-14; training uses 0-7 and 17-23, validation 8 and 16)")
    test = slice(11, 11 + args.slices)
    for k in (1, 2):
        io.write_volume(CACHE / f"volume_{k}x.mrc", np.concatenate([vol[test]] * k), spec.pixel_size_nm)
        io.write_labels(CACHE / f"labels_{k}x.tif", np.concatenate([lab[test]] * k), spec.pixel_size_nm)
    # training patches: 128^2 from slices 0-7 and 17-23, validation from 8 and 16; half of them centred on Pt
    def patches(rows: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
        ims, labs = [], []
        for i in range(n):
            s = int(rng.choice(list(rows)))
            if i % 2 == 0 and (lab[s] == 2).any():
                ys, xs = np.nonzero(lab[s] == 2)
                j = int(rng.integers(len(ys)))
                y0 = int(np.clip(ys[j] - 64, 0, 512 - 128))
                x0 = int(np.clip(xs[j] - 64, 0, 1024 - 128))
            else:
                y0, x0 = int(rng.integers(0, 512 - 128 + 1)), int(rng.integers(0, 1024 - 128 + 1))
            ims.append(vol[s, y0:y0 + 128, x0:x0 + 128])
            labs.append(lab[s, y0:y0 + 128, x0:x0 + 128])
        return np.stack(ims), np.stack(labs)

    ti, tl = patches(list(range(0, 8)) + list(range(17, 24)), 160)
    vi, vl = patches([8, 16], 32)
    settings = TrainSettings(depth=6, base_filters=8, epochs=args.epochs, batch_size=4, learning_rate=2e-3,
                             seed=1, augment=AugmentSettings(0.0, True, 0.0, 0.0))
    res = train_unet(ti, tl, vi, vl, CLASSES, settings)
    export_model(res.model, res.alpha, settings.focal_gamma, settings.learning_rate)
    save_model(res.model, CACHE / "unet.keras")
    best = res.history.iloc[res.best_epoch - 1]
    info = {"slices": args.slices, "epochs": args.epochs, "test": "11+", "train_s": time.perf_counter() - t0,
            "best_epoch": res.best_epoch,
            "val_dsc": [float(best[f"val_dsc_{c}"]) for c in CLASSES]}
    (CACHE / "info.json").write_text(json.dumps(info))
    print(json.dumps(info))


# --------------------------------------------------------------------------- worker: one configuration
def predict_worker(args: argparse.Namespace) -> None:
    import resource

    import keras
    import numpy as np

    from tomoflow import io
    from tomoflow.predict import plan_prediction, predict_volume_slab

    model = keras.saving.load_model(args.model, compile=False)
    n = io.volume_shape(args.volume)[0]
    shape = io.volume_shape(args.volume)[1:]
    patch = tuple(int(v) for v in args.patch_size)
    plan = plan_prediction(model, shape, mode=args.mode, batch_size=args.batch_size, memory_budget_mb=args.budget_mb)
    rss_model_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # warm-up: trace every input shape once (not timed; its memory counts, the same buffers are reused)
    if plan.mode == "whole":
        hp, wp = plan.layout.padded_shape
        shapes = [(min(plan.per_call, n), hp, wp)] + ([(min(plan.per_call, n), wp, hp)] if args.tta else [])
        if n % plan.per_call and n > plan.per_call:
            shapes.append((n % plan.per_call, hp, wp))
    else:
        shapes = [(args.batch_size,) + patch]
    for s in shapes:
        model.predict_on_batch(np.zeros(s + (1,), np.float32))

    def read(a: int, b: int) -> np.ndarray:
        return io.read_slab(args.volume, a, b)[0]

    t0 = time.perf_counter()
    labels, _ = predict_volume_slab(model, read, 0, n, patch_size=patch, batch_size=args.batch_size, tta=args.tta,
                                    mode=args.mode, memory_budget_mb=args.budget_mb)
    dt = time.perf_counter() - t0
    rss_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    truth, _ = io.read_labels(args.labels, args.n_classes)
    print(json.dumps({
        "n_slices": int(n), "shape": list(labels.shape[1:]), "seconds": dt, "s_per_slice": dt / n,
        "rss_model_mib": rss_model_kib / 1024, "rss_peak_mib": rss_peak_kib / 1024,
        "dsc": _dsc(labels, truth, args.n_classes), "plan": plan.mode, "per_call": plan.per_call,
        "est_mib": plan.mb_per_slice * min(plan.per_call, n) if plan.mode == "whole" else float("nan"),
    }))


# --------------------------------------------------------------------------- parent
def _inputs(args: argparse.Namespace) -> tuple[str, Path, str, list[int], str]:
    """(model, folder with volume_{k}x.mrc / labels_{k}x.tif, description, paper patch, classes note)."""
    import numpy as np
    import pandas as pd
    import yaml

    from tomoflow import io

    if args.source == "demo":
        cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        first = next(iter(cfg.get("models") or {"default": {}}))  # predict.model "": the first of `models:`
        model = REPO / "results" / "models" / first / "unet.keras"
        volume = REPO / "results" / "demo" / "volume.mrc"
        samples = pd.read_csv(REPO / cfg["samples"], sep="\t", dtype=str, keep_default_na=False).set_index("sample")
        truth = REPO / samples.loc["demo", "true_labels"]
        if not (model.exists() and volume.exists() and truth.exists()):
            sys.exit(f"--source demo needs {model.relative_to(REPO)}, results/demo/volume.mrc and the demo's true labels: run `make demo`")
        d = CACHE / "demo"
        d.mkdir(parents=True, exist_ok=True)
        vol, vs = io.read_volume(volume)
        lab, _ = io.read_labels(truth, len(CLASSES))
        for k in (1, 2):
            io.write_volume(d / f"volume_{k}x.mrc", np.concatenate([vol] * k), vs or 1.0)
            io.write_labels(d / f"labels_{k}x.tif", np.concatenate([lab] * k), vs or 1.0)
        patch = [int(v) for v in cfg["train"]["patch_size"]]
        return str(model), d, f"demo: {model.relative_to(REPO)} on the whole {volume.relative_to(REPO)} {vol.shape}", patch, ""
    if args.source == "paper-like":
        return _paper_like_inputs(args)
    info_path = CACHE / "info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if (info.get("slices") != args.slices or info.get("epochs") != args.epochs or info.get("test") != "11+"
            or not (CACHE / "unet.keras").exists()):
        print(f"training the benchmark U-Net ({args.epochs} epochs; cached in {CACHE.relative_to(REPO)}) ...", flush=True)
        cmd = [sys.executable, __file__, "--prepare", "--slices", str(args.slices), "--epochs", str(args.epochs)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=_env(args.threads))
        if res.returncode:
            sys.exit(f"training failed:\n{res.stderr[-3000:]}")
        info = json.loads(res.stdout.strip().splitlines()[-1])
    desc = (f"synthetic: specimen seed 3, {args.slices} test slices (11-) of 512x1024 (0.4 nm/px), blur 1 px + noise 0.3; "
            f"U-Net depth 6 / 8 filters trained {info['epochs']} epochs on 128^2 patches in {info['train_s']:.0f} s "
            f"(best epoch {info['best_epoch']}, val DSC {', '.join(f'{v:.3f}' for v in info['val_dsc'])})")
    return str(CACHE / "unet.keras"), CACHE, desc, [512, 512], ""


def _paper_like_inputs(args: argparse.Namespace) -> tuple[str, Path, str, list[int], str]:
    """The model of the CPU-recipe acceptance run and its held-out slices (``benchmarks/train_recipe.py``).

    ``train_recipe.py run --save W`` keeps only the weights; the intensity normalisation of the model is
    recomputed exactly as :func:`tomoflow.train.train_unet` did (mean/variance of every pixel of the training
    slices of the same split), the U-Net rebuilt with ``config/real_data.yaml``'s size, the weights loaded, and
    the held-out DSC checked against the run's before any timing.
    """
    import numpy as np
    import yaml

    from tomoflow import io
    from tomoflow.unet import build_unet, dice_per_class

    src = Path(args.paper_cache)
    data_f, weights_f = src / "data.npz", src / "real_data.weights.h5"
    if not (data_f.exists() and weights_f.exists()):
        sys.exit(f"--source paper-like needs {data_f} and {weights_f}: run benchmarks/train_recipe.py data, then "
                 "run --name real_data --save <cache>/real_data.weights.h5")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_recipe import load_data, split_data

    tr = {**yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"],
          **yaml.safe_load((REPO / "config" / "real_data.yaml").read_text())["train"]}
    data = load_data(src)
    *_, train_ids = split_data(data, list(tr["patch_size"]), float(tr["val_fraction"]), int(tr["seed"]))
    pixels = np.concatenate([data["ann_images"][i].ravel() for i in train_ids]).astype(np.float32)
    model = build_unet(int(tr["depth"]), int(tr["base_filters"]), 3, float(np.mean(pixels, dtype=np.float64)),
                       float(np.var(pixels, dtype=np.float64)))
    model.load_weights(weights_f)
    test_im, test_lab = data["test_images"][: args.slices], data["test_labels"][: args.slices]
    pred = np.argmax(model.predict(test_im[..., None], batch_size=1, verbose=0), axis=-1)
    check = dice_per_class(test_lab, pred, 3)
    d = CACHE / "paper_like"
    d.mkdir(parents=True, exist_ok=True)
    model.save(d / "unet.keras")
    for k in (1, 2):
        io.write_volume(d / f"volume_{k}x.mrc", np.concatenate([test_im] * k), 0.12)
        io.write_labels(d / f"labels_{k}x.tif", np.concatenate([test_lab] * k).astype(np.uint8), 0.12)
    desc = (f"paper-like (config/paper_like.yaml, 0.12 nm/px): the CPU-recipe acceptance model ({weights_f}; depth "
            f"{tr['depth']}, {tr['base_filters']} filters, trained on {tr['patch_size'][0]}² crops) on {len(test_im)} held-out "
            f"512x1024 slices of specimen seed 8; rebuilt model's plain full-slice DSC support {check[1]:.4f} Pt {check[2]:.4f}")
    return str(d / "unet.keras"), d, desc, [512, 512], ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=["synthetic", "demo", "paper-like"], default="synthetic")
    ap.add_argument("--paper-cache", default=str(REPO / "results" / "bench_paper"),
                    help="paper-like: folder with train_recipe.py's data.npz and real_data.weights.h5")
    ap.add_argument("--slices", type=int, default=2, help="synthetic / paper-like: test slices (1024x512 each)")
    ap.add_argument("--epochs", type=int, default=12, help="synthetic: training epochs of the benchmark model")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--budget-mb", type=float, default=2000.0, help="activation budget (rule: mem_mb / 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paper-2x", action="store_true", help="also run the paper protocol at 2x depth")
    # worker modes
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--volume", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--patch-size", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n-classes", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        prepare_synthetic(args)
        return
    if args.worker:
        predict_worker(args)
        return

    load0 = os.getloadavg()
    model, folder, desc, patch, _ = _inputs(args)
    print(f"inputs: {desc}")
    print(f"paper/blended patch {patch[0]}x{patch[1]}, batch {args.batch_size}, activation budget {args.budget_mb:.0f} MiB, "
          f"{args.threads} threads; one subprocess per row; load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}\n")
    runs = [("paper (512², 50 %, spline, 8-fold TTA)", "blended", True, 1), ("blended, no TTA", "blended", False, 1),
            ("one pass per slice", "whole", False, 1), ("one pass per slice, 8-fold TTA", "whole", True, 1),
            ("blended, no TTA", "blended", False, 2),
            ("one pass per slice", "whole", False, 2)]
    if args.paper_2x:
        runs.append(("paper (512², 50 %, spline, 8-fold TTA)", "blended", True, 2))
    rows = []
    for name, mode, tta, depth in runs:
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--volume", str(folder / f"volume_{depth}x.mrc"),
               "--labels", str(folder / f"labels_{depth}x.tif"), "--patch-size", *map(str, patch), "--mode", mode,
               "--n-classes", "3", "--batch-size", str(args.batch_size), "--budget-mb", str(args.budget_mb)]
        if tta:
            cmd.append("--tta")
        res = subprocess.run(cmd, capture_output=True, text=True, env=_env(args.threads))
        if res.returncode:
            sys.exit(f"worker failed ({name}, {depth}x):\n{res.stderr[-3000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append((name, depth, r))
        print(f"  done: {name}, {depth}x depth ({r['seconds']:.1f} s)", flush=True)
    load1 = os.getloadavg()
    head = (f"{'method':<40}{'depth':>6}{'slices':>7}{'slice':>10}{'s/slice':>9}{'peak MiB':>10}{'Δ MiB':>8}"
            f"{'est MiB':>9}{'per call':>9}")
    head += "".join(f"{'DSC ' + c[:9]:>15}" for c in CLASSES)
    print("\n" + head)
    print("-" * len(head))
    for name, depth, r in rows:
        line = (f"{name:<40}{str(depth) + 'x':>6}{r['n_slices']:>7}{'x'.join(map(str, r['shape'])):>10}"
                f"{r['s_per_slice']:>9.2f}{r['rss_peak_mib']:>10.0f}{r['rss_peak_mib'] - r['rss_model_mib']:>8.0f}"
                f"{r['est_mib']:>9.0f}{r['per_call']:>9}")
        line += "".join(f"{v:>15.4f}" for v in r["dsc"])
        print(line)
    paper, blend, whole = rows[0][2], rows[1][2], rows[2][2]
    print(f"\none pass vs paper protocol: {paper['s_per_slice'] / whole['s_per_slice']:.1f}x faster (goal >= 20x); "
          f"DSC one pass - paper: {', '.join(f'{c} {w - p:+.4f}' for c, p, w in zip(CLASSES, paper['dsc'], whole['dsc']))} "
          "(goal within 0.005)")
    print(f"one pass vs blended without TTA: {blend['s_per_slice'] / whole['s_per_slice']:.1f}x faster; "
          f"DSC one pass - blended: {', '.join(f'{c} {w - b:+.4f}' for c, b, w in zip(CLASSES, blend['dsc'], whole['dsc']))}")
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (2 cores; > 2 means the timings are inflated)")


if __name__ == "__main__":
    main()
