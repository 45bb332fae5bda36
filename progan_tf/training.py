"""The progressive training loop: phases, logging, samples, checkpoints, export.

We drive `ProGAN.train_step` with our own `strategy.run` loop rather than `Model.fit`: it must
rebuild networks and optimizers at every phase, count images rather than epochs, and work under
MultiWorkerMirroredStrategy, where Keras 3's `fit` is broken (keras#20585).
"""

import json
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf import data as data_lib
from progan_tf import distribute, export, images, pyramid_check
from progan_tf import progress as progress_lib
from progan_tf.errors import UserInputError
from progan_tf.metrics.periodic import small_swd
from progan_tf.progan import ProGAN
from progan_tf.schedule import format_schedule, learning_rate_at, phase_at, phases


def crossed(before, after, interval):
    """Whether a counter moving from `before` to `after` passed a multiple of `interval`."""
    return interval > 0 and int(before // interval) != int(after // interval)


class RunLogger:
    """Writes log.txt, stats.jsonl and TensorBoard scalars/images (chief only)."""

    def __init__(self, run_dir, enabled):
        self.enabled = enabled
        self.run_dir = pathlib.Path(run_dir)
        if enabled:
            self.log_file = open(self.run_dir / "log.txt", "a", buffering=1)
            self.stats_file = open(self.run_dir / "stats.jsonl", "a", buffering=1)
            self.writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))

    def line(self, text):
        if self.enabled:
            print(text, flush=True)
            self.log_file.write(text + "\n")

    def stats(self, record, step):
        if not self.enabled:
            return
        self.stats_file.write(json.dumps(record) + "\n")
        with self.writer.as_default(step=step):
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "kimg":
                    tf.summary.scalar(key, value)

    def image(self, name, grid, step):
        if self.enabled:
            with self.writer.as_default(step=step):
                tf.summary.image(name, grid[None], max_outputs=1)

    def close(self):
        if self.enabled:
            self.writer.flush()
            self.log_file.close()
            self.stats_file.close()


class _TickMeter:
    """Averages step statistics between ticks (throughput: `progress.RunProgress`)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.steps, self.skipped = {}, 0, 0

    def add(self, stats):
        self.steps += 1
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.skipped += int(stats["d_finite"] < 1) + int(stats["g_finite"] < 1)

    def summary(self):
        record = {k: v / max(self.steps, 1) for k, v in self.sums.items() if not k.endswith("_finite")}
        record.update(skipped_updates=self.skipped)
        return record


def _resolve_resume(config, checkpoint_dir):
    if config.resume == "none":
        return None
    if config.resume == "latest":
        found = ckpt_lib.list_checkpoints(checkpoint_dir)
        return ckpt_lib.load_checkpoint(found[-1]) if found else None
    return ckpt_lib.load_checkpoint(config.resume)


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


def write_samples(model, logger, samples_dir, latents, images_shown):
    kimg = images_shown / 1000
    for label, network_model in (("ema", model.gs_model), ("raw", model.g_model)):
        fakes = images.to_uint8(network_model(latents, training=False))
        grid = images.tile_grid(fakes, images.SAMPLE_MIN_TILE)
        images.save_png(samples_dir / f"fakes-{label}-kimg{kimg:010.3f}.png", grid)
        logger.image(f"fakes_{label}", grid, images_shown)


def write_reals(logger, samples_dir, config):
    """samples/reals.png: the first grid_size training images at the final resolution (once)."""
    path = samples_dir / "reals.png"
    if not path.exists():
        reals = np.concatenate(list(data_lib.iterate_images(config.data_dir, config.network.resolution,
                                                            config.grid_size, limit=config.grid_size)))
        grid = images.tile_grid(reals, images.SAMPLE_MIN_TILE)
        images.save_png(path, grid)
        logger.image("reals", grid, 0)


def train(config, strategy=None):
    """Runs (or resumes) a training run; returns the final `ProGAN`.

    Args:
        config: A `TrainConfig`.
        strategy: A `tf.distribute.Strategy`; default from `distribute.make_strategy()`.
    """
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    manifest = _check_dataset(config)
    strategy = strategy or distribute.make_strategy()
    chief = distribute.is_chief()
    run_dir = pathlib.Path(config.run_dir)
    checkpoint_dir, samples_dir = run_dir / "checkpoints", run_dir / "samples"
    if chief:
        samples_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config.to_json())
        (run_dir / "schedule.txt").write_text(format_schedule(config.schedule) + "\n")
    logger = RunLogger(run_dir, chief)
    if chief:
        write_reals(logger, samples_dir, config)
    replicas = strategy.num_replicas_in_sync
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
        )
    resume_from = _resolve_resume(config, checkpoint_dir)
    if resume_from is not None:
        ckpt_lib.restore_networks(model, resume_from)
        model.images_shown.assign(resume_from.images_shown)
        logger.line(f"resumed from {resume_from.path} at kimg {resume_from.images_shown / 1000:.3f}")
    logger.line(
        f"dataset {config.data_dir}: {manifest['num_images']} images, {replicas} replica(s), "
        f"G {model.generator.count_params():,} / D {model.discriminator.count_params():,} parameters"
    )
    grid_latents = tf.random.stateless_normal((config.grid_size, config.network.latent_size), seed=[config.seed, 7])
    total_images = round(config.schedule.total_kimg * 1000)
    images_shown = int(model.images_shown.numpy())
    run_start = time.perf_counter()
    meter = _TickMeter()
    all_phases = phases(config.schedule)
    progress = progress_lib.RunProgress(
        all_phases, total_images, images_shown,
        [progress_lib.stage_macs(config.network, p.resolution, p.fade_in) for p in all_phases],
    )
    tick = 0
    while images_shown < total_images:
        phase = phase_at(config.schedule, images_shown)
        with strategy.scope():
            model.start_phase(phase, replicas)
        phase_begin = images_shown
        if resume_from is not None and resume_from.meta["phase_index"] == phase.index:
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
        while images_shown < min(phase.end_images, total_images):
            before = images_shown
            rate = learning_rate_at(config.schedule, phase, images_shown)
            if rate != learning_rate:  # each step of a ramp-up, else once (over a restored rate)
                for optimizer in (model.g_optimizer, model.d_optimizer):
                    optimizer.learning_rate.assign(rate)
                learning_rate = rate
            try:
                stats = step(iterator)
            except tf.errors.DataLossError as error:  # a corrupt record: name the shard, not a traceback
                raise pyramid_check.explain_data_error(config.data_dir, phase.resolution, error) from None
            images_shown += phase.batch_size
            meter.add({k: v.numpy() for k, v in stats.items()})
            progress.step_done(images_shown)
            kimg_before, kimg = before / 1000, images_shown / 1000
            phase_done = images_shown >= phase.end_images
            if crossed(kimg_before, kimg, config.tick_kimg) or phase_done:
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
            if chief and (crossed(kimg_before, kimg, config.sample_kimg) or phase_done):
                write_samples(model, logger, samples_dir, grid_latents, images_shown)
            if chief and crossed(kimg_before, kimg, config.eval_kimg):
                evaluation = small_swd(model.gs_model, config.data_dir, phase.resolution, config.eval_num_images, config.seed)
                if evaluation:
                    logger.stats({"kimg": round(kimg, 3), **evaluation}, images_shown)
                    logger.line(f"eval kimg {kimg:9.3f}  swd_avg {evaluation['eval_swd_avg']:.3f}  ({evaluation['eval_sec']} s)")
            if chief and (crossed(kimg_before, kimg, config.checkpoint_kimg) or phase_done):
                position = {"images_shown": images_shown, "phase_index": phase.index, "phase_begin_images": phase_begin}
                ckpt_lib.save_checkpoint(checkpoint_dir, model, position, keep=config.keep_checkpoints)
    if chief and config.export_at_end and model.phase is not None:
        path = export.export_generator(model.gs_model, run_dir / "export", config.network.latent_size)
        logger.line(f"exported the EMA generator to {path} (SavedModel) and {path}.keras")
    logger.line(f"done: kimg {images_shown / 1000:.3f} in {time.perf_counter() - run_start:.1f} s")
    logger.close()
    return model
