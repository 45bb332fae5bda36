"""WGAN-GP + drift losses against hand computations, and the critic step's gradient penalty
against finite differences of the critic."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import losses
from progan_tf.config import LossConfig
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases


def test_discriminator_loss_hand_computed():
    real = np.array([1.0, -2.0], np.float32)
    fake = np.array([0.5, 3.0], np.float32)
    norms = np.array([1.5, 0.2], np.float32)
    got = np.asarray(losses.discriminator_loss(real, fake, norms, LossConfig()))
    # sample 0: 0.5 - 1 + 10 * 0.5**2 + 0.001 * 1**2 = 2.001
    # sample 1: 3 + 2 + 10 * 0.8**2 + 0.001 * 2**2 = 11.404
    np.testing.assert_allclose(got, [2.001, 11.404], rtol=1e-6)
    assert got.shape == (2,)  # per sample: the caller takes the mean


def test_discriminator_loss_accepts_column_scores():
    got = losses.discriminator_loss(
        np.array([[1.0], [-2.0]]), np.array([[0.5], [3.0]]), np.array([1.5, 0.2], np.float32), LossConfig()
    )
    np.testing.assert_allclose(np.asarray(got), [2.001, 11.404], rtol=1e-6)


def test_drift_is_on_real_scores_only():
    norms = np.ones(1, np.float32)  # no penalty
    config = LossConfig()
    base = float(losses.discriminator_loss(np.zeros(1), np.zeros(1), norms, config)[0])
    assert base == 0.0
    # A fake score enters linearly (no drift on fakes) ...
    assert float(losses.discriminator_loss(np.zeros(1), np.array([10.0]), norms, config)[0]) == pytest.approx(10.0)
    # ... a real score linearly and through 0.001 * D(real)**2.
    assert float(losses.discriminator_loss(np.array([10.0]), np.zeros(1), norms, config)[0]) == pytest.approx(
        -10.0 + 0.1
    )
    strong_drift = LossConfig(drift_weight=0.5)
    assert float(losses.discriminator_loss(np.array([10.0]), np.zeros(1), norms, strong_drift)[0]) == pytest.approx(
        40.0
    )


def test_gradient_penalty_target_normalisation():
    # (norm - target)**2 / target**2 with target 2: norm 3 -> 0.25, norm 0 -> 1.
    got = losses.discriminator_loss(
        np.zeros(2),
        np.zeros(2),
        np.array([3.0, 0.0], np.float32),
        LossConfig(gp_weight=4.0, gp_target=2.0, drift_weight=0.0),
    )
    np.testing.assert_allclose(np.asarray(got), [1.0, 4.0], rtol=1e-6)


def test_generator_loss_hand_computed():
    got = np.asarray(losses.generator_loss(np.array([[1.5], [-2.0], [0.0]], np.float32)))
    np.testing.assert_array_equal(got, [-1.5, 2.0, -0.0])
    assert got.dtype == np.float32


def _quadratic_critic(images, training):
    """D(x) = sum(x**2) / 2 per sample, whose input gradient is x itself."""
    del training
    return tf.reduce_sum(tf.square(images), axis=[1, 2, 3])[:, None] / 2


@pytest.mark.parametrize("reference_scaling, loss_scale", [(False, 1.0), (True, 1.0), (True, 1024.0)])
def test_gradient_norms_at_mix_match_the_closed_form(reference_scaling, loss_scale):
    rng = np.random.default_rng(3)
    reals = rng.uniform(-1, 1, (5, 4, 4, 3)).astype(np.float32)
    fakes = rng.uniform(-1, 1, (5, 4, 4, 3)).astype(np.float32)
    mix = np.array([0.0, 0.25, 0.5, 0.9, 1.0], np.float32).reshape(5, 1, 1, 1)
    config = LossConfig(gp_reference_scaling=reference_scaling)
    got = losses.gradient_norms_at_mix(
        _quadratic_critic, tf.constant(reals), tf.constant(fakes), tf.constant(mix), config, 32, loss_scale
    )
    mixed = reals.astype(np.float64) + mix * (fakes - reals)
    divisor = 32 / 4 if reference_scaling else 1.0  # final / current resolution
    expected = np.linalg.norm(mixed.reshape(5, -1), axis=1) / divisor
    assert got.dtype == tf.float32 and got.shape == (5,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)


def test_gradient_norms_at_mix_carry_the_penalty_gradient_to_the_critic():
    """The penalty's gradient reaches the critic's weights through the input gradient: with
    D(x) = w * sum(x**2) / 2 the norm at x is |w| * ||x||."""
    weight = tf.Variable(3.0)
    reals = tf.constant(np.random.default_rng(4).uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        norms = losses.gradient_norms_at_mix(
            lambda x, training: weight * _quadratic_critic(x, training),
            reals,
            reals,
            tf.zeros((2, 1, 1, 1)),
            LossConfig(gp_reference_scaling=False),
            4,
            1.0,
        )
        total = tf.reduce_sum(norms)
    expected_per_weight = np.linalg.norm(np.asarray(reals).reshape(2, -1), axis=1).sum()
    assert float(total) == pytest.approx(3.0 * expected_per_weight, rel=1e-6)
    assert float(tape.gradient(total, weight)) == pytest.approx(expected_per_weight, rel=1e-6)


# --- The gradient penalty inside the critic step ---------------------------------------------

NETWORK = NetworkConfig(resolution=16, latent_size=8, fmap_base=32, fmap_max=8, mbstd_group_size=1)
BATCH = 4


def _model_at_4x4(gp_reference_scaling, source=None):
    keras.utils.set_random_seed(5)  # fixed initial weights: a reproducible test
    model = ProGAN(NETWORK, loss=LossConfig(gp_reference_scaling=gp_reference_scaling), seed=3)
    if source is not None:
        for name, network in model.networks.items():
            network.set_weights(source.networks[name].get_weights())
    schedule = ScheduleConfig(
        final_resolution=16, stabilize_kimg=1, transition_kimg=1, total_kimg=5, default_batch_size=BATCH
    )
    model.start_phase(phases(schedule)[0])
    assert model.phase.resolution == 4
    return model


def _finite_difference_norms(d_model, images, eps=1e-3):
    """||d D(x_i) / d x_i|| per sample by central differences (the critic is per-sample here:
    minibatch-stddev group 1)."""
    n, size = images.shape[0], int(np.prod(images.shape[1:]))
    flat = images.reshape(n, size).astype(np.float32)
    offsets = np.eye(size, dtype=np.float32) * eps
    plus = (flat[:, None, :] + offsets[None]).reshape((-1,) + images.shape[1:])
    minus = (flat[:, None, :] - offsets[None]).reshape((-1,) + images.shape[1:])
    scores_plus = np.asarray(d_model(plus, training=False), np.float64).reshape(n, size)
    scores_minus = np.asarray(d_model(minus, training=False), np.float64).reshape(n, size)
    gradients = (scores_plus - scores_minus) / (2 * eps)
    return np.linalg.norm(gradients, axis=1)


def _penalty_tolerance(scaled_norms, relative_norm_error=1e-2):
    """How far mean((n - 1)**2) may move when each norm is off by 1% (finite differences of a
    leaky-ReLU network in float32 are good to ~0.2% here: kinks near x bound the step size)."""
    delta = relative_norm_error * scaled_norms
    return float(np.mean(2 * np.abs(scaled_norms - 1) * delta + delta**2)) + 1e-6


def _step_with_mix_zero(model, reals, latents):
    """One critic step with interpolation weight 0, so the penalty is measured at the reals."""
    mix = tf.zeros((BATCH, 1, 1, 1))
    return {
        k: float(v) for k, v in model._discriminator_step(tf.constant(reals), tf.constant(latents), mix, BATCH).items()
    }


@pytest.mark.parametrize("reference_scaling", [False, True])
def test_critic_step_penalty_and_loss_match_finite_differences(reference_scaling):
    rng = np.random.default_rng(0)
    reals = rng.uniform(-1, 1, (BATCH, 4, 4, 3)).astype(np.float32)
    latents = rng.standard_normal((BATCH, NETWORK.latent_size)).astype(np.float32)
    model = _model_at_4x4(reference_scaling)
    # The critic's outputs and input gradients before the step updates it.
    real_scores = np.asarray(model.d_model(reals, training=False), np.float64)[:, 0]
    fake_scores = np.asarray(model.d_model(model.g_model(latents, training=False), training=False), np.float64)[:, 0]
    norms = _finite_difference_norms(model.d_model, reals)
    assert np.all(norms > 0.05)
    # With reference scaling the norm is divided by final / current resolution = 16 / 4.
    scaled = norms / (4.0 if reference_scaling else 1.0)
    expected_gp = np.mean((scaled - 1.0) ** 2)
    expected_loss = np.mean(fake_scores - real_scores + 10.0 * (scaled - 1.0) ** 2 + 0.001 * real_scores**2)

    d_before = model.discriminator.get_weights()
    stats = _step_with_mix_zero(model, reals, latents)

    tolerance = _penalty_tolerance(scaled)
    assert stats["gradient_penalty"] == pytest.approx(expected_gp, abs=tolerance)
    assert stats["d_loss"] == pytest.approx(expected_loss, abs=10 * tolerance + 1e-5)
    assert stats["real_score"] == pytest.approx(real_scores.mean(), rel=1e-5, abs=1e-6)
    assert stats["fake_score"] == pytest.approx(fake_scores.mean(), rel=1e-5, abs=1e-6)
    assert stats["d_finite"] == 1.0
    changed = [not np.array_equal(a, b) for a, b in zip(d_before, model.discriminator.get_weights())]
    assert any(changed)


def test_reference_scaling_changes_only_the_penalty_norm():
    rng = np.random.default_rng(1)
    reals = rng.uniform(-1, 1, (BATCH, 4, 4, 3)).astype(np.float32)
    latents = rng.standard_normal((BATCH, NETWORK.latent_size)).astype(np.float32)
    native = _model_at_4x4(False)
    scaled = _model_at_4x4(True, source=native)
    norms = _finite_difference_norms(native.d_model, reals)
    native_stats = _step_with_mix_zero(native, reals, latents)
    scaled_stats = _step_with_mix_zero(scaled, reals, latents)
    assert native_stats["real_score"] == scaled_stats["real_score"]
    assert native_stats["fake_score"] == scaled_stats["fake_score"]
    native_gp, scaled_gp = np.mean((norms - 1) ** 2), np.mean((norms / 4 - 1) ** 2)
    assert native_stats["gradient_penalty"] == pytest.approx(native_gp, abs=_penalty_tolerance(norms))
    assert scaled_stats["gradient_penalty"] == pytest.approx(scaled_gp, abs=_penalty_tolerance(norms / 4))
    assert abs(native_gp - scaled_gp) > 10 * (_penalty_tolerance(norms) + _penalty_tolerance(norms / 4))


def test_critic_update_uses_the_batch_mean_not_the_sum():
    """With plain SGD the update of a 4-sample step is the mean of the four 1-sample updates."""
    rng = np.random.default_rng(2)
    reals = rng.uniform(-1, 1, (BATCH, 4, 4, 3)).astype(np.float32)
    latents = rng.standard_normal((BATCH, NETWORK.latent_size)).astype(np.float32)
    source = _model_at_4x4(True)
    start = source.discriminator.get_weights()

    def update(rows):
        model = _model_at_4x4(True, source=source)
        model.d_optimizer = keras.optimizers.SGD(learning_rate=1.0)  # large steps: float32 deltas well resolved
        model.d_optimizer.build(model.d_model.trainable_weights)
        mix = tf.zeros((len(rows), 1, 1, 1))
        model._discriminator_step(tf.constant(reals[rows]), tf.constant(latents[rows]), mix, len(rows))
        return [after - before for before, after in zip(start, model.discriminator.get_weights())]

    together = update([0, 1, 2, 3])
    alone = [update([i]) for i in range(BATCH)]
    assert any(np.any(delta != 0) for delta in together)
    for index, delta in enumerate(together):
        mean = np.mean([single[index] for single in alone], axis=0)
        np.testing.assert_allclose(delta, mean, rtol=1e-3, atol=2e-6)
        assert not np.allclose(delta, BATCH * mean, rtol=1e-3, atol=2e-6) or not np.any(mean)
