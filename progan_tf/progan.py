"""The ProGAN training model: generator, critic and EMA generator, and one training iteration."""

import keras
import tensorflow as tf
from keras import ops

from progan_tf import distributed_step, losses
from progan_tf.config import LossConfig, OptimizerConfig
from progan_tf.data import uint8_to_float
from progan_tf.errors import UserInputError
from progan_tf.guarded_update import apply_if_finite
from progan_tf.networks import GrowingDiscriminator, GrowingGenerator

# Purposes of the stateless random streams drawn every iteration.
_NOISE_D_LATENTS, _NOISE_G_LATENTS, _NOISE_GP_MIX = 0, 1, 2


def fade_in_reals(images, alpha):
    """Blends real images toward their 2x2-average-pooled, nearest-upsampled version.

    During a fade the generator's output is `lerp(upsample(old), new, alpha)`, so the reals must
    get the same blend, or the critic tells real from fake by sharpness alone.
    """
    pooled = ops.average_pool(images, pool_size=2, strides=2, padding="valid")
    coarse = ops.repeat(ops.repeat(pooled, 2, axis=1), 2, axis=2)
    return coarse + (images - coarse) * ops.cast(alpha, images.dtype)


def make_adam(learning_rate, optimizer_config, mixed_precision):
    """Adam with `optimizer_config`'s betas and epsilon (an `OptimizerConfig`), loss-scaled with
    `mixed_precision`."""
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate,
        beta_1=optimizer_config.beta_1,
        beta_2=optimizer_config.beta_2,
        epsilon=optimizer_config.epsilon,
    )
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer


class ProGAN(keras.Model):
    """Generator G, critic D and generator average Gs, trained one phase at a time.

    Create it inside the distribution strategy's scope, then call `start_phase` (also in scope)
    for each phase of the schedule and run `train_step` under `strategy.run`.

    Args:
        network_config: A `NetworkConfig` shared by G, D and Gs.
        loss: A `LossConfig` (penalty and drift weights, the penalty's norm).
        optimizer: An `OptimizerConfig` (Adam of both networks, the generator average's decay).
        seed: Base seed of the per-iteration latents and interpolation weights.
        mixed_precision: Loss-scaled float16 training (set the `mixed_float16` policy first).
        jit_compile: Compile the gradient computations with XLA (faster on GPUs; slower on CPU).
        **kwargs: Base `keras.Model` arguments.
    """

    def __init__(
        self,
        network_config,
        loss=LossConfig(),
        optimizer=OptimizerConfig(),
        seed=0,
        mixed_precision=False,
        jit_compile=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network_config = network_config
        # Not `loss` / `optimizer`: keras.Model's compile() owns those attribute names.
        self.loss_config = loss
        self.optimizer_config = optimizer
        self.seed = int(seed)
        self.mixed_precision = bool(mixed_precision)
        # Not `self.jit_compile`: keras.Model's property of that name turns itself off (with a
        # warning) under op determinism, which would quietly drop --jit_compile with --deterministic.
        self.xla_gradients = bool(jit_compile)
        self._xla_functions = {}
        self.generator = GrowingGenerator(network_config).build_all()
        self.discriminator = GrowingDiscriminator(network_config).build_all()
        self.ema_generator = GrowingGenerator(network_config).build_all()
        self.ema_generator.set_weights(self.generator.get_weights())
        self.images_shown = tf.Variable(0, dtype=tf.int64, trainable=False, name="images_shown")
        self.phase = None
        # Our loop drives train_step itself; the networks it holds are built already.
        self.built = True

    @property
    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator, "ema_generator": self.ema_generator}

    def start_phase(self, phase, num_replicas=1):
        """Selects the phase's models and makes fresh Adam optimizers (the paper resets Adam).

        Call inside the strategy scope so the optimizer variables are mirrored.
        """
        if phase.batch_size % num_replicas:
            raise UserInputError(
                f"The {phase.resolution}x{phase.resolution} batch size must be divisible by the "
                f"{num_replicas} replicas. Received: batch_size={phase.batch_size}"
            )
        per_replica = phase.batch_size // num_replicas
        group = min(self.network_config.mbstd_group_size, per_replica)
        if per_replica % group:
            raise UserInputError(
                f"The per-replica batch ({per_replica}) at {phase.resolution}x{phase.resolution} must be "
                f"divisible by the minibatch-stddev group size {group}. Received: batch_size={phase.batch_size}"
            )
        self.phase = phase
        self._xla_functions = {}  # they trace the phase's models
        self.g_model = self.generator.model(phase.resolution, phase.fade_in)
        self.d_model = self.discriminator.model(phase.resolution, phase.fade_in)
        self.gs_model = self.ema_generator.model(phase.resolution, phase.fade_in)
        self.g_optimizer = make_adam(phase.learning_rate, self.optimizer_config, self.mixed_precision)
        self.d_optimizer = make_adam(phase.learning_rate, self.optimizer_config, self.mixed_precision)
        self.g_optimizer.build(self.g_model.trainable_weights)
        self.d_optimizer.build(self.d_model.trainable_weights)
        self.set_alpha(phase.alpha(int(self.images_shown.numpy())))

    def set_alpha(self, alpha):
        for network in self.networks.values():
            network.set_alpha(alpha)

    def _noise(self, purpose, shape, per_replica, stateless_fn):
        # Draw the GLOBAL batch from a seed that depends only on (seed, purpose, images shown) and
        # keep this replica's rows: any replica layout sees the same noise as one device would.
        context = tf.distribute.get_replica_context()
        seed = tf.stack([tf.constant(self.seed * 3 + purpose, tf.int64), self.images_shown.read_value()])
        draws = stateless_fn(shape, seed=seed)
        start = context.replica_id_in_sync_group * per_replica
        return draws[start : start + per_replica]

    def train_step(self, reals):
        """One iteration on this replica's real images (uint8 [0, 255] or float [-1, 1]): critic
        step, Gs update, generator step.

        Run under `strategy.run`; per-replica losses are divided by the replica count (sum over
        the replica's samples / global batch), so the all-reduced gradient is the global mean.

        Returns:
            Dict of per-replica scalars: losses, penalty, scores and finite flags.
        """
        context = tf.distribute.get_replica_context()
        global_batch = self.phase.batch_size
        per_replica = global_batch // context.num_replicas_in_sync
        # A multi-worker distributed iterator reports the batch dimension as unknown; the step
        # needs it static (noise rows, minibatch-stddev groups, per-replica means).
        size, channels = self.phase.resolution, self.network_config.num_channels
        reals = tf.ensure_shape(reals, (per_replica, size, size, channels))
        if reals.dtype == tf.uint8:  # the training pipeline leaves the conversion to the device
            reals = uint8_to_float(reals)
        latent_shape = (global_batch, self.network_config.latent_size)
        d_latents = self._noise(_NOISE_D_LATENTS, latent_shape, per_replica, tf.random.stateless_normal)
        g_latents = self._noise(_NOISE_G_LATENTS, latent_shape, per_replica, tf.random.stateless_normal)
        mix = self._noise(_NOISE_GP_MIX, (global_batch, 1, 1, 1), per_replica, tf.random.stateless_uniform)
        if self.phase.fade_in:
            reals = fade_in_reals(reals, self.discriminator.fade.alpha)
        d_stats = self._discriminator_step(reals, d_latents, mix, global_batch)
        context.merge_call(lambda strategy: self._update_ema())
        g_stats = self._generator_step(g_latents, global_batch)
        return {**d_stats, **g_stats}

    def _loss_scale(self, optimizer):
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return optimizer.dynamic_scale
        return tf.constant(1.0)

    def _discriminator_step(self, reals, latents, mix, global_batch):
        grads, loss, stats = self._compiled(self._discriminator_gradients)(reals, latents, mix, global_batch)
        inputs_finite, applied = apply_if_finite(
            self.d_optimizer, grads, self.d_model.trainable_weights, checked=[loss]
        )
        return {**stats, "d_finite": tf.cast(applied, tf.float32), "d_grads_finite": tf.cast(inputs_finite, tf.float32)}

    def _discriminator_gradients(self, reals, latents, mix, global_batch):
        d_vars = self.d_model.trainable_weights
        loss_scale = self._loss_scale(self.d_optimizer)
        with tf.GradientTape() as tape:
            fakes = tf.cast(self.g_model(latents, training=True), tf.float32)
            real_scores = self.d_model(reals, training=True)
            fake_scores = self.d_model(fakes, training=True)
            norms = losses.gradient_norms_at_mix(
                self.d_model, reals, fakes, mix, self.loss_config, self.network_config.resolution, loss_scale
            )
            per_sample = losses.discriminator_loss(real_scores, fake_scores, norms, self.loss_config)
            loss = tf.reduce_sum(per_sample) / global_batch
            scaled_loss = loss * loss_scale
        grads = tape.gradient(scaled_loss, d_vars)
        per_replica = float(reals.shape[0])
        stats = {
            "d_loss": tf.reduce_mean(per_sample),
            "gradient_penalty": tf.reduce_mean(tf.square(norms - self.loss_config.gp_target)),
            "real_score": tf.reduce_sum(tf.cast(real_scores, tf.float32)) / per_replica,
            "fake_score": tf.reduce_sum(tf.cast(fake_scores, tf.float32)) / per_replica,
        }
        return grads, loss, stats

    def _generator_step(self, latents, global_batch):
        grads, loss, per_sample_mean = self._compiled(self._generator_gradients)(latents, global_batch)
        inputs_finite, applied = apply_if_finite(
            self.g_optimizer, grads, self.g_model.trainable_weights, checked=[loss]
        )
        return {
            "g_loss": per_sample_mean,
            "g_finite": tf.cast(applied, tf.float32),
            "g_grads_finite": tf.cast(inputs_finite, tf.float32),
        }

    def _generator_gradients(self, latents, global_batch):
        g_vars = self.g_model.trainable_weights
        loss_scale = self._loss_scale(self.g_optimizer)
        with tf.GradientTape() as tape:
            fakes = self.g_model(latents, training=True)
            per_sample = losses.generator_loss(self.d_model(fakes, training=True))
            loss = tf.reduce_sum(per_sample) / global_batch
            scaled_loss = loss * loss_scale
        return tape.gradient(scaled_loss, g_vars), loss, tf.reduce_mean(per_sample)

    def _compiled(self, function):
        """`function` itself, or XLA-compiled with `jit_compile` (the gradients only: the updates,
        their finite checks and the cross-replica agreement stay outside XLA)."""
        if not self.xla_gradients:
            return function
        compiled = self._xla_functions.get(function.__name__)
        if compiled is None:
            compiled = self._xla_functions[function.__name__] = tf.function(function, jit_compile=True)
        return compiled

    def _update_ema(self):
        beta = self.optimizer_config.ema_beta
        for average, weight in zip(self.gs_model.trainable_weights, self.g_model.trainable_weights):
            average.assign(weight + beta * (average - weight))

    def make_distributed_step(self, strategy):
        """A function running several iterations across all replicas in one compiled call.

        `step(iterator, num_steps=1, stop_flags=(0, 0))` runs `num_steps` iterations (passed to
        the compiled loop as a tensor, so any count reuses one trace) in a `tf.while_loop`: each
        moves every fade alpha to the schedule's value at the current image count, runs
        `train_step` and counts the global batch. Statistics stay on the device until the call
        returns: per iteration they are reduced across replicas as one vector (one collective),
        together with `stop_flags` (this worker's [SIGINT, SIGTERM] requests: positive on every
        worker when any worker asked to stop, so all of them stop after the same call).

        A call whose `stop_flags` are set on any worker ends after its first iteration.

        Returns the `step` function. Each call returns a dict of Python numbers, copied to the
        host as one vector: `iterations` (run by this call), `sums` ({statistic: sum over them
        of the replica mean}, `alpha` included), `stop_sigint`, `stop_sigterm`, and the skip
        streak within the call: `streak_broken` (an iteration applied both updates), `streak`
        (the skipped iterations since the last such one, or since the call began) and
        `streak_<reason>` counts of what was not finite in them (`SKIP_REASONS`).
        """
        return distributed_step.make_distributed_step(self, strategy)
