"""tomoflow.unet: architecture of the paper's U-Net, focal loss vs the NumPy formula, class weights, Dice."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io.models import load_model, save_model  # noqa: E402
from tomoflow.train import export_model  # noqa: E402
from tomoflow.unet import (  # noqa: E402
    ClassDice,
    build_unet,
    check_model_classes,
    class_weights_from_labels,
    count_conv_steps,
    dice_per_class,
    focal_loss,
    inspect_model,
    metric_name,
)


def _focal_numpy(y, p, alpha, gamma):
    """-(1/N) sum_i sum_c alpha_c y_ic (1 - p_ic)^gamma log p_ic over all pixels (float64)."""
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    per_pixel = -(np.asarray(alpha) * y * (1 - p) ** gamma * np.log(p)).sum(axis=-1)
    return per_pixel.mean()


def _random_case(seed, shape=(2, 8, 12, 3)):
    rng = np.random.default_rng(seed)
    y = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
    logits = rng.normal(0, 2, shape)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y, p.astype(np.float32)


def test_paper_depth_and_shapes():
    m = build_unet(depth=6, base_filters=2, n_classes=3)
    assert count_conv_steps(m) == (6, 5)
    pools = [lay for lay in m.layers if isinstance(lay, keras.layers.AveragePooling2D)]
    ups = [lay for lay in m.layers if isinstance(lay, keras.layers.Conv2DTranspose)]
    assert len(pools) == 5 and all(tuple(lay.pool_size) == (2, 2) for lay in pools)
    assert len(ups) == 5 and all(tuple(lay.strides) == (2, 2) and tuple(lay.kernel_size) == (2, 2) for lay in ups)
    # feature maps double per level down and halve per level up
    for level in range(6):
        assert m.get_layer(f"down{level}_conv2").filters == 2 * 2**level
        assert m.get_layer(f"down{level}_conv1").kernel_size == (3, 3)
    for level in range(5):
        assert m.get_layer(f"up{level}_conv2").filters == 2 * 2**level
        assert m.get_layer(f"up{level}_transpose").filters == 2 * 2**level
    # zero biases at initialisation, He-normal kernels (std sqrt(2/fan_in), truncated)
    convs = [lay for lay in m.layers if isinstance(lay, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert all(np.all(keras.ops.convert_to_numpy(lay.bias) == 0) for lay in convs)
    k = keras.ops.convert_to_numpy(m.get_layer("down5_conv2").kernel)  # fan_in = 9 * 64
    assert k.std() == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.1)
    for h, w in [(32, 32), (64, 96), (96, 160)]:  # any size divisible by 2**5
        x = np.random.default_rng(0).random((2, h, w, 1), dtype=np.float32)
        y = keras.ops.convert_to_numpy(m(x))
        assert y.shape == (2, h, w, 3)
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_parameter_count_matches_hand_count():
    base, depth = 4, 3
    m = build_unet(depth=depth, base_filters=base, n_classes=3)
    f = [base * 2**lv for lv in range(depth)]
    n, c_in = 0, 1
    for fl in f:  # two 3x3 convs per level down
        n += 9 * c_in * fl + fl + 9 * fl * fl + fl
        c_in = fl
    for lv in range(depth - 2, -1, -1):  # transpose 2x2, concat, two 3x3 convs
        n += 4 * f[lv + 1] * f[lv] + f[lv]
        n += 9 * 2 * f[lv] * f[lv] + f[lv] + 9 * f[lv] * f[lv] + f[lv]
    n += f[0] * 3 + 3  # 1x1 softmax
    n_norm = sum(int(np.prod(w.shape)) for w in m.get_layer("normalize").weights)
    assert m.count_params() - n_norm == n


def test_normalization_inside_model():
    m = build_unet(depth=2, base_filters=2, mean=100.0, variance=25.0)
    x = np.full((1, 8, 8, 1), 105.0, np.float32)
    sub = keras.Model(m.input, m.get_layer("normalize").output)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(sub(x)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        build_unet(depth=6, base_filters=2, patch_size=(128, 100))


def test_save_load_round_trip_without_custom_objects(tmp_path):
    keras.utils.set_random_seed(3)
    m = build_unet(depth=3, base_filters=2, mean=5.0, variance=4.0)
    m.compile(optimizer="adam", loss=focal_loss([0.2, 0.3, 0.5], 1.0), metrics=[ClassDice(2, "dsc_particles")])
    export_model(m, [0.2, 0.3, 0.5], 1.0, 5e-4)
    path = tmp_path / "unet.keras"
    save_model(m, path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    x = np.random.default_rng(1).normal(5, 2, (2, 16, 24, 1)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m(x)), keras.ops.convert_to_numpy(loaded(x)))
    assert isinstance(loaded.loss, keras.losses.CategoricalFocalCrossentropy)
    assert loaded.loss.alpha == pytest.approx([0.2, 0.3, 0.5]) and loaded.loss.gamma == 1.0
    assert load_model(path).count_params() == m.count_params()


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5])
def test_focal_loss_equals_numpy_formula(gamma):
    y, p = _random_case(0)
    alpha = [0.1, 0.3, 0.6]
    got = float(keras.ops.convert_to_numpy(focal_loss(alpha, gamma)(y, p)))
    assert got == pytest.approx(_focal_numpy(y, p, alpha, gamma), rel=1e-5)


def test_gamma_zero_is_weighted_cross_entropy():
    y, p = _random_case(1)
    alpha = np.array([0.2, 0.5, 0.3])
    got = float(keras.ops.convert_to_numpy(focal_loss(alpha, 0.0)(y, p)))
    weighted_ce = -(alpha[np.argmax(y, -1)] * np.log(np.clip((y * p).sum(-1), 1e-7, 1))).mean()
    assert got == pytest.approx(weighted_ce, rel=1e-5)
    # with equal weights 1 it is Keras' plain categorical cross-entropy (a peer implementation)
    plain = float(keras.ops.convert_to_numpy(keras.losses.CategoricalCrossentropy()(y, p)))
    assert float(keras.ops.convert_to_numpy(focal_loss([1, 1, 1], 0.0)(y, p))) == pytest.approx(plain, rel=1e-5)


def test_focal_loss_rejects_bad_weights():
    with pytest.raises(ValueError):
        focal_loss([0.2, float("nan"), 0.5])
    with pytest.raises(ValueError):
        focal_loss([0.2, 0.3, 0.5], gamma=-1)


def test_class_weights_hand_counts():
    labels = np.array([0] * 64 + [1] * 16 + [2] * 4)
    alpha, freq = class_weights_from_labels(labels, 3, power=0.5)
    np.testing.assert_allclose(freq, [64 / 84, 16 / 84, 4 / 84])
    w = np.sqrt(84 / np.array([64, 16, 4]))  # f^-1/2
    np.testing.assert_allclose(alpha, w / w.sum())
    np.testing.assert_allclose(alpha, [1 / 7, 2 / 7, 4 / 7])  # sqrt ratios 1 : 2 : 4
    a_default, _ = class_weights_from_labels(labels, 3)  # f^-1/4: ratios 1 : sqrt2 : 2
    np.testing.assert_allclose(a_default, np.array([1, np.sqrt(2), 2]) / (3 + np.sqrt(2)))
    a1, _ = class_weights_from_labels(labels, 3, power=1.0)
    np.testing.assert_allclose(a1, np.array([1, 4, 16]) / 21)


def test_class_weights_missing_class_warns_and_stays_finite():
    labels = np.array([0] * 30 + [1] * 10)
    with pytest.warns(UserWarning, match="particles"):
        alpha, _ = class_weights_from_labels(labels, 3, class_names=["bg", "support", "particles"])
    assert np.all(np.isfinite(alpha)) and alpha[2] == alpha[1] and alpha.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fewer than two"):
        class_weights_from_labels(np.zeros(10, int), 3)


def test_dice_metric_matches_hand_counts():
    t = np.array([[0, 1, 2, 2], [1, 1, 2, 0]])
    pr = np.array([[0, 1, 2, 0], [1, 2, 2, 2]])
    # class 2: |T|=3, |P|=4, |T∩P|=2 -> 4/7; class 1: |T|=3, |P|=2, ∩=2 -> 4/5; class 0: |T|=2, |P|=2, ∩=1 -> 1/2
    np.testing.assert_allclose(dice_per_class(t, pr, 3), [0.5, 0.8, 4 / 7])
    eye = np.eye(3, dtype=np.float32)
    for c, expect in enumerate([0.5, 0.8, 4 / 7]):
        m = ClassDice(c)
        m.update_state(eye[t[:1]], eye[pr[:1]] * 0.9 + 0.03)  # accumulates over two batches
        m.update_state(eye[t[1:]], eye[pr[1:]] * 0.9 + 0.03)
        assert float(keras.ops.convert_to_numpy(m.result())) == pytest.approx(expect, rel=1e-6)
    assert metric_name("Pt particles") == "dsc_pt_particles"


def test_inspect_model_hand_counts():
    # depth 2, 2 base filters, 3 classes: floats per input pixel of every layer output, by hand
    # full resolution: input 1 + normalize 1 + down0 conv 2+2 + up0 transpose 2 + concat 4 + up0 conv 2+2
    # + probabilities 3 = 19; half resolution (1/4 of the pixels): pool 2 + down1 conv 4+4 = 10 -> 2.5
    info = inspect_model(build_unet(depth=2, base_filters=2, n_classes=3))
    assert info.n_classes == 3 and info.factor == 2 and info.fully_convolutional
    assert info.floats_per_px == pytest.approx(21.5, rel=1e-12)
    assert not info.per_input_normalization
    paper = inspect_model(build_unet(depth=6, base_filters=8, n_classes=4))
    assert paper.factor == 32 and paper.n_classes == 4
    fixed = inspect_model(build_unet(depth=3, base_filters=2, patch_size=(16, 32)))
    assert fixed.input_hw == (16, 32) and not fixed.fully_convolutional and fixed.factor == 4


def test_inspect_model_flags_per_input_normalisation():
    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.GroupNormalization(groups=2)(x)  # statistics over each image's pixels
    out = keras.layers.Conv2D(2, 1, activation="softmax")(x)
    assert inspect_model(keras.Model(inp, out)).per_input_normalization
    # LayerNormalization over channels only is per pixel: the same for a patch and a whole slice
    y = keras.layers.LayerNormalization(axis=-1)(keras.layers.Conv2D(4, 1)(inp))
    assert not inspect_model(keras.Model(inp, keras.layers.Conv2D(2, 1)(y))).per_input_normalization


def test_check_model_classes_names_file_and_both_numbers():
    check_model_classes(build_unet(depth=2, base_filters=2, n_classes=3), ["a", "b", "c"], "m.keras")
    for k in (2, 4):
        with pytest.raises(InputError) as err:
            check_model_classes(build_unet(depth=2, base_filters=2, n_classes=k), ["bg", "support", "pt"], "x/unet.keras")
        msg = str(err.value)
        assert msg.startswith("x/unet.keras: ") and f"predicts {k} classes" in msg and "has 3" in msg
        assert "\n" not in msg
