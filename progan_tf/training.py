"""The progressive training loop: phases, logging, samples, checkpoints, export.

We drive `ProGAN.train_step` with our own `strategy.run` loop rather than `Model.fit`: it must
rebuild networks and optimizers at every phase, count images rather than epochs, and work under
MultiWorkerMirroredStrategy, where Keras 3's `fit` is broken (keras#20585).
"""

import json
import signal

import keras
import numpy as np
import tensorflow as tf

from progan_tf import atomic_files, cost_model, distribute, export, images, interrupts, pyramid_check, run_files
from progan_tf import checkpoint as ckpt_lib
from progan_tf import data as data_lib
from progan_tf import progress as progress_lib
from progan_tf.config import AUTO_STEPS_PER_CALL
from progan_tf.errors import EXIT_DIVERGED, FilesystemError, RunStopped, UserInputError
from progan_tf.metrics.periodic import small_swd
from progan_tf.progan import SKIP_REASONS, ProGAN
from progan_tf.schedule import format_schedule, learning_rate_at, phase_at, phases


def crossed(before, after, interval_kimg):
    """Whether an image count moving from `before` to `after` passed a multiple of `interval_kimg`.

    In whole images: in kimg floats 0.168 // 0.008 is 21 but 0.176 // 0.008 is 21 too.
    """
    interval = round(interval_kimg * 1000)
    return interval > 0 and before // interval != after // interval


class RunLogger:
    """Writes log.txt, stats.jsonl and TensorBoard scalars/images (chief only).

    A failed write raises a FilesystemError naming the file; the TensorBoard writer is created
    lazily, so a run directory whose disk is full fails on a named file, not inside TensorBoard.
    """

    def __init__(self, run_dir, enabled):
        self.enabled = enabled
        self.run_dir = atomic_files.as_path(run_dir)
        self._writer = None
        if enabled:
            with run_files.writing(self.run_dir / "log.txt", "the log"):
                self.log_file = atomic_files.open_append(self.run_dir / "log.txt")
            with run_files.writing(self.run_dir / run_files.STATS_FILE, "the statistics"):
                self.stats_file = atomic_files.open_append(self.run_dir / run_files.STATS_FILE)

    @property
    def writer(self):
        if self._writer is None:
            with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
                self._writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))
        return self._writer

    def line(self, text, echo=True):
        if self.enabled:
            if echo:
                print(text, flush=True)
            with run_files.writing(self.run_dir / "log.txt", "the log"):
                self.log_file.write(text + "\n")
                self.log_file.flush()  # line-buffered locally; a GFile (remote run_dir) needs it

    def stats(self, record, step):
        if not self.enabled:
            return
        with run_files.writing(self.run_dir / run_files.STATS_FILE, "the statistics"):
            self.stats_file.write(json.dumps(record) + "\n")
            self.stats_file.flush()
        with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
            with self.writer.as_default(step=step):
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "kimg":
                        tf.summary.scalar(key, value)

    def image(self, name, grid, step):
        if self.enabled:
            with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
                with self.writer.as_default(step=step):
                    tf.summary.image(name, grid[None], max_outputs=1)

    def close(self, quiet=False):
        """Flushes and closes everything; `quiet`: on the way out of a failure, ignore errors."""
        if not self.enabled:
            return
        for close in (lambda: self._writer and self._writer.close(), self.log_file.close, self.stats_file.close):
            try:
                close()
            except (OSError, tf.errors.OpError) as error:
                if not quiet:
                    raise FilesystemError(f"could not finish writing the logs in {self.run_dir}: {error}") from None


class _TickMeter:
    """Averages step statistics between ticks (throughput: `progress.RunProgress`)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.steps, self.skipped = {}, 0, 0

    def add(self, sums, iterations):
        """`sums`: {statistic: its sum over `iterations` iterations} (a call of the step)."""
        self.steps += iterations
        for key, value in sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        # The finite flags are 0 or 1 on every replica (agreed), so their sums count updates.
        self.skipped += round(2 * iterations - sums["d_finite"] - sums["g_finite"])

    def summary(self):
        record = {k: v / max(self.steps, 1) for k, v in self.sums.items() if not k.endswith("_finite")}
        record.update(skipped_updates=self.skipped)
        return record


class _SkipStreak:
    """Consecutive iterations that skipped an update, and what was not finite in them."""

    def __init__(self):
        self.length, self.reasons = 0, {}

    def add(self, call):
        """`call`: a step's result; its streak counts the skipped iterations since the last one
        that applied both updates, within the call (`ProGAN.make_distributed_step`)."""
        if call["streak_broken"]:
            self.length, self.reasons = 0, {}
        self.length += round(call["streak"])
        for reason in SKIP_REASONS:
            count = round(call[f"streak_{reason}"])
            if count:
                self.reasons[reason] = self.reasons.get(reason, 0) + count

    def describe(self):
        return ", ".join(f"{reason} non-finite {count}x" for reason, count in self.reasons.items())


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


def steps_per_call(config, resolution):
    """Training iterations per compiled call at `resolution` (`TrainConfig.steps_per_call`)."""
    return config.steps_per_call or AUTO_STEPS_PER_CALL.get(resolution, 1)


def iterations_until_boundary(config, phase, images_shown, total_images, limit):
    """Iterations (1..limit) for the next call: it ends at the first iteration that reaches the
    phase's end or passes a tick, sample, checkpoint or evaluation point, so a call never crosses
    one and everything logged or saved is where one iteration per call would have put it."""
    end = min(phase.end_images, total_images)
    intervals = (config.tick_kimg, config.sample_kimg, config.checkpoint_kimg, config.eval_kimg)
    for count in range(1, limit + 1):
        before, after = images_shown + (count - 1) * phase.batch_size, images_shown + count * phase.batch_size
        if after >= end or any(crossed(before, after, interval) for interval in intervals):
            return count
    return limit


def write_samples(model, logger, samples_dir, latents, images_shown):
    """Writes the EMA and raw generators' sample grids; returns the labels of those not written
    because the generator's output is not finite (a NaN grid would pass for a result)."""
    kimg = images_shown / 1000
    not_finite = []
    for label, network_model in (("ema", model.gs_model), ("raw", model.g_model)):
        output = np.asarray(network_model(latents, training=False))
        if not np.all(np.isfinite(output)):
            not_finite.append(label)
            continue
        grid = images.tile_grid(images.to_uint8(output), images.SAMPLE_MIN_TILE)
        path = samples_dir / f"fakes-{label}-kimg{kimg:010.3f}.png"
        with run_files.writing(path, "the sample grid"):
            images.save_png(path, grid)
        logger.image(f"fakes_{label}", grid, images_shown)
    return not_finite


def _open_run_dir(config, start, chief):
    """The writes of a start, once `run_files.check_start` passed; returns the `RunLogger`."""
    run_dir = atomic_files.as_path(config.run_dir)
    resumed = start.checkpoint
    dropped = 0
    if chief:
        if start.move_to is not None:
            with run_files.writing(run_dir, f"(moving aside to {start.move_to}) the run directory"):
                tf.io.gfile.rename(str(run_dir), str(start.move_to))
        for path, _ in start.unusable:
            ckpt_lib.set_aside(path)
        for path in start.superseded:
            ckpt_lib.set_aside(path, ".superseded")
        with run_files.writing(run_dir / "samples", "the run directory"):
            tf.io.gfile.makedirs(str(run_dir / "samples"))
        config_text = config.to_json()
        if config_text != start.previous_text:
            with run_files.writing(run_dir / run_files.CONFIG_FILE, "the run config"):
                atomic_files.write_atomically(run_dir / run_files.CONFIG_FILE, config_text)
        with run_files.writing(run_dir / "schedule.txt", "the schedule"):
            atomic_files.write_atomically(run_dir / "schedule.txt", format_schedule(config.schedule) + "\n")
        with run_files.writing(run_dir / run_files.HISTORY_FILE, "the config history"):
            run_files.append_line(run_dir / run_files.HISTORY_FILE, run_files.history_record(start, config_text))
        with run_files.writing(run_dir / run_files.STATS_FILE, "the statistics"):
            dropped = run_files.continue_stats(run_dir / run_files.STATS_FILE, resumed.images_shown if resumed else 0)
    logger = RunLogger(run_dir, chief)
    if start.move_to is not None:
        logger.line(f"--overwrite: moved the previous run to {start.move_to}")
    for path, reason in start.unusable:
        logger.line(f"skipping checkpoint {path}: {reason}; moved it aside ({path.name}.corrupt)")
    if resumed is not None:
        logger.line(f"resumed from {resumed.path} at kimg {resumed.images_shown / 1000:.3f}")
    if start.superseded:
        names = ", ".join(path.name for path in start.superseded)
        logger.line(f"moved the newer checkpoints of the abandoned continuation aside (*.superseded): {names}")
    if start.changes:
        logger.line(f"changed since the last start: {run_files.describe_changes(start.changes)}")
    if dropped:
        logger.line(f"dropped {dropped} stats.jsonl row(s) after the resumed checkpoint (they are redone)")
    return logger


def write_reals(logger, samples_dir, config):
    """samples/reals.png: the first grid_size training images at the final resolution (once)."""
    path = samples_dir / "reals.png"
    if not atomic_files.exists(path):
        reals = np.concatenate(
            list(
                data_lib.iterate_images(
                    config.data_dir, config.network.resolution, config.grid_size, limit=config.grid_size
                )
            )
        )
        grid = images.tile_grid(reals, images.SAMPLE_MIN_TILE)
        images.save_png(path, grid)
        logger.image("reals", grid, 0)


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
        # The initial weights come from Keras' global RNG: seed it so that every worker, and a rerun
        # with the same --seed, starts from the same networks.
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = ProGAN(
                config.network,
                seed=config.seed,
                gp_weight=config.loss.gp_weight,
                gp_target=config.loss.gp_target,
                drift_weight=config.loss.drift_weight,
                ema_beta=config.optimizer.ema_beta,
                adam_beta_1=config.optimizer.beta_1,
                adam_beta_2=config.optimizer.beta_2,
                adam_epsilon=config.optimizer.epsilon,
                gp_reference_scaling=config.loss.gp_reference_scaling,
                mixed_precision=config.mixed_precision,
                jit_compile=config.jit_compile,
            )
        resume_from = start.checkpoint
        if resume_from is not None:
            ckpt_lib.restore_networks(model, resume_from)
            model.images_shown.assign(resume_from.images_shown)
        try:
            logger = _open_run_dir(config, start, chief)
            try:
                _train_loop(config, strategy, model, logger, manifest, resume_from, stop_requests)
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


def _train_loop(config, strategy, model, logger, manifest, resume_from, stop_requests):
    chief = logger.enabled
    run_dir = atomic_files.as_path(config.run_dir)
    checkpoint_dir, samples_dir = run_dir / "checkpoints", run_dir / "samples"
    if chief:
        write_reals(logger, samples_dir, config)
    replicas = strategy.num_replicas_in_sync
    logger.line(
        f"dataset {config.data_dir}: {manifest['num_images']} images, {replicas} replica(s), "
        f"G {model.generator.count_params():,} / D {model.discriminator.count_params():,} parameters"
    )
    grid_latents = tf.random.stateless_normal((config.grid_size, config.network.latent_size), seed=[config.seed, 7])
    total_images = round(config.schedule.total_kimg * 1000)
    images_shown = int(model.images_shown.numpy())
    # Ticks and training time continue across resumes.
    resumed_meta = resume_from.meta if resume_from is not None else {}
    tick = int(resumed_meta.get("tick", 0))
    meter = _TickMeter()
    all_phases = phases(config.schedule)
    progress = progress_lib.RunProgress(
        all_phases,
        total_images,
        images_shown,
        [cost_model.iteration_flops(config.network, p.resolution, p.fade_in, 1) for p in all_phases],
        elapsed_before=float(resumed_meta.get("time_sec", 0.0)),
    )
    streak = _SkipStreak()
    checkpoint_due, last_saved = False, images_shown if resume_from is not None else None

    def save(phase, phase_begin):
        position = {
            "images_shown": images_shown,
            "phase_index": phase.index,
            "phase_begin_images": phase_begin,
            "resolution": phase.resolution,
            "phase": phase.kind,
            "tick": tick,
            "time_sec": round(progress.elapsed_seconds(), 3),
        }
        try:
            return ckpt_lib.save_checkpoint(checkpoint_dir, model, position, keep=config.keep_checkpoints)
        except ckpt_lib.NonFiniteError as error:
            raise _diverged(config, phase, images_shown, f"{error} (not saved)") from None

    phase = None
    while images_shown < total_images:
        phase = phase_at(config.schedule, images_shown)
        with strategy.scope():
            model.start_phase(phase, replicas)
        phase_begin = images_shown
        if resume_from is not None and _same_phase(resume_from.meta, phase):
            ckpt_lib.restore_optimizers(model, resume_from)
            phase_begin = int(resume_from.meta["phase_begin_images"])
        resume_from = None
        skip_batches = (images_shown - phase_begin) // phase.batch_size
        iterator = iter(_distributed_dataset(strategy, config, phase, skip_batches))
        step = model.make_distributed_step(strategy)
        progress.start_phase(phase.index)
        logger.line(
            f"phase {phase.index}: {phase.resolution}x{phase.resolution} {phase.kind} "
            f"kimg {phase.start_kimg:g}-{phase.end_kimg:g}, batch {phase.batch_size}, lr {phase.learning_rate:g}"
        )
        learning_rate = None
        first_call = True
        while images_shown < min(phase.end_images, total_images):
            before = images_shown
            rate = learning_rate_at(config.schedule, phase, images_shown)
            if rate != learning_rate:  # each step of a ramp-up, else once (over a restored rate)
                for optimizer in (model.g_optimizer, model.d_optimizer):
                    optimizer.learning_rate.assign(rate)
                learning_rate = rate
            # One iteration first (its time is the phase's start-up) and while the rate ramps.
            ramping = learning_rate_at(config.schedule, phase, images_shown + phase.batch_size) != rate
            limit = 1 if first_call or ramping else steps_per_call(config, phase.resolution)
            iterations = iterations_until_boundary(config, phase, images_shown, total_images, limit)
            first_call = False
            try:
                call = step(iterator, iterations, stop_requests.as_flags())
            except tf.errors.DataLossError as error:  # a corrupt record: name the shard, not a traceback
                raise pyramid_check.explain_data_error(config.data_dir, phase.resolution, error) from None
            iterations = int(call["iterations"])  # fewer than asked when a stop was requested
            images_shown += iterations * phase.batch_size
            stop_signal = interrupts.agreed_signal(call["stop_sigint"], call["stop_sigterm"])
            meter.add(call["sums"], iterations)
            streak.add(call)
            progress.step_done(images_shown)
            kimg = images_shown / 1000
            phase_done = images_shown >= phase.end_images
            if crossed(before, images_shown, config.tick_kimg) or phase_done:
                tick += 1
                record = {
                    "tick": tick,
                    "kimg": round(kimg, 3),
                    "resolution": phase.resolution,
                    "phase": phase.kind,
                    "batch_size": phase.batch_size,
                    "learning_rate": learning_rate,
                    **meter.summary(),
                    **progress.tick(images_shown),
                }
                logger.stats(record, images_shown)
                logger.line(
                    f"tick {tick:<4d} {progress_lib.format_position(kimg, record)}  "
                    f"{phase.resolution}x{phase.resolution} {phase.kind:<9} "
                    f"alpha {record['alpha']:.3f}  d_loss {record['d_loss']:8.4f}  g_loss {record['g_loss']:8.4f}  "
                    f"gp {record['gradient_penalty']:.4f}  {progress_lib.format_speed(record)}  "
                    f"skipped {record['skipped_updates']}  {progress_lib.format_times(record)}"
                )
                meter.reset()
            if config.max_consecutive_skips and streak.length >= config.max_consecutive_skips:
                stop = _diverged(
                    config,
                    phase,
                    images_shown,
                    f"{streak.length} iterations in a row skipped an update ({streak.describe()}; "
                    f"--max_consecutive_skips={config.max_consecutive_skips})",
                )
                logger.line(str(stop), echo=False)
                raise stop
            if chief and (crossed(before, images_shown, config.sample_kimg) or phase_done):
                for label in write_samples(model, logger, samples_dir, grid_latents, images_shown):
                    logger.line(f"samples at kimg {kimg:.3f} not written: the {label} generator's output is not finite")
            if chief and crossed(before, images_shown, config.eval_kimg):
                evaluation = small_swd(
                    model.gs_model, config.data_dir, phase.resolution, config.eval_num_images, config.seed
                )
                if evaluation:
                    logger.stats({"kimg": round(kimg, 3), **evaluation}, images_shown)
                    logger.line(
                        f"eval kimg {kimg:9.3f}  swd_avg {evaluation['eval_swd_avg']:.3f}  ({evaluation['eval_sec']} s)"
                    )
            # A state that just skipped an update is where the run got stuck, not progress worth
            # rotating a good checkpoint out for: the checkpoint waits for an update that applies.
            checkpoint_due = checkpoint_due or crossed(before, images_shown, config.checkpoint_kimg) or phase_done
            if chief and checkpoint_due and streak.length == 0:
                save(phase, phase_begin)
                checkpoint_due, last_saved = False, images_shown
            if stop_signal is not None:
                name = signal.Signals(stop_signal).name
                message = f"stopped by {name} at kimg {kimg:.3f}"
                if not chief:
                    message += " with the other workers (the chief writes the checkpoint)"
                else:
                    saved = last_saved == images_shown
                    path = ckpt_lib.checkpoint_path(checkpoint_dir, images_shown) if saved else save(phase, phase_begin)
                    message += f": wrote {path}; rerun the same command to resume from it"
                logger.line(message, echo=False)
                raise RunStopped(message, interrupts.EXIT_CODES[stop_signal])
    if chief and checkpoint_due and phase is not None:
        save(phase, phase_begin)
    if chief and config.export_at_end and model.phase is not None:
        path = export.export_generator(model.gs_model, run_dir / "export", config.network.latent_size)
        logger.line(f"exported the EMA generator to {path} (SavedModel) and {path}.keras")
    logger.line(f"done: kimg {images_shown / 1000:.3f} in {progress.elapsed_seconds():.1f} s")
