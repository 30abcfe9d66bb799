# Shared set-up: config and sample-table validation, input pre-flight checks, target helpers.

import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io import preflight_tilt_series  # noqa: E402


validate(config, "../schemas/config.schema.yaml")

SAMPLE_COLUMNS = [
    "sample",
    "tilt_series",
    "angles",
    "pixel_size_nm",
    "tilt_axis_deg",
    "thickness_px",
    "true_labels",
    "annotation_images",
    "annotation_labels",
]


def _fail(message):
    """Stop at start-up with one clear line (no traceback)."""
    sys.stderr.write(f"tomoflow: {message}\n")
    sys.exit(1)


def _read_samples(path):
    if not Path(path).is_file():
        _fail(f"{path}: sample table not found. Fix: set `samples:` in the config to a TSV file (see config/README.md)")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    unknown = [c for c in table.columns if c not in SAMPLE_COLUMNS]
    if unknown:
        _fail(f"{path}: unknown column(s) {unknown}. Fix: use only {SAMPLE_COLUMNS}")
    for col in SAMPLE_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    if table["sample"].duplicated().any():
        _fail(f"{path}: duplicate sample names {sorted(table['sample'][table['sample'].duplicated()])}. Fix: make names unique")
    validate(table, "../schemas/samples.schema.yaml")
    return table.set_index("sample", drop=False)


SAMPLES = _read_samples(config["samples"])
CLASSES = list(config["classes"])
if not set(config["train"]["samples"]) <= set(SAMPLES.index):
    _fail(
        f"config: train.samples {config['train']['samples']} are not all in {config['samples']} "
        f"(samples: {list(SAMPLES.index)}). Fix: list samples from the sample table"
    )


def _generated(path):
    """True for files this workflow makes itself (the synthetic data)."""
    return str(path).startswith("results/")


# Pre-flight: check user-supplied tilt series before any job runs (header, size, angle count).
for _s, _row in SAMPLES.iterrows():
    if _generated(_row["tilt_series"]):
        continue
    try:
        preflight_tilt_series(
            _row["tilt_series"],
            angles=_row["angles"] or None,
            pixel_size_nm=float(_row["pixel_size_nm"]) if _row["pixel_size_nm"] else None,
        )
    except InputError as _exc:
        _fail(f"sample {_s}: {_exc}")


def sample_value(sample, column, default=""):
    """A cell of the sample table ('' when empty)."""
    value = SAMPLES.loc[sample, column]
    return value if value != "" else default


def sample_float(column):
    """Input/params function: the sample's ``column`` as float, None when empty."""

    def get(wildcards):
        value = sample_value(wildcards.sample, column)
        return float(value) if value else None

    return get


def sample_int(column):
    """Input/params function: the sample's ``column`` as int, None when empty."""

    def get(wildcards):
        value = sample_value(wildcards.sample, column)
        return int(float(value)) if value else None

    return get


def specimen_of(true_labels):
    """The generator's specimen.json beside synthetic true labels, else None."""
    if true_labels.startswith("results/synthetic/"):
        return str(Path(true_labels).parent / "specimen.json")
    return None


def evaluate_inputs(wildcards):
    """Only what exists for this sample: true labels (+ segmentation) and/or model + split + annotations."""
    s = wildcards.sample
    inputs = {}
    truth = sample_value(s, "true_labels")
    if truth:
        inputs["true_labels"] = truth
        inputs["segmentation"] = f"results/{s}/segmentation.tif"
    if s in config["train"]["samples"]:
        inputs["model"] = "results/model/unet.keras"
        inputs["split"] = "results/model/split.json"
        inputs["images"] = f"results/{s}/annotations/images.tif"
        inputs["labels"] = f"results/{s}/annotations/labels.tif"
    return inputs


def quantify_inputs(wildcards):
    """Predicted labels; plus true labels and, for synthetic samples, the generator's specimen.json."""
    s = wildcards.sample
    inputs = {"segmentation": f"results/{s}/segmentation.tif"}
    truth = sample_value(s, "true_labels")
    if truth:
        inputs["true_labels"] = truth
        specimen = specimen_of(truth)
        if specimen:
            inputs["specimen"] = specimen
    return inputs


def align_inputs(wildcards):
    inputs = {"tilt_series": sample_value(wildcards.sample, "tilt_series")}
    angles = sample_value(wildcards.sample, "angles")
    if angles:
        inputs["angles"] = angles
    return inputs


def evaluate_inputs_exist(sample):
    """A sample can be evaluated when it has true labels or validation patches."""
    return bool(sample_value(sample, "true_labels")) or sample in config["train"]["samples"]


def final_outputs(sample):
    """The last outputs of every stage for one sample."""
    out = [
        f"results/{sample}/volume.mrc",
        f"results/{sample}/segmentation.tif",
        f"results/{sample}/meshes/render_iso.png",
        f"results/{sample}/quantification/summary.json",
    ]
    if evaluate_inputs_exist(sample):
        out.append(f"results/{sample}/metrics/metrics.json")
    return out


def provenance_inputs(wildcards):
    """Raw inputs to checksum, and the sample's final outputs (so provenance is written last)."""
    s = wildcards.sample
    inputs = {"outputs": final_outputs(s)}
    for column in ("tilt_series", "angles", "true_labels", "annotation_images", "annotation_labels"):
        value = sample_value(s, column)
        if value and not Path(value).is_dir():
            inputs[column] = value
    inputs["model"] = "results/model/unet.keras"  # every sample is segmented with it
    return inputs


def annotation_mode(sample):
    """'user' when the sample table gives annotation_images/labels, else 'volume' (true labels)."""
    images = sample_value(sample, "annotation_images")
    labels = sample_value(sample, "annotation_labels")
    if images and labels:
        return "user"
    if images or labels:
        raise ValueError(
            f"config/samples.tsv: sample {sample} has only one of annotation_images/annotation_labels. "
            "Fix: give both (a TIFF stack pair or two folders of paired TIFFs) or neither"
        )
    if sample_value(sample, "true_labels"):
        return "volume"
    raise ValueError(
        f"config/samples.tsv: sample {sample} has no annotations and no true_labels. "
        "Fix: fill annotation_images/annotation_labels, or drop it from train.samples"
    )


def annotation_inputs(wildcards):
    s = wildcards.sample
    if annotation_mode(s) == "user":
        return {"images": sample_value(s, "annotation_images"), "labels": sample_value(s, "annotation_labels")}
    return {"volume": f"results/{s}/volume.mrc", "labels": sample_value(s, "true_labels")}


def all_targets():
    """Default target: every stage's final outputs and the provenance record, for every sample."""
    targets = []
    for s in SAMPLES.index:
        targets += final_outputs(s)
        targets.append(f"results/{s}/provenance.json")
    return targets
