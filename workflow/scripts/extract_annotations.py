"""Rule extract_annotations: annotated image/label slices -> results/{sample}/annotations/ stacks."""

import logging
from pathlib import Path

import numpy as np

from tomoflow.annotations import choose_slices, extract_slices, pair_files, stack_pairs, validate_annotations
from tomoflow.errors import InputError
from tomoflow.io import read_image, read_image_stack, read_volume, voxel_size_or, write_json, write_labels, write_volume
from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.extract_annotations")
TIFF = (".tif", ".tiff")


def _read_slices(path: Path) -> tuple[np.ndarray, float | None, list[str]]:
    """A TIFF stack (or a single 2-D TIFF), or a folder of single-slice TIFFs in sorted order."""
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in TIFF)
        if not files:
            raise InputError(path, "folder holds no .tif/.tiff files", "export one TIFF per annotated slice")
        return None, None, files  # type: ignore[return-value]
    data, voxel = read_image_stack(path)
    return data, voxel, [str(path)]


def _read_folder_pairs(images_dir: Path, labels_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    _, _, im_files = _read_slices(images_dir)
    _, _, lab_files = _read_slices(labels_dir)
    pairs = pair_files(im_files, lab_files, str(images_dir))
    images = [read_image(a) for a, _ in pairs]
    labels = [read_image(b) for _, b in pairs]
    im, lab = stack_pairs(images, labels, [f"{a} / {b}" for a, b in pairs])
    return im, lab, [a for a, _ in pairs]


def main(smk):
    logging.captureWarnings(True)
    p = smk.params
    classes = list(p.classes)
    if p.mode == "volume":
        volume, voxel = read_volume(smk.input.volume)
        labels_vol, _ = read_volume(smk.input.labels)
        voxel = voxel_size_or(smk.input.volume, voxel, p.pixel_size_nm)
        idx = choose_slices(volume.shape[0], int(p.n_slices), int(p.seed))
        images, labels = extract_slices(volume, labels_vol, idx, where=f"{smk.input.volume} / {smk.input.labels}")
        where = str(smk.input.labels)
        info = {"sample": smk.wildcards.sample, "source": "volume", "axis": 0, "indices": idx.tolist(),
                "volume": str(smk.input.volume), "true_labels": str(smk.input.labels), "seed": int(p.seed)}
    else:
        im_path, lab_path = Path(smk.input.images), Path(smk.input.labels)
        if im_path.is_dir() != lab_path.is_dir():
            raise InputError(im_path, "one of annotation_images/annotation_labels is a folder, the other a file",
                             "give two TIFF stacks or two folders of paired TIFFs")
        if im_path.is_dir():
            images, labels, files = _read_folder_pairs(im_path, lab_path)
            voxel = None
        else:
            images, voxel, files = _read_slices(im_path)
            labels, _, _ = _read_slices(lab_path)
        voxel = voxel_size_or(im_path, voxel, p.pixel_size_nm)
        where = f"{im_path} / {lab_path}"
        info = {"sample": smk.wildcards.sample, "source": "user", "axis": None, "indices": None,
                "images": str(im_path), "labels": str(lab_path), "files": files}
    counts = validate_annotations(images, labels, classes, where=where)
    info["class_pixels"] = {c: int(n) for c, n in zip(classes, counts)}
    info["shape"] = list(images.shape)
    log.info("%d annotated slices of %dx%d px; class pixels %s", images.shape[0], images.shape[1],
             images.shape[2], info["class_pixels"])
    write_volume(smk.output.images, images.astype(np.float32), voxel)
    write_labels(smk.output.labels, labels.astype(np.uint8), voxel)
    write_json(smk.output.slices, info)


run_rule(snakemake, main)  # noqa: F821
