"""Layer tests: shapes, NumPy references, serialization. Run under the TF and the JAX backend."""

import math

import keras
import numpy as np
import pytest

from progan_tf.layers import (
    ChannelBias,
    EqualizedConv2D,
    EqualizedDense,
    MinibatchStdDev,
    PixelNormalization,
    WeightedSum,
)

rng = np.random.default_rng(0)


def numpy_conv2d_same(x, kernel, bias):
    """Direct stride-1 'same' correlation, NHWC x HWIO."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[-1]), np.float64)
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nhwc,co->nhwo", padded[:, dy : dy + h, dx : dx + w], kernel[dy, dx])
    return out + bias


def test_equalized_dense_matches_numpy_with_runtime_he_scale():
    layer = EqualizedDense(6, gain=1.7)
    x = rng.normal(size=(3, 5)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=6).astype("float32"))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    bias = keras.ops.convert_to_numpy(layer.bias)
    expected = x @ (kernel * 1.7 / math.sqrt(5)) + bias  # bias is NOT scaled
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_equalized_weights_start_standard_normal_and_biases_zero():
    dense = EqualizedDense(512)
    dense.build((None, 512))
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    # 262144 N(0, 1) draws: the std is 1 within ~0.3%, not the 0.02/0.05 of common wrong ports.
    assert abs(kernel.std() - 1.0) < 0.01 and abs(kernel.mean()) < 0.01
    assert np.all(keras.ops.convert_to_numpy(dense.bias) == 0)
    conv = EqualizedConv2D(64, 3)
    conv.build((None, 8, 8, 128))
    assert abs(keras.ops.convert_to_numpy(conv.kernel).std() - 1.0) < 0.01
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(3 * 3 * 128))


def test_equalized_dense_without_bias_has_one_weight():
    layer = EqualizedDense(4, use_bias=False)
    layer.build((None, 3))
    assert [w.name for w in layer.weights] == ["kernel"]


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_equalized_conv2d_matches_numpy(kernel_size):
    layer = EqualizedConv2D(4, kernel_size, gain=1.0)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=4).astype("float32"))
    kernel = keras.ops.convert_to_numpy(layer.kernel) / math.sqrt(kernel_size * kernel_size * 3)
    expected = numpy_conv2d_same(x, kernel, keras.ops.convert_to_numpy(layer.bias))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("resample", ["up", "down"])
def test_fused_resample_equals_two_step_path(resample):
    x = rng.normal(size=(2, 8, 8, 5)).astype("float32")
    fused = EqualizedConv2D(7, 3, resample=resample)
    plain = EqualizedConv2D(7, 3)
    fused.build(x.shape)
    plain.build(x.shape)
    plain.kernel.assign(fused.kernel)
    bias = rng.normal(size=7).astype("float32")
    plain.bias.assign(bias)
    fused.bias.assign(bias)
    if resample == "up":
        expected = plain(keras.layers.UpSampling2D(2, interpolation="nearest")(x))
    else:
        expected = keras.layers.AveragePooling2D(2)(plain(x))
    actual = fused(x)
    assert actual.shape == expected.shape == ((2, 16, 16, 7) if resample == "up" else (2, 4, 4, 7))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: EqualizedConv2D(4, 2), "kernel_size=2"),
        (lambda: EqualizedConv2D(4, 3, resample="sideways"), "resample='sideways'"),
        (lambda: EqualizedDense(0), "units=0"),
        (lambda: MinibatchStdDev(0), "group_size=0"),
    ],
)
def test_invalid_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=f"Received: {message}"):
        make()


def test_pixel_normalization_matches_numpy():
    x = rng.normal(size=(2, 3, 3, 8)).astype("float32") * 5
    expected = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PixelNormalization()(x)), expected, rtol=1e-5)
    latents = rng.normal(size=(4, 16)).astype("float32")
    normalized = keras.ops.convert_to_numpy(PixelNormalization()(latents))
    np.testing.assert_allclose(np.sqrt(np.mean(normalized**2, axis=-1)), 1.0, rtol=1e-5)


def test_pixel_normalization_is_float32_inside_under_float16():
    # 300**2 overflows float16 (max 65504); the float32 island must keep the result finite.
    x = np.full((1, 2, 2, 4), 300.0, "float16")
    y = keras.ops.convert_to_numpy(PixelNormalization(dtype="mixed_float16")(x))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype("float32"), 1.0, rtol=1e-3)


def numpy_minibatch_stddev(x, group_size):
    n, h, w, c = x.shape
    g = min(group_size, n)
    grouped = x.reshape(g, n // g, h, w, c)  # strided: group m = samples m, m + n/g, ...
    std = np.sqrt(grouped.var(axis=0) + 1e-8)
    per_group = std.mean(axis=(1, 2, 3))
    feature = np.tile(per_group, g)[:, None, None, None] * np.ones((n, h, w, 1))
    return np.concatenate([x, feature], axis=-1)


def test_minibatch_stddev_hand_computed_strided_groups():
    # Batch 4, group size 2 -> groups {0, 2} and {1, 3}.
    x = np.zeros((4, 2, 2, 1), "float32")
    x[0], x[2] = 0.0, 2.0  # std 1 in group {0, 2}
    x[1], x[3] = 5.0, 5.0  # std sqrt(1e-8) = 1e-4 in group {1, 3}
    y = keras.ops.convert_to_numpy(MinibatchStdDev(group_size=2)(x))
    assert y.shape == (4, 2, 2, 2)
    np.testing.assert_allclose(y[..., :1], x)
    np.testing.assert_allclose(y[[0, 2], ..., 1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[[1, 3], ..., 1], 1e-4, rtol=1e-3)


@pytest.mark.parametrize("batch, group_size", [(8, 4), (4, 4), (3, 4), (6, 2), (5, 1)])
def test_minibatch_stddev_matches_numpy(batch, group_size):
    x = rng.normal(size=(batch, 4, 4, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(MinibatchStdDev(group_size=group_size)(x))
    np.testing.assert_allclose(y, numpy_minibatch_stddev(x, group_size), rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible by the minibatch-stddev group size 4. Received: batch_size=6"):
        MinibatchStdDev(group_size=4)(np.zeros((6, 4, 4, 2), "float32"))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_weighted_sum_blends_old_to_new(alpha):
    old = rng.normal(size=(2, 3)).astype("float32")
    new = rng.normal(size=(2, 3)).astype("float32")
    fade = WeightedSum()
    fade.set_alpha(alpha)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fade([old, new])), (1 - alpha) * old + alpha * new, rtol=1e-6, atol=1e-6
    )
    assert [w.trainable for w in fade.weights] == [False]


@pytest.mark.tf_only
def test_weighted_sum_alpha_changes_without_retracing():
    import tensorflow as tf

    fade = WeightedSum()
    fade.set_alpha(0.0)
    traces = []

    @tf.function
    def blend(old, new):
        traces.append(1)
        return fade([old, new])

    old, new = tf.zeros((1, 2)), tf.ones((1, 2))
    outputs = []
    for alpha in (0.0, 0.5, 1.0):
        fade.set_alpha(alpha)
        outputs.append(float(blend(old, new)[0, 0]))
    assert outputs == [0.0, 0.5, 1.0]
    assert len(traces) == 1


def test_channel_bias_adds_per_channel():
    layer = ChannelBias()
    x = np.zeros((1, 2, 2, 3), "float32")
    layer.build(x.shape)
    layer.bias.assign([1.0, 2.0, 3.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x))[0, 1, 1], [1.0, 2.0, 3.0])


LAYER_CASES = [
    (lambda: EqualizedDense(5, gain=1.0, use_bias=False), (3, 4)),
    (lambda: EqualizedConv2D(5, 3, gain=0.5, resample="up"), (2, 4, 4, 3)),
    (lambda: EqualizedConv2D(5, 3, resample="down"), (2, 4, 4, 3)),
    (lambda: PixelNormalization(epsilon=1e-6), (2, 4, 4, 3)),
    (lambda: MinibatchStdDev(group_size=2), (4, 4, 4, 3)),
    (lambda: ChannelBias(), (2, 4, 4, 3)),
]


@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_layer_serialization_round_trip(make, shape, tmp_path):
    layer = make()
    x = rng.normal(size=shape).astype("float32")
    inputs = keras.Input(shape[1:], batch_size=shape[0])
    model = keras.Model(inputs, layer(inputs))
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    path = tmp_path / "layer.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert type(restored_layer) is type(layer)
    assert restored_layer.get_config() == layer.get_config()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


def test_weighted_sum_serialization_keeps_alpha(tmp_path):
    old, new = keras.Input((3,)), keras.Input((3,))
    fade = WeightedSum()
    model = keras.Model([old, new], fade([old, new]))
    fade.set_alpha(0.25)
    model.save(tmp_path / "fade.keras")
    restored = keras.saving.load_model(tmp_path / "fade.keras")
    out = restored([np.zeros((1, 3), "float32"), np.ones((1, 3), "float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), 0.25)
