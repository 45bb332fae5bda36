"""Every command-line flag of main.py, defined by `define_flags()`.

main.py calls `define_flags()` before parsing (the tensorflow/models pattern): importing the
library defines no flags, and only `progan_tf.cli` reads them. Defaults come from the config
dataclasses (`progan_tf.config`), so each default lives in one place.
"""

from absl import flags

from progan_tf.config import LossConfig, NetworkConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from progan_tf.explain import DEFAULT_METHODS as DEFAULT_EXPLAIN_METHODS
from progan_tf.explain import METHODS as EXPLAIN_METHODS
from progan_tf.generate import VIDEO_BLOCK
from progan_tf.networks import FUSED_RESAMPLE_MODES

MODES = ("train", "export", "generate", "evaluate", "explain")

FLAGS = flags.FLAGS


def _resolution_map_default(pairs):
    return [f"{resolution}:{value}" for resolution, value in pairs]


def define_flags():
    """Defines main.py's flags on `absl.flags.FLAGS` (once; later calls do nothing)."""
    if "mode" in FLAGS:
        return
    _define_mode_flags()
    _define_data_flags()
    _define_network_flags()
    _define_schedule_flags()
    _define_loss_and_optimizer_flags()
    _define_step_flags()
    _define_logging_flags()
    _define_checkpoint_flags()
    _define_model_output_flags()
    _define_generate_flags()
    _define_evaluate_flags()
    _define_explain_flags()


def _define_mode_flags():
    """What main.py does, --dry_run, and the process's op threads."""
    flags.DEFINE_enum("mode", "train", MODES, "What main.py does.")
    flags.DEFINE_bool("dry_run", False, "Print the resolved config and the schedule table, then exit.")
    flags.DEFINE_integer(
        "intra_op_threads",
        0,
        "Threads per TensorFlow op, any mode (0: TensorFlow's choice, all cores). On a CPU with few cores "
        "1 is faster for narrow networks (BUILD.md, Measurements); it does not change what is computed.",
        lower_bound=0,
    )


def _define_data_flags():
    """The dataset, the run directory and how the real images are read."""
    flags.DEFINE_string("data_dir", None, "Dataset pyramid built by `python -m datasets.build`.")
    flags.DEFINE_string("run_dir", None, "Run directory (config, logs, samples, checkpoints, export).")
    flags.DEFINE_bool(
        "mirror_augment", TrainConfig.mirror_augment, "Random horizontal flips of the real images (p=0.5)."
    )
    flags.DEFINE_bool(
        "verify_data",
        TrainConfig.verify_data,
        "Check every shard's sha256 before training (sizes are always checked).",
    )
    flags.DEFINE_bool(
        "deterministic",
        TrainConfig.deterministic,
        "Deterministic TF ops (slower; the input order is always deterministic).",
    )


def _define_network_flags():
    """The architecture (`NetworkConfig`)."""
    flags.DEFINE_integer("resolution", NetworkConfig.resolution, "Final resolution, a power of two in [4, 1024].")
    flags.DEFINE_integer("num_channels", NetworkConfig.num_channels, "Image channels (1 or 3).")
    flags.DEFINE_integer("latent_size", NetworkConfig.latent_size, "Latent dimension.")
    flags.DEFINE_integer(
        "fmap_base", NetworkConfig.fmap_base, "Feature maps at stage s: min(fmap_base / 2**(s*fmap_decay), fmap_max)."
    )
    flags.DEFINE_float("fmap_decay", NetworkConfig.fmap_decay, "See --fmap_base.")
    flags.DEFINE_integer("fmap_max", NetworkConfig.fmap_max, "See --fmap_base.")
    flags.DEFINE_enum(
        "fused_resample",
        NetworkConfig.fused_resample,
        FUSED_RESAMPLE_MODES,
        "auto: the paper's networks (critic unfused; generator upsample+conv fused from 128 px, the same "
        "function); always: the authors' TF1 networks (both fused from 8 px: the critic pools before its "
        "activation); never: nothing fused.",
    )
    flags.DEFINE_integer(
        "mbstd_group_size", NetworkConfig.mbstd_group_size, "Minibatch-stddev group size.", lower_bound=1
    )


def _define_schedule_flags():
    """Phase lengths, minibatches and learning rates (`ScheduleConfig`)."""
    flags.DEFINE_float(
        "stabilize_kimg",
        ScheduleConfig.stabilize_kimg,
        "Thousands of images each resolution is stabilised.",
        lower_bound=1e-3,
    )
    flags.DEFINE_float(
        "transition_kimg", ScheduleConfig.transition_kimg, "Thousands of images of each fade-in.", lower_bound=1e-3
    )
    flags.DEFINE_float(
        "total_kimg", ScheduleConfig.total_kimg, "Length of the run in thousands of images.", lower_bound=1e-3
    )
    flags.DEFINE_list(
        "batch_sizes",
        _resolution_map_default(ScheduleConfig.batch_sizes),
        "Global minibatch per resolution, e.g. 4:128,8:128,32:64.",
    )
    flags.DEFINE_integer(
        "batch_size",
        ScheduleConfig.default_batch_size,
        "Global minibatch for resolutions not in --batch_sizes.",
        lower_bound=1,
    )
    flags.DEFINE_float("learning_rate", ScheduleConfig.learning_rate, "Adam learning rate of G and D.", lower_bound=0.0)
    flags.DEFINE_list(
        "learning_rates",
        _resolution_map_default(ScheduleConfig.learning_rates),
        "Learning rate per resolution, e.g. 128:0.0015,256:0.002.",
    )
    flags.DEFINE_float(
        "lr_rampup_kimg",
        ScheduleConfig.lr_rampup_kimg,
        "Ramp the learning rates up over the first this many kimg (the paper's Theano runs: 40; 0: off).",
        lower_bound=0.0,
    )


def _define_loss_and_optimizer_flags():
    """The seed, the WGAN-GP loss (`LossConfig`), Adam and the EMA (`OptimizerConfig`)."""
    flags.DEFINE_integer("seed", TrainConfig.seed, "Seed of latents, data order and initial weights.")
    flags.DEFINE_float("gp_weight", LossConfig.gp_weight, "WGAN-GP weight.", lower_bound=0.0)
    flags.DEFINE_float("gp_target", LossConfig.gp_target, "WGAN-GP target gradient norm.", lower_bound=1e-6)
    flags.DEFINE_float("drift_weight", LossConfig.drift_weight, "Weight of D(real)^2.", lower_bound=0.0)
    flags.DEFINE_float(
        "ema_beta", OptimizerConfig.ema_beta, "Generator EMA decay per critic step.", lower_bound=0.0, upper_bound=1.0
    )
    flags.DEFINE_float("adam_beta1", OptimizerConfig.beta_1, "Adam beta_1.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("adam_beta2", OptimizerConfig.beta_2, "Adam beta_2.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("adam_epsilon", OptimizerConfig.epsilon, "Adam epsilon.", lower_bound=0.0)
    flags.DEFINE_bool(
        "gp_reference_scaling",
        LossConfig.gp_reference_scaling,
        "Measure the penalty's gradient norm as the reference code does on nearest-upscaled "
        "full-resolution inputs (norm / (final_resolution / resolution)). False: native-resolution norm.",
    )


def _define_step_flags():
    """How a training step runs: precision, compilation, iterations per call, skipped updates."""
    flags.DEFINE_bool("mixed_precision", TrainConfig.mixed_precision, "mixed_float16 with dynamic loss scaling (GPU).")
    flags.DEFINE_bool("jit_compile", TrainConfig.jit_compile, "XLA-compile the gradient computations (GPUs).")
    flags.DEFINE_integer(
        "steps_per_call",
        TrainConfig.steps_per_call,
        "Training iterations per compiled call (0: 16 at 4x4, 8 at 8x8, 4 at 16x16, 2 at 32x32, else 1).",
        lower_bound=0,
    )
    flags.DEFINE_integer(
        "max_consecutive_skips",
        TrainConfig.max_consecutive_skips,
        "Stop (exit 3) after this many iterations in a row skip a non-finite update (0: never).",
        lower_bound=0,
    )


def _define_logging_flags():
    """Log ticks, sample grids and the periodic small-sample SWD."""
    flags.DEFINE_float("tick_kimg", TrainConfig.tick_kimg, "Log a tick line every this many kimg.", lower_bound=1e-3)
    flags.DEFINE_float(
        "sample_kimg",
        TrainConfig.sample_kimg,
        "Write sample grids every this many kimg (0: phase ends only).",
        lower_bound=0.0,
    )
    flags.DEFINE_integer("grid_size", TrainConfig.grid_size, "Images in sample grids.", lower_bound=1)
    flags.DEFINE_float(
        "eval_kimg",
        TrainConfig.eval_kimg,
        "Small-sample SWD during training every this many kimg (0: off).",
        lower_bound=0.0,
    )
    flags.DEFINE_integer(
        "eval_num_images",
        TrainConfig.eval_num_images,
        "Images per side of the periodic SWD (--eval_kimg).",
        lower_bound=2,
    )


def _define_checkpoint_flags():
    """Checkpoints, resuming, starting over and the export at the end."""
    flags.DEFINE_float(
        "checkpoint_kimg",
        TrainConfig.checkpoint_kimg,
        "Checkpoint every this many kimg (0: phase ends only).",
        lower_bound=0.0,
    )
    flags.DEFINE_integer("keep_checkpoints", TrainConfig.keep_checkpoints, "Checkpoints kept (0: all).", lower_bound=0)
    flags.DEFINE_string(
        "resume",
        TrainConfig.resume,
        "'latest' (in --run_dir), 'none', or a checkpoint prefix (<run_dir>/checkpoints/ckpt-N).",
    )
    flags.DEFINE_bool(
        "overwrite",
        TrainConfig.overwrite,
        "With --resume=none on a run directory holding checkpoints: move it to <run_dir>.old-<time>, start over.",
    )
    flags.DEFINE_bool("export_at_end", TrainConfig.export_at_end, "Export the EMA generator when training ends.")


def _define_model_output_flags():
    """What export / generate / evaluate / explain read and write."""
    flags.DEFINE_string(
        "checkpoint",
        None,
        "Checkpoint prefix (<run_dir>/checkpoints/ckpt-N) to export / generate / explain from (default: latest).",
    )
    flags.DEFINE_string("savedmodel", None, "Exported SavedModel to generate or evaluate from.")
    flags.DEFINE_string(
        "output_dir", None, "Where export / generate / evaluate / explain write (default: inside --run_dir)."
    )
    flags.DEFINE_integer("num_images", 16, "Images to generate (generate) or per side (evaluate).", lower_bound=1)
    flags.DEFINE_integer(
        "generate_seed", 0, "Seed of generated latents (the same images in generate, evaluate, explain)."
    )


def _define_generate_flags():
    """`--mode=generate`'s interpolation strip and walk (GIF, MP4)."""
    flags.DEFINE_integer(
        "interpolation_steps",
        0,
        "Also write an interpolation strip of this many frames and a walk (GIF, MP4) of this many frames per keyframe.",
        lower_bound=0,
    )
    flags.DEFINE_integer("walk_keyframes", 4, "generate: latents the looping GIF walk passes through.", lower_bound=2)
    flags.DEFINE_integer("gif_frame_ms", 80, "generate: milliseconds per GIF frame.", lower_bound=10, upper_bound=10000)
    flags.DEFINE_float(
        "video_fps", 30.0, "generate: frames per second of walk.mp4.", lower_bound=0.1, upper_bound=240.0
    )
    flags.DEFINE_integer(
        "video_size",
        512,
        f"generate: walk.mp4 frame side in pixels (a multiple of {VIDEO_BLOCK}).",
        lower_bound=VIDEO_BLOCK,
    )
    flags.register_validator(
        "video_size",
        lambda size: size % VIDEO_BLOCK == 0,
        message=f"--video_size must be a multiple of {VIDEO_BLOCK} (H.264 macroblocks).",
    )
    flags.register_validator(
        "interpolation_steps",
        lambda steps: steps != 1,
        message="--interpolation_steps must be 0 (off) or >= 2 (an interpolation has two ends).",
    )


def _define_evaluate_flags():
    """`--mode=evaluate`'s metrics and image sets."""
    flags.DEFINE_list("metrics", ["swd", "msssim"], "Metrics to evaluate: swd, msssim, fid.")
    flags.DEFINE_string("real_dir", None, "Real images for evaluate: a pyramid or a folder (default: --data_dir).")
    flags.DEFINE_string("fake_dir", None, "Fake images for evaluate: a folder, instead of a generator.")
    flags.DEFINE_string("inception_weights", None, "Local Inception-v3 weights file for FID (no downloads).")


def _define_explain_flags():
    """`--mode=explain`'s maps."""
    flags.DEFINE_list(
        "explain_methods", list(DEFAULT_EXPLAIN_METHODS), f"explain: maps to draw: {', '.join(EXPLAIN_METHODS)}."
    )
    flags.register_validator(
        "explain_methods",
        lambda names: bool(names) and all(name in EXPLAIN_METHODS for name in names),
        message=f"--explain_methods must be a non-empty list of {', '.join(EXPLAIN_METHODS)}.",
    )
