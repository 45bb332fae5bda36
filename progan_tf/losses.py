"""WGAN-GP losses with ProGAN's drift term, per sample (callers take the mean).

The weights and the penalty's target come from a `LossConfig` (progan_tf.config), their one place.
"""

import tensorflow as tf
from keras import ops


def gradient_norms_at_mix(critic, reals, fakes, mix, config, final_resolution, loss_scale):
    """Per-sample norms of the critic's input gradient at `reals + mix * (fakes - reals)`.

    Call it inside the tape of the critic's loss: the penalty's gradient flows through this
    gradient (a second-order gradient). The critic's summed scores are multiplied by `loss_scale`
    before the gradient and the gradient divided by it after, so a float16 critic's small input
    gradients do not underflow. With `config.gp_reference_scaling` each norm is divided by
    `final_resolution / R`: the norm the reference code measures on nearest-upscaled
    full-resolution inputs.

    Args:
        critic: Callable `critic(images, training=True)` -> (N, 1) scores.
        reals: (N, R, R, C) float32 real images (R static).
        fakes: Same shape, float32 generated images.
        mix: (N, 1, 1, 1) interpolation weights in [0, 1] (0: the reals).
        config: A `LossConfig`.
        final_resolution: The networks' largest resolution.
        loss_scale: Scalar loss scale (1 without mixed precision).

    Returns:
        (N,) float32 tensor.

    Example:
        >>> norms = gradient_norms_at_mix(d_model, reals, fakes, mix, LossConfig(), 1024, 1.0)
    """
    divisor = final_resolution / reals.shape[1] if config.gp_reference_scaling else 1.0
    mixed = reals + mix * (fakes - reals)
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        mixed_scores = tf.cast(critic(mixed, training=True), tf.float32)
        scaled_mixed_sum = tf.reduce_sum(mixed_scores) * loss_scale
    mixed_grads = tf.cast(tape.gradient(scaled_mixed_sum, mixed), tf.float32) / loss_scale
    return tf.sqrt(tf.reduce_sum(tf.square(mixed_grads), axis=[1, 2, 3])) / divisor


def discriminator_loss(real_scores, fake_scores, gradient_norms, config):
    """Per-sample critic loss `D(fake) - D(real) + gp + drift`.

    Args:
        real_scores: (N,) or (N, 1) critic outputs on real images.
        fake_scores: Same shape, on generated images.
        gradient_norms: (N,) norms of the critic's gradient at the interpolated images
            (`gradient_norms_at_mix`).
        config: A `LossConfig`: the penalty `gp_weight * (norm - gp_target)**2 / gp_target**2`
            and the drift `drift_weight * D(real)**2`, which keeps the critic's output near zero.

    Returns:
        (N,) float32 tensor.
    """
    real_scores = ops.reshape(ops.cast(real_scores, "float32"), (-1,))
    fake_scores = ops.reshape(ops.cast(fake_scores, "float32"), (-1,))
    penalty = ops.square(gradient_norms - config.gp_target) / (config.gp_target**2)
    return fake_scores - real_scores + config.gp_weight * penalty + config.drift_weight * ops.square(real_scores)


def generator_loss(fake_scores):
    """Per-sample generator loss `-D(G(z))`, (N,) float32."""
    return -ops.reshape(ops.cast(fake_scores, "float32"), (-1,))
