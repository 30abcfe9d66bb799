"""Start-up checks: everything knowable before the first job, as library functions.

``workflow/rules/common.smk`` calls :func:`startup` once; any problem raises
:class:`~tomoflow.errors.InputError` (one line "where: problem. Fix: fix") and the workflow stops with
exit 1 before Snakemake schedules a job.

What is checked
---------------
* ``--config`` values typed by the schema (:func:`coerce_config`: Snakemake hands nested values over
  as strings), then the schema itself (:func:`schema_error`, naming the key path).
* Cross-key constraints of the config (:func:`check_config`): U-Net patch size vs depth, class
  weights vs classes, a class list that segmentation, meshes and quantification can use, installed
  back-ends, synthetic tilt range.
* The sample table (:func:`read_samples`): columns from ``workflow/schemas/samples.schema.yaml``,
  required cells, numbers, naming the table, line, sample and column.
* Every user file (:func:`check_sample_files`): type by magic bytes, header geometry, truncation,
  RGB/multi-channel, pages of one shape, angles (count, radians, order), true-label shape vs the
  reconstruction grid, sampled label values vs ``classes``, annotation stacks; and, with the geometry
  known, slabs vs slices, patch size vs slice size, thickness.

Files are read lazily (headers, TIFF page metadata, at most three sections of a label stack).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import validate
from .config_schema import coerce_config, coerce_value, schema_error
from .errors import InputError

__all__ = ["annotation_sets", "check_classes", "check_config", "check_indexed_labels", "check_sample_files",
           "check_split_config", "coerce_config", "coerce_value", "read_annotation_table", "read_samples",
           "sample_columns", "schema_error", "startup"]

#: Class names that mean "nothing" (must be label 0) and the indices quantification reads.
BACKGROUND_NAMES = ("background", "bg", "pores", "pore", "vacuum", "void", "empty")
QUANTIFY_ROLES = {1: ("support",), 2: ("particles", "particle")}
#: Files the ``simulate_tilt_series`` rule writes into ``results/synthetic/{name}/``.
SYNTHETIC_RE = re.compile(r"^results/synthetic/(?P<name>[A-Za-z0-9_.-]+)/(?P<file>[^/]+)$")
#: Correlation of vertically neighbouring pixels, relative to horizontal ones, below which an image
#: is taken as read with the wrong row length (nx and ny swapped in the header).
MIN_ROW_CONTINUITY = 0.3


# --------------------------------------------------------------------------- config cross-constraints
def unet_factor(depth: int) -> int:
    """Patch sides must be multiples of ``2**(depth - 1)`` (:func:`tomoflow.unet.build_unet`)."""
    return 2 ** (int(depth) - 1)


def check_classes(classes: Sequence[str]) -> None:
    """A class list that training, meshes and quantification can use.

    Label value = index; 0 is background (no mesh), 1 the support and 2 the particles for
    quantification; class names must give distinct metric names (``dsc_<name>``).
    """
    names = [str(c) for c in classes]
    if len(names) < 3:
        raise InputError("config key `classes`", f"{names} has {len(names)} classes; quantification needs background, "
                         "support and particles (label values 0, 1, 2)", "use `classes: [background, support, particles]`")
    for i, n in enumerate(names):
        if i != 0 and n.lower() in BACKGROUND_NAMES:
            raise InputError("config key `classes`", f"{n!r} is class {i}, but label 0 is the background",
                             f"put {n!r} first: label value = index in `classes`")
    for i, n in enumerate(names):
        low = n.lower()
        for role_index, role_names in QUANTIFY_ROLES.items():
            if low in role_names and i != role_index:
                raise InputError("config key `classes`", f"{n!r} is class {i}, but quantification reads label {role_index} "
                                 f"as {role_names[0]}", "order the classes as [background, support, particles]")
    metric: dict[str, str] = {}
    for n in names:
        m = re.sub(r"[^0-9A-Za-z]+", "_", n).strip("_").lower()  # tomoflow.unet.metric_name
        if m in metric:
            raise InputError("config key `classes`", f"{metric[m]!r} and {n!r} give the same metric name dsc_{m}",
                             "give the classes names that differ in more than case or punctuation")
        metric[m] = n


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-key constraints of a schema-valid config (defaults filled) that would otherwise fail late."""
    check_classes(config["classes"])
    n_classes = len(config["classes"])
    t = config["train"]
    f = unet_factor(t["depth"])
    bad = [s for s in t["patch_size"] if s % f]
    if bad:
        good = [max(f, int(round(s / f)) * f) for s in t["patch_size"]]
        raise InputError("config key `train.patch_size`", f"{list(t['patch_size'])} is not divisible by "
                         f"2^(depth−1) = {f} (train.depth {t['depth']})", f"use multiples of {f}, e.g. {good}, or lower train.depth")
    w = t["class_weights"]
    if not isinstance(w, str) and len(w) != n_classes:
        raise InputError("config key `train.class_weights`", f"{len(w)} weights for {n_classes} classes {list(config['classes'])}",
                         "give one weight per class, in the order of `classes`, or `auto`")
    r = config["recon"]
    if r["backend"] == "tomopy" and importlib.util.find_spec("tomopy") is None:
        raise InputError("config key `recon.backend`", "tomopy is not installed in this environment",
                         "use `recon.backend: astra`, or install TomoPy from conda-forge (--use-conda)")
    if r["projector"] == "cuda" and not _astra_cuda():
        raise InputError("config key `recon.projector`", "`cuda` needs ASTRA with a CUDA GPU, and none is available here",
                         "use `recon.projector: line` (the ASTRA CPU projector); ASTRA uses a GPU by itself where present")
    lo_bp, hi_bp = (float(v) for v in config["align"]["bandpass_px"])
    if lo_bp < 0 or hi_bp < 0 or 0 < hi_bp <= lo_bp:
        raise InputError("config key `align.bandpass_px`", f"[{lo_bp:g}, {hi_bp:g}] is not a band (low sigma < high sigma)",
                         "use e.g. [1.0, 30.0] (0 switches one side off)")
    s = config["synthetic"]
    dmin, dmax = (float(v) for v in s["particle_diameter_nm"])
    if not 0 < dmin <= dmax:
        raise InputError("config key `synthetic.particle_diameter_nm`", f"[{dmin:g}, {dmax:g}] is not a size range",
                         "give [smallest, largest] diameters in nm, both positive, e.g. [1.0, 4.0]")
    lo, hi = (float(v) for v in s["tilt_range_deg"])
    n = synthetic_n_tilts(s)
    if hi <= lo or n < validate.MIN_TILTS or hi - lo < validate.MIN_TILT_RANGE_DEG or max(abs(lo), abs(hi)) > validate.MAX_ABS_ANGLE_DEG:
        raise InputError("config key `synthetic.tilt_range_deg`", f"[{lo:g}, {hi:g}] in steps of {s['tilt_step_deg']:g}° "
                         f"gives {n} tilts", f"use first < last within ±{validate.MAX_ABS_ANGLE_DEG:g}°, a range of at least "
                         f"{validate.MIN_TILT_RANGE_DEG:g}° and at least {validate.MIN_TILTS} tilts")


def _astra_cuda() -> bool:
    try:
        import astra

        return bool(astra.use_cuda())
    except Exception:
        return False


def synthetic_n_tilts(synthetic: Mapping[str, Any]) -> int:
    """Number of tilts of the synthetic series (:func:`tomoflow.synthetic.tilt_angles`)."""
    lo, hi = (float(v) for v in synthetic["tilt_range_deg"])
    return max(0, int(math.floor((hi - lo) / float(synthetic["tilt_step_deg"]) + 1e-9)) + 1)


# --------------------------------------------------------------------------- sample table
@dataclass(frozen=True)
class SampleRow:
    """One sample of the table: its line number and cells (``""`` = not given)."""

    line: int
    cells: dict[str, str]

    @property
    def name(self) -> str:
        return self.cells.get("sample", "")


def sample_columns(samples_schema: Mapping[str, Any]) -> list[str]:
    """Column names of the sample table, in schema order."""
    return list(samples_schema["properties"])


def _checked_rows(path: str | os.PathLike[str], schema: Mapping[str, Any], what: str, key: str, noun: str,
                  fix: Callable[[str], str]) -> list[tuple[SampleRow, str]]:
    """The rows of a tab-separated table checked against its schema: known and required columns, required
    cells filled, every cell matching its column's pattern, the ``key`` column unique.

    Parameters
    ----------
    path : str or path
    schema : mapping
        The table's JSON schema (``properties`` in column order, ``required``, per-column ``pattern``).
    what : str
        The table's name in messages (``"sample table"``).
    key : str
        The column that names a row (unique).
    noun : str
        What a row is called in messages (``"sample"``).
    fix : callable
        Column name -> the fix for a cell that breaks its pattern.

    Returns
    -------
    list of (SampleRow, str)
        Each row (all schema columns, ``""`` where absent) and its label for messages (table, line, name).
    """
    from .io.probe import read_table_rows

    columns = list(schema["properties"])
    header, rows = read_table_rows(path, what)
    unknown = [c for c in header if c not in columns]
    if unknown:
        raise InputError(path, f"unknown column(s) {unknown}", f"use only the columns {columns} (tab-separated)")
    required = list(schema.get("required", []))
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, f"required column(s) {missing} missing from the header",
                         f"add them (tab-separated); the columns are {columns}")
    out: list[tuple[SampleRow, str]] = []
    seen: dict[str, int] = {}
    props = schema["properties"]
    for r in rows:
        cells = {c: r.cells.get(c, "") for c in columns}
        label = f"{path} line {r.line}" + (f" ({noun} {cells[key]!r})" if cells[key] else "")
        for c in required:
            if not cells[c]:
                raise InputError(label, f"column `{c}` is empty", f"fill `{c}` ({props[c].get('description', 'required')})")
        for c, spec in props.items():
            pattern = spec.get("pattern")
            if cells[c] and pattern and not re.search(pattern, cells[c]):
                raise InputError(label, f"column `{c}` = {cells[c]!r} is not valid ({spec.get('description', pattern)})",
                                 fix(c))
        if cells[key] in seen:
            raise InputError(label, f"{'sample name' if key == 'sample' else 'name'} {cells[key]!r} repeats line "
                             f"{seen[cells[key]]}", f"give every row a unique {'sample name' if key == 'sample' else 'name'}")
        seen[cells[key]] = r.line
        out.append((SampleRow(r.line, cells), label))
    return out


def read_samples(path: str | os.PathLike[str], samples_schema: Mapping[str, Any]) -> list[SampleRow]:
    """Read and check the sample table against ``workflow/schemas/samples.schema.yaml``.

    Raises
    ------
    InputError
        Unknown/missing columns, an empty required cell, a cell that breaks the column's pattern,
        a duplicate sample name, ``thickness_px`` or ``pixel_size_nm`` that are not positive; the
        message names the table, the line, the sample and the column.
    """
    rows = _checked_rows(path, samples_schema, "sample table", "sample", "sample", _cell_fix)
    if not rows:
        raise InputError(path, "the sample table has no samples", "add one row per tilt series")
    for row, label in rows:
        for c in ("thickness_px", "pixel_size_nm"):
            if row.cells[c] and not float(row.cells[c]) > 0:
                raise InputError(label, f"column `{c}` = {row.cells[c]!r} is not positive", _cell_fix(c))
    return [row for row, _ in rows]


def _cell_fix(column: str) -> str:
    return {
        "sample": "use letters, digits, '_', '.', '-' only (it names results/SAMPLE/)",
        "pixel_size_nm": "give a positive number in nm (e.g. 0.4), or leave it empty to use the header",
        "tilt_axis_deg": "give the prior tilt-axis angle in degrees (e.g. -2.5), or leave it empty for 0",
        "thickness_px": "give a positive whole number of pixels, or leave it empty for the detector width",
    }.get(column, f"correct the `{column}` cell")


def check_train_samples(config: Mapping[str, Any], rows: Sequence[SampleRow], table: str) -> None:
    """``train.samples`` exist in the table and each has annotations or true labels."""
    by_name = {r.name: r for r in rows}
    wanted = list(config["train"]["samples"])
    missing = [s for s in wanted if s not in by_name]
    if missing:
        raise InputError("config key `train.samples`", f"{missing} not in the sample table {table} (samples: {list(by_name)})",
                         "list samples from the sample table, or `[]` to align and reconstruct only")
    for s in wanted:
        r = by_name[s]
        c = r.cells
        where = f"{table} line {r.line} (sample {s!r})"
        if c["annotation_images"] and not c["annotation_labels"]:
            raise InputError(where, "only one of `annotation_images`/`annotation_labels` is given",
                             "give both (a TIFF stack pair or two folders of paired TIFFs), only `annotation_labels` "
                             "(a folder of SAMPLE_zNNNN_labels.tif painted on slices exported by `snakemake annotate`), or neither")
        if not c["annotation_labels"] and not c["true_labels"]:
            raise InputError(where, "listed in train.samples but has no annotations and no true_labels",
                             "fill annotation_images/annotation_labels, or drop it from train.samples")


# --------------------------------------------------------------------------- files and geometry
@dataclass(frozen=True)
class Geometry:
    """Sizes of one sample known at start-up.

    Attributes
    ----------
    n_tilts : int
    n_slices, n_det : int
        Aligned tilt-series rows (reconstruction slices) and columns (detector width), px.
    thickness : int
        Reconstruction thickness (z), px.
    """

    n_tilts: int
    n_slices: int
    n_det: int
    thickness: int

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.thickness, self.n_det)


def synthetic_file_shape(path: str, synthetic: Mapping[str, Any]) -> tuple[int, ...] | None:
    """Shape of a file the synthetic rule will write (None for any other path)."""
    m = SYNTHETIC_RE.match(str(path).replace(os.sep, "/"))
    if not m:
        return None
    ny, nz, nx = (int(v) for v in synthetic["shape"])
    n = synthetic_n_tilts(synthetic)
    return {
        "tilt_series.mrc": (n, ny, nx),
        "tilt_series_aligned.mrc": (n, ny, nx),
        "tilt_series.rawtlt": (n,),
        "labels.tif": (ny, nz, nx),
        "density.mrc": (ny, nz, nx),
    }.get(m.group("file"))


def _aligned_shape(rows: int, cols: int, tilt_axis_deg: float) -> tuple[int, int]:
    """(rows, cols) after alignment (:func:`tomoflow.align.output_shape_for`: swapped near ±90°)."""
    a = math.radians(tilt_axis_deg)
    return (cols, rows) if abs(math.sin(a)) > abs(math.cos(a)) else (rows, cols)


def _cell_where(table: str, row: SampleRow, column: str) -> str:
    return f"{row.cells[column]} (sample {row.name!r}, column `{column}` of {table} line {row.line})"


def tilt_series_geometry(row: SampleRow, config: Mapping[str, Any], table: str) -> Geometry:
    """Check a sample's tilt series and angles (header only) and return its geometry."""
    from .io import preflight_tilt_series
    from .io.probe import row_continuity, stack_kind

    c = row.cells
    path = c["tilt_series"]
    shape = synthetic_file_shape(path, config["synthetic"])
    if shape is None and path.replace(os.sep, "/").startswith("results/synthetic/"):
        raise InputError(_cell_where(table, row, "tilt_series"), "not a file the synthetic rule writes",
                         "use results/synthetic/NAME/tilt_series.mrc (or tilt_series_aligned.mrc)")
    if shape is None:
        try:
            shape = preflight_tilt_series(path, angles=c["angles"] or None,
                                          pixel_size_nm=float(c["pixel_size_nm"]) if c["pixel_size_nm"] else None)
        except InputError as exc:
            raise InputError(f"{exc.where} (sample {row.name!r}, {table} line {row.line})", exc.problem, exc.fix) from None
        if shape[1] != shape[2] and stack_kind(path) == "mrc":  # a square image reads the same either way
            mid = shape[0] // 2
            vert, horiz = row_continuity(path, mid)
            if horiz > 0.5 and vert < MIN_ROW_CONTINUITY * horiz:
                raise InputError(_cell_where(table, row, "tilt_series"),
                                 f"image {mid + 1} does not continue from row to row (neighbour correlation {vert:.2f} "
                                 f"down vs {horiz:.2f} across): the header's nx={shape[2]}, ny={shape[1]} look swapped",
                                 "fix the header dimensions (e.g. IMOD alterheader) or re-export the stack")
    elif c["angles"]:
        ashape = synthetic_file_shape(c["angles"], config["synthetic"])
        if ashape is None:
            raise InputError(_cell_where(table, row, "angles"), "the synthetic tilt series needs its own .rawtlt",
                             "use the tilt_series.rawtlt beside it or leave `angles` empty")
    n_tilts, rows, cols = shape
    if n_tilts < validate.MIN_TILTS:
        raise InputError(_cell_where(table, row, "tilt_series"), f"only {n_tilts} tilt images; at least "
                         f"{validate.MIN_TILTS} are needed for a tomogram", "acquire/keep more tilts")
    n_slices, n_det = _aligned_shape(rows, cols, float(c["tilt_axis_deg"] or 0.0))
    thickness = int(c["thickness_px"]) if c["thickness_px"] else n_det
    return Geometry(n_tilts, n_slices, n_det, thickness)


def check_geometry(row: SampleRow, geo: Geometry, config: Mapping[str, Any], table: str, segmented: bool) -> None:
    """Slabs vs slices and the TomoPy FBP grid, for one sample."""
    for key, used in (("recon.slabs", True), ("predict.slabs", segmented)):
        section, name = key.split(".")
        n = int(config[section][name])
        if used and n > geo.n_slices:
            raise InputError(f"config key `{key}`", f"{n} slabs for {geo.n_slices} slices of sample {row.name!r} "
                             f"({row.cells['tilt_series']})", f"set {key} to at most {geo.n_slices}")
    r = config["recon"]
    if r["backend"] == "tomopy" and r["algorithm"] == "fbp" and (geo.thickness > geo.n_det or (geo.n_det - geo.thickness) % 2):
        raise InputError(f"{table} line {row.line} (sample {row.name!r})", f"thickness_px {geo.thickness} does not fit TomoPy "
                         f"gridrec's {geo.n_det}-px grid (needs ≤ {geo.n_det} with the same parity)",
                         "use recon.backend: astra for FBP, or change thickness_px")


def check_labels_file(where: str, path: str, shape: tuple[int, ...], config: Mapping[str, Any], expected: tuple[int, ...] | None,
                      expected_what: str) -> None:
    """A label stack: shape vs ``expected`` and sampled values vs ``classes`` (user files only)."""
    from .io.probe import label_values_problem

    if expected is not None and tuple(shape) != tuple(expected):
        raise InputError(where, f"label stack of shape {tuple(shape)} does not match {expected_what} {tuple(expected)}",
                         "give labels on the voxel grid of the reconstruction (slices, thickness_px, detector width), "
                         "or set thickness_px to the labels' thickness")
    if synthetic_file_shape(path, config["synthetic"]) is None:
        problem = label_values_problem(path, len(config["classes"]))
        if problem:
            raise InputError(where, problem, f"relabel to 0..{len(config['classes']) - 1} (= {list(config['classes'])}) "
                             "or extend `classes` in the config")


def check_sample_files(row: SampleRow, config: Mapping[str, Any], table: str) -> Geometry:
    """All files of one sample: tilt series, angles, true labels, annotations; the geometry they imply."""
    from .io.probe import probe_stack
    from .models import segment_model

    trained = row.name in config["train"]["samples"]
    segmented = segment_model(config)[1] is not None  # a trained or an external model segments the samples
    geo = tilt_series_geometry(row, config, table)
    check_geometry(row, geo, config, table, segmented)
    truth = row.cells["true_labels"]
    if truth:
        where = _cell_where(table, row, "true_labels")
        shape = synthetic_file_shape(truth, config["synthetic"])
        if shape is None:
            _exists(truth, where)
            shape = probe_stack(truth, "true labels").shape
        check_labels_file(where, truth, shape, config, geo.volume_shape, "the reconstruction grid (slices, thickness, width)")
    if trained and row.cells["annotation_labels"] and not row.cells["annotation_images"]:
        check_indexed_labels(row, geo, config, table)
    elif trained and not row.cells["annotation_images"]:
        slices = (geo.thickness, geo.n_det)
        _check_patch(config, slices, f"sample {row.name!r} (volume slices thickness × width)")
        n = int(config["annotations"]["n_slices"])
        if n > geo.n_slices:
            raise InputError("config key `annotations.n_slices`", f"{n} slices asked from sample {row.name!r}, whose "
                             f"volume has {geo.n_slices}", f"set annotations.n_slices to at most {geo.n_slices}")
    if trained and row.cells["annotation_images"]:
        check_annotations(row, config, table)
    return geo


def _exists(path: str, where: str) -> None:
    if not Path(path).exists():
        raise InputError(where, "file not found", "check the path (relative to the working directory where snakemake runs)")


def _check_patch(config: Mapping[str, Any], hw: tuple[int, int], what: str) -> None:
    ph, pw = (int(v) for v in config["train"]["patch_size"])
    if ph > hw[0] or pw > hw[1]:
        raise InputError("config key `train.patch_size`", f"patch {ph}×{pw} is larger than the slices of {what}: {hw[0]}×{hw[1]}",
                         f"use a patch no larger than the slices, in multiples of {unet_factor(config['train']['depth'])}")


def check_annotations(row: SampleRow, config: Mapping[str, Any], table: str,
                      columns: tuple[str, str] = ("annotation_images", "annotation_labels")) -> None:
    """User annotation stacks/folders: readable single-channel TIFF/MRC, matching shapes, label values,
    and folder files paired by name (:func:`tomoflow.io.annotations.preflight_annotation_pairs`: an
    unpaired or ambiguous file stops the run here, not in the extraction job).
    """
    from .io.annotations import preflight_annotation_pairs
    from .io.probe import TIFF_SUFFIXES, probe_stack

    im, lab = row.cells["annotation_images"], row.cells["annotation_labels"]
    w_im = f"{im} (sample {row.name!r}, column `{columns[0]}` of {table} line {row.line})"
    w_lab = f"{lab} (sample {row.name!r}, column `{columns[1]}` of {table} line {row.line})"
    for p, w in ((im, w_im), (lab, w_lab)):
        _exists(p, w)
    if Path(im).is_dir() != Path(lab).is_dir():
        raise InputError(w_im, "one of annotation_images/annotation_labels is a folder, the other a file",
                         "give two TIFF stacks or two folders of paired TIFFs")
    if Path(im).is_dir():
        shapes = []
        for folder, w in ((im, w_im), (lab, w_lab)):
            files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in TIFF_SUFFIXES)
            if not files:
                raise InputError(w, "folder holds no .tif/.tiff files", "export one TIFF per annotated slice")
            for f in files:
                info = probe_stack(f, "annotation slice")
                if info.shape[0] != 1:
                    raise InputError(f, f"{info.shape[0]} images in one file of an annotation folder",
                                     "save one greyscale slice per file, or give a TIFF stack pair instead of folders")
                shapes.append(info.shape[1:])
        _check_patch(config, (min(s[0] for s in shapes), min(s[1] for s in shapes)), f"sample {row.name!r} (annotations)")
        preflight_annotation_pairs(im, lab)
        return
    a, b = probe_stack(im, "annotation images"), probe_stack(lab, "annotation labels")
    if a.shape != b.shape:
        raise InputError(w_lab, f"label stack of shape {b.shape} differs from the image stack {a.shape} ({im})",
                         "export images and labels of the same slices with the same size")
    _check_patch(config, a.shape[1:], f"sample {row.name!r} (annotations)")
    check_labels_file(w_lab, lab, b.shape, config, None, "")


def check_indexed_labels(row: SampleRow, geo: Geometry, config: Mapping[str, Any], table: str) -> None:
    """Round-trip labels (``annotation_labels`` only): every file's slice index and shape fit the volume the
    current settings reconstruct (from the tilt-series header and ``thickness_px``), its values the classes."""
    from .io.annotations import preflight_indexed_labels

    folder = row.cells["annotation_labels"]
    where = _cell_where(table, row, "annotation_labels")
    _exists(folder, where)
    preflight_indexed_labels(folder, row.name, geo.volume_shape,
                             f"the volume of sample {row.name!r} ({table} line {row.line}: slices × thickness_px × width)",
                             classes=[str(c) for c in config["classes"]])
    _check_patch(config, (geo.thickness, geo.n_det), f"sample {row.name!r} (volume slices thickness × width)")


# --------------------------------------------------------------------------- annotation-only training data
def read_annotation_table(path: str, schema: Mapping[str, Any], sample_names: Sequence[str]) -> list[SampleRow]:
    """Read and check the annotation table (``annotations.table``, ``workflow/schemas/annotations.schema.yaml``).

    Raises
    ------
    InputError
        Unknown/missing columns, an empty required cell, a bad pixel size, a repeated name or a name that is also
        a sample (both name ``results/`` folders and split selectors); the message names the table, line and column.
    """
    if not Path(path).is_file():
        raise InputError("config key `annotations.table`", f"{path} not found",
                         "give the path of a tab-separated annotation table (relative to the working directory), or \"\"")
    rows = _checked_rows(path, schema, "annotation table", "name", "annotation set",
                         lambda c: "use letters, digits, '_', '.', '-' for names and a positive number (nm) for pixel_size_nm")
    for row, label in rows:
        cells = row.cells
        if cells["pixel_size_nm"] and not float(cells["pixel_size_nm"]) > 0:
            raise InputError(label, f"column `pixel_size_nm` = {cells['pixel_size_nm']!r} is not positive", "give the pixel size in nm")
        if cells["name"] in sample_names:
            raise InputError(label, f"name {cells['name']!r} is also a sample of the sample table",
                             "give annotation sets names that differ from the samples")
    if not rows:
        raise InputError(path, "the annotation table has no rows", "add one row per annotated image/label pair, or set annotations.table: \"\"")
    return [row for row, _ in rows]


def check_annotation_set(row: SampleRow, config: Mapping[str, Any], table: str) -> None:
    """One annotation-table row's files, as the sample table's annotation columns (:func:`check_annotations`)."""
    cells = {"sample": row.cells["name"], "annotation_images": row.cells["images"], "annotation_labels": row.cells["labels"]}
    as_sample = SampleRow(row.line, cells)
    check_annotations(as_sample, config, table, columns=("images", "labels"))


def check_split_config(config: Mapping[str, Any], sources: Sequence[str]) -> None:
    """``train.validation``/``train.test`` selectors name training sources; no whole source is in both; something trains.

    Slice numbers are checked by the ``split_annotations`` rule, once the slices are known.
    """
    t = config["train"]
    known = set(sources)
    lists = {"train.test": list(t["test"])}
    if not isinstance(t["validation"], str):
        lists["train.validation"] = list(t["validation"])
    elif t["validation"] != "auto":
        raise InputError("config key `train.validation`", f"{t['validation']!r} is neither auto nor a list",
                         "use `auto` or a list of '<source>' / '<source>:<slice>' selectors")
    if (lists["train.test"] or "train.validation" in lists) and not known:
        raise InputError("config key `train.validation`/`train.test`", "selectors given but nothing is trained",
                         "list training samples in train.samples or give annotations.table")
    for key, sels in lists.items():
        for sel in sels:
            name = str(sel).partition(":")[0]
            if name not in known:
                raise InputError(f"config key `{key}`", f"{sel!r} names no training source (sources: {sorted(known)})",
                                 "use '<source>' or '<source>:<slice>' with a sample of train.samples or an annotation-table name")
    if "train.validation" in lists:
        both = sorted(set(map(str, lists["train.validation"])) & set(map(str, lists["train.test"])))
        wholes_v = {s for s in map(str, lists["train.validation"]) if ":" not in s}
        wholes_t = {s for s in map(str, lists["train.test"]) if ":" not in s}
        both += sorted(s for s in map(str, lists["train.test"]) if s.partition(":")[0] in wholes_v and s not in both)
        both += sorted(s for s in map(str, lists["train.validation"]) if s.partition(":")[0] in wholes_t and s not in both)
        if both:
            raise InputError("config key `train.validation`", f"{both[:5]} are in both train.validation and train.test",
                             "give each annotated slice to at most one of train.validation and train.test")
        whole = wholes_v | wholes_t
        if known and whole >= known:
            raise InputError("config key `train.validation`", "train.validation and train.test take every training source whole; "
                             "nothing is left to train on", "keep at least one source (or some of its slices) for training")


def annotation_sets(config: Mapping[str, Any], schema: Mapping[str, Any], sample_names: Sequence[str]) -> list[SampleRow]:
    """The checked rows of ``annotations.table`` (none when it is ``""``), every file checked by its header."""
    path = str(config["annotations"]["table"])
    if not path:
        return []
    rows = read_annotation_table(path, schema, sample_names)
    for row in rows:
        check_annotation_set(row, config, path)
    return rows


# --------------------------------------------------------------------------- entry point
def startup(config: Mapping[str, Any], samples_schema: Mapping[str, Any]) -> list[SampleRow]:
    """Everything checkable before the first job, in order; returns the checked sample rows.

    ``config`` must already be schema-validated with defaults filled (Snakemake's ``validate``).
    """
    check_config(config)
    table = str(config["samples"])
    rows = read_samples(table, samples_schema)
    check_train_samples(config, rows, table)
    from .models import check_models  # models:, train.init_model, predict.model (external model files)

    check_models(config, rows)
    for row in rows:
        check_sample_files(row, config, table)
    return rows
