"""Network tests: paper parameter counts, gains, fade semantics, shared weights, saving."""

import math

import keras
import numpy as np
import pytest

from progan_tf.errors import UserInputError
from progan_tf.layers import EqualizedConv2D
from progan_tf.networks import GrowingDiscriminator, GrowingGenerator, NetworkConfig

SMALL = NetworkConfig(resolution=32, latent_size=16, fmap_base=128, fmap_max=32)
SMALL_8 = NetworkConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=16)
rng = np.random.default_rng(1)


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


def small_networks(**overrides):
    config = NetworkConfig(**{**SMALL.__dict__, **overrides})
    return GrowingGenerator(config).build_all(), GrowingDiscriminator(config).build_all()


def randomize_biases(network):
    # Biases start at zero; random ones make the equality checks below sensitive to them too.
    for weight in network.trainable_weights:
        if weight.name == "bias":
            weight.assign(rng.normal(size=weight.shape).astype("float32"))


def test_parameter_counts_at_1024_match_the_paper():
    config = NetworkConfig()
    assert GrowingGenerator(config).build_all().count_params() == 23_079_115
    assert GrowingDiscriminator(config).build_all().count_params() == 23_087_249


def test_feature_map_widths_follow_nf():
    config = NetworkConfig()
    widths = {2**r: config.num_features(r - 1) for r in range(2, 11)}
    assert widths == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def test_special_equalized_gains():
    config = NetworkConfig(resolution=16)
    g = GrowingGenerator(config).build_all()
    d = GrowingDiscriminator(config).build_all()
    first_dense = g.blocks["4x4"][0]
    assert first_dense.scale == pytest.approx(math.sqrt(2) / 4 / math.sqrt(512))
    for res in (4, 8, 16):
        assert g.to_rgb[f"{res}x{res}"].scale == pytest.approx(1 / math.sqrt(512))
    last_dense = d.blocks["4x4"][-1]
    assert last_dense.units == 1 and last_dense.scale == pytest.approx(1 / math.sqrt(512))
    hidden_conv = g.blocks["8x8"][1]
    assert hidden_conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(9 * 512))


def test_no_tanh_generator_output_is_linear():
    g, _ = small_networks()
    to_rgb = g.to_rgb["8x8"]
    to_rgb.bias.assign(np.full(3, 50.0, "float32"))
    images = as_numpy(g.model(8)(rng.normal(size=(2, 16)).astype("float32")))
    assert images.min() > 10.0  # a tanh would clamp to 1


def test_generator_fade_endpoints():
    g, _ = small_networks()
    randomize_biases(g)
    z = rng.normal(size=(3, 16)).astype("float32")
    fade_model = g.model(16, fade_in=True)
    g.set_alpha(1.0)
    np.testing.assert_allclose(as_numpy(fade_model(z)), as_numpy(g.model(16)(z)), rtol=1e-5, atol=1e-5)
    g.set_alpha(0.0)
    old = as_numpy(g.model(8)(z)).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(as_numpy(fade_model(z)), old, rtol=1e-5, atol=1e-5)
    g.set_alpha(0.25)
    new = as_numpy(g.model(16)(z))
    np.testing.assert_allclose(as_numpy(fade_model(z)), 0.75 * old + 0.25 * new, rtol=1e-4, atol=1e-4)


def test_discriminator_fade_endpoints():
    _, d = small_networks()
    randomize_biases(d)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    fade_model = d.model(16, fade_in=True)
    d.set_alpha(1.0)
    np.testing.assert_allclose(as_numpy(fade_model(x)), as_numpy(d.model(16)(x)), rtol=1e-4, atol=1e-4)
    d.set_alpha(0.0)
    pooled = x.reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(as_numpy(fade_model(x)), as_numpy(d.model(8)(pooled)), rtol=1e-4, atol=1e-4)


def test_stage_models_share_layers_and_weights():
    g, d = small_networks()
    z = rng.normal(size=(2, 16)).astype("float32")
    model_8, model_16_fade = g.model(8), g.model(16, fade_in=True)
    assert g.model(8) is model_8  # cached
    shared = {id(w) for w in model_8.weights} & {id(w) for w in model_16_fade.weights}
    assert {id(w) for w in g.to_rgb["8x8"].weights} <= shared
    assert {id(w) for w in g.blocks["4x4"][0].weights} <= shared
    before = as_numpy(model_16_fade(z))
    conv = g.blocks["8x8"][1]  # inside the 8x8 block, feeding the old (alpha=0) path
    conv.kernel.assign(rng.normal(size=conv.kernel.shape).astype("float32"))
    assert not np.allclose(as_numpy(model_16_fade(z)), before)
    assert {id(w) for w in d.model(8).weights} <= {id(w) for w in d.weights}


def test_weights_cover_all_resolutions_and_round_trip():
    g, _ = small_networks()
    h, _ = small_networks()
    h.set_weights(g.get_weights())
    z = rng.normal(size=(2, 16)).astype("float32")
    for res in SMALL.resolutions:
        np.testing.assert_array_equal(as_numpy(h.model(res)(z)), as_numpy(g.model(res)(z)))


def test_weights_list_each_resolution_in_turn_then_the_fade():
    # The order of the v1 `.npz` checkpoints (arrays numbered in this order) and of `get_weights`.
    g, d = GrowingGenerator(SMALL_8).build_all(), GrowingDiscriminator(SMALL_8).build_all()
    assert [w.path for w in g.weights] == [
        *("g_4x4_dense/kernel", "g_4x4_dense_bias/bias", "g_4x4_conv1/kernel", "g_4x4_conv1/bias"),
        *("g_to_rgb_4x4/kernel", "g_to_rgb_4x4/bias"),
        *("g_8x8_conv0/kernel", "g_8x8_conv0/bias", "g_8x8_conv1/kernel", "g_8x8_conv1/bias"),
        *("g_to_rgb_8x8/kernel", "g_to_rgb_8x8/bias", "generator_fade/alpha"),
    ]
    assert [w.path for w in d.weights] == [
        *("d_from_rgb_4x4/kernel", "d_from_rgb_4x4/bias", "d_4x4_conv/kernel", "d_4x4_conv/bias"),
        *("d_4x4_dense0/kernel", "d_4x4_dense0/bias", "d_4x4_dense1/kernel", "d_4x4_dense1/bias"),
        *("d_from_rgb_8x8/kernel", "d_from_rgb_8x8/bias", "d_8x8_conv0/kernel", "d_8x8_conv0/bias"),
        *("d_8x8_conv1/kernel", "d_8x8_conv1/bias", "discriminator_fade/alpha"),
    ]
    assert [w.path for w in g.trainable_weights] == [w.path for w in g.weights[:-1]]


def test_networks_are_keras_layers_with_a_config_round_trip():
    g = GrowingGenerator(SMALL_8, name="ema_generator")
    assert isinstance(g, keras.layers.Layer) and g.name == "ema_generator"
    again = GrowingGenerator.from_config(g.get_config()).build_all()
    assert again.config == SMALL_8 and again.name == "ema_generator"
    assert [w.shape for w in again.weights] == [w.shape for w in g.build_all().weights]


def test_fused_generator_equals_plain_generator():
    plain, _ = small_networks(fused_resample="never")
    fused, _ = small_networks(fused_resample="always")
    randomize_biases(plain)
    fused.set_weights(plain.get_weights())
    z = rng.normal(size=(4, 16)).astype("float32")
    np.testing.assert_allclose(as_numpy(fused.model(32)(z)), as_numpy(plain.model(32)(z)), rtol=1e-4, atol=1e-4)


def test_fused_discriminator_pools_before_the_activation():
    # Fusing conv + pool moves the pool before the leaky ReLU (as in the reference code), so the
    # fused critic equals the plain layers applied as conv0, lrelu, conv1, pool, lrelu.
    _, plain = small_networks(fused_resample="never")
    _, fused = small_networks(fused_resample="always")
    randomize_biases(plain)
    fused.set_weights(plain.get_weights())
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    h = x
    for layer in plain.from_rgb["32x32"]:
        h = layer(h)
    for res in (32, 16, 8):
        conv0, lrelu0, conv1, lrelu1, pool = plain.blocks[f"{res}x{res}"]
        h = lrelu1(pool(conv1(lrelu0(conv0(h)))))
    for layer in plain.blocks["4x4"]:
        h = layer(h)
    np.testing.assert_allclose(as_numpy(fused.model(32)(x)), as_numpy(h), rtol=1e-4, atol=1e-4)


def _critic_block_kinds(discriminator, res):
    kinds = []
    for layer in discriminator.blocks[f"{res}x{res}"]:
        kind = type(layer).__name__
        if isinstance(layer, EqualizedConv2D) and layer.resample:
            kind += f"[{layer.resample}]"
        kinds.append(kind)
    return kinds


def test_default_critic_is_the_papers_unfused_form_at_every_resolution():
    # The paper's critic block: conv, LReLU, conv, LReLU, 2x2 average pool, at 8x8 .. 128x128 (the
    # old "auto" fused it from 128 px: a different function). The default generator still fuses
    # from 128 px, which computes the same function as upsample + conv.
    keras.utils.set_random_seed(12)
    kwargs = dict(resolution=128, latent_size=8, fmap_base=256, fmap_max=8)
    paper = NetworkConfig(**kwargs)
    assert paper.fused_resample == "auto"
    g_paper, d_paper = GrowingGenerator(paper).build_all(), GrowingDiscriminator(paper).build_all()
    plain = ["EqualizedConv2D", "LeakyReLU", "EqualizedConv2D", "LeakyReLU", "AveragePooling2D"]
    for res in (8, 16, 32, 64, 128):
        assert _critic_block_kinds(d_paper, res) == plain
    assert g_paper.blocks["128x128"][0].resample == "up" and g_paper.blocks["64x64"][1].resample is None

    never = NetworkConfig(**kwargs, fused_resample="never")
    tf1 = NetworkConfig(**kwargs, fused_resample="always")
    g_never, d_never = GrowingGenerator(never).build_all(), GrowingDiscriminator(never).build_all()
    d_tf1 = GrowingDiscriminator(tf1).build_all()
    for res in (8, 128):
        assert _critic_block_kinds(d_tf1, res) == ["EqualizedConv2D", "LeakyReLU", "EqualizedConv2D[down]", "LeakyReLU"]
    local_rng = np.random.default_rng(12)
    for network in (g_paper, d_paper):
        for weight in network.trainable_weights:
            if weight.name == "bias":
                weight.assign(local_rng.normal(size=weight.shape).astype("float32"))
    g_never.set_weights(g_paper.get_weights())
    d_never.set_weights(d_paper.get_weights())
    d_tf1.set_weights(d_paper.get_weights())
    z = local_rng.normal(size=(4, 8)).astype("float32")
    x = local_rng.normal(size=(4, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(as_numpy(g_paper.model(128)(z)), as_numpy(g_never.model(128)(z)), rtol=1e-4, atol=1e-4)
    paper_scores = as_numpy(d_paper.model(128)(x))
    np.testing.assert_allclose(paper_scores, as_numpy(d_never.model(128)(x)), rtol=1e-5, atol=1e-5)
    # The TF1 critic is another function of the same weights (pool before the activation): far
    # more than the 1e-5 the equal forms agree to.
    assert np.max(np.abs(paper_scores - as_numpy(d_tf1.model(128)(x)))) > 1e-3


def test_stage_model_keras_file_round_trip(tmp_path):
    g, d = small_networks()
    randomize_biases(g)
    g.set_alpha(0.3)
    d.set_alpha(0.6)
    z = rng.normal(size=(2, 16)).astype("float32")
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    for model, inputs in ((g.model(16, fade_in=True), z), (d.model(16, fade_in=True), x)):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        np.testing.assert_array_equal(as_numpy(restored(inputs)), as_numpy(model(inputs)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution": 100}, "resolution=100"),
        ({"resolution": 2048}, "resolution=2048"),
        ({"num_channels": 2}, "num_channels=2"),
        ({"fused_resample": "yes"}, "fused_resample='yes'"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(UserInputError, match=f"Received: {message}"):
        NetworkConfig(**kwargs)


def test_stage_requests_are_validated():
    g, _ = small_networks()
    with pytest.raises(UserInputError, match="resolution=64"):
        g.model(64)
    with pytest.raises(UserInputError, match="nothing to fade in at 4x4"):
        g.model(4, fade_in=True)


def test_grayscale_networks():
    g, d = small_networks(num_channels=1)
    images = g.model(8)(rng.normal(size=(4, 16)).astype("float32"))
    assert images.shape == (4, 8, 8, 1)
    assert d.model(8)(images).shape == (4, 1)
