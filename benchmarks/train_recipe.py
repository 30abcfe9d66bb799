"""Training recipes on the paper-like synthetic specimen: held-out DSC against the generator's truth vs wall time.

Data (made once, cached in ``--cache``): the paper-like specimen (``config/paper_like.yaml``: 0.12 nm/px,
1024-wide slices, ``synthetic.preset: paper``) simulated as a perfectly aligned noisy tilt series (69 tilts
±68°) and reconstructed with tomoflow's MLEM (50 iterations, ASTRA ``line``):

* annotated slices: ``annotations.n_slices`` (30) slices of the seed-7 specimen (64 slices × 512 × 1024)
  chosen by :func:`tomoflow.annotations.choose_slices`, split by slice into train/validation
  (``train.val_fraction``: 22 / 8 slices) and cut into ``train.patch_size`` patches exactly as the workflow
  does (at 512²: 44 train / 16 validation patches, the size of the real data set of issue #15: 45 + 15);
* held-out test slices: a *different specimen* (seed 8, 40 slices), 8 evenly spaced slices (512 × 1024
  each), scored against the generator's labels with hard argmax labels of a one-pass prediction.

The training settings are config/config.yaml's ``train:`` with ``--train-config`` (default
``config/real_data.yaml``, the documented recipe) merged over it, then the command-line overrides.  Each
recipe trains from the same seed; after every epoch the current weights are scored on the held-out slices
(outside the timed training: the curve is DSC vs training wall time, training = optimisation + validation).
``baseline`` prints the difficulty figure: two global thresholds fitted on the annotated slices.  The load
average is printed beside the figures.

Run::

    . /work/main/.venv/bin/activate
    flock /tmp/tomoflow_cpu.lock python benchmarks/train_recipe.py data        # ~7 min once (cached)
    python benchmarks/train_recipe.py baseline
    flock /tmp/tomoflow_cpu.lock python -u benchmarks/train_recipe.py run --name real_data   # the recipe, ≤ 29 min
    # the paper's network and settings, for comparison:
    python -u benchmarks/train_recipe.py run --name paper --base-filters 16 --crop 512 --steps 0 --lr 5e-4 \
        --schedule constant --monitor val_loss --patience 0 --minutes 30
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

CACHE = REPO / "results" / "bench_paper"
TEST_SEED, TEST_SLICES, N_TEST = 8, 40, 8


def make_data(cfg: dict[str, Any], cache: Path, threads: int = 2) -> None:
    """Simulate + reconstruct the annotated and the held-out slices; write ``cache/data.npz``."""
    from tomoflow.synthetic import annotated_slices

    s = cfg["synthetic"]
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    timing = {}
    for name, seed, ny in (("ann", int(s["seed"]), int(s["shape"][0])), ("test", TEST_SEED, TEST_SLICES)):
        idx = None if name == "ann" else np.linspace(4, ny - 5, N_TEST).round().astype(np.int64)
        res = annotated_slices(dict(s, seed=seed, shape=[ny, *s["shape"][1:]]), idx,
                               n_slices=cfg["annotations"]["n_slices"], slice_seed=cfg["annotations"]["seed"],
                               threads=threads)
        out.update({f"{name}_images": res.images, f"{name}_labels": res.labels, f"{name}_density": res.density,
                    f"{name}_index": res.index})
        timing[name] = res.info
        print(name, timing[name], flush=True)
    np.savez_compressed(cache / "data.npz", **out)
    (cache / "data.json").write_text(json.dumps(timing, indent=1))


def load_data(cache: Path) -> dict[str, np.ndarray]:
    with np.load(cache / "data.npz") as z:
        return {k: z[k] for k in z.files}


def threshold_baseline(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Difficulty figure: two global thresholds (solid, Pt) fitted for best DSC on the annotated slices,
    then applied to the held-out slices; returns held-out DSC of support and Pt."""
    from tomoflow.unet import dice_per_class

    im, lab = data["ann_images"], data["ann_labels"]
    grid = np.linspace(0.0, float(np.quantile(im, 0.9995)), 160)

    def dsc(a: np.ndarray, b: np.ndarray) -> float:
        return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))

    t_solid = max(grid, key=lambda t: dsc(im > t, lab >= 1))
    t_pt = max(grid, key=lambda t: dsc(im > t, lab == 2))
    ti, tl = data["test_images"], data["test_labels"]
    pred = np.where(ti > t_pt, 2, np.where(ti > t_solid, 1, 0))
    d = dice_per_class(tl, pred, 3)
    return {"threshold_solid": float(t_solid), "threshold_pt": float(t_pt), "support": float(d[1]), "particles": float(d[2])}


def split_data(data: dict[str, np.ndarray], patch: list[int], val_fraction: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Train patches, their labels, validation patches and labels (the workflow's split), train slice ids."""
    from tomoflow.annotations import make_split, split_records

    im, lab = data["ann_images"], data["ann_labels"]
    split = make_split({"paper": im.shape}, patch, val_fraction, seed)
    st, sl = {"paper": im}, {"paper": lab}
    train_ids = sorted({r["index"] for r in split["train"]})
    return (split_records(st, split["train"]), split_records(sl, split["train"]),
            split_records(st, split["validation"]), split_records(sl, split["validation"]), train_ids)


def _load() -> str:
    return "load average " + " / ".join(f"{v:.2f}" for v in os.getloadavg())


def recipe_settings(a: argparse.Namespace, tr: dict[str, Any]) -> Any:
    """:class:`TrainSettings` of the command line (defaults: the config's ``train:``)."""
    from tomoflow.train import settings_from_params

    params = dict(tr)
    for key in ("base_filters", "depth", "epochs", "batch_size", "learning_rate", "focal_gamma", "monitor",
                "lr_schedule", "early_stopping_patience", "particle_oversampling", "steps_per_epoch", "max_minutes"):
        v = getattr(a, key, None)
        if v is not None:
            params[key] = v
    if a.crop:
        params["patch_size"] = [a.crop, a.crop]
    if a.equal_weights:
        params["class_weights"] = [1.0, 1.0, 1.0]
    return settings_from_params(params, 3)


def run(a: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Train one recipe; print the per-epoch curve (train seconds, validation and held-out DSC)."""
    import keras

    from tomoflow.runner import limit_threads

    limit_threads(a.threads)
    from tomoflow.train import train_unet
    from tomoflow.unet import dice_per_class

    tr = cfg["train"]
    classes = list(cfg.get("classes", ["background", "support", "particles"]))
    data = load_data(Path(a.cache))
    patch = [a.crop, a.crop] if a.crop else list(tr["patch_size"])
    ti, tl, vi, vl, train_ids = split_data(data, patch, float(tr["val_fraction"]), int(tr["seed"]))
    s = recipe_settings(a, tr)
    test_im, test_lab = data["test_images"], data["test_labels"]
    log_init = f", warm start from {a.init_weights}" if a.init_weights else ""
    import tensorflow as tf

    print(f"recipe {a.name}: {s}{log_init}; TF threads intra {tf.config.threading.get_intra_op_parallelism_threads()}"
          f" / inter {tf.config.threading.get_inter_op_parallelism_threads()}", flush=True)
    print(f"data: {len(ti)} train / {len(vi)} validation patches {patch} from {len(data['ann_images'])} "
          f"annotated slices; held out: {len(test_im)} slices {test_im.shape[1:]} of specimen seed {TEST_SEED}; "
          f"{_load()}", flush=True)
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()

    class HeldOut(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            if a.init_weights:
                self.model.load_weights(a.init_weights)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            epoch_s = time.perf_counter() - self._t0  # training + validation, before the held-out scoring
            pred = np.argmax(self.model.predict(test_im[..., None], batch_size=2, verbose=0), axis=-1)
            d = dice_per_class(test_lab, pred, len(classes))
            row = {"epoch": epoch + 1, "epoch_s": epoch_s, "train_s": 0.0,
                   "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                   "val_dsc_support": float(logs.get("val_dsc_support", math.nan)),
                   "val_dsc_particles": float(logs.get("val_dsc_particles", math.nan)),
                   "test_dsc_support": float(d[1]), "test_dsc_particles": float(d[2]),
                   "load1": os.getloadavg()[0]}
            rows.append(row)
            row["train_s"] = float(sum(r["epoch_s"] for r in rows))
            print("  epoch {epoch:3d}  train {train_s:7.1f} s  lr {lr:.2e}  val DSC support {val_dsc_support:.4f} "
                  "Pt {val_dsc_particles:.4f}  held-out DSC support {test_dsc_support:.4f} Pt {test_dsc_particles:.4f}"
                  "  load {load1:.2f}".format(**row), flush=True)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t0 = time.perf_counter()

    train_x = [data["ann_images"][i] for i in train_ids] if s.random_crops else ti
    train_y = [data["ann_labels"][i] for i in train_ids] if s.random_crops else tl
    res = train_unet(train_x, train_y, vi, vl, classes, s, callbacks=[HeldOut()])
    total = time.perf_counter() - t_start
    pred = np.argmax(res.model.predict(test_im[..., None], batch_size=2, verbose=0), axis=-1)
    d = dice_per_class(test_lab, pred, len(classes))
    print(f"RESULT {a.name}: kept epoch {res.best_epoch} ({res.monitor}) of {len(res.history)}; stop: {res.stop_reason}; "
          f"training {res.history['seconds'].sum():.0f} s (incl. validation; {total:.0f} s with held-out scoring); "
          f"held-out DSC support {d[1]:.4f} Pt {d[2]:.4f} background {d[0]:.4f}; {_load()}", flush=True)
    if a.out:
        import pandas as pd

        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(a.out, sep="\t", index=False)
    if a.save:
        Path(a.save).parent.mkdir(parents=True, exist_ok=True)
        res.model.save_weights(a.save)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["data", "baseline", "run"])
    ap.add_argument("--config", default=str(REPO / "config" / "paper_like.yaml"),
                    help="synthetic/annotations from here; train from --train-config merged over config.yaml")
    ap.add_argument("--train-config", default=str(REPO / "config" / "real_data.yaml"))
    ap.add_argument("--cache", default=str(CACHE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="recipe")
    ap.add_argument("--base-filters", dest="base_filters", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", dest="batch_size", type=int)
    ap.add_argument("--lr", dest="learning_rate", type=float)
    ap.add_argument("--gamma", dest="focal_gamma", type=float)
    ap.add_argument("--monitor")
    ap.add_argument("--schedule", dest="lr_schedule", choices=["constant", "cosine", "plateau"])
    ap.add_argument("--patience", dest="early_stopping_patience", type=int)
    ap.add_argument("--oversampling", dest="particle_oversampling", type=float)
    ap.add_argument("--steps", dest="steps_per_epoch", type=int)
    ap.add_argument("--minutes", dest="max_minutes", type=float)
    ap.add_argument("--crop", type=int, help="random-crop / patch size (px)")
    ap.add_argument("--equal-weights", action="store_true", help="class weights 1/1/1 instead of auto")
    ap.add_argument("--init-weights", help="warm start: weights file of a model of the same architecture")
    ap.add_argument("--out", help="TSV of the per-epoch curve")
    ap.add_argument("--save", help="write the kept weights here (.weights.h5)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path in (a.config, a.train_config):
        if path and Path(path).exists():
            for k, v in (yaml.safe_load(Path(path).read_text()) or {}).items():
                cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    if a.what == "data":
        make_data(cfg, Path(a.cache), a.threads)
    elif a.what == "baseline":
        print("global thresholds fitted on the annotated slices, held-out DSC:", threshold_baseline(load_data(Path(a.cache))))
    else:
        run(a, cfg)


if __name__ == "__main__":
    main()
