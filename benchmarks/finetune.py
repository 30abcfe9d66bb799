"""Fine-tuning vs training from scratch (issue 14): epochs needed to reach the from-scratch validation loss.

Protocol (demo-scale data, library calls of the workflow's own training code):

1. The demo's annotation stack (``results/demo/annotations/images.tif``/``labels.tif``: 30 slices of the
   reconstructed volume drawn by ``annotations.seed``) is cut into two disjoint halves of slices, A and B -
   two "samples" of the same catalyst, imaged in different places.
2. A source model is trained on A (``--pretrain-epochs``, seed 7).
3. On B (its own seeded train/validation split, seed 42), two runs with the same data, seed, loss
   (class weights from B's training labels) and epochs: **from scratch** (He-normal start, B's
   normalisation) and **fine-tuned** (``train.init_model``: the source model's weights and normalisation,
   optionally ``--freeze`` epochs with the encoder frozen).
4. Prints both validation-loss curves side by side, the from-scratch best, and the first epoch at which
   each run reaches it.

Usage: ``python benchmarks/finetune.py [--annotations results/demo/annotations] [--epochs 12]
[--pretrain-epochs 15] [--freeze 0]`` (about 4 min on 2 cores at the defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotations", default=str(REPO / "results" / "demo" / "annotations"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--freeze", type=int, default=0, help="encoder frozen for the first N fine-tuning epochs")
    ap.add_argument("--patch", type=int, default=128)
    args = ap.parse_args()

    import numpy as np

    from tomoflow import io
    from tomoflow.annotations import make_split, split_records
    from tomoflow.train import TrainSettings, train_unet

    ann = Path(args.annotations)
    if not (ann / "images.tif").exists():
        sys.exit(f"{ann}/images.tif not found: run `make demo` (or snakemake results/demo/annotations/images.tif)")
    images = io.read_volume(ann / "images.tif")[0].astype(np.float32)
    labels = io.read_labels(ann / "labels.tif", 3)[0]
    classes = ["background", "support", "particles"]
    half = len(images) // 2
    parts = {"A": (images[:half], labels[:half]), "B": (images[half:], labels[half:])}
    patch = [args.patch, args.patch]

    def data(name: str, seed: int):
        im, lab = parts[name]
        split = make_split({name: im.shape}, patch, 0.25, seed)
        get = lambda stack, key: split_records({name: stack}, split[key])  # noqa: E731
        return get(im, "train"), get(lab, "train"), get(im, "validation"), get(lab, "validation")

    t0 = time.perf_counter()
    source = train_unet(*data("A", 7), classes, TrainSettings(epochs=args.pretrain_epochs, seed=7))
    t_pre = time.perf_counter() - t0
    b = data("B", 42)
    runs = {}
    for name, init in (("scratch", None), ("fine-tuned", source.model)):
        t0 = time.perf_counter()
        s = TrainSettings(epochs=args.epochs, seed=42, init_model="source" if init is not None else "",
                          freeze_encoder_epochs=args.freeze)
        runs[name] = (train_unet(*b, classes, s, init=init), time.perf_counter() - t0)

    sc, ft = runs["scratch"][0].history, runs["fine-tuned"][0].history
    target = float(sc["val_loss"].min())
    print(f"demo annotations {images.shape}: source model on slices 0-{half - 1} ({args.pretrain_epochs} epochs, "
          f"{t_pre:.0f} s); runs on slices {half}-{len(images) - 1}: {len(b[0])} train / {len(b[2])} validation patches "
          f"{patch}, seed 42, {args.epochs} epochs, freeze {args.freeze}; load average {os.getloadavg()[0]:.2f}")
    print("epoch  val_loss scratch  val_loss fine-tuned  val_dsc_particles scratch  fine-tuned")
    for k in range(len(sc)):
        print(f"{k + 1:5d}  {sc['val_loss'][k]:16.4f}  {ft['val_loss'][k]:19.4f}  "
              f"{sc['val_dsc_particles'][k]:24.3f}  {ft['val_dsc_particles'][k]:10.3f}")

    def first(h):
        hit = np.flatnonzero(h["val_loss"].to_numpy() <= target)
        return int(hit[0]) + 1 if hit.size else None

    print(f"from-scratch best val_loss {target:.4f} at epoch {int(sc['val_loss'].idxmin()) + 1}; reached by scratch at "
          f"epoch {first(sc)}, by fine-tuned at epoch {first(ft)}; wall {runs['scratch'][1]:.0f} s vs {runs['fine-tuned'][1]:.0f} s")


if __name__ == "__main__":
    main()
