"""Lazy inspection of user files for the start-up checks: file type by magic bytes, stack geometry from
headers (MRC header / TIFF page metadata), sampled label values, the sample table.

Nothing here reads a whole data block: MRC files are checked against their header and file size, TIFF
files through tifffile's page metadata (offsets and byte counts), and label values from at most three
sections.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

PathLike = str | os.PathLike[str]

MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")
#: Bytes per voxel of the MRC modes tomoflow reads (0 int8, 1 int16, 2 float32, 6 uint16, 12 float16).
MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}
MRC_HEADER_BYTES = 1024

_MAGIC = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89HDF", "an HDF5 file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"GIF8", "a GIF image"),
)


def file_kind(path: PathLike) -> str:
    """What a file holds, judged by its first bytes (not its name).

    Returns
    -------
    str
        ``"mrc"`` (the ``"MAP "`` stamp at byte 208), ``"tiff"`` (classic or BigTIFF, either byte
        order), ``"empty"``, ``"text"`` or a short description (``"a PNG image"``, ``"an HDF5 file"``,
        ``"unknown"``).
    """
    with open(path, "rb") as fh:
        head = fh.read(MRC_HEADER_BYTES)
    if not head:
        return "empty"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 212 and head[208:211] == b"MAP":
        return "mrc"
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return "text"
    except UnicodeDecodeError:
        pass
    return "unknown"


def suffix_kind(path: PathLike) -> str | None:
    """``"mrc"`` / ``"tiff"`` from the file name's suffix, None for another suffix."""
    s = Path(path).suffix.lower()
    if s in MRC_SUFFIXES:
        return "mrc"
    if s in TIFF_SUFFIXES:
        return "tiff"
    return None


def require_file(path: PathLike, what: str, fix: str = "check the path in the sample table (relative to the working directory)") -> Path:
    """The path as :class:`Path` if it is a non-empty file, else :class:`InputError`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found", fix)
    if p.is_dir():
        raise InputError(p, f"{what} is a directory, expected a file", "point to the file itself")
    if p.stat().st_size == 0:
        raise InputError(p, f"{what} is empty (0 bytes)", "re-export or re-copy the file")
    return p


def stack_kind(path: PathLike, what: str = "stack") -> str:
    """The one dispatcher of MRC/TIFF/unknown files: ``"mrc"`` or ``"tiff"``, checked against the content.

    A file whose suffix and magic bytes disagree (a TIFF renamed ``.mrc``), or whose suffix is unknown,
    is refused with a message that names what the file really is.  MRC files without the ``"MAP "``
    stamp (pre-2000 headers) are accepted as MRC when the content is nothing else recognisable.
    """
    p = require_file(path, what)
    by_name = suffix_kind(p)
    content = file_kind(p)
    names = {"mrc": "an MRC file", "tiff": "a TIFF file"}
    if by_name is None:
        known = names.get(content)
        hint = f" (the content is {known}; rename it to {'.mrc' if content == 'mrc' else '.tif'})" if known else ""
        raise InputError(p, f"unknown {what} file type {p.suffix!r}{hint}",
                         "use an MRC (.mrc/.st/.ali/.rec) or TIFF (.tif/.tiff) file")
    if content == by_name:
        return by_name
    if content in names:
        raise InputError(p, f"{names[content]} with a {p.suffix} suffix",
                         f"rename it to {'.mrc' if content == 'mrc' else '.tif'} (and update the sample table)")
    if by_name == "mrc" and content == "unknown":
        return "mrc"  # old-style MRC header without the MAP stamp; mrcfile decides
    desc = {"text": "text", "empty": "empty", "unknown": "not a format tomoflow knows"}.get(content, content)
    raise InputError(p, f"not {names[by_name]}: the content is {desc}",
                     f"give the {what} as an MRC or TIFF stack (export it again from the acquisition software)")


@dataclass(frozen=True)
class StackInfo:
    """Geometry of an MRC/TIFF stack read from its header.

    Attributes
    ----------
    path : str
    kind : {"mrc", "tiff"}
    shape : tuple of int
        ``(n, rows, cols)``; a single 2-D image is ``(1, rows, cols)``.
    dtype : str
        NumPy dtype name of the stored values.
    voxel_size_nm : float or None
        Header calibration (None when uncalibrated).
    fei_angles : tuple of float or None
        Alpha tilts from an FEI extended header (MRC only).
    """

    path: str
    kind: str
    shape: tuple[int, int, int]
    dtype: str
    voxel_size_nm: float | None = None
    fei_angles: tuple[float, ...] | None = None


def probe_stack(path: PathLike, what: str = "stack") -> StackInfo:
    """Type, shape, dtype and calibration of an MRC/TIFF stack without reading its data.

    Raises
    ------
    InputError
        Wrong suffix for the content, unreadable/insane header, truncated data block, RGB or
        multi-channel images, TIFF pages of different shapes, an unsupported data type.
    """
    kind = stack_kind(path, what)
    p = Path(path)
    return _probe_mrc(p, what) if kind == "mrc" else _probe_tiff(p, what)


def _probe_mrc(p: Path, what: str) -> StackInfo:
    from .mrc import _fei_tilt_angles, _mrc_voxel_nm, _open_mrc

    size = p.stat().st_size
    if size < MRC_HEADER_BYTES:
        raise InputError(p, f"truncated MRC file: {size} bytes, shorter than the 1024-byte header",
                         "re-copy the file completely from the microscope PC / archive")
    head = np.frombuffer(_head(p), dtype=np.uint8)
    order = ">" if head[212] == 0x11 else "<"  # machine stamp: 0x44 0x44 little-endian, 0x11 0x11 big-endian
    ints = head[:40].view(f"{order}i4")
    nx, ny, nz, mode = (int(v) for v in ints[:4])
    next_ = int(head[92:96].view(f"{order}i4")[0])
    if min(nx, ny, nz) < 1 or max(nx, ny, nz) > 1 << 20:
        raise InputError(p, f"implausible MRC header dimensions nx={nx}, ny={ny}, nz={nz}",
                         "the header is corrupt or not an MRC header; re-export the stack as MRC")
    if mode not in MRC_MODE_BYTES:
        raise InputError(p, f"unsupported MRC mode {mode} (complex, packed or unknown data)",
                         "convert the stack to float32 (mode 2), e.g. with IMOD newstack -mode 2")
    if next_ < 0:
        raise InputError(p, f"negative extended-header size {next_}", "the header is corrupt; re-export the stack")
    need = MRC_HEADER_BYTES + next_ + nx * ny * nz * MRC_MODE_BYTES[mode]
    if size < need:
        raise InputError(
            p, f"truncated MRC file: the header describes {nz}×{ny}×{nx} values of mode {mode} "
            f"({need:,} bytes) but the file holds {size:,} bytes",
            "re-copy the file completely from the microscope PC / archive")
    with _open_mrc(p, mmap=True) as mrc:
        voxel = _mrc_voxel_nm(mrc)
        fei = _fei_tilt_angles(mrc)
        dtype = str(mrc.data.dtype)
    return StackInfo(str(p), "mrc", (nz, ny, nx), dtype, voxel, None if fei is None else tuple(float(a) for a in fei))


def _head(p: Path) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(MRC_HEADER_BYTES)


def _probe_tiff(p: Path, what: str) -> StackInfo:
    import tifffile

    from .tiff import _tiff_voxel_nm

    size = p.stat().st_size
    tlog = logging.getLogger("tifffile")
    records: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = _Keep(logging.WARNING)
    tlog.addHandler(handler)
    try:
        with tifffile.TiffFile(p) as tif:
            pages = list(tif.pages)
            ij = tif.imagej_metadata or {}
            voxel = _tiff_voxel_nm(tif)
            keys: list[Any] = [pg.keyframe or pg for pg in pages]  # a TiffFrame's tags live on its key page
            infos = [(pg.shape, int(k.samplesperpixel), str(k.dtype), pg.dataoffsets, pg.databytecounts, k.photometric)
                     for pg, k in zip(pages, keys)]
            series_axes = tif.series[0].axes if tif.series else ""
    except InputError:
        raise
    except Exception as exc:
        raise InputError(p, f"truncated or corrupt TIFF ({type(exc).__name__}: {exc})",
                         "re-copy or re-export the TIFF completely") from None
    finally:
        tlog.removeHandler(handler)
    if not infos:
        raise InputError(p, "TIFF holds no images", "re-export the stack")
    n_expected = int(ij.get("images", 0) or 0)
    if n_expected > len(infos) and len(infos) > 1 or any("corrupted" in r or "truncat" in r.lower() for r in records):
        raise InputError(p, f"truncated TIFF: {len(infos)} readable page(s)"
                         + (f" of {n_expected} announced" if n_expected else "") + (f" ({records[0]})" if records else ""),
                         "re-copy or re-export the TIFF completely")
    for k, (shape, spp, _dtype, offsets, counts, photometric) in enumerate(infos):
        end = max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)
        if end > size:
            raise InputError(p, f"truncated TIFF: image {k + 1} of {len(infos)} needs bytes up to {end:,} but the "
                             f"file holds {size:,}", "re-copy or re-export the TIFF completely")
        if spp > 1 or len(shape) > 2 and shape[-1] in (3, 4) and int(photometric) == 2:
            raise InputError(p, f"RGB/multi-channel TIFF ({spp} samples per pixel, image shape {tuple(shape)})",
                             "save the images as single-channel greyscale (e.g. Fiji: Image > Type > 32-bit or 8-bit)")
    if n_expected == 0 and len(infos) == 1 and len(infos[0][0]) == 3:
        n0, n1, n2 = (int(s) for s in infos[0][0])  # one page holding a whole volume (tiled/volumetric)
        shape3 = (n0, n1, n2)
    else:
        shapes = [tuple(int(s) for s in i[0]) for i in infos]
        first = shapes[0]
        for k, s in enumerate(shapes):
            if s != first:
                raise InputError(p, f"TIFF pages of different shapes: image 1 is {_fmt(first)} px, image {k + 1} is "
                                 f"{_fmt(s)} px", "save all images with one size (crop or pad them to a common size)")
        if len(first) != 2:
            raise InputError(p, f"TIFF images of shape {first} are not 2-D greyscale",
                             "save the images as single-channel greyscale")
        shape3 = (len(shapes), first[0], first[1])
    if "C" in series_axes and len(infos) > 1 and ij.get("channels", 1) not in (None, 1):
        raise InputError(p, f"multi-channel ImageJ stack ({ij.get('channels')} channels)",
                         "save the images as single-channel greyscale (Fiji: Image > Color > Split Channels)")
    dtype = infos[0][2]
    if np.dtype(dtype).kind not in "uif":
        raise InputError(p, f"unsupported TIFF data type {dtype}", "save the images as 8/16-bit integers or 32-bit float")
    return StackInfo(str(p), "tiff", shape3, str(dtype), voxel, None)


def _fmt(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def sample_sections(path: PathLike, n: int = 3) -> list[tuple[int, np.ndarray]]:
    """Up to ``n`` evenly spaced sections (axis 0) of an MRC/TIFF stack, read one at a time.

    Returns
    -------
    list of (index, ndarray of shape (rows, cols))
    """
    info = probe_stack(path)
    count = info.shape[0]
    picks = sorted({round(float(v)) for v in np.linspace(0, count - 1, min(n, count))})
    from .volumes import read_slab

    return [(i, read_slab(path, i, i + 1)[0][0]) for i in picks]


def label_values_problem(path: PathLike, n_classes: int) -> str | None:
    """A description of label values outside ``0 … n_classes-1`` in sampled sections, or None."""
    for i, sec in sample_sections(path):
        if sec.dtype.kind == "f" and not np.all(np.mod(sec[np.isfinite(sec)], 1) == 0):
            return f"non-integer label values in section {i + 1}"
        vals = np.unique(sec)
        bad = [v for v in vals.tolist() if not (0 <= v < n_classes)]
        if bad:
            shown = ", ".join(f"{v:g}" for v in bad[:5])
            return f"label value(s) {shown} in section {i + 1}, outside the class indices 0..{n_classes - 1}"
    return None


def row_continuity(path: PathLike, index: int = 0) -> tuple[float, float]:
    """Correlation of vertically and of horizontally neighbouring pixels of one image of a stack.

    Natural images (and HAADF projections) give similar values; an image read with the wrong row
    length (nx and ny swapped in an MRC header) keeps the horizontal correlation but loses the
    vertical one.

    Returns
    -------
    (float, float)
        Pearson correlation of (row r, row r+1) pairs and of (column c, column c+1) pairs.
    """
    from .volumes import read_slab

    img = read_slab(path, index, index + 1)[0][0].astype(np.float64)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a = a - a.mean()
        b = b - b.mean()
        den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
        return float((a * b).sum() / den) if den > 0 else 1.0

    return corr(img[:-1], img[1:]), corr(img[:, :-1], img[:, 1:])


# --------------------------------------------------------------------------- sample table
@dataclass(frozen=True)
class TableRow:
    """One data row of a tab-separated table: its 1-based line number and its cells by column."""

    line: int
    cells: dict[str, str]


def read_table_rows(path: PathLike, what: str = "sample table") -> tuple[list[str], list[TableRow]]:
    """Header and rows of a tab-separated table, keeping line numbers (``#`` comments and blank lines skipped).

    Returns
    -------
    columns : list of str
    rows : list of TableRow
        Cells stripped of surrounding blanks; missing trailing cells are ``""``.

    Raises
    ------
    InputError
        Missing/empty file, no header, a row with more cells than the header.
    """
    p = require_file(path, what, "set `samples:` in the config to a tab-separated file (see config/README.md)")
    if file_kind(p) not in ("text",):
        raise InputError(p, f"the {what} is not a text file (content: {file_kind(p)})",
                         "give a tab-separated text file (one row per sample)")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    columns: list[str] | None = None
    rows: list[TableRow] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in next(csv.reader([line], delimiter="\t"))]
        if columns is None:
            columns = cells
            if len(columns) == 1 and ("," in line or ";" in line or "  " in line):
                raise InputError(p, f"line {lineno}: the header has one column ({line[:60]!r}); the table is not tab-separated",
                                 "separate the columns with tabs (TSV)")
            continue
        if len(cells) > len(columns):
            raise InputError(p, f"line {lineno} has {len(cells)} cells for {len(columns)} columns",
                             "remove the extra cells or add the missing header; separate cells by one tab")
        rows.append(TableRow(lineno, dict(zip(columns, cells + [""] * (len(columns) - len(cells))))))
    if columns is None:
        raise InputError(p, f"the {what} has no header line", "start the table with the column names (sample, tilt_series, …)")
    return columns, rows


def read_schema(path: PathLike) -> dict[str, Any]:
    """A YAML schema file as a dict (keys in file order)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
