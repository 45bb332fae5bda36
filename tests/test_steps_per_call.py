"""Several training iterations per compiled call: the same training as one per call, calls that
stop at every logging point, the skip streak counted across calls, and the XLA option."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import call_boundaries, distributed_step
from progan_tf.config import TrainConfig
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases

pytestmark = pytest.mark.tf_only

NETWORK = NetworkConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=16)
BATCH = 8
SCHEDULE = ScheduleConfig(
    final_resolution=8, stabilize_kimg=0.064, transition_kimg=0.064, total_kimg=0.2, default_batch_size=BATCH
)


def _model(phase_index=1, **kwargs):
    keras.utils.set_random_seed(3)
    model = ProGAN(NETWORK, seed=3, **kwargs)
    phase = phases(SCHEDULE)[phase_index]  # 8x8 fade: alpha moves every iteration
    model.images_shown.assign(phase.start_images)
    model.start_phase(phase)
    return model, phase


def _reals_iterator(resolution, count):
    rng = np.random.default_rng(5)
    images = rng.uniform(-1, 1, (count, BATCH, resolution, resolution, 3)).astype(np.float32)
    return iter(tf.data.Dataset.from_tensor_slices(images))


def _state(model):
    values = [np.array(v.numpy()) for network in model.networks.values() for v in network.weights]
    return values + [np.array(v.numpy()) for v in model.d_optimizer.variables + model.g_optimizer.variables]


def test_five_iterations_in_one_call_equal_five_calls_of_one():
    single, phase = _model()
    step = single.make_distributed_step(tf.distribute.get_strategy())
    iterator = _reals_iterator(phase.resolution, 5)
    per_call = [step(iterator)["sums"] for _ in range(5)]

    multi, _ = _model()
    call = multi.make_distributed_step(tf.distribute.get_strategy())(_reals_iterator(phase.resolution, 5), 5)

    for a, b in zip(_state(single), _state(multi)):
        np.testing.assert_array_equal(a, b)
    assert int(multi.images_shown.numpy()) == phase.start_images + 5 * BATCH
    for name, total in call["sums"].items():
        expected = sum(float(stats[name]) for stats in per_call)
        assert float(total) == pytest.approx(expected, rel=1e-6, abs=1e-6), name
    alphas = [float(stats["alpha"]) for stats in per_call]
    assert alphas == sorted(alphas) and alphas[0] < alphas[-1]  # the fade advanced inside the call
    assert bool(call["streak_broken"]) and float(call["streak"]) == 0.0


def test_the_skip_streak_counts_the_trailing_skipped_iterations_of_a_call():
    model, phase = _model(phase_index=0)
    good = np.random.default_rng(1).uniform(-1, 1, (BATCH, 4, 4, 3)).astype(np.float32)
    bad = np.full_like(good, np.inf)  # the critic's loss is not finite: its update is skipped
    batches = np.stack([good, bad, good, bad, bad])
    step = model.make_distributed_step(tf.distribute.get_strategy())
    call = step(iter(tf.data.Dataset.from_tensor_slices(batches)), 5)
    assert bool(call["streak_broken"])
    assert float(call["streak"]) == 2.0
    assert float(call["streak_critic loss/gradients"]) == 2.0 and float(call["streak_generator update"]) == 0.0
    assert float(call["sums"]["d_finite"]) == 2.0 and float(call["sums"]["g_finite"]) == 5.0

    all_bad = step(iter(tf.data.Dataset.from_tensors(bad).repeat()), 3)
    assert not bool(all_bad["streak_broken"]) and float(all_bad["streak"]) == 3.0


def test_a_call_ends_at_the_first_logging_point_or_the_phase_end():
    # Batch 8; ticks every 0.024 kimg (24 images), checkpoints every 0.040 kimg.
    config = TrainConfig(
        data_dir="d", run_dir="r", schedule=SCHEDULE, tick_kimg=0.024, sample_kimg=0, checkpoint_kimg=0.040
    )
    phase = phases(SCHEDULE)[0]  # 0 .. 64 images
    assert call_boundaries.iterations_until_boundary(config, phase, 0, 200, 16) == 3  # 24: a tick
    assert call_boundaries.iterations_until_boundary(config, phase, 24, 200, 16) == 2  # 40: a checkpoint
    assert call_boundaries.iterations_until_boundary(config, phase, 40, 200, 16) == 1  # 48: a tick
    assert call_boundaries.iterations_until_boundary(config, phase, 48, 200, 16) == 2  # 64: the phase end
    assert call_boundaries.iterations_until_boundary(config, phase, 0, 200, 2) == 2  # the limit
    assert call_boundaries.iterations_until_boundary(config, phase, 0, 16, 16) == 2  # total_kimg cuts the phase
    assert call_boundaries.steps_per_call(config, 4) == 16 and call_boundaries.steps_per_call(config, 64) == 1
    assert call_boundaries.steps_per_call(TrainConfig(data_dir="d", run_dir="r", steps_per_call=3), 4) == 3


def test_xla_compiled_gradients_give_the_same_training():
    plain, phase = _model()
    compiled, _ = _model(jit_compile=True)
    plain_call = plain.make_distributed_step(tf.distribute.get_strategy())(_reals_iterator(phase.resolution, 3), 3)
    # Under op determinism (an earlier test in this process may have turned it on) too.
    tf.config.experimental.enable_op_determinism()
    xla_call = compiled.make_distributed_step(tf.distribute.get_strategy())(_reals_iterator(phase.resolution, 3), 3)
    # Both gradient computations went through XLA.
    assert sorted(compiled._xla_functions) == ["_discriminator_gradients", "_generator_gradients"]
    for name in ("d_loss", "g_loss", "gradient_penalty", "real_score", "fake_score"):
        assert float(xla_call["sums"][name]) == pytest.approx(float(plain_call["sums"][name]), rel=1e-3, abs=1e-4), name
    for a, b in zip(_state(plain), _state(compiled)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_a_stop_request_ends_the_call_after_one_iteration():
    model, phase = _model()
    step = model.make_distributed_step(tf.distribute.get_strategy())
    call = step(_reals_iterator(phase.resolution, 8), 8, tf.constant([0.0, 1.0]))  # SIGTERM asked
    assert int(call["iterations"]) == 1 and float(call["stop_sigterm"]) > 0
    assert int(model.images_shown.numpy()) == phase.start_images + BATCH
    assert int(step(_reals_iterator(phase.resolution, 8), 8)["iterations"]) == 8


def test_the_packed_call_results_unpack_to_each_named_value():
    sums = np.arange(1.0, 1.0 + len(distributed_step.STATISTICS), dtype=np.float32) / 4
    reasons = np.array([0.0, 3.0, 1.0, 2.0], np.float32)
    packed = distributed_step.pack_results(
        tf.constant(7), tf.constant(sums), tf.constant([0.0, 1.0]), tf.constant(True), tf.constant(5.0), reasons
    )
    results = distributed_step.unpack_results(packed.numpy())
    assert results["iterations"] == 7 and isinstance(results["iterations"], int)
    assert results["sums"] == dict(zip(distributed_step.STATISTICS, sums.tolist()))
    assert (results["stop_sigint"], results["stop_sigterm"]) == (0.0, 1.0)
    assert results["streak_broken"] is True and results["streak"] == 5.0
    assert [results[f"streak_{reason}"] for reason in distributed_step.SKIP_REASONS] == reasons.tolist()
    assert len(packed.shape) == 1 and sorted(results) == sorted(
        ["iterations", "sums", "stop_sigint", "stop_sigterm", "streak_broken", "streak"]
        + [f"streak_{reason}" for reason in distributed_step.SKIP_REASONS]
    )
