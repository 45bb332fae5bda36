"""The finite-update guard: an optimizer update applied on every replica or rolled back on all.

Finite gradients do not make a finite update: Adam's second moment overflows to inf from
gradients above ~1.8e19, and the weights turn NaN one step later. So `apply_if_finite` reads the
state an update writes (the weights and Adam's moments) before it, checks it after it, and writes
the saved values back when any replica found a non-finite value.

Per update that is a handful of ops beyond the update itself, whatever the number of variables:
one all-reduce carries the gradients and this replica's loss check, the read before the update
is the snapshot (no copy op), one branch rolls back, and plain Adam runs as one fused
`ResourceApplyAdam` per variable (Keras' Adam issues about 25 small ops per variable) on the
moments Keras' optimizer owns, so checkpoints and the optimizer API see the same state.
"""

import keras
import tensorflow as tf

# Keras Adam options the fused update does not implement (they must keep their defaults).
_UNFUSED_OPTIONS = (
    "amsgrad",
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "gradient_accumulation_steps",
    "loss_scale_factor",
)


def all_finite(tensors):
    """True when every element of every tensor is finite.

    One reduction per tensor: a single one over their concatenation was no faster on a CPU
    (the copy costs what the fewer ops save) and costs a copy of the whole state on any device."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def _agreed(flag):
    """True on every replica when `flag` holds on all of them (one all-reduce); replica context."""
    context = tf.distribute.get_replica_context()
    failures = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(flag, tf.float32))
    return failures < 0.5


def _fusable(optimizer):
    """Whether `_fused_adam_update` implements `optimizer`: a Keras `Adam` with default options."""
    return type(optimizer) is keras.optimizers.Adam and not any(getattr(optimizer, o, None) for o in _UNFUSED_OPTIONS)


def _adam_slots(optimizer, variables):
    """Keras Adam's first and second moments of `variables`, in their order."""
    indices = [optimizer._get_variable_index(v) for v in variables]
    return [optimizer._momentums[i] for i in indices], [optimizer._velocities[i] for i in indices]


def _fused_adam_update(strategy, optimizer, grads, variables):
    """Keras' Adam step (`keras.optimizers.Adam.update_step`: the same moments, bias correction
    and epsilon) as one `ResourceApplyAdam` per variable copy; cross-replica context, `grads`
    already summed over the replicas. Leaves `optimizer.iterations` to the caller."""
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
    hyper = dict(
        beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(optimizer.learning_rate, tf.float32),
        beta1=tf.constant(beta_1),
        beta2=tf.constant(beta_2),
        epsilon=tf.constant(float(optimizer.epsilon)),
    )

    def update(variable, grad, m, v):
        return tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=m.handle, v=v.handle, grad=grad, **hyper)

    for grad, variable, m, v in zip(grads, variables, *_adam_slots(optimizer, variables)):
        strategy.extended.update(variable.value, update, args=(grad, m.value, v.value), group=False)


def _keep_or_roll_back(strategy, state, update, keep_inputs):
    """Cross-replica context: reads `state`, runs `update()`, and writes the read values back
    unless every replica found `keep_inputs` true and every tensor of `state` finite.

    Reading a resource variable keeps its value: an in-place update copies a buffer that is
    still referenced, so the reads are the snapshot (one copy, no extra op)."""
    snapshot = strategy.extended.call_for_each_replica(lambda: [v.read_value() for v in state])
    with tf.control_dependencies(tf.nest.flatten(snapshot)):
        update()

    def check(keep_inputs):
        floating = [v.read_value() for v in state if v.dtype.is_floating]  # not the step counters
        return _agreed(tf.logical_and(keep_inputs, all_finite(floating)))

    kept = strategy.experimental_local_results(strategy.extended.call_for_each_replica(check, args=(keep_inputs,)))[0]

    def roll_back():
        for variable, saved in zip(state, snapshot):
            strategy.extended.update(variable, lambda v, s: v.assign(s), args=(saved,), group=False)

    tf.cond(kept, lambda: None, roll_back)
    return kept


def apply_if_finite(optimizer, grads, variables, checked=()):
    """Applies `grads` on every replica or on none, and keeps the update only if it left every
    variable it wrote finite.

    Must be called in a replica context; the gradients are this replica's share of the global
    mean (summed across replicas here). A Keras `Adam` with default options runs fused; any
    other optimizer goes through its own `apply_gradients` under the same guard (a loss-scale
    optimizer skips non-finite inputs itself and lowers its scale).

    Args:
        optimizer: A Keras optimizer (or `LossScaleOptimizer`) built on `variables`.
        grads: This replica's gradients of `variables`.
        variables: The variables to update.
        checked: Further tensors (the loss) that must be finite on every replica.

    Returns:
        (inputs_finite, applied): agreed booleans; `applied` is false when the inputs were not
        finite or the update was rolled back.

    Example:

    ```python
    weights = keras.Variable([1.0, -2.0])
    adam = keras.optimizers.Adam(0.1)
    adam.build([weights])
    # 3e19 is finite, its square is not: Adam's second moment would overflow.
    inputs_finite, applied = tf.function(lambda: apply_if_finite(adam, [tf.constant([3e19, 1.0])], [weights]))()
    # inputs_finite is True, applied is False, and the weights are still [1.0, -2.0].
    ```
    """
    context = tf.distribute.get_replica_context()
    if not _fusable(optimizer):
        return _apply_with_keras(optimizer, grads, variables, checked)
    # A sum is non-finite when any replica's term is, so the summed gradients and the count of
    # replicas with a non-finite loss decide alike everywhere, in the one all-reduce they need.
    local_failure = 1.0 - tf.cast(all_finite(checked), tf.float32) if checked else tf.constant(0.0)
    *grads, failures = context.all_reduce(tf.distribute.ReduceOp.SUM, [*grads, local_failure])
    inputs_finite = tf.logical_and(failures < 0.5, all_finite(grads))
    moments, velocities = _adam_slots(optimizer, variables)
    state = [v.value for v in (*variables, *moments, *velocities)]

    def apply_in_cross_replica_context(strategy, grads, inputs_finite):
        kept = _keep_or_roll_back(
            strategy, state, lambda: _fused_adam_update(strategy, optimizer, grads, variables), inputs_finite
        )
        optimizer.iterations.assign_add(tf.cast(kept, optimizer.iterations.dtype))
        return kept

    applied = context.merge_call(apply_in_cross_replica_context, args=(grads, inputs_finite))
    return inputs_finite, applied


def _apply_with_keras(optimizer, grads, variables, checked):
    """`apply_if_finite` through the optimizer's own `apply_gradients` (which all-reduces)."""
    inputs_finite = _agreed(all_finite([*grads, *checked]))
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    if loss_scaled:
        # Keras' loss-scale optimizer decides from replica 0's local gradients alone; poison every
        # replica's gradients when any replica overflowed, so all of them skip and rescale.
        poison = tf.where(inputs_finite, 0.0, float("nan"))
        grads = [g + tf.cast(poison, g.dtype) for g in grads]
    state = [v.value for v in (*variables, *optimizer.variables)]

    def apply_in_cross_replica_context(strategy, grads, inputs_finite):
        def update():
            apply = lambda g: optimizer.apply_gradients(zip(g, variables))  # noqa: E731
            strategy.extended.call_for_each_replica(apply, args=(grads,))

        # A loss-scale optimizer's bookkeeping of a skipped step stays: only a non-finite result
        # rolls it back. Any other optimizer applied non-finite inputs, which roll back.
        keep_inputs = tf.constant(True) if loss_scaled else inputs_finite
        return _keep_or_roll_back(strategy, state, update, keep_inputs)

    applied = tf.distribute.get_replica_context().merge_call(
        apply_in_cross_replica_context, args=(grads, inputs_finite)
    )
    return inputs_finite, tf.logical_and(inputs_finite, applied)
