"""`--mode=train`: the validated `TrainConfig` of the flags, then `training.train`."""

import pathlib

import keras

from progan_tf import distribute, training
from progan_tf.config import LossConfig, NetworkConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from progan_tf.convert.imported_run import continue_imported_run
from progan_tf.errors import UserInputError
from progan_tf.layers.minibatch_stddev import checked_group_size
from progan_tf.resolutions import resolution_log2
from progan_tf.schedule import format_schedule


def _parse_resolution_map(entries, flag_name, cast):
    parsed = {}
    for entry in entries:
        key, sep, value = entry.partition(":")
        try:
            if not sep:
                raise ValueError(entry)
            resolution, parsed_value = int(key), cast(value)
        except ValueError:
            raise UserInputError(
                f"--{flag_name} entries must look like RESOLUTION:VALUE. Received: {flag_name}={','.join(entries)}"
            ) from None
        resolution_log2(resolution, name=f"{flag_name} resolution")
        if parsed_value <= 0:
            raise UserInputError(f"--{flag_name} values must be positive. Received: {entry}")
        parsed[resolution] = parsed_value
    return tuple(sorted(parsed.items()))


def network_config_from_flags(values):
    return NetworkConfig(
        resolution=values.resolution,
        num_channels=values.num_channels,
        latent_size=values.latent_size,
        fmap_base=values.fmap_base,
        fmap_decay=values.fmap_decay,
        fmap_max=values.fmap_max,
        fused_resample=values.fused_resample,
        mbstd_group_size=values.mbstd_group_size,
    )


def schedule_config_from_flags(values):
    return ScheduleConfig(
        final_resolution=values.resolution,
        stabilize_kimg=values.stabilize_kimg,
        transition_kimg=values.transition_kimg,
        total_kimg=values.total_kimg,
        batch_sizes=_parse_resolution_map(values.batch_sizes, "batch_sizes", int),
        default_batch_size=values.batch_size,
        learning_rates=_parse_resolution_map(values.learning_rates, "learning_rates", float),
        learning_rate=values.learning_rate,
        lr_rampup_kimg=values.lr_rampup_kimg,
    )


def check_batch_sizes(network, schedule):
    """Every phase's batch must split into minibatch-stddev groups (checked before any work)."""
    for resolution in network.resolutions:
        checked_group_size(
            schedule.batch_size(resolution),
            network.mbstd_group_size,
            f"The {resolution}x{resolution} batch size (--batch_sizes / --batch_size, groups: --mbstd_group_size)",
        )


def default_run_dir(values):
    data_name = pathlib.Path(values.data_dir or "run").name
    return str(pathlib.Path("runs") / f"{data_name}-{values.resolution}")


def train_config_from_flags(values):
    """The validated `TrainConfig` of the parsed flags (a UserInputError names a bad flag)."""
    if not values.data_dir:
        raise UserInputError(
            "--data_dir is required for training: a pyramid from `python -m datasets.build`. Received: data_dir=None"
        )
    network, schedule = network_config_from_flags(values), schedule_config_from_flags(values)
    run_dir = values.run_dir or default_run_dir(values)
    # A run dir of `python -m progan_tf.convert`: continue its networks from their stage.
    network, schedule = continue_imported_run(
        run_dir, network, schedule, lambda name: values[name].present, values.resume
    )
    check_batch_sizes(network, schedule)
    return TrainConfig(
        data_dir=values.data_dir,
        run_dir=run_dir,
        network=network,
        schedule=schedule,
        loss=LossConfig(
            gp_weight=values.gp_weight,
            gp_target=values.gp_target,
            drift_weight=values.drift_weight,
            gp_reference_scaling=values.gp_reference_scaling,
        ),
        optimizer=OptimizerConfig(
            beta_1=values.adam_beta1,
            beta_2=values.adam_beta2,
            epsilon=values.adam_epsilon,
            ema_beta=values.ema_beta,
        ),
        seed=values.seed,
        mirror_augment=values.mirror_augment,
        mixed_precision=values.mixed_precision,
        tick_kimg=values.tick_kimg,
        sample_kimg=values.sample_kimg,
        checkpoint_kimg=values.checkpoint_kimg,
        keep_checkpoints=values.keep_checkpoints,
        resume=values.resume,
        overwrite=values.overwrite,
        max_consecutive_skips=values.max_consecutive_skips,
        steps_per_call=values.steps_per_call,
        jit_compile=values.jit_compile,
        grid_size=values.grid_size,
        export_at_end=values.export_at_end,
        deterministic=values.deterministic,
        eval_kimg=values.eval_kimg,
        eval_num_images=values.eval_num_images,
        verify_data=values.verify_data,
    )


def run(values):
    config = train_config_from_flags(values)
    if values.dry_run:
        print(config.to_json())
        print(format_schedule(config.schedule))
        return
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribute.make_strategy()
    print(distribute.describe(strategy), flush=True)
    training.train(config, strategy)
