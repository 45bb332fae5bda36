"""Training checkpoints: every network and optimizer variable plus the run position, in one file.

A checkpoint is a NumPy `.npz` archive named by the images shown (`ckpt-<images>.npz`), written to
a temporary name, flushed to disk and renamed, so a crash never leaves a half-written checkpoint
under a real name. All randomness of the training loop is a stateless function of
(seed, images shown) and the data order a function of (seed, phase, batches consumed), so the
images count and the phase's starting count are the whole random state.
"""

import dataclasses
import json
import os
import pathlib
import re
import zipfile

import numpy as np

from progan_tf.errors import UserInputError

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{12})\.npz$")


@dataclasses.dataclass
class Checkpoint:
    path: pathlib.Path
    meta: dict
    arrays: dict

    @property
    def images_shown(self):
        return int(self.meta["images_shown"])

    def group(self, prefix):
        """The arrays saved under `prefix/NNNN`, in order."""
        keys = sorted(k for k in self.arrays if k.startswith(prefix + "/"))
        return [self.arrays[k] for k in keys]


def checkpoint_path(directory, images_shown):
    return pathlib.Path(directory) / f"ckpt-{int(images_shown):012d}.npz"


def list_checkpoints(directory):
    """Complete checkpoints in `directory`, oldest first."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def save_checkpoint(directory, model, meta, keep=5):
    """Writes the model's networks and current optimizers atomically; keeps the `keep` newest.

    Args:
        directory: Folder of the run's checkpoints (created if needed).
        model: A `ProGAN` with a started phase.
        meta: JSON-serialisable run position; must hold `images_shown`.
        keep: How many checkpoints to keep (0 keeps all).

    Returns:
        The checkpoint's path.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, network in model.networks.items():
        for index, value in enumerate(network.get_weight_values()):
            arrays[f"{name}/{index:04d}"] = value
    for name, optimizer in (("g_optimizer", model.g_optimizer), ("d_optimizer", model.d_optimizer)):
        for index, variable in enumerate(optimizer.variables):
            arrays[f"{name}/{index:04d}"] = np.asarray(variable.numpy())
    arrays["meta"] = np.array(json.dumps({**meta, "format_version": FORMAT_VERSION}))
    for stale in directory.glob("ckpt-*.npz.tmp"):  # left by a run killed while writing
        stale.unlink()
    path = checkpoint_path(directory, meta["images_shown"])
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory_fd = os.open(directory, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    if keep:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink()
    return path


def load_checkpoint(path):
    """Reads a checkpoint; a UserInputError names the file if it is missing, truncated or corrupt."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserInputError(f"Checkpoint file not found. Received: checkpoint={path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as error:
        raise UserInputError(
            f"Checkpoint {path} is truncated or corrupt ({type(error).__name__}: {error}); "
            f"expected a complete progan-tf .npz checkpoint. Received: checkpoint={path}"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserInputError(
            f"Checkpoint {path} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}. "
            f"Received: checkpoint={path}"
        )
    return Checkpoint(path=path, meta=meta, arrays=arrays)


def restore_networks(model, checkpoint):
    for name, network in model.networks.items():
        network.set_weight_values(checkpoint.group(name))


def restore_optimizers(model, checkpoint):
    for name, optimizer in (("g_optimizer", model.g_optimizer), ("d_optimizer", model.d_optimizer)):
        values = checkpoint.group(name)
        if len(values) != len(optimizer.variables):
            raise UserInputError(
                f"Checkpoint {checkpoint.path} holds {len(values)} {name} variables, the phase needs "
                f"{len(optimizer.variables)}. Received: checkpoint={checkpoint.path}"
            )
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
