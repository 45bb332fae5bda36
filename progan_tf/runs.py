"""Reading a finished or running training run back: its config and its latest generator."""

import json

from progan_tf import atomic_files
from progan_tf import checkpoint as ckpt_lib
from progan_tf.config import TrainConfig
from progan_tf.errors import UserInputError
from progan_tf.progan import ProGAN
from progan_tf.schedule import phases


def load_train_config(run_dir):
    """The `TrainConfig` a run wrote to `<run_dir>/config.json`."""
    path = atomic_files.path_in(run_dir, "config.json")
    if not atomic_files.exists(path):
        raise UserInputError(f"No config.json in the run directory (not a progan-tf run?). Received: run_dir={run_dir}")
    try:
        return TrainConfig.from_dict(json.loads(atomic_files.read_text(path)))
    except (ValueError, TypeError) as error:  # bad JSON, a UserInputError naming the key, a mistyped value
        raise UserInputError(f"{path} is not a valid run config ({error}). Received: run_dir={run_dir}") from None


def find_checkpoint(run_dir, checkpoint=None):
    """`checkpoint` if given, else the newest checkpoint of the run."""
    if checkpoint:
        return ckpt_lib.load_checkpoint(checkpoint)
    found = ckpt_lib.list_checkpoints(atomic_files.path_in(run_dir, "checkpoints"))
    if not found:
        raise UserInputError(f"The run has no checkpoints yet. Received: run_dir={run_dir}")
    return ckpt_lib.load_checkpoint(found[-1])


def load_trained_model(run_dir, checkpoint=None):
    """A `ProGAN` restored from a run's checkpoint, set to the phase (and alpha) it was saved in.

    Returns:
        (model, config, checkpoint). `model.gs_model` is the EMA generator of that stage and
        `model.d_model` the critic.
    """
    config = load_train_config(run_dir)
    saved = find_checkpoint(run_dir, checkpoint)
    model = ProGAN(config.network, loss=config.loss, optimizer=config.optimizer, seed=config.seed)
    ckpt_lib.restore_networks(model, saved)
    model.images_shown.assign(saved.images_shown)
    # The phase that wrote the checkpoint (a phase-end checkpoint may overshoot the phase's end
    # by part of a batch, so the image count alone can name the next phase).
    model.start_phase(phases(config.schedule)[int(saved.meta["phase_index"])])
    model.set_alpha(model.phase.alpha(saved.images_shown))
    return model, config, saved
