"""Blended prediction: window, seams, TTA, slab invariance, figure (tomoflow.predict)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import windows

from tomoflow.errors import InputError
from tomoflow.predict import (
    chunk_slices_for,
    figure_positions,
    patch_grid,
    plan_prediction,
    predict_chunks,
    predict_images,
    predict_slab_file,
    predict_volume_slab,
    prediction_figure,
    probabilities_to_uint8,
    spline_window_1d,
    spline_window_2d,
    whole_slice_layout,
)
from tomoflow.slabs import slab_ranges


def identity(batch: np.ndarray) -> np.ndarray:
    return batch.copy()


# --------------------------------------------------------------------------- window
@pytest.mark.parametrize("m", [4, 6, 16, 30, 128])
def test_window_matches_reference_formula_and_sums_to_constant(m: int) -> None:
    # Reference (Smoothly-Blend-Image-Patches) built from scipy's triangle, index-based quarters.
    tri = windows.triang(m)
    q = int(m / 4)
    outer = (np.abs(2 * tri) ** 2) / 2
    outer[q:-q] = 0
    inner = 1 - (np.abs(2 * (tri - 1)) ** 2) / 2
    inner[:q] = 0
    inner[-q:] = 0
    ref = inner + outer
    ref = ref / ref.mean()
    w = spline_window_1d(m)
    if m % 4 == 0:  # there the reference's index quarters coincide with t < 1/2
        np.testing.assert_allclose(w, ref, rtol=0, atol=1e-12)
    # hand values: t = 1/m at the edge -> 2/m^2, mean exactly 1/2 -> divided: 4/m^2
    assert w[0] == pytest.approx(4.0 / m**2, rel=1e-12)
    assert w.mean() == pytest.approx(1.0, abs=1e-12)
    # 50 % overlap: the two shifted halves sum to 2 everywhere
    np.testing.assert_allclose(w[: m // 2] + w[m // 2 :], 2.0, rtol=0, atol=1e-12)


def test_grid_weights_sum_to_four_on_every_original_pixel() -> None:
    for shape, patch in [((37, 53), (16, 16)), ((1024, 512), (128, 128)), ((5, 7), (8, 12)), ((1, 1), (4, 4))]:
        g = patch_grid(shape, patch)
        win = spline_window_2d(patch)
        total = np.zeros(g.padded_shape)
        for y in g.origins_y:
            for x in g.origins_x:
                total[y : y + patch[0], x : x + patch[1]] += win
        np.testing.assert_allclose(total[g.crop()], 4.0, rtol=0, atol=1e-12)
        # origins every half patch, the last patch ends exactly at the padded border
        assert g.origins_y[-1] + patch[0] == g.padded_shape[0]
        assert g.origins_x[-1] + patch[1] == g.padded_shape[1]
    g = patch_grid((1024, 512), 128)
    assert (len(g.origins_y), len(g.origins_x)) == (17, 9)  # (1024+128-128)/64+1, (512+128-128)/64+1


def test_odd_patch_size_is_refused() -> None:
    with pytest.raises(InputError, match="patch_size"):
        patch_grid((32, 32), (15, 16))


# --------------------------------------------------------------------------- seams
@pytest.mark.parametrize(
    "shape, patch, tta",
    [((3, 37, 53), 16, False), ((2, 64, 32), 16, False), ((2, 40, 24), (8, 12), True), ((2, 21, 30), 8, True), ((1, 3, 2), 8, False)],
)
def test_identity_model_reproduces_input(shape, patch, tta) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, shape).astype(np.float32)
    out = predict_images(identity, images, patch_size=patch, batch_size=5, tta=tta)
    assert out.shape == shape + (1,) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], images, rtol=0, atol=1e-6)


def test_identity_keras_model_reproduces_input() -> None:
    keras = pytest.importorskip("keras")
    inp = keras.Input((16, 16, 1))
    out = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")(inp)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 2, (2, 30, 45)).astype(np.float32)  # non-square, not a multiple of 16
    got = predict_images(model, images, patch_size=16, batch_size=4)
    np.testing.assert_allclose(got[..., 0], images, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="patch_size"):
        predict_images(model, images, patch_size=32)


def _constant_per_patch(batch: np.ndarray) -> np.ndarray:
    """A 'model' whose output is a different constant for every patch (pseudo-random from content)."""
    c = np.modf(np.abs(np.sin(batch.sum(axis=(1, 2, 3), dtype=np.float64) * 12.9898) * 43758.5453))[0]
    return np.broadcast_to(c[:, None, None, None], batch.shape).astype(np.float32)


def test_patch_dependent_model_has_no_step_at_patch_borders() -> None:
    m = 16
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (1, 70, 90)).astype(np.float32)
    out = predict_images(_constant_per_patch, images, patch_size=m, batch_size=7)[0, ..., 0]
    # 1-D normalised weights are w/2; the largest change between neighbouring pixels, including the
    # drop of a window's edge value to 0, bounds any step of the blend (times the spread of constants).
    w = spline_window_1d(m) / 2
    max_dw = np.abs(np.diff(np.concatenate([[0.0], w, [0.0]]))).max()
    assert max_dw == pytest.approx(4.0 / m - 4.0 / m**2, rel=1e-9)  # hand: 1 - (1 - 2/m)^2 across t = 1/2
    step_x = np.abs(np.diff(out, axis=1)).max()
    step_y = np.abs(np.diff(out, axis=0)).max()
    assert max(step_x, step_y) <= max_dw + 1e-6
    # the same constants stitched without blending (non-overlapping tiles) do have steps: the check bites
    g = patch_grid(images.shape[1:], m)
    padded = np.pad(images[0], g.pad, mode="reflect")
    hard = np.zeros(g.padded_shape, dtype=np.float32)
    for y in g.origins_y[::2]:
        for x in g.origins_x[::2]:
            hard[y : y + m, x : x + m] = _constant_per_patch(padded[None, y : y + m, x : x + m, None])[0, 0, 0, 0]
    hard = hard[g.crop()]
    assert np.abs(np.diff(hard, axis=1)).max() > 2 * max_dw


def test_matches_reference_algorithm_where_it_works() -> None:
    """Square image, multiple of the step: the reference's pad/tile/sum/÷4 gives the same result."""
    m = 16
    kernel = np.random.default_rng(3).normal(size=(m, m)).astype(np.float32)

    def model(batch: np.ndarray) -> np.ndarray:  # position-within-patch dependent, 2 channels
        return np.concatenate([batch * kernel[None, :, :, None], batch**2], axis=-1)

    img = np.random.default_rng(4).uniform(0, 1, (48, 48)).astype(np.float32)
    pad = m // 2
    padded = np.pad(img, pad, mode="reflect")
    win = spline_window_2d(m)
    acc = np.zeros(padded.shape + (2,))
    for y in range(0, padded.shape[0] - m + 1, m // 2):
        for x in range(0, padded.shape[1] - m + 1, m // 2):
            acc[y : y + m, x : x + m] += model(padded[None, y : y + m, x : x + m, None])[0] * win[..., None]
    ref = (acc / 4.0)[pad:-pad, pad:-pad]
    got = predict_images(model, img[None], patch_size=m, batch_size=3)[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


def test_tta_averages_the_eight_rotations_and_mirrors() -> None:
    m = 12
    r = np.random.default_rng(5).uniform(0.5, 1.5, (m, m)).astype(np.float32)

    def model(batch: np.ndarray) -> np.ndarray:  # multiplies by a fixed, non-symmetric map
        return batch * r[None, :, :, None]

    # TTA of x*r equals x * (mean of r over the dihedral group), computed here by hand
    group = [np.rot90(r, k) for k in range(4)] + [np.rot90(r[:, ::-1], k) for k in range(4)]
    r_sym = np.mean(group, axis=0)
    assert not np.allclose(r_sym, r)

    def symmetric(batch: np.ndarray) -> np.ndarray:
        return batch * r_sym[None, :, :, None]

    images = np.random.default_rng(6).uniform(0, 1, (2, 25, 31)).astype(np.float32)
    got = predict_images(model, images, patch_size=m, batch_size=4, tta=True)
    want = predict_images(symmetric, images, patch_size=m, batch_size=4, tta=False)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    plain = predict_images(model, images, patch_size=m, batch_size=4, tta=False)
    assert np.abs(plain - want).max() > 1e-2


# --------------------------------------------------------------------------- slabs and batching
@pytest.fixture(scope="module")
def conv_model():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inp)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(x)
    return keras.Model(inp, out)


def test_same_prediction_in_one_slab_or_several(conv_model) -> None:
    rng = np.random.default_rng(7)
    vol = rng.normal(size=(9, 20, 36)).astype(np.float32) * 2
    ref = predict_images(conv_model, vol, patch_size=16, batch_size=4)
    assert ref.shape == (9, 20, 36, 3)
    np.testing.assert_allclose(ref.sum(-1), 1.0, atol=1e-5)
    lab1, p1 = predict_volume_slab(conv_model, vol, 0, 9, patch_size=16, batch_size=4, return_probabilities=True)
    parts = [
        predict_volume_slab(
            conv_model, lambda a, b: vol[a:b], s0, s1, patch_size=16, batch_size=4, return_probabilities=True, chunk_slices=2
        )
        for s0, s1 in slab_ranges(9, 4)
    ]
    lab4 = np.concatenate([p[0] for p in parts])
    p4 = np.concatenate([p[1] for p in parts])
    assert lab1.dtype == np.uint8 and lab1.shape == (9, 20, 36)
    np.testing.assert_array_equal(lab1, np.argmax(ref, axis=-1))
    np.testing.assert_array_equal(lab4, lab1)
    assert np.abs(p4.astype(int) - p1.astype(int)).max() <= 1
    assert len(np.unique(lab1)) > 1  # the check is not on a constant prediction


def test_batch_and_chunk_size_do_not_change_the_result(conv_model) -> None:
    vol = np.random.default_rng(8).normal(size=(5, 17, 23)).astype(np.float32)
    a = predict_images(conv_model, vol, patch_size=16, batch_size=1)
    chunks = list(predict_chunks(conv_model, vol, 0, 5, patch_size=16, batch_size=7, chunk_slices=2))
    assert [(c[0], c[1]) for c in chunks] == [(0, 2), (2, 4), (4, 5)]
    b = np.concatenate([c[2] for c in chunks])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_chunk_size_fills_whole_batches_and_respects_the_budget() -> None:
    demo = patch_grid((128, 256), 128)  # 3 x 5 = 15 patches/slice -> 8 slices = 120 = 15 batches of 8
    assert demo.n_patches == 15 and chunk_slices_for(demo, 8) == 8
    paper = patch_grid((1024, 512), 128)  # 153 patches/slice, 1152 x 640 padded
    assert chunk_slices_for(paper, 8) == 8
    assert chunk_slices_for(paper, 8, max_chunk_mb=100) == int(100 * 2**20 // (1152 * 640 * 28))  # = 5
    assert chunk_slices_for(patch_grid((40, 72), 32), 8) == 1  # 24 patches: 3 full batches


def test_probabilities_to_uint8_hand_values() -> None:
    got = probabilities_to_uint8(np.array([0.0, 1.0, 0.5, 0.2, 1.2, -0.1]))
    np.testing.assert_array_equal(got, [0, 255, 128, 51, 255, 0])  # rint(127.5)=128 (half to even: 128)


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="NaN"):
        predict_images(identity, np.full((1, 8, 8), np.nan, np.float32), patch_size=8)
    with pytest.raises(InputError, match="stack"):
        predict_images(identity, np.zeros((8, 8), np.float32), patch_size=8)
    with pytest.raises(InputError, match="returned shape"):
        predict_images(lambda b: b[:, :4], np.zeros((1, 8, 8), np.float32), patch_size=8)


# --------------------------------------------------------------------------- one pass per slice
def test_whole_slice_layout_hand_values() -> None:
    g = whole_slice_layout((37, 53), factor=8, margin_px=8)
    # 37 + 16 = 53 -> 3 more to 56: (8 + 1, 8 + 2); 53 + 16 = 69 -> 3 more to 72: (9, 10)
    assert g.pad == ((9, 10), (9, 10)) and g.padded_shape == (56, 72)
    assert whole_slice_layout((128, 256), 32, 0).pad == ((0, 0), (0, 0))
    assert whole_slice_layout((512, 1024), 32, 32).padded_shape == (576, 1088)
    assert whole_slice_layout((1, 1), 4, 0).padded_shape == (4, 4)


@pytest.mark.parametrize("shape, margin", [((3, 37, 53), 5), ((2, 64, 32), 0), ((1, 3, 2), 4), ((1, 1, 1), 3)])
def test_whole_mode_identity_reproduces_input(shape, margin) -> None:
    images = np.random.default_rng(10).uniform(0, 1, shape).astype(np.float32)
    out = predict_images(identity, images, patch_size=8, batch_size=2, mode="whole", margin_px=margin)
    assert out.shape == shape + (1,)
    np.testing.assert_allclose(out[..., 0], images, rtol=0, atol=0)


def test_whole_mode_tta_hand_formula() -> None:
    """f(x) = x * column index (in the frame it is given): the 8-fold mean is x * (H + W - 2) / 4."""

    def column_ramp(batch: np.ndarray) -> np.ndarray:
        return batch * np.arange(batch.shape[2], dtype=np.float32)[None, None, :, None]

    images = np.random.default_rng(11).uniform(1, 2, (2, 6, 10)).astype(np.float32)
    got = predict_images(column_ramp, images, patch_size=8, mode="whole", margin_px=0, tta=True)[..., 0]
    np.testing.assert_allclose(got, images * (6 + 10 - 2) / 4, rtol=1e-6)
    plain = predict_images(column_ramp, images, patch_size=8, mode="whole", margin_px=0)[..., 0]
    np.testing.assert_allclose(plain, images * np.arange(10)[None, None, :], rtol=1e-6)


def _pointwise_model(mean: float, variance: float):
    """Normalization (fixed statistics) + two 1x1 convolutions: a per-pixel model with known weights."""
    keras = pytest.importorskip("keras")
    inp = keras.Input((None, None, 1))
    x = keras.layers.Normalization(mean=mean, variance=variance)(inp)
    x = keras.layers.Conv2D(4, 1, activation="tanh", kernel_initializer=keras.initializers.RandomNormal(seed=1),
                            bias_initializer=keras.initializers.RandomNormal(seed=2))(x)
    out = keras.layers.Conv2D(3, 1, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(seed=3))(x)
    return keras.Model(inp, out)


def test_normalisation_is_the_same_for_whole_slices_and_patches() -> None:
    model = _pointwise_model(5.0, 4.0)
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.get_weights()[-4:])
    rng = np.random.default_rng(12)
    # two slices of very different intensity statistics in one batch: no per-input statistics may leak
    vol = np.stack([rng.normal(5, 2, (40, 72)), rng.normal(300, 50, (40, 72))]).astype(np.float32)
    h = np.tanh(((vol[..., None] - 5.0) / 2.0) @ w1.reshape(1, 4) + b1)
    z = h @ w2.reshape(4, 3) + b2
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    whole = predict_images(model, vol, patch_size=16, batch_size=2, mode="whole")
    blended = predict_images(model, vol, patch_size=16, batch_size=4, mode="blended")
    np.testing.assert_allclose(whole, want, rtol=0, atol=2e-6)
    np.testing.assert_allclose(blended, want, rtol=0, atol=2e-6)
    assert plan_prediction(model, (40, 72)).mode == "whole"


@pytest.fixture(scope="module")
def small_unet():
    pytest.importorskip("keras")
    import keras

    from tomoflow.unet import build_unet

    keras.utils.set_random_seed(3)
    return build_unet(depth=3, base_filters=2, n_classes=3, mean=1.0, variance=4.0)


def test_whole_mode_equals_model_on_hand_padded_slice(small_unet) -> None:
    keras = pytest.importorskip("keras")
    vol = np.random.default_rng(13).normal(1, 2, (3, 37, 53)).astype(np.float32)
    got = predict_images(small_unet, vol, patch_size=16, batch_size=2, mode="whole")
    # factor 4, margin 4: 37 + 8 = 45 -> 3 more (4 + 1, 4 + 2); 53 + 8 = 61 -> 3 more (5, 6)
    padded = np.pad(vol, ((0, 0), (5, 6), (5, 6)), mode="reflect")[..., None]
    want = keras.ops.convert_to_numpy(small_unet(padded))[:, 5:42, 5:58]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert len(np.unique(np.argmax(got, -1))) > 1


def test_whole_mode_slab_and_batch_invariance(small_unet) -> None:
    vol = np.random.default_rng(14).normal(1, 2, (7, 24, 40)).astype(np.float32)
    lab1, p1 = predict_volume_slab(small_unet, vol, 0, 7, patch_size=16, batch_size=1, mode="whole", return_probabilities=True)
    parts = [predict_volume_slab(small_unet, lambda a, b: vol[a:b], s0, s1, patch_size=16, batch_size=3, mode="whole",
                                 return_probabilities=True) for s0, s1 in slab_ranges(7, 3)]
    assert np.abs(np.concatenate([p[1] for p in parts]).astype(int) - p1.astype(int)).max() <= 1
    assert (np.concatenate([p[0] for p in parts]) != lab1).mean() < 1e-3


def test_plan_prediction_budget_and_fallbacks(small_unet, conv_model) -> None:
    from tomoflow.unet import build_unet

    tiny = build_unet(depth=2, base_filters=2, n_classes=3)  # 21.5 floats per pixel, factor 2
    # 62 + 2*2 = 66 (a multiple of 2): 4 B * 21.5 * 66 * 66 = 374,616 B = 0.357 MiB per slice
    plan = plan_prediction(tiny, (62, 62), batch_size=8, memory_budget_mb=1.0)
    assert plan.mode == "whole" and plan.layout.padded_shape == (66, 66)
    assert plan.mb_per_slice == pytest.approx(374616 / 2**20, rel=1e-12) and plan.per_call == 2
    assert plan_prediction(tiny, (62, 62), batch_size=1, memory_budget_mb=1.0).per_call == 1
    assert plan_prediction(tiny, (62, 62), memory_budget_mb=0.3).mode == "blended"  # does not fit: fall back
    assert plan_prediction(tiny, (62, 62), memory_budget_mb=0.3, mode="whole").per_call == 1  # forced
    assert plan_prediction(tiny, (62, 62), mode="blended").mode == "blended"
    assert plan_prediction(conv_model, (40, 40)).mode == "blended"  # fixed 16x16 input
    with pytest.raises(InputError, match="predict.mode"):
        plan_prediction(conv_model, (40, 40), mode="whole")
    with pytest.raises(InputError, match="predict.mode"):
        plan_prediction(tiny, (40, 40), mode="one-pass")


def test_predict_slab_file_refuses_wrong_class_count_before_writing(tmp_path, small_unet) -> None:
    from tomoflow import io
    from tomoflow.io.models import save_model
    from tomoflow.unet import build_unet

    vol = np.random.default_rng(15).normal(1, 2, (6, 24, 40)).astype(np.float32)
    io.write_volume(tmp_path / "volume.mrc", vol, 0.5)
    classes = ["background", "support", "particles"]
    for k in (2, 4):
        model_path = tmp_path / f"unet{k}.keras"
        save_model(build_unet(depth=3, base_filters=2, n_classes=k), model_path)
        out = tmp_path / f"slab_{k}.tif"
        with pytest.raises(InputError) as err:
            predict_slab_file(str(tmp_path / "volume.mrc"), str(model_path), str(out), slab=0, n_slabs=2,
                              classes=classes, patch_size=[16, 16])
        msg = str(err.value)
        assert msg.startswith(str(model_path)) and f"{k} classes" in msg and "has 3" in msg
        assert not out.exists()
    # the right model: slab 1 of 2 = slices 3..5, the same labels as predicting the array directly
    save_model(small_unet, tmp_path / "unet3.keras")
    out = tmp_path / "slab_1.tif"
    probs = [str(tmp_path / f"p{c}.tif") for c in range(3)]
    predict_slab_file(str(tmp_path / "volume.mrc"), str(tmp_path / "unet3.keras"), str(out), probs, slab=1, n_slabs=2,
                      classes=classes, patch_size=[16, 16], tta="false", mode="whole")
    lab, vs = io.read_labels(out, 3)
    want, pwant = predict_volume_slab(small_unet, vol, 3, 6, patch_size=16, mode="whole", return_probabilities=True)
    assert vs == pytest.approx(0.5)
    np.testing.assert_array_equal(lab, want)
    np.testing.assert_array_equal(io.read_volume(probs[2])[0], pwant[..., 2])


# --------------------------------------------------------------------------- figure
def test_figure_positions_and_prediction_figure() -> None:
    assert figure_positions(702, 4) == [87, 263, 438, 614]
    assert figure_positions(3, 5) == [0, 1, 2]
    vol = np.random.default_rng(9).normal(size=(6, 20, 40)).astype(np.float32)
    lab = (vol > 0.5).astype(np.uint8) + (vol > 1.5)
    fig = prediction_figure({1: vol[1], 4: vol[4]}, lab, [1, 4], ["background", "support", "particles"], voxel_size_nm=0.4)
    axes = fig.get_axes()
    assert len(axes) == 4
    shown = axes[1].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), lab[1])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["background", "support", "particles"]
