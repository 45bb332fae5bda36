"""WGAN-GP losses with ProGAN's drift term, per sample (callers take the mean)."""

from keras import ops


def discriminator_loss(real_scores, fake_scores, gradient_norms, gp_weight=10.0, gp_target=1.0, drift_weight=0.001):
    """Per-sample critic loss `D(fake) - D(real) + gp + drift`.

    Args:
        real_scores: (N,) or (N, 1) critic outputs on real images.
        fake_scores: Same shape, on generated images.
        gradient_norms: (N,) norms of the critic's gradient at the interpolated images.
        gp_weight: Weight of the gradient penalty `(norm - target)**2 / target**2`.
        gp_target: Target gradient norm.
        drift_weight: Weight of `D(real)**2`, which keeps the critic's output near zero.

    Returns:
        (N,) float32 tensor.
    """
    real_scores = ops.reshape(ops.cast(real_scores, "float32"), (-1,))
    fake_scores = ops.reshape(ops.cast(fake_scores, "float32"), (-1,))
    penalty = ops.square(gradient_norms - gp_target) / (gp_target**2)
    return fake_scores - real_scores + gp_weight * penalty + drift_weight * ops.square(real_scores)


def generator_loss(fake_scores):
    """Per-sample generator loss `-D(G(z))`, (N,) float32."""
    return -ops.reshape(ops.cast(fake_scores, "float32"), (-1,))
