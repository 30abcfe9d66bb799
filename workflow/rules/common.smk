# Shared set-up: the one start-up check (tomoflow.preflight: typed --config values, schema, cross-key
# constraints, sample table, every user file by its header), then sample/target helpers.

import sys
import re
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io.probe import read_schema  # noqa: E402
from tomoflow import preflight  # noqa: E402

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
SAMPLES_SCHEMA = read_schema(SCHEMAS / "samples.schema.yaml")
ANNOTATIONS_SCHEMA = read_schema(SCHEMAS / "annotations.schema.yaml")
#: Sample-table columns, from workflow/schemas/samples.schema.yaml.
SAMPLE_COLUMNS = preflight.sample_columns(SAMPLES_SCHEMA)


def _fail(message):
    """Stop at start-up with one clear line (no traceback)."""
    sys.stderr.write(f"tomoflow: {message}\n")
    sys.exit(1)


def _startup():
    """The one start-up check (tomoflow.preflight): typed --config values, schema, cross-constraints,
    sample table and every user file; returns the sample table."""
    schema = read_schema(SCHEMAS / "config.schema.yaml")
    try:
        preflight.coerce_config(config, schema)
        error = preflight.schema_error(config, schema)
        if error is not None:
            raise error
        validate(config, "../schemas/config.schema.yaml")  # fills the schema defaults
        rows = preflight.startup(config, SAMPLES_SCHEMA)
        # annotation-only training data (annotations.table) and the train.validation/test selectors
        sets = preflight.annotation_sets(config, ANNOTATIONS_SCHEMA, [r.name for r in rows])
        preflight.check_split_config(config, list(config["train"]["samples"]) + [r.cells["name"] for r in sets])
    except InputError as exc:
        _fail(str(exc))
    except OSError as exc:  # unreadable file (permissions, I/O error): still one line
        _fail(f"{exc.filename or config.get('samples')}: cannot read ({exc.strerror or exc}). Fix: check the path and its permissions")
    table = pd.DataFrame([r.cells for r in rows], columns=SAMPLE_COLUMNS, dtype=str)
    return table.set_index("sample", drop=False), {r.cells["name"]: r.cells for r in sets}


SAMPLES, ANNOTATION_SETS = _startup()
SAMPLES_TABLE = str(config["samples"])
CLASSES = list(config["classes"])
#: Every source of training data, in split order: train.samples, then the rows of annotations.table.
TRAIN_SOURCES = list(config["train"]["samples"]) + list(ANNOTATION_SETS)
TRAINED = bool(TRAIN_SOURCES)  # the models of `models:` are trained

# --------------------------------------------------------------------------- models (tomoflow.models)
from tomoflow import models as _models  # noqa: E402

#: Named model configurations, in config order (results/models/{model}/).
MODELS = list(config["models"])
#: The model that segments the samples: a run model's name and file, or (None, external .keras file), or
#: (None, None) when nothing is segmented (train.samples empty and no external predict.model).
SEGMENT_MODEL_NAME, SEGMENT_MODEL = _models.segment_model(config)
SEGMENTED = SEGMENT_MODEL is not None
#: Patch size of the segmenting model (its effective train.patch_size; an external model's metadata wins in the job).
SEGMENT_PATCH = _models.model_settings(config, SEGMENT_MODEL_NAME)["patch_size"] if SEGMENT_MODEL_NAME else config["train"]["patch_size"]
MODEL_CONSTRAINT = "|".join(re.escape(m) for m in MODELS)


def model_setting(key):
    """Params function: the value of ``key`` in the effective settings of {model} (train ∪ models[model])."""
    return lambda wildcards: _models.model_settings(config, wildcards.model)[key]


def init_model_inputs(wildcards):
    """The model file {model} starts from (fine-tuning), if any."""
    path = _models.init_model_path(config, wildcards.model)
    return {"init_model": path} if path else {}


def model_outputs(name):
    """Every file of one trained model."""
    base = f"results/models/{name}"
    return [f"{base}/{f}" for f in ("unet.keras", "history.tsv", "training_curves.png", "class_weights.json", "split.json", "normalization.json")]


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
    if s in config["train"]["samples"] and SEGMENT_MODEL_NAME is not None:  # validation patches of that model's split
        inputs["model"] = SEGMENT_MODEL
        inputs["split"] = f"results/models/{SEGMENT_MODEL_NAME}/split.json"
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
    """A sample can be evaluated when a model segments it and it has true labels, or validation patches
    of the segmenting (run) model's split."""
    if not SEGMENTED:
        return False
    return bool(sample_value(sample, "true_labels")) or (sample in config["train"]["samples"] and SEGMENT_MODEL_NAME is not None)


def final_outputs(sample):
    """The last outputs of every stage for one sample (alignment and reconstruction only when no model
    segments: `train.samples` empty and no external `predict.model`)."""
    out = [f"results/{sample}/volume.mrc"]
    if SEGMENTED:
        out += [
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
    if SEGMENTED:
        inputs["model"] = SEGMENT_MODEL  # every sample is segmented with it
    return inputs


def annotation_mode(sample):
    """'user' when the sample table gives annotation_images/labels; 'volume_indices' when it gives only
    annotation_labels (labels painted on slices exported by `snakemake annotate`, images read from the
    current volume); else 'volume' (true labels)."""
    images = sample_value(sample, "annotation_images")
    labels = sample_value(sample, "annotation_labels")
    if images and labels:
        return "user"
    if labels:
        return "volume_indices"
    if images:
        raise ValueError(
            f"{SAMPLES_TABLE}: sample {sample} has only one of annotation_images/annotation_labels. "
            "Fix: give both (a TIFF stack pair or two folders of paired TIFFs) or neither"
        )
    if sample_value(sample, "true_labels"):
        return "volume"
    raise ValueError(
        f"{SAMPLES_TABLE}: sample {sample} has no annotations and no true_labels. "
        "Fix: fill annotation_images/annotation_labels, or drop it from train.samples"
    )


def annotation_inputs(wildcards):
    s = wildcards.sample
    mode = annotation_mode(s)
    if mode == "user":
        return {"images": sample_value(s, "annotation_images"), "labels": sample_value(s, "annotation_labels")}
    if mode == "volume_indices":
        return {"volume": f"results/{s}/volume.mrc", "labels": sample_value(s, "annotation_labels")}
    return {"volume": f"results/{s}/volume.mrc", "labels": sample_value(s, "true_labels")}


def source_dir(name):
    """Where a training source's annotation stacks are: results/annotation_sets/NAME or results/SAMPLE/annotations."""
    return f"results/annotation_sets/{name}" if name in ANNOTATION_SETS else f"results/{name}/annotations"


def training_stacks(kind):
    """`images.tif`, `labels.tif` or `slices.json` of every training source (TRAIN_SOURCES order)."""
    return [f"{source_dir(s)}/{kind}" for s in TRAIN_SOURCES]


def labelled_indices(sample):
    """Volume slice indices that already have round-trip labels (annotation_labels folder, no images)."""
    from tomoflow.annotations import label_slice_index

    folder = sample_value(sample, "annotation_labels")
    if not folder or sample_value(sample, "annotation_images") or not Path(folder).is_dir():
        return []
    own = [f.name for f in Path(folder).iterdir() if f.suffix.lower() in (".tif", ".tiff")]
    mine = [f for f in own if f.lower().startswith(f"{sample.lower()}_z")] or own
    return sorted(label_slice_index(f) for f in mine)


def all_targets():
    """Default target: every stage's final outputs and the provenance record, for every sample."""
    targets = []
    for s in SAMPLES.index:
        targets += final_outputs(s)
        targets.append(f"results/{s}/provenance.json")
    if TRAINED:
        targets.append("results/models/comparison.tsv")  # every model of `models:`, side by side
    return targets


def annotate_model(wildcards):
    """Rule export_annotations: the model whose uncertainty ranks the slices (entropy strategy only).
    The one place that names the model for the annotation export."""
    if config["annotations"]["export_strategy"] == "entropy" and SEGMENT_MODEL:
        return {"model": SEGMENT_MODEL}
    return {}
