"""The run directory's writes outside the logs and checkpoints: what a start sets up (once
`run_files.check_start` allowed it), the real-image grid and the sample grids."""

import numpy as np
import tensorflow as tf

from progan_tf import atomic_files, images, run_files
from progan_tf import checkpoint as ckpt_lib
from progan_tf import data as data_lib
from progan_tf.run_log import RunLogger
from progan_tf.schedule import format_schedule


def open_run_dir(config, start, chief):
    """The writes of a start, once `run_files.check_start` passed; returns the `RunLogger`."""
    run_dir = atomic_files.as_path(config.run_dir)
    resumed = start.checkpoint
    dropped, moved_to = 0, {}
    if chief:
        if start.move_to is not None:
            with run_files.writing(run_dir, f"(moving aside to {start.move_to}) the run directory"):
                atomic_files.move_tree(run_dir, start.move_to)
        for path, _ in start.unusable:
            moved_to[path] = ckpt_lib.set_aside(path)
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
    for path, target in moved_to.items():  # the chief's: the other workers log nothing
        reason = dict(start.unusable)[path]
        logger.line(f"skipping checkpoint {path}: {reason}; moved it aside ({target.name})")
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
