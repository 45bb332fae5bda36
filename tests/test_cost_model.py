"""The analytic FLOP count against TensorFlow's own count of the traced convolutions and matmuls."""

import pytest
import tensorflow as tf

from progan_tf import cost_model
from progan_tf.networks import GrowingDiscriminator, GrowingGenerator, NetworkConfig

pytestmark = pytest.mark.tf_only


def _tf_matmul_flops(model, input_shape):
    """FLOPs that TF's profiler registers for the Conv2D / MatMul / transposed-conv ops of a forward pass."""
    graph = tf.function(model).get_concrete_function(tf.TensorSpec(input_shape)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = (
        builder(builder.float_operation())
        .with_accounted_types(["Conv2D", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput"])
        .with_empty_output()
        .build()
    )
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


@pytest.mark.parametrize("fused_resample", ["never", "always", "auto"])
def test_forward_flops_match_tensorflows_count(fused_resample):
    config = NetworkConfig(resolution=128, latent_size=16, fmap_base=512, fmap_max=8, fused_resample=fused_resample)
    generator, discriminator = GrowingGenerator(config).build_all(), GrowingDiscriminator(config).build_all()
    for resolution in config.resolutions:
        for fade_in in (False, True) if resolution > 4 else (False,):
            g_model, d_model = generator.model(resolution, fade_in), discriminator.model(resolution, fade_in)
            assert cost_model.generator_flops(config, resolution, fade_in) == _tf_matmul_flops(g_model, (1, 16))
            assert cost_model.discriminator_flops(config, resolution, fade_in) == _tf_matmul_flops(
                d_model, (1, resolution, resolution, 3)
            )


def test_iteration_is_four_generator_and_fourteen_critic_passes_per_image():
    config = NetworkConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=16)
    g, d = cost_model.generator_flops(config, 8, True), cost_model.discriminator_flops(config, 8, True)
    assert cost_model.iteration_flops(config, 8, True, batch_size=3) == 3 * (4 * g + 14 * d)
