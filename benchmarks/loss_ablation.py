"""Loss ablation: plain cross-entropy vs weighted focal loss, same data, same budget, per-class DSC.

The paper's claim is that the weighted focal loss rescues the rare class (Pt particles, ~0.5 % of the
voxels).  Every variant trains the same U-Net (config ``train:``), from the same seed, on the same
annotated patches and split, for the same number of epochs; the best epoch by validation loss of each is
evaluated on the validation patches (hard argmax labels).

Data: the demo annotation stacks ``results/demo/annotations/{images,labels}.tif`` (made by the workflow)
when they exist, else they are synthesised here exactly like the demo: ``tomoflow.synthetic`` specimen and
perfectly aligned noisy tilt series (config ``synthetic:``), per-slice MLEM (50 iterations, ASTRA ``line``)
of the ``annotations.n_slices`` slices chosen by :func:`tomoflow.annotations.choose_slices`.

On the paper-like preset (issue #15): ``--data paper`` uses the annotated and held-out slices cached by
``benchmarks/train_recipe.py data`` (``config/paper_like.yaml``: 0.12 nm/px, 512 × 1024 slices, grainy support,
Pt at 2.5× the support) and scores the held-out slices of an independent specimen (seed 8) as well; on a CPU
budget reduce the network and patch size and the epochs (``--base-filters 8 --depth 5 --patch 256
--epochs 6``) and say so.

Run (about 2-3 minutes per variant on 2 cores)::

    . .venv/bin/activate
    timeout 1800 python benchmarks/loss_ablation.py                  # ce vs focal_weighted
    timeout 3600 python benchmarks/loss_ablation.py --variants ce ce_weighted focal focal_weighted
    python benchmarks/loss_ablation.py --data paper --variants ce ce_weighted focal focal_weighted focal2 \
        focal2_weighted --base-filters 8 --depth 6 --patch 256 --steps 22 --epochs 3 --lr 0.001
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from tomoflow.annotations import choose_slices, make_split, split_records  # noqa: E402
from tomoflow.train import AugmentSettings, TrainSettings, crop_sources, train_unet  # noqa: E402
from tomoflow.unet import dice_per_class  # noqa: E402

VARIANTS = {
    # name: (gamma, class_weights)
    "ce": (0.0, "equal"),
    "ce_weighted": (0.0, "auto"),
    "focal": (1.0, "equal"),
    "focal_weighted": (1.0, "auto"),
    "focal2": (2.0, "equal"),
    "focal2_weighted": (2.0, "auto"),
}


def _mlem_slices(sino: np.ndarray, angles_deg: np.ndarray, n_z: int, iters: int = 50) -> np.ndarray:
    """MLEM of each sinogram row ``sino[:, y, :]`` -> (n_y, n_z, n_det) with ASTRA's CPU line projector."""
    import astra

    n_t, n_y, n_det = sino.shape
    vg = astra.create_vol_geom(n_z, n_det)
    pg = astra.create_proj_geom("parallel", 1.0, n_det, np.radians(angles_deg))
    pid = astra.create_projector("line", pg, vg)
    op = astra.OpTomo(pid)
    sens = np.maximum(op.T * np.ones(n_t * n_det, np.float32), 1e-6)
    out = np.zeros((n_y, n_z, n_det), np.float32)
    for y in range(n_y):
        b = np.maximum(sino[:, y, :].ravel(), 0)
        x = np.ones(n_z * n_det, np.float32)
        for _ in range(iters):
            x *= (op.T * (b / np.maximum(op * x, 1e-6))) / sens
        out[y] = x.reshape(n_z, n_det)
    astra.projector.delete(pid)
    return out


def synthesize(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Demo-like annotation stacks (images float32, labels uint8, (n, n_z, n_x))."""
    from tomoflow.synthetic import make_specimen, simulate_tilt_series

    s = cfg["synthetic"]
    spec = make_specimen(seed=s["seed"], shape=s["shape"], pixel_size_nm=s["pixel_size_nm"],
                         particle_diameter_nm=s["particle_diameter_nm"], particle_fraction=s["particle_fraction"],
                         support_fraction=s["support_fraction"], particle_contrast=s["particle_contrast"])
    ts = simulate_tilt_series(spec, seed=s["seed"], tilt_range_deg=s["tilt_range_deg"],
                              tilt_step_deg=s["tilt_step_deg"], dose=s["dose"], read_noise=s["read_noise"],
                              shift_sigma_px=0.0, tilt_axis_deg=0.0, center_offset_px=0.0, threads=2)
    idx = choose_slices(spec.labels.shape[0], cfg["annotations"]["n_slices"], cfg["annotations"]["seed"])
    images = _mlem_slices(ts.aligned[:, idx, :], ts.angles_deg, spec.labels.shape[1])
    return images, spec.labels[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--annotations", default=str(REPO / "results" / "demo" / "annotations"))
    ap.add_argument("--variants", nargs="+", default=["ce", "focal_weighted"], choices=sorted(VARIANTS))
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--alpha-power", type=float, default=0.25, help="exponent of the auto class weights")
    ap.add_argument("--out", default=None, help="optional TSV of the results")
    ap.add_argument("--data", choices=["demo", "paper"], default="demo",
                    help="paper: the paper-like slices cached by benchmarks/train_recipe.py data")
    ap.add_argument("--base-filters", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None, help="square patch size (px)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--steps", type=int, default=0, help="> 0: that many batches of random crops per epoch")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    cfg = yaml.safe_load(Path(args.config).read_text())
    tr = cfg["train"]
    for key, val in (("base_filters", args.base_filters), ("depth", args.depth), ("learning_rate", args.lr)):
        if val is not None:
            tr[key] = val
    if args.patch:
        tr["patch_size"] = [args.patch, args.patch]
    classes = list(cfg["classes"])
    ann = Path(args.annotations)
    test = None
    if args.data == "paper":
        with np.load(REPO / "results" / "bench_paper" / "data.npz") as z:
            images, labels = z["ann_images"], z["ann_labels"]
            test = (z["test_images"], z["test_labels"])
        source = "paper-like preset (results/bench_paper/data.npz)"
    elif (ann / "images.tif").exists():
        from tomoflow.io import read_labels, read_volume

        images = read_volume(ann / "images.tif")[0].astype(np.float32)
        labels = read_labels(ann / "labels.tif", len(classes))[0]
        source = str(ann)
    else:
        t0 = time.perf_counter()
        images, labels = synthesize(cfg)
        source = f"synthesised (demo config, {time.perf_counter() - t0:.0f} s)"
    split = make_split({"demo": images.shape}, tr["patch_size"], tr["val_fraction"], tr["seed"])
    st, sl = {"demo": images}, {"demo": labels}
    ti, tl = split_records(st, split["train"]), split_records(sl, split["train"])
    vi, vl = split_records(st, split["validation"]), split_records(sl, split["validation"])
    a = tr["augment"]
    print(f"data: {source}; {images.shape[0]} slices {images.shape[1]}x{images.shape[2]}, "
          f"{len(ti)} train / {len(vi)} validation patches {tr['patch_size']}; class fractions "
          f"{np.round(np.bincount(tl.ravel(), minlength=3) / tl.size, 4).tolist()}")
    rows = []
    for name in args.variants:
        gamma, weights = VARIANTS[name]
        settings = TrainSettings(
            depth=tr["depth"], base_filters=tr["base_filters"], epochs=args.epochs or tr["epochs"],
            batch_size=tr["batch_size"], learning_rate=tr["learning_rate"], focal_gamma=gamma,
            class_weights=[1.0] * len(classes) if weights == "equal" else "auto", monitor="val_loss",
            seed=tr["seed"], augment=AugmentSettings(a["rotation_deg"], a["flip"], a["zoom"], a["shear_deg"]),
            alpha_power=args.alpha_power, steps_per_epoch=args.steps,
            crop_size=(int(tr["patch_size"][0]), int(tr["patch_size"][1])),
        )
        t0 = time.perf_counter()
        if args.steps:  # random crops of the whole training slices (the real-data recipe)
            res = train_unet(*crop_sources(st, sl, split["train"]), vi, vl, classes, settings)
        else:
            res = train_unet(ti, tl, vi, vl, classes, settings)
        secs = time.perf_counter() - t0
        pred = np.argmax(res.model.predict(vi[..., None], batch_size=8, verbose=0), axis=-1)
        dsc = dice_per_class(vl, pred, len(classes))
        p, t = pred == len(classes) - 1, vl == len(classes) - 1
        prec = (p & t).sum() / max(p.sum(), 1)
        rec = (p & t).sum() / max(t.sum(), 1)
        held = {}
        if test is not None:
            tp = np.argmax(res.model.predict(test[0][..., None], batch_size=2, verbose=0), axis=-1)
            held = {f"heldout_{c}": round(float(d), 4) for c, d in zip(classes, dice_per_class(test[1], tp, len(classes)))}
        rows.append({"variant": name, "gamma": gamma, "alpha": np.round(res.alpha, 3).tolist(),
                     **{f"dsc_{c}": round(float(d), 4) for c, d in zip(classes, dsc)}, **held,
                     "precision_last": round(float(prec), 4), "recall_last": round(float(rec), 4),
                     "best_epoch": res.best_epoch, "train_s": round(secs, 1)})
        print(f"  {name}: done in {secs:.0f} s (best epoch {res.best_epoch}): {rows[-1]}", flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    print(f"\nValidation DSC, same data/split/seed/epochs ({settings.epochs}), best epoch by val_loss; U-Net depth "
          f"{settings.depth}, base filters {settings.base_filters}, patches {tr['patch_size']}; load average "
          + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + ":")
    print(df.to_string(index=False))
    if args.out:
        df.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
