"""U-Net prediction of reconstructed slices and whole stacks: one pass per slice, or blended patches.

Two methods (config ``predict.mode``; :func:`plan_prediction` decides for ``auto``):

**One pass per slice** (``whole``).  The U-Net is fully convolutional, so a whole slice ``(H, W)`` is
predicted in one network pass: it is reflect-padded by a margin of ``2**(depth-1)`` px (default; the
context a patch border would otherwise lack) and up to the next multiple of ``2**(depth-1)`` (the five
poolings of a depth-6 net need multiples of 32), several slices share one model call, and the output is
cropped back to ``(H, W)``.  Cost: about ``(H+2m)(W+2m)`` pixels of network work per slice, against
``4 H W`` (50 % overlap) - ``32 H W`` with 8-fold TTA - for blended patches.
*Normalisation*: the model's first layer is a :class:`keras.layers.Normalization` holding the fixed
mean and variance of the *training images* (not statistics of each input), so a whole slice is normalised
exactly as a training patch was; a model that normalises by statistics of each input
(:attr:`tomoflow.unet.ModelInfo.per_input_normalization`) is predicted with blended patches of the
training size instead (``auto``) or refused (``whole``).
*Memory*: one pass holds the network's activations for the whole slice.  :func:`tomoflow.unet.inspect_model`
counts them per input pixel from the model's layers (the sum over all layer outputs, an upper bound of
what is alive at once); ``auto`` predicts whole slices when one padded slice fits ``memory_budget_mb``
(fed from the rule's ``resources: mem_mb``) and batches as many slices per call as fit (at most
``batch_size``); otherwise it falls back to blended patches.

**Blended patches** (``blended``, the paper's reference method, with ``tta`` its 8-fold test-time
augmentation).  A U-Net trained on ``patch_size`` patches is applied to slices of any shape by cutting
every slice into overlapping patches, predicting them in batches (patches of several slices share a batch)
and merging the per-patch class probabilities with a smooth window (*Smoothly-Blend-Image-Patches*,
Chevalier 2017):

* **Window** - the outer product of two 1-D second-order spline windows.  From the triangle ``t``
  (:func:`scipy.signal.windows.triang`, values ``(2k+1)/M`` rising then falling for an even length
  ``M``) the window is ``w = 2 t²`` where ``t < ½`` (outer quarters) and ``w = 1 - 2 (1 - t)²`` where
  ``t ≥ ½`` (inner half), divided by its mean (which is exactly ½).
* **50 % overlap** - patch origins every ``M/2`` pixels.  Two windows shifted by ``M/2`` have
  triangle values ``t`` and ``1 - t`` at every pixel, and ``w(t) + w(1 - t) = 1``, so the 1-D windows
  sum to exactly 2 (after division by the mean) and the 2-D windows to exactly 4 at every pixel covered
  by a full set of overlapping patches.
* **Reflect padding** of ``M/2`` (= ``M·(1 - 1/2)``) on each side, plus up to ``M/2 - 1`` extra pixels
  of reflection at the far end so that the padded length is a multiple of ``M/2``: every original
  pixel then lies where the weights sum to the constant.  The merged result is divided by the summed
  weights (which equals the reference's division by ``subdivisions² = 4`` there), so an identity model
  reproduces the input everywhere, for any slice shape - the reference code only handles square
  images.
* **Test-time augmentation** (``tta=True``) - the prediction of every patch is the mean over the 8
  rotations/mirrors of the square (the dihedral group D4: input transformed, output transformed back).
  Rectangular patches cannot be rotated by 90° without changing shape, so they use the 4 mirrors
  (identity, up-down, left-right, both).  In one-pass mode the whole padded slice goes through all 8
  (a fully convolutional model takes the transposed shape too).

The model is a Keras model (``predict_on_batch`` is used) or any callable taking a float32 batch
``(B, Hp, Wp, 1)`` of *raw* intensities (the normalisation of training is a layer inside the saved
model) and returning softmax probabilities ``(B, Hp, Wp, C)``.  Every model call gets exactly
``batch_size`` patches (the last batch is padded with zeros and its extra outputs dropped) so a compiled
model never retraces.

Memory (blended): slices are processed in chunks of the fewest slices whose patches fill whole batches
(:func:`chunk_slices_for`; float64 accumulators capped by ``max_chunk_mb``), independent of the stack;
:func:`predict_volume_slab` reads its input chunk by chunk through a reader callable
and keeps only uint8 labels (and optional uint8 probabilities) of its slab, so the memory of a slab job
does not depend on the depth of the stack.

Modules: :mod:`~tomoflow.predict.blend` (window, patch grid, blended chunks), :mod:`~tomoflow.predict.whole`
(one-pass layout, :func:`plan_prediction`, one-pass chunks), :mod:`~tomoflow.predict.model` (the model as a
batch predictor, TTA), :mod:`~tomoflow.predict.stack` (:func:`predict_chunks`, :func:`predict_images`,
:func:`predict_volume_slab`, :func:`predict_slab_file`), :mod:`~tomoflow.predict.figures` (the prediction
figure), :mod:`~tomoflow.predict.common` (shared helpers).  Every public name is importable from
``tomoflow.predict``.
"""

from __future__ import annotations

from .blend import PatchGrid, chunk_slices_for, patch_grid, spline_window_1d, spline_window_2d
from .common import SliceSource as SliceSource
from .figures import DEFAULT_CLASS_COLORS, figure_positions, prediction_figure
from .model import as_predictor
from .stack import predict_chunks, predict_images, predict_slab_file, predict_volume_slab, probabilities_to_uint8
from .whole import MODES, PredictionPlan, WholeSliceLayout, plan_prediction, whole_slice_layout

__all__ = [
    "spline_window_1d",
    "spline_window_2d",
    "PatchGrid",
    "patch_grid",
    "as_predictor",
    "predict_chunks",
    "predict_images",
    "predict_volume_slab",
    "predict_slab_file",
    "MODES",
    "WholeSliceLayout",
    "whole_slice_layout",
    "PredictionPlan",
    "plan_prediction",
    "probabilities_to_uint8",
    "chunk_slices_for",
    "figure_positions",
    "prediction_figure",
    "DEFAULT_CLASS_COLORS",
]
