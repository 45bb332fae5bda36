"""Several training iterations across all replicas in one compiled call, with one host copy of
the results."""

import numpy as np
import tensorflow as tf

# The per-iteration statistics of `ProGAN.train_step` (sorted), then the fade alpha.
STATISTICS = (
    "d_finite",
    "d_grads_finite",
    "d_loss",
    "fake_score",
    "g_finite",
    "g_grads_finite",
    "g_loss",
    "gradient_penalty",
    "real_score",
    "alpha",
)
# What a skipped iteration found not finite: critic / generator loss or gradients, or the update.
SKIP_REASONS = ("critic loss/gradients", "critic update", "generator loss/gradients", "generator update")
_INDEX = {name: i for i, name in enumerate(STATISTICS)}
# The call's result vector: iterations, the statistics' sums, the stop flags, the skip streak.
_STOPS = ("stop_sigint", "stop_sigterm")
_LAYOUT = ("iterations", *STATISTICS, *_STOPS, "streak_broken", "streak", *(f"streak_{r}" for r in SKIP_REASONS))


def pack_results(iterations, sums, stops, broken, streak, reasons):
    """The loop's results as one float32 vector in `_LAYOUT` order (counts stay exact below 2**24)."""
    count = tf.stack([tf.cast(iterations, tf.float32)])
    streak_state = tf.stack([tf.cast(broken, tf.float32), streak])
    return tf.concat([count, sums, stops, streak_state, reasons], axis=0)


def unpack_results(values):
    """The host-side dict of a packed result vector: Python numbers, the trainer's layout."""
    values = dict(zip(_LAYOUT, np.asarray(values).tolist()))
    results = {key: values[key] for key in _LAYOUT if key not in STATISTICS}
    results["iterations"] = int(results["iterations"])
    results["streak_broken"] = results["streak_broken"] > 0.5
    results["sums"] = {name: values[name] for name in STATISTICS}
    return results


def _skip_reasons(values):
    """Which of `SKIP_REASONS` an iteration's replica-mean statistics show, and whether it skipped."""
    d_skipped, g_skipped = values[_INDEX["d_finite"]] < 0.5, values[_INDEX["g_finite"]] < 0.5
    d_grads, g_grads = values[_INDEX["d_grads_finite"]] < 0.5, values[_INDEX["g_grads_finite"]] < 0.5
    reasons = [d_skipped & d_grads, d_skipped & ~d_grads, g_skipped & g_grads, g_skipped & ~g_grads]
    return tf.cast(tf.stack(reasons), tf.float32), d_skipped | g_skipped


def _iteration(model, strategy):
    """One iteration: `(iterator, flags) -> (statistics with alpha, agreed stop flags)`."""
    names = STATISTICS[:-1]

    def replica_step(reals, flags):
        stats = model.train_step(reals)
        if sorted(stats) != sorted(names):
            raise ValueError(f"train_step statistics changed: update STATISTICS. Received: {sorted(stats)}")
        return tf.concat([tf.stack([tf.cast(stats[name], tf.float32) for name in names]), flags], axis=0)

    def one_iteration(iterator, flags):
        alpha = model.phase.alpha(model.images_shown)
        for network in model.networks.values():
            network.fade.alpha.assign(alpha)
        per_replica = strategy.run(replica_step, args=(next(iterator), flags))
        # One collective per iteration: every statistic and the stop flags, as one vector.
        values = strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)
        model.images_shown.assign_add(model.phase.batch_size)
        return tf.concat([values[: len(names)], [alpha]], axis=0), values[len(names) :]

    return one_iteration


def make_distributed_step(model, strategy):
    """`model`'s compiled multi-iteration step; see `ProGAN.make_distributed_step`."""
    one_iteration = _iteration(model, strategy)

    @tf.function
    def distributed_steps(iterator, num_steps, stop_flags):
        flags = tf.cast(stop_flags, tf.float32)

        def body(i, sums, stops, broken, streak, reasons):
            values, stops = one_iteration(iterator, flags)
            skipped_reasons, skipped = _skip_reasons(values)
            broken = broken | ~skipped
            streak = tf.where(skipped, streak + 1.0, 0.0)
            reasons = tf.where(skipped, reasons + skipped_reasons, tf.zeros_like(reasons))
            return i + 1, sums + values, stops, broken, streak, reasons

        # A stop request (agreed by the all-reduce, so every worker decides alike) ends the
        # call after the iteration that carried it.
        results = tf.while_loop(
            lambda i, sums, stops, *_: (i < num_steps) & (tf.reduce_max(stops) <= 0.0),
            body,
            (
                tf.constant(0),
                tf.zeros([len(STATISTICS)]),
                tf.zeros([len(_STOPS)]),
                tf.constant(False),
                tf.constant(0.0),
                tf.zeros([len(SKIP_REASONS)]),
            ),
        )
        return pack_results(*results)

    def step(iterator, num_steps=1, stop_flags=(0.0, 0.0)):
        # Tensors, so that any count reuses one trace; one vector, so one copy to the host.
        packed = distributed_steps(iterator, tf.cast(num_steps, tf.int32), tf.cast(stop_flags, tf.float32))
        return unpack_results(packed.numpy())

    step.experimental_get_tracing_count = distributed_steps.experimental_get_tracing_count  # one trace a phase
    return step
