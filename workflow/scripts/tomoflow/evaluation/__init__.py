"""Evaluation of a segmentation: validation patches (the paper's protocol) and full volumes.

Evaluation sets (names used in ``metrics.json``, ``table1.tsv`` and ``rhd.tsv``):

* ``validation_patches`` - the validation patches of the training split (``results/models/{model}/split.json`` of the segmenting model)
  that belong to the sample.  The annotated slices they come from are predicted whole with the same
  blended patch prediction as the volume (:func:`tomoflow.predict.predict_images`), then the patches are
  cut from the predicted label maps and compared with the annotation labels, patch by patch.
* ``volume_slices`` - where a true label volume exists (synthetic data): every slice ``volume[y]``
  (axis 0, ``(n_z, n_x)``) of the predicted volume against the true one.
* ``volume_3d`` - the same volumes once in 3-D.

Per patch/slice metrics come from :func:`tomoflow.metrics.segmentation_metrics` (conventions there);
aggregates are mean ± 95 % CI (precision, recall, DSC: Table 1) and mean ± SE (HD/RHD: Fig. 4) with
explicit counts of NaN/inf cases (:func:`tomoflow.metrics.summarize`).

Modules: :mod:`~tomoflow.evaluation.patches` (patches and volumes scored), :mod:`~tomoflow.evaluation.tables`
(Table 1, RHD table, ``metrics.json``), :mod:`~tomoflow.evaluation.figures`, :mod:`~tomoflow.evaluation.sample`
(:func:`evaluate_sample`, the ``evaluate_segmentation`` rule's one call), :mod:`~tomoflow.evaluation.compare`
(:func:`compare_models`: every model of a run side by side, rule ``compare_models``).
"""

from .compare import ModelFiles, compare_models, comparison_figure, evaluation_set
from .figures import ERROR_COLORS, error_maps_figure, rhd_figure
from .patches import (
    cut_patches,
    evaluate_stack,
    evaluate_volume,
    predict_validation_patches,
    select_examples,
    validation_records,
)
from .sample import EvaluationResult, EvaluationSettings, evaluate_sample
from .tables import SET_LABELS, class_columns, metrics_document, rhd_table, table1

__all__ = [
    "ERROR_COLORS",
    "SET_LABELS",
    "EvaluationResult",
    "EvaluationSettings",
    "class_columns",
    "ModelFiles",
    "compare_models",
    "comparison_figure",
    "evaluation_set",
    "cut_patches",
    "error_maps_figure",
    "evaluate_sample",
    "evaluate_stack",
    "evaluate_volume",
    "metrics_document",
    "predict_validation_patches",
    "rhd_figure",
    "rhd_table",
    "select_examples",
    "table1",
    "validation_records",
]
