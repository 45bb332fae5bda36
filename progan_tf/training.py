"""The progressive training loop: phases, logging, samples, checkpoints, export.

We drive `ProGAN.train_step` with our own `strategy.run` loop rather than `Model.fit`: it must
rebuild networks and optimizers at every phase, count images rather than epochs, and work under
MultiWorkerMirroredStrategy, where Keras 3's `fit` is broken (keras#20585).
"""

import signal

import keras
import tensorflow as tf

from progan_tf import atomic_files, cost_model, distribute, export, interrupts, pyramid_check, run_files
from progan_tf import checkpoint as ckpt_lib
from progan_tf import data as data_lib
from progan_tf import progress as progress_lib
from progan_tf.call_boundaries import crossed, iterations_until_boundary, steps_per_call
from progan_tf.errors import EXIT_DIVERGED, FilesystemError, RunStopped, UserInputError
from progan_tf.metrics.periodic import small_swd
from progan_tf.progan import ProGAN
from progan_tf.run_directory import open_run_dir, write_reals, write_samples
from progan_tf.schedule import learning_rate_at, phase_at, phases
from progan_tf.step_statistics import SkipStreak, TickMeter


def _lower_learning_rate_flag(config, phase):
    """The flag that halves the learning rate of `phase`'s resolution."""
    table = dict(config.schedule.learning_rates)
    if phase.resolution in table:
        table[phase.resolution] = phase.learning_rate / 2
        return "--learning_rates=" + ",".join(f"{resolution}:{rate:g}" for resolution, rate in sorted(table.items()))
    return f"--learning_rate={phase.learning_rate / 2:g}"


def _diverged(config, phase, images_shown, what):
    """The RunStopped of a run that went non-finite: where, what, and how to resume."""
    saved = ckpt_lib.list_checkpoints(atomic_files.path_in(config.run_dir, "checkpoints"))
    lower = _lower_learning_rate_flag(config, phase)
    if saved:
        advice = (
            f"newest good checkpoint: {saved[-1]}; to resume from it with a lower learning rate, add "
            f"--resume={saved[-1]} {lower} to the same command"
        )
    else:
        advice = f"no checkpoint was written yet; rerun the same command with a lower learning rate, e.g. {lower}"
    return RunStopped(
        f"error: training diverged at kimg {images_shown / 1000:.3f} ({phase.resolution}x{phase.resolution} "
        f"{phase.kind}): {what}; {advice}",
        EXIT_DIVERGED,
    )


def _same_phase(meta, phase):
    """Whether a checkpoint was written in `phase` (its optimizers then carry over)."""
    return (
        meta["phase_index"] == phase.index
        and meta.get("resolution", phase.resolution) == phase.resolution
        and meta.get("phase", phase.kind) == phase.kind
    )


def _check_dataset(config):
    manifest = pyramid_check.check_pyramid(config.data_dir, verify=config.verify_data)
    final = config.network.resolution
    if final not in manifest["resolutions"]:
        raise UserInputError(
            f"Dataset {config.data_dir} has resolutions {manifest['resolutions']}, not the training "
            f"resolution {final}. Received: resolution={final}"
        )
    if manifest["channels"] != config.network.num_channels:
        raise UserInputError(
            f"Dataset {config.data_dir} has {manifest['channels']} channels but the networks are built for "
            f"{config.network.num_channels}. Received: num_channels={config.network.num_channels}"
        )
    return manifest


def _distributed_dataset(strategy, config, phase, skip_batches):
    def dataset_fn(input_context):
        dataset = data_lib.make_dataset(
            config.data_dir,
            phase.resolution,
            phase.batch_size,
            mirror_augment=config.mirror_augment,
            seed=config.seed + phase.index,
            skip_batches=skip_batches,
            num_input_pipelines=input_context.num_input_pipelines,
            input_pipeline_id=input_context.input_pipeline_id,
            # Always: input pipelines must agree on each global batch, and a resume must see the
            # batches the interrupted run would have seen. (--deterministic adds op determinism.)
            deterministic=True,
            as_uint8=True,
        )
        per_replica = input_context.get_per_replica_batch_size(phase.batch_size)
        if per_replica != phase.batch_size // input_context.num_input_pipelines:
            # Consecutive slices of the pipeline's batch go to its local replicas in order.
            dataset = dataset.rebatch(per_replica)
        return dataset

    return strategy.distribute_datasets_from_function(dataset_fn)


def train(config, strategy=None):
    """Runs (or resumes) a training run; returns the final `ProGAN`.

    The run directory is checked before anything in it is written (`run_files.check_start`).
    Every update that would leave a non-finite value is rolled back; `max_consecutive_skips`
    skipped iterations in a row stop the run (`RunStopped`, exit status `EXIT_DIVERGED`). The
    first SIGINT / SIGTERM stops it after the current step with a checkpoint (`RunStopped`,
    130 / 143).

    Args:
        config: A `TrainConfig`.
        strategy: A `tf.distribute.Strategy`; default from `distribute.make_strategy()`.

    Raises:
        UserInputError: the start is refused (see `run_files.check_start`), bad data.
        FilesystemError: a write failed; the checkpoints already written are intact.
        RunStopped: diverged, or stopped by a signal.
    """
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    manifest = _check_dataset(config)
    strategy = strategy or distribute.make_strategy()
    chief = distribute.is_chief()
    checkpoint_dir = atomic_files.path_in(config.run_dir, "checkpoints")
    with interrupts.StopRequests() as stop_requests:
        # Checks first, writes after: a refused start leaves the run directory as it was.
        start = run_files.check_start(config)
        resume_from = start.checkpoint
        model = _build_model(config, strategy, resume_from)
        try:
            logger = open_run_dir(config, start, chief)
            try:
                _TrainingLoop(config, strategy, model, logger, manifest, resume_from, stop_requests).run()
            except BaseException:
                logger.close(quiet=True)
                raise
            logger.close()
        except FilesystemError as error:
            raise FilesystemError(
                f"{error}. The checkpoints already in {checkpoint_dir} are intact: fix this (free space, "
                f"permissions), then rerun the same command to resume from the newest."
            ) from None
    return model


def _build_model(config, strategy, resume_from):
    """The run's `ProGAN`, holding the networks and image count of `resume_from` (or None)."""
    # The initial weights come from Keras' global RNG: seed it so that every worker, and a rerun
    # with the same --seed, starts from the same networks.
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = ProGAN(
            config.network,
            loss=config.loss,
            optimizer=config.optimizer,
            seed=config.seed,
            mixed_precision=config.mixed_precision,
            jit_compile=config.jit_compile,
        )
    if resume_from is not None:
        ckpt_lib.restore_networks(model, resume_from)
        model.images_shown.assign(resume_from.images_shown)
    return model


class _TrainingLoop:
    """The loop over the schedule's phases and the compiled step's calls, and what each call
    reached: a tick line, the divergence check, samples, an evaluation, a checkpoint, a stop.

    Its state is the run's position: images shown, the tick, the phase and the image count it
    began at (an earlier session's, when resuming into it), and whether a checkpoint is due.
    Constructing it writes the real-image grid and the dataset line and starts the clock.
    """

    def __init__(self, config, strategy, model, logger, manifest, resume_from, stop_requests):
        self.config, self.strategy, self.model, self.logger = config, strategy, model, logger
        self.stop_requests = stop_requests
        self.chief = logger.enabled
        self.run_dir = atomic_files.as_path(config.run_dir)
        self.checkpoint_dir, self.samples_dir = self.run_dir / "checkpoints", self.run_dir / "samples"
        if self.chief:
            write_reals(logger, self.samples_dir, config)
        logger.line(
            f"dataset {config.data_dir}: {manifest['num_images']} images, {strategy.num_replicas_in_sync} replica(s), "
            f"G {model.generator.count_params():,} / D {model.discriminator.count_params():,} parameters"
        )
        self.grid_latents = tf.random.stateless_normal(
            (config.grid_size, config.network.latent_size), seed=[config.seed, 7]
        )
        self.total_images = round(config.schedule.total_kimg * 1000)
        self.images_shown = int(model.images_shown.numpy())
        # Ticks and training time continue across resumes.
        resumed_meta = resume_from.meta if resume_from is not None else {}
        self.tick = int(resumed_meta.get("tick", 0))
        self.meter = TickMeter()
        all_phases = phases(config.schedule)
        self.progress = progress_lib.RunProgress(
            all_phases,
            self.total_images,
            self.images_shown,
            [cost_model.iteration_flops(config.network, p.resolution, p.fade_in, 1) for p in all_phases],
            elapsed_before=float(resumed_meta.get("time_sec", 0.0)),
        )
        self.streak = SkipStreak()
        self.checkpoint_due, self.last_saved = False, self.images_shown if resume_from is not None else None
        self.resume_from = resume_from
        self.phase = self.phase_begin = self.learning_rate = None

    def run(self):
        """Trains to the schedule's end, then writes the last checkpoint and the export."""
        while self.images_shown < self.total_images:
            step, iterator = self._start_phase(phase_at(self.config.schedule, self.images_shown))
            first_call = True
            while self.images_shown < min(self.phase.end_images, self.total_images):
                before = self.images_shown
                call = self._call(step, iterator, first_call)
                first_call = False
                self._after_call(before, call)
        self._finish()

    def _start_phase(self, phase):
        """Builds `phase`'s models and optimizers (restored when resuming into it), its input and its
        step; returns (step, iterator)."""
        config, model, strategy, resume_from = self.config, self.model, self.strategy, self.resume_from
        with strategy.scope():
            model.start_phase(phase, strategy.num_replicas_in_sync)
        phase_begin = self.images_shown
        if resume_from is not None and _same_phase(resume_from.meta, phase):
            ckpt_lib.restore_optimizers(model, resume_from)
            phase_begin = int(resume_from.meta["phase_begin_images"])
        self.resume_from = None
        self.phase, self.phase_begin, self.learning_rate = phase, phase_begin, None
        skip_batches = (self.images_shown - phase_begin) // phase.batch_size
        iterator = iter(_distributed_dataset(strategy, config, phase, skip_batches))
        step = model.make_distributed_step(strategy)
        self.progress.start_phase(phase.index)
        self.logger.line(
            f"phase {phase.index}: {phase.resolution}x{phase.resolution} {phase.kind} "
            f"kimg {phase.start_kimg:g}-{phase.end_kimg:g}, batch {phase.batch_size}, lr {phase.learning_rate:g}"
        )
        return step, iterator

    def _call(self, step, iterator, first_call):
        """One call of the step, up to the next boundary; counts its images and statistics and
        returns its results (NumPy)."""
        config, model, phase = self.config, self.model, self.phase
        rate = learning_rate_at(config.schedule, phase, self.images_shown)
        if rate != self.learning_rate:  # each step of a ramp-up, else once (over a restored rate)
            for optimizer in (model.g_optimizer, model.d_optimizer):
                optimizer.learning_rate.assign(rate)
            self.learning_rate = rate
        # One iteration first (its time is the phase's start-up) and while the rate ramps.
        ramping = learning_rate_at(config.schedule, phase, self.images_shown + phase.batch_size) != rate
        limit = 1 if first_call or ramping else steps_per_call(config, phase.resolution)
        iterations = iterations_until_boundary(config, phase, self.images_shown, self.total_images, limit)
        try:
            call = step(iterator, iterations, self.stop_requests.as_flags())
        except (tf.errors.DataLossError, tf.errors.NotFoundError) as error:  # a corrupt or deleted shard: name it
            raise pyramid_check.explain_data_error(config.data_dir, phase.resolution, error) from None
        iterations = int(call["iterations"])  # fewer than asked when a stop was requested
        self.images_shown += iterations * phase.batch_size
        self.meter.add(call["sums"], iterations)
        self.streak.add(call)
        self.progress.step_done(self.images_shown)
        return call

    def _after_call(self, before, call):
        """What the call that moved the image count from `before` reached, in order."""
        config, chief, images_shown = self.config, self.chief, self.images_shown
        phase_done = images_shown >= self.phase.end_images
        if crossed(before, images_shown, config.tick_kimg) or phase_done:
            self._log_tick()
        if config.max_consecutive_skips and self.streak.length >= config.max_consecutive_skips:
            self._stop_diverged()
        if chief and (crossed(before, images_shown, config.sample_kimg) or phase_done):
            self._write_samples()
        if chief and crossed(before, images_shown, config.eval_kimg):
            self._evaluate()
        # A state that just skipped an update is where the run got stuck, not progress worth
        # rotating a good checkpoint out for: the checkpoint waits for an update that applies.
        self.checkpoint_due = self.checkpoint_due or crossed(before, images_shown, config.checkpoint_kimg) or phase_done
        if chief and self.checkpoint_due and self.streak.length == 0:
            self._save()
            self.checkpoint_due, self.last_saved = False, images_shown
        stop_signal = interrupts.agreed_signal(call["stop_sigint"], call["stop_sigterm"])
        if stop_signal is not None:
            self._stop(stop_signal)

    def _log_tick(self):
        phase, kimg = self.phase, self.images_shown / 1000
        self.tick += 1
        record = {
            "tick": self.tick,
            "kimg": round(kimg, 3),
            "resolution": phase.resolution,
            "phase": phase.kind,
            "batch_size": phase.batch_size,
            "learning_rate": self.learning_rate,
            **self.meter.summary(),
            **self.progress.tick(self.images_shown),
        }
        self.logger.stats(record, self.images_shown)
        self.logger.line(
            f"tick {self.tick:<4d} {progress_lib.format_position(kimg, record)}  "
            f"{phase.resolution}x{phase.resolution} {phase.kind:<9} "
            f"alpha {record['alpha']:.3f}  d_loss {record['d_loss']:8.4f}  g_loss {record['g_loss']:8.4f}  "
            f"gp {record['gradient_penalty']:.4f}  {progress_lib.format_speed(record)}  "
            f"skipped {record['skipped_updates']}  {progress_lib.format_times(record)}"
        )
        self.meter.reset()

    def _stop_diverged(self):
        config, streak = self.config, self.streak
        stop = _diverged(
            config,
            self.phase,
            self.images_shown,
            f"{streak.length} iterations in a row skipped an update ({streak.describe()}; "
            f"--max_consecutive_skips={config.max_consecutive_skips})",
        )
        self.logger.line(str(stop), echo=False)
        raise stop

    def _write_samples(self):
        kimg = self.images_shown / 1000
        for label in write_samples(self.model, self.logger, self.samples_dir, self.grid_latents, self.images_shown):
            self.logger.line(f"samples at kimg {kimg:.3f} not written: the {label} generator's output is not finite")

    def _evaluate(self):
        config, kimg = self.config, self.images_shown / 1000
        evaluation = small_swd(
            self.model.gs_model, config.data_dir, self.phase.resolution, config.eval_num_images, config.seed
        )
        if evaluation:
            self.logger.stats({"kimg": round(kimg, 3), **evaluation}, self.images_shown)
            self.logger.line(
                f"eval kimg {kimg:9.3f}  swd_avg {evaluation['eval_swd_avg']:.3f}  ({evaluation['eval_sec']} s)"
            )

    def _save(self):
        """Writes a checkpoint of the current position; returns its path."""
        config, model, checkpoint_dir = self.config, self.model, self.checkpoint_dir
        phase, images_shown = self.phase, self.images_shown
        position = {
            "images_shown": images_shown,
            "phase_index": phase.index,
            "phase_begin_images": self.phase_begin,
            "resolution": phase.resolution,
            "phase": phase.kind,
            "tick": self.tick,
            "time_sec": round(self.progress.elapsed_seconds(), 3),
        }
        try:
            return ckpt_lib.save_checkpoint(checkpoint_dir, model, position, keep=config.keep_checkpoints)
        except ckpt_lib.NonFiniteError as error:
            raise _diverged(config, phase, images_shown, f"{error} (not saved)") from None

    def _stop(self, stop_signal):
        """Ends the run on an agreed SIGINT / SIGTERM, with a checkpoint of where it stopped."""
        checkpoint_dir, images_shown = self.checkpoint_dir, self.images_shown
        name = signal.Signals(stop_signal).name
        message = f"stopped by {name} at kimg {images_shown / 1000:.3f}"
        if not self.chief:
            message += " with the other workers (the chief writes the checkpoint)"
        else:
            saved = self.last_saved == images_shown
            path = ckpt_lib.checkpoint_path(checkpoint_dir, images_shown) if saved else self._save()
            message += f": wrote {path}; rerun the same command to resume from it"
        self.logger.line(message, echo=False)
        raise RunStopped(message, interrupts.EXIT_CODES[stop_signal])

    def _finish(self):
        config, model, logger = self.config, self.model, self.logger
        if self.chief and self.checkpoint_due and self.phase is not None:
            self._save()
        if self.chief and config.export_at_end and model.phase is not None:
            path = export.export_generator(model.gs_model, self.run_dir / "export", config.network.latent_size)
            logger.line(f"exported the EMA generator to {path} (SavedModel) and {path}.keras")
        logger.line(f"done: kimg {self.images_shown / 1000:.3f} in {self.progress.elapsed_seconds():.1f} s")
