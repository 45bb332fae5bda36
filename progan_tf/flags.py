"""Every command-line flag of `main.py`, its validation, and the configs built from it."""

import pathlib

from absl import flags

from progan_tf.errors import UserInputError
from progan_tf.networks import FUSED_RESAMPLE_MODES, NetworkConfig, resolution_log2
from progan_tf.schedule import ScheduleConfig
from progan_tf.training import TrainConfig

MODES = ("train", "export", "generate", "evaluate", "explain")

FLAGS = flags.FLAGS

# What to do.
flags.DEFINE_enum("mode", "train", MODES, "What main.py does.")
flags.DEFINE_bool("dry_run", False, "Print the resolved config and the schedule table, then exit.")

# Data and run directory.
flags.DEFINE_string("data_dir", None, "Dataset pyramid built by `python -m datasets.build`.")
flags.DEFINE_string("run_dir", None, "Run directory (config, logs, samples, checkpoints, export).")
flags.DEFINE_bool("mirror_augment", True, "Random horizontal flips of the real images (p=0.5).")
flags.DEFINE_bool("deterministic", False, "Deterministic TF ops (slower; the input order is always deterministic).")

# Networks.
flags.DEFINE_integer("resolution", 1024, "Final resolution, a power of two in [4, 1024].")
flags.DEFINE_integer("num_channels", 3, "Image channels (1 or 3).")
flags.DEFINE_integer("latent_size", 512, "Latent dimension.")
flags.DEFINE_integer("fmap_base", 8192, "Feature maps at stage s: min(fmap_base / 2**(s*fmap_decay), fmap_max).")
flags.DEFINE_float("fmap_decay", 1.0, "See --fmap_base.")
flags.DEFINE_integer("fmap_max", 512, "See --fmap_base.")
flags.DEFINE_enum("fused_resample", "auto", FUSED_RESAMPLE_MODES, "Fused up/down convolutions (auto: from 128 px).")
flags.DEFINE_integer("mbstd_group_size", 4, "Minibatch-stddev group size.", lower_bound=1)

# Schedule.
flags.DEFINE_float("stabilize_kimg", 600.0, "Thousands of images each resolution is stabilised.", lower_bound=1e-3)
flags.DEFINE_float("transition_kimg", 600.0, "Thousands of images of each fade-in.", lower_bound=1e-3)
flags.DEFINE_float("total_kimg", 12000.0, "Length of the run in thousands of images.", lower_bound=1e-3)
flags.DEFINE_list("batch_sizes", [], "Global minibatch per resolution, e.g. 4:128,8:128,32:64.")
flags.DEFINE_integer("batch_size", 16, "Global minibatch for resolutions not in --batch_sizes.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.001, "Adam learning rate of G and D.", lower_bound=0.0)
flags.DEFINE_list("learning_rates", [], "Learning rate per resolution, e.g. 128:0.0015,256:0.002.")

# Loss and optimisation.
flags.DEFINE_integer("seed", 1000, "Seed of latents, data order and initial weights.")
flags.DEFINE_float("gp_weight", 10.0, "WGAN-GP weight.", lower_bound=0.0)
flags.DEFINE_float("gp_target", 1.0, "WGAN-GP target gradient norm.", lower_bound=1e-6)
flags.DEFINE_float("drift_weight", 0.001, "Weight of D(real)^2.", lower_bound=0.0)
flags.DEFINE_float("ema_beta", 0.999, "Generator EMA decay per critic step.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("adam_beta1", 0.0, "Adam beta_1.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("adam_beta2", 0.99, "Adam beta_2.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon.", lower_bound=0.0)
flags.DEFINE_bool(
    "gp_reference_scaling",
    True,
    "Measure the penalty's gradient norm as the reference code does on nearest-upscaled "
    "full-resolution inputs (norm / (final_resolution / resolution)). False: native-resolution norm.",
)
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 with dynamic loss scaling (GPU).")

# Logging, snapshots, checkpoints.
flags.DEFINE_float("tick_kimg", 10.0, "Log a tick line every this many kimg.", lower_bound=1e-3)
flags.DEFINE_float("sample_kimg", 50.0, "Write sample grids every this many kimg (0: phase ends only).", lower_bound=0.0)
flags.DEFINE_float("checkpoint_kimg", 100.0, "Checkpoint every this many kimg (0: phase ends only).", lower_bound=0.0)
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept (0: all).", lower_bound=0)
flags.DEFINE_string("resume", "latest", "'latest' (in --run_dir), 'none', or a checkpoint path.")
flags.DEFINE_bool("overwrite", False, "With --resume=none on a run directory holding checkpoints: move it to <run_dir>.old-<time> and start over.")
flags.DEFINE_integer(
    "max_consecutive_skips", 50, "Stop (exit 3) when this many iterations in a row skip a non-finite update (0: never).", lower_bound=0
)
flags.DEFINE_integer("grid_size", 36, "Images in sample grids.", lower_bound=1)
flags.DEFINE_bool("export_at_end", True, "Export the EMA generator when training ends.")

# Export / generate / evaluate / explain.
flags.DEFINE_string("checkpoint", None, "Checkpoint (.npz) to export / generate / explain from (default: latest in --run_dir).")
flags.DEFINE_string("savedmodel", None, "Exported SavedModel to generate or evaluate from.")
flags.DEFINE_string("output_dir", None, "Where export / generate / evaluate / explain write (default: inside --run_dir).")
flags.DEFINE_integer("num_images", 16, "Images to generate (generate) or per side (evaluate).", lower_bound=1)
flags.DEFINE_integer("generate_seed", 0, "Seed of generated latents.")
flags.DEFINE_integer("interpolation_steps", 0, "Also write a latent interpolation strip / GIF with this many frames.", lower_bound=0)
flags.DEFINE_list("metrics", ["swd", "msssim"], "Metrics to evaluate: swd, msssim, fid.")
flags.DEFINE_string("real_dir", None, "Real images for evaluate: a pyramid or a folder (default: --data_dir).")
flags.DEFINE_string("fake_dir", None, "Fake images for evaluate: a folder, instead of a generator.")
flags.DEFINE_string("inception_weights", None, "Local Inception-v3 weights file for FID (no downloads).")
flags.DEFINE_integer("walk_keyframes", 4, "generate: latents the looping GIF walk passes through.", lower_bound=2)
flags.DEFINE_integer("gif_frame_ms", 80, "generate: milliseconds per GIF frame.", lower_bound=10, upper_bound=10000)
flags.DEFINE_list(
    "explain_methods", ["saliency", "gradcam"], "explain: maps to draw: saliency, smoothgrad, gradcam, gradcam++."
)
flags.DEFINE_float("eval_kimg", 0.0, "Small-sample SWD during training every this many kimg (0: off).", lower_bound=0.0)
flags.DEFINE_integer("eval_num_images", 256, "Images per side of the periodic SWD (--eval_kimg).", lower_bound=2)
flags.register_validator(
    "explain_methods",
    lambda names: bool(names) and all(n in ("saliency", "smoothgrad", "gradcam", "gradcam++") for n in names),
    message="--explain_methods must be a non-empty list of saliency, smoothgrad, gradcam, gradcam++.",
)
flags.register_validator(
    "interpolation_steps",
    lambda steps: steps != 1,
    message="--interpolation_steps must be 0 (off) or >= 2 (an interpolation has two ends).",
)


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


def network_config_from_flags(values=FLAGS):
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


def schedule_config_from_flags(values=FLAGS):
    return ScheduleConfig(
        final_resolution=values.resolution,
        stabilize_kimg=values.stabilize_kimg,
        transition_kimg=values.transition_kimg,
        total_kimg=values.total_kimg,
        batch_sizes=_parse_resolution_map(values.batch_sizes, "batch_sizes", int),
        default_batch_size=values.batch_size,
        learning_rates=_parse_resolution_map(values.learning_rates, "learning_rates", float),
        learning_rate=values.learning_rate,
    )


def check_batch_sizes(network, schedule):
    """Every phase's batch must split into minibatch-stddev groups (checked before any work)."""
    for resolution in network.resolutions:
        batch = schedule.batch_size(resolution)
        group = min(network.mbstd_group_size, batch)
        if batch % group:
            raise UserInputError(
                f"The {resolution}x{resolution} batch size must be divisible by the minibatch-stddev group "
                f"size {group} (--mbstd_group_size). Received: batch_size={batch}"
            )


def default_run_dir(values=FLAGS):
    data_name = pathlib.Path(values.data_dir or "run").name
    return str(pathlib.Path("runs") / f"{data_name}-{values.resolution}")


def train_config_from_flags(values=FLAGS):
    """The validated `TrainConfig` of the parsed flags (a UserInputError names a bad flag)."""
    if not values.data_dir:
        raise UserInputError("--data_dir is required for training: a pyramid from `python -m datasets.build`. Received: data_dir=None")
    network, schedule = network_config_from_flags(values), schedule_config_from_flags(values)
    check_batch_sizes(network, schedule)
    return TrainConfig(
        data_dir=values.data_dir,
        run_dir=values.run_dir or default_run_dir(values),
        network=network,
        schedule=schedule,
        seed=values.seed,
        mirror_augment=values.mirror_augment,
        gp_weight=values.gp_weight,
        gp_target=values.gp_target,
        drift_weight=values.drift_weight,
        ema_beta=values.ema_beta,
        adam_beta_1=values.adam_beta1,
        adam_beta_2=values.adam_beta2,
        adam_epsilon=values.adam_epsilon,
        gp_reference_scaling=values.gp_reference_scaling,
        mixed_precision=values.mixed_precision,
        tick_kimg=values.tick_kimg,
        sample_kimg=values.sample_kimg,
        checkpoint_kimg=values.checkpoint_kimg,
        keep_checkpoints=values.keep_checkpoints,
        resume=values.resume,
        overwrite=values.overwrite,
        max_consecutive_skips=values.max_consecutive_skips,
        grid_size=values.grid_size,
        export_at_end=values.export_at_end,
        deterministic=values.deterministic,
        eval_kimg=values.eval_kimg,
        eval_num_images=values.eval_num_images,
    )
