"""Reading annotations: image/label TIFF pairs (napari, Fiji, ilastik exports) and true-label volumes.

User annotations come as two TIFF (or MRC) stacks of the same shape, or as two folders of
single-slice TIFFs paired by the slice numbers in their names (the rule:
:func:`tomoflow.annotations.pair_files`).  Every file is inspected before it is trusted:

* colour: a TIFF whose pages hold several samples per pixel (RGB/RGBA, ``photometric`` RGB) is never
  read as a stack of 3-pixel-wide slices.  A colour *label* image is refused (colours are not class
  indices).  A colour *image* is accepted only when its colour channels are equal (a greyscale image
  saved as RGB, e.g. Fiji "RGB Color"), and then read as that grey channel; a true colour image (an
  overlay or a false-colour rendering) is refused, because its intensities are not the data;
* multi-channel (ImageJ ``C`` axis) stacks and TIFFs whose pages differ in shape are refused;
* in a folder, every file must hold one 2-D slice.

Errors are :class:`~tomoflow.errors.InputError` lines naming the file, the problem and the fix.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import AnnotationSource, check_label_fit, label_slice_index, pair_files, stack_pairs
from ..errors import InputError
from .volumes import (
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    PathLike,
    _require_file,
    _tiff,
    _tiff_voxel_nm,
    read_slab,
    read_volume,
    volume_shape,
    voxel_size_or,
)

log = logging.getLogger(__name__)

__all__ = [
    "indexed_label_files",
    "preflight_annotation_pairs",
    "preflight_indexed_labels",
    "read_annotation_pairs",
    "read_annotation_source",
    "read_annotation_tiff",
    "read_annotation_volume",
    "read_indexed_labels",
    "write_annotation_export",
]

#: ``<sample>_z<index>...``: a round-trip label file of some sample.
_OTHER_SAMPLE = re.compile(r"^[A-Za-z0-9_.-]+_z\d+", re.IGNORECASE)
_LABEL_FIX = ("save the labels as a single-channel integer image holding the class index per pixel "
              "(e.g. napari Labels layer > Save, ilastik 'Simple Segmentation' export), not a coloured rendering")


def _layout(tif: Any, p: Path, role: str) -> tuple[str, tuple[int, ...], int]:
    """Axes, shape and samples per pixel of a TIFF's one series; refuses what is never usable."""
    if len(tif.series) > 1:
        shapes = sorted({tuple(s.shape) for s in tif.series})
        raise InputError(p, f"TIFF pages of different shapes {shapes[:3]}",
                         "save every slice with the same size in one stack (or one slice per file)")
    series = tif.series[0]
    axes, shape = series.axes, tuple(int(n) for n in series.shape)
    samples = int(getattr(tif.pages[0], "samplesperpixel", 1) or 1)
    if "C" in axes and shape[axes.index("C")] > 1:
        raise InputError(p, f"multi-channel stack ({shape[axes.index('C')]} channels, axes {axes})",
                         "save one channel only (the raw intensities, or the class-index labels)")
    if "S" in axes and samples > 1 and role == "label":
        raise InputError(p, f"label image is RGB colour ({samples} samples per pixel, shape {shape})", _LABEL_FIX)
    plain = [n for ax, n in zip(axes, shape) if ax != "S" and n > 1]
    if len(plain) > 3 or len(plain) < 2:
        raise InputError(p, f"expected slices (n, H, W), got shape {shape} (axes {axes})",
                         "save the slices as one plain stack of 2-D images")
    return axes, shape, samples


def _slices_shape(axes: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    plain = [n for ax, n in zip(axes, shape) if ax != "S" and n > 1]
    if len(plain) == 2:
        return (1, plain[0], plain[1])
    return (plain[0], plain[1], plain[2])


def read_annotation_tiff(path: PathLike, role: str) -> tuple[np.ndarray, float | None]:
    """Read an annotation TIFF as slices, refusing colour labels and multi-channel stacks.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` file: one 2-D slice or a stack of slices.
    role : {"image", "label"}
        What the file holds (decides how colour is treated, see the module docstring).

    Returns
    -------
    data : ndarray, shape (n, H, W)
        Native dtype; ``n = 1`` for a single slice.
    voxel_size_nm : float or None
        From ImageJ metadata, if any.
    """
    p = _require_file(path, f"annotation {role}")
    with _tiff(p) as tif:
        axes, shape, samples = _layout(tif, p, role)
        voxel = _tiff_voxel_nm(tif)
        data = np.asarray(tif.series[0].asarray())
    if "S" in axes and samples > 1:
        colour = np.moveaxis(data, axes.index("S"), -1)[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise InputError(p, f"image is RGB colour with different channels ({samples} samples per pixel, "
                             f"shape {shape}), not the measured intensities",
                             "export the annotated slice as single-channel greyscale (the reconstruction's raw "
                             "intensities), not a coloured overlay or rendering")
        log.info("%s: greyscale saved as RGB (equal channels); read as one channel", p)
        data = colour[..., 0]
    return data.reshape(_slices_shape(axes, shape)), voxel


def _tiff_slices_shape(path: Path, role: str) -> tuple[int, int, int]:
    with _tiff(_require_file(path, f"annotation {role}")) as tif:
        return _slices_shape(*_layout(tif, path, role)[:2])


def preflight_annotation_pairs(images: PathLike, labels: PathLike) -> list[dict[str, Any]]:
    """Start-up check of user annotations from names and TIFF headers only (no pixel data read).

    Pairs folders by name (:func:`tomoflow.annotations.pair_files`) and checks every TIFF's layout:
    colour labels, multi-channel stacks, pages of mixed shapes, several slices in a folder's file,
    image/label shapes that differ.  (Whether an RGB *image* is grey is decided when it is read.)

    Returns
    -------
    list of dict
        The pair records ``{"image", "label", "page", "shape"}`` :func:`read_annotation_pairs` will
        produce.
    """
    im_path, lab_path = Path(images), Path(labels)
    where = _check_pair_paths(im_path, lab_path)
    if im_path.is_dir():
        out = []
        for a, b in pair_files(_tiffs(im_path), _tiffs(lab_path), where):
            sa, sb = _tiff_slices_shape(Path(a), "image"), _tiff_slices_shape(Path(b), "label")
            _check_one_slice(a, sa[0])
            _check_one_slice(b, sb[0])
            if sa != sb:
                raise InputError(f"{a} / {b}", f"image shape {sa[1:]} and label shape {sb[1:]} differ",
                                 "export image and label slices with the same size")
            out.append({"image": a, "label": b, "page": 0, "shape": list(sa[1:])})
        return out
    shapes = []
    for p, role in ((im_path, "image"), (lab_path, "label")):
        if p.suffix.lower() in TIFF_SUFFIXES:
            shapes.append(_tiff_slices_shape(p, role))
        elif p.suffix.lower() in MRC_SUFFIXES:
            n, h, w = volume_shape(p)
            shapes.append((n, h, w))
        else:
            raise InputError(p, f"unknown annotation file type {p.suffix!r}", "save annotations as .tif/.tiff (or .mrc) stacks")
    if shapes[0] != shapes[1]:
        raise InputError(where, f"image stack shape {shapes[0]} and label stack shape {shapes[1]} differ",
                         "export images and labels with the same number and size of slices")
    return [{"image": str(im_path), "label": str(lab_path), "page": k, "shape": list(shapes[0][1:])}
            for k in range(shapes[0][0])]


def _check_pair_paths(im_path: Path, lab_path: Path) -> str:
    for p, what in ((im_path, "annotation_images"), (lab_path, "annotation_labels")):
        if not p.exists():
            raise InputError(p, f"{what} not found", f"check the `{what}` path in the sample table")
    where = f"{im_path} / {lab_path}"
    if im_path.is_dir() != lab_path.is_dir():
        raise InputError(where, "one of annotation_images/annotation_labels is a folder, the other a file",
                         "give two TIFF stacks or two folders of single-slice TIFFs")
    return where


def _check_one_slice(path: str, n: int) -> None:
    if n != 1:
        raise InputError(path, f"holds {n} slices; a folder must hold one slice per file",
                         "save one 2-D slice per file, or give two stacks instead of two folders")


def _read_stack(path: Path, role: str) -> tuple[np.ndarray, float | None]:
    if path.suffix.lower() in TIFF_SUFFIXES:
        return read_annotation_tiff(path, role)
    if path.suffix.lower() in MRC_SUFFIXES:
        return read_volume(path)
    raise InputError(path, f"unknown annotation file type {path.suffix!r}", "save annotations as .tif/.tiff (or .mrc) stacks")


def _tiffs(folder: Path) -> list[str]:
    files = sorted(str(f) for f in folder.iterdir()
                   if f.is_file() and f.suffix.lower() in TIFF_SUFFIXES and not f.name.startswith("."))
    if not files:
        others = sorted(f.name for f in folder.iterdir() if not f.name.startswith("."))[:3]
        raise InputError(folder, f"folder holds no .tif/.tiff files{f' (found {others})' if others else ''}",
                         "export one TIFF per annotated slice into the folder")
    return files


def read_annotation_pairs(
    images: PathLike, labels: PathLike, pixel_size_nm: float | None = None
) -> AnnotationSource:
    """Read user annotations: two stacks, or two folders of single-slice TIFFs paired by name.

    Parameters
    ----------
    images, labels : path-like
        Both files (TIFF/MRC stacks of the same shape, slice ``k`` pairs with slice ``k``) or both
        folders (paired by :func:`tomoflow.annotations.pair_files`).
    pixel_size_nm : float, optional
        Used when the image file carries no calibration.

    Returns
    -------
    AnnotationSource
        ``mode="user"``, images float32 (n, H, W), labels native dtype (n, H, W), one pair record per
        slice ``{"image", "label", "page", "shape"}``.
    """
    im_path, lab_path = Path(images), Path(labels)
    where = _check_pair_paths(im_path, lab_path)
    pairs: list[dict[str, Any]] = []
    if im_path.is_dir():
        file_pairs = pair_files(_tiffs(im_path), _tiffs(lab_path), where)
        ims, labs, voxel = [], [], None
        for a, b in file_pairs:
            im, vx = read_annotation_tiff(a, "image")
            lab, _ = read_annotation_tiff(b, "label")
            _check_one_slice(a, im.shape[0])
            _check_one_slice(b, lab.shape[0])
            if im.shape != lab.shape:
                raise InputError(f"{a} / {b}", f"image shape {im.shape[1:]} and label shape {lab.shape[1:]} differ",
                                 "export image and label slices with the same size")
            voxel = vx if voxel is None else voxel
            ims.append(im[0])
            labs.append(lab[0])
            pairs.append({"image": a, "label": b, "page": 0, "shape": list(im.shape[1:])})
        im_stack, lab_stack = stack_pairs(ims, labs, [f"{a} / {b}" for a, b in file_pairs])
    else:
        im_stack, voxel = _read_stack(im_path, "image")
        lab_stack, _ = _read_stack(lab_path, "label")
        if im_stack.shape != lab_stack.shape:
            raise InputError(where, f"image stack shape {im_stack.shape} and label stack shape {lab_stack.shape} differ",
                             "export images and labels with the same number and size of slices")
        pairs = [{"image": str(im_path), "label": str(lab_path), "page": k, "shape": list(im_stack.shape[1:])}
                 for k in range(im_stack.shape[0])]
        im_stack = im_stack.astype(np.float32)
    px = voxel_size_or(im_path, voxel, pixel_size_nm, "pixel size")
    log.info("read %d annotated slice pair(s) from %s", len(pairs), where)
    return AnnotationSource(mode="user", images=np.asarray(im_stack, dtype=np.float32), labels=lab_stack,
                            voxel_size_nm=px, paths={"images": str(im_path), "labels": str(lab_path)}, pairs=pairs)


def read_annotation_volume(volume: PathLike, labels: PathLike, pixel_size_nm: float | None = None) -> AnnotationSource:
    """Read a reconstructed volume and its true labels (the demo's annotation source).

    Returns
    -------
    AnnotationSource
        ``mode="volume"``; shapes are checked later, with the registration
        (:func:`tomoflow.annotations.check_label_registration`).
    """
    vol, voxel = read_volume(volume)
    lab, _ = read_volume(labels)
    px = voxel_size_or(volume, voxel, pixel_size_nm)
    return AnnotationSource(mode="volume", images=vol, labels=lab, voxel_size_nm=px,
                            paths={"volume": str(volume), "true_labels": str(labels)})


def indexed_label_files(folder: PathLike, sample: str) -> list[tuple[str, int]]:
    """The label files of a round-trip folder and the volume slice index each names, by index.

    Files named ``<sample>_z<index>...`` are the sample's; when some are, files of other samples
    (``<other>_z<index>...``) are skipped, so one folder can hold the labels of several samples; any other
    file must name its slice index (:func:`tomoflow.annotations.label_slice_index`).

    Returns
    -------
    list of (path, index)
    """
    p = Path(folder)
    if not p.is_dir():
        raise InputError(p, "annotation_labels without annotation_images must be a folder of label TIFFs",
                         "give the folder holding SAMPLE_zNNNN_labels.tif (or fill annotation_images too)")
    files = _tiffs(p)
    own = [f for f in files if Path(f).name.lower().startswith(f"{sample.lower()}_z")]
    other = [f for f in files if f not in own and _OTHER_SAMPLE.match(Path(f).name)]
    chosen = [f for f in files if f not in other] if own else files
    return sorted(((f, label_slice_index(f)) for f in chosen), key=lambda t: t[1])


def preflight_indexed_labels(folder: PathLike, sample: str, volume_shape: tuple[int, int, int], volume: str,
                             classes: list[str] | None = None) -> list[tuple[str, int]]:
    """Start-up check of round-trip labels from names and TIFF headers: index and shape vs the volume's geometry;
    with ``classes``, also every label value (each file is one slice, so it is read whole).

    Raises
    ------
    InputError
        As :func:`tomoflow.annotations.check_label_fit`; colour/multi-slice label files; label values outside
        the classes (:func:`tomoflow.annotations.check_label_values`).
    """
    from ..annotations import check_label_values

    files = indexed_label_files(folder, sample)
    shapes = []
    for f, i in files:
        n, h, w = _tiff_slices_shape(Path(f), "label")
        _check_one_slice(f, n)
        shapes.append((f, i, (h, w)))
    check_label_fit(shapes, volume_shape, volume)
    if classes is not None:
        for f, _ in files:
            check_label_values(read_annotation_tiff(f, "label")[0], classes, f)
    return files


def read_indexed_labels(folder: PathLike, volume: PathLike, sample: str, pixel_size_nm: float | None = None) -> AnnotationSource:
    """Round-trip annotations: label slices named by volume slice index, images from the current volume.

    Every label's index and shape are checked against the volume's header before any pixel is read
    (:func:`tomoflow.annotations.check_label_fit`), then only the named slices are read.

    Parameters
    ----------
    folder : path-like
        Folder of ``<sample>_z<index>_labels.tif`` (one 2-D slice each).
    volume : path-like
        The current ``results/<sample>/volume.mrc``, shape (n, H, W).
    sample : str
    pixel_size_nm : float, optional
        Used when the volume header has no voxel size.

    Returns
    -------
    AnnotationSource
        ``mode="volume_indices"``, images float32 (k, H, W) = volume slices, labels (k, H, W), pair records
        ``{"label", "index", "shape"}``.
    """
    shape = tuple(int(v) for v in volume_shape(volume))
    if len(shape) != 3:
        raise InputError(volume, f"expected a 3-D volume, got shape {shape}", "re-run the reconstruction")
    files = preflight_indexed_labels(folder, sample, (shape[0], shape[1], shape[2]), str(volume))
    ims, labs, pairs, voxel = [], [], [], None
    for f, i in files:
        lab, _ = read_annotation_tiff(f, "label")
        im, voxel = read_slab(volume, i, i + 1)
        ims.append(np.asarray(im[0], dtype=np.float32))
        labs.append(lab[0])
        pairs.append({"label": f, "index": int(i), "shape": list(lab.shape[1:])})
    px = voxel_size_or(volume, voxel, pixel_size_nm)
    log.info("read %d label slice(s) from %s, images = those slices of %s %s", len(files), folder, volume, shape)
    return AnnotationSource(mode="volume_indices", images=np.stack(ims), labels=np.stack(labs), voxel_size_nm=px,
                            paths={"volume": str(volume), "labels": str(folder), "volume_shape": list(shape)},
                            pairs=pairs)


def write_annotation_export(folder: PathLike, slices: dict[str, np.ndarray], voxel_size_nm: float,
                            texts: dict[str, str], records: dict[str, Any]) -> None:
    """Write an export for annotation: one float32 ImageJ TIFF per slice, text files, JSON records.

    Parameters
    ----------
    folder : path-like
        Created (with parents).
    slices : mapping file name -> ndarray (H, W)
        Written with the pixel size (nm) in the TIFF resolution tags.
    voxel_size_nm : float
    texts : mapping file name -> str
    records : mapping file name -> JSON-ready object
    """
    from .volumes import write_json, write_volume

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in slices.items():
        write_volume(out / name, np.asarray(arr, dtype=np.float32)[None], voxel_size_nm)
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    for name, rec in records.items():
        write_json(out / name, rec)


def read_annotation_source(
    mode: str,
    *,
    labels: PathLike,
    images: PathLike | None = None,
    volume: PathLike | None = None,
    pixel_size_nm: float | None = None,
    sample: str = "",
) -> AnnotationSource:
    """Read a sample's annotations: ``mode="user"`` (image/label pairs), ``"volume"`` (volume + true labels) or
    ``"volume_indices"`` (label slices named by index + the current volume, :func:`read_indexed_labels`)."""
    if mode == "user" and images is not None:
        return read_annotation_pairs(images, labels, pixel_size_nm)
    if mode == "volume" and volume is not None:
        return read_annotation_volume(volume, labels, pixel_size_nm)
    if mode == "volume_indices" and volume is not None:
        return read_indexed_labels(labels, volume, sample, pixel_size_nm)
    raise ValueError(f"annotation mode {mode!r} needs {'images' if mode == 'user' else 'volume'}")
