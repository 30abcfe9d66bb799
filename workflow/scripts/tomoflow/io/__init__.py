"""All file input/output of tomoflow.

Submodules by data kind; the names rules need are re-exported here.

* :mod:`tomoflow.io.volumes` - tilt series, volumes and label stacks (MRC, TIFF); re-exports the
  names of the format submodules :mod:`~tomoflow.io.mrc`, :mod:`~tomoflow.io.tiff`,
  :mod:`~tomoflow.io.angles` (tilt-angle files), :mod:`~tomoflow.io.tables` (JSON/TSV tables,
  figures) and :mod:`~tomoflow.io.common` (atomic writing, finite check).
* :mod:`tomoflow.io.probe` - lazy checks for start-up: file type by magic bytes (the one MRC/TIFF
  dispatcher, :func:`stack_kind`), stack geometry from headers, sampled label values, the sample table.
* :mod:`tomoflow.io.models`, :mod:`tomoflow.io.meshes` - Keras models, surface meshes.
"""

from .annotations import (  # noqa: F401
    preflight_annotation_pairs,
    read_annotation_pairs,
    read_annotation_source,
    write_annotation_export,
)
from .probe import StackInfo, file_kind, probe_stack, stack_kind
from .volumes import (
    TiltSeries,
    atomic_path,
    check_angles,
    check_finite,
    preflight_tilt_series,
    read_angles,
    read_image,
    read_image_stack,
    read_json,
    read_labels,
    read_slab,
    read_tilt_series,
    read_tsv,
    read_volume,
    save_figure,
    save_png,
    volume_shape,
    voxel_size_or,
    write_angles,
    write_json,
    write_labels,
    write_tsv,
    write_volume,
)

__all__ = [
    "StackInfo",
    "file_kind",
    "probe_stack",
    "stack_kind",
    "TiltSeries",
    "preflight_tilt_series",
    "read_image",
    "read_image_stack",
    "atomic_path",
    "check_angles",
    "check_finite",
    "read_angles",
    "read_json",
    "read_labels",
    "read_slab",
    "read_tilt_series",
    "read_tsv",
    "read_volume",
    "save_figure",
    "save_png",
    "voxel_size_or",
    "volume_shape",
    "write_angles",
    "write_json",
    "write_labels",
    "write_tsv",
    "write_volume",
]
