"""Training checkpoints: every network and optimizer variable plus the run position, in one file.

A checkpoint is a NumPy `.npz` archive named by the images shown (`ckpt-<images>.npz`), written
by `atomic_files.write_atomically`, so a crash never leaves a half-written checkpoint
under a real name. All randomness of the training loop is a stateless function of
(seed, images shown) and the data order a function of (seed, phase, batches consumed), so the
images count and the phase's starting count are the whole random state.

A checkpoint holding a non-finite value is never written (`NonFiniteError`), so it can never
rotate a finite one out; on resume, a newest checkpoint that is corrupt or not finite is moved
aside (`<name>.corrupt`) and the newest usable one is used instead; a resume from an older
checkpoint of the same run moves the newer ones aside (`<name>.superseded`).
"""

import dataclasses
import io
import json
import re
import zipfile

import numpy as np
import tensorflow as tf

from progan_tf import atomic_files
from progan_tf.errors import FilesystemError, UserInputError

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{12})\.npz$")


@dataclasses.dataclass
class Checkpoint:
    path: object  # `atomic_files.as_path`: a pathlib.Path on a local disk, a UrlPath elsewhere
    meta: dict
    arrays: dict

    @property
    def images_shown(self):
        return int(self.meta["images_shown"])

    def group(self, prefix):
        """The arrays saved under `prefix/NNNN`, in order."""
        keys = sorted(k for k in self.arrays if k.startswith(prefix + "/"))
        return [self.arrays[k] for k in keys]


class NonFiniteError(ValueError):
    """The model holds non-finite values; `names` lists the arrays (`generator/0003`, ...)."""

    def __init__(self, names):
        super().__init__(f"non-finite values in {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")
        self.names = names


def non_finite_arrays(arrays):
    """Names of the floating-point arrays in `{name: array}` that hold a NaN or an infinity."""
    return sorted(
        name
        for name, value in arrays.items()
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value))
    )


def checkpoint_path(directory, images_shown):
    return atomic_files.path_in(directory, f"ckpt-{int(images_shown):012d}.npz")


def checkpoint_images(path):
    """The images count in a checkpoint's file name."""
    return int(_NAME.match(atomic_files.as_path(path).name).group(1))


def list_checkpoints(directory):
    """Complete checkpoints in `directory`, oldest first."""
    if not tf.io.gfile.isdir(str(directory)):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(str(directory)))
    return sorted(atomic_files.path_in(directory, name) for name in names if _NAME.match(name))


def model_arrays(model):
    """{`<network or optimizer>/<index>`: array} of a `ProGAN` with a started phase: what a
    checkpoint holds besides the run position."""
    arrays = {}
    for name, network in model.networks.items():
        for index, value in enumerate(network.get_weight_values()):
            arrays[f"{name}/{index:04d}"] = value
    for name, optimizer in (("g_optimizer", model.g_optimizer), ("d_optimizer", model.d_optimizer)):
        for index, variable in enumerate(optimizer.variables):
            arrays[f"{name}/{index:04d}"] = np.asarray(variable.numpy())
    return arrays


def save_checkpoint(directory, model, meta, keep=5):
    """Writes the model's networks and current optimizers atomically; keeps the `keep` newest.

    Args:
        directory: Folder of the run's checkpoints (created if needed).
        model: A `ProGAN` with a started phase.
        meta: JSON-serialisable run position; must hold `images_shown`.
        keep: How many checkpoints to keep (0 keeps all).

    Returns:
        The checkpoint's path.

    Raises:
        NonFiniteError: a value is NaN or infinite (nothing is written).
        FilesystemError: the write failed (disk full, read-only, permissions); the temporary
            file is removed and the earlier checkpoints are untouched.
    """
    arrays = model_arrays(model)
    bad = non_finite_arrays(arrays)
    if bad:
        raise NonFiniteError(bad)
    arrays["meta"] = np.array(json.dumps({**meta, "format_version": FORMAT_VERSION}))
    path = checkpoint_path(directory, meta["images_shown"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        tf.io.gfile.makedirs(str(directory))
        for stale in tf.io.gfile.glob(str(atomic_files.path_in(directory, "ckpt-*.npz.tmp*"))):
            tf.io.gfile.remove(stale)  # left by a run killed while writing
        atomic_files.write_atomically(path, buffer.getvalue())
    except (OSError, tf.errors.OpError) as error:
        raise FilesystemError(f"could not write checkpoint {path}: {atomic_files.error_reason(error)}") from None
    if keep:
        for old in list_checkpoints(directory)[:-keep]:
            try:
                tf.io.gfile.remove(str(old))
            except tf.errors.OpError as error:
                reason = atomic_files.error_reason(error)
                raise FilesystemError(f"could not remove old checkpoint {old}: {reason}") from None
    return path


def load_checkpoint(path):
    """Reads a checkpoint; a UserInputError names the file if it is missing, truncated or corrupt."""
    path = atomic_files.as_path(path)
    if not tf.io.gfile.exists(str(path)) or tf.io.gfile.isdir(str(path)):
        raise UserInputError(f"Checkpoint file not found. Received: checkpoint={path}")
    try:
        with tf.io.gfile.GFile(str(path), "rb") as handle:
            contents = io.BytesIO(handle.read())
        with np.load(contents, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (zipfile.BadZipFile, OSError, tf.errors.OpError, ValueError, KeyError, EOFError) as error:
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


def check_finite(checkpoint):
    """Raises a UserInputError naming the checkpoint if any of its arrays is not finite."""
    bad = non_finite_arrays(checkpoint.arrays)
    if bad:
        raise UserInputError(
            f"Checkpoint {checkpoint.path} holds non-finite values "
            f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
            f"expected finite weights (a run that diverged before progan-tf refused to save such states). "
            f"Received: checkpoint={checkpoint.path}"
        )


def newest_usable_checkpoint(paths):
    """The newest of `paths` (oldest first) that loads and is finite.

    Returns:
        (checkpoint or None, [(path, reason)] of the newer ones that are corrupt or not finite).
    """
    unusable = []
    for path in reversed(paths):
        try:
            checkpoint = load_checkpoint(path)
            check_finite(checkpoint)
            return checkpoint, unusable
        except UserInputError as error:
            unusable.append((path, str(error).split(". Received:")[0]))
    return None, unusable


def set_aside(path, suffix=".corrupt"):
    """Renames a checkpoint to `<name><suffix>` (never deleted; no longer listed); a name taken
    by an earlier one gets a number."""
    path = atomic_files.as_path(path)
    target, number = path.with_name(path.name + suffix), 1
    while atomic_files.exists(target):
        target, number = path.with_name(f"{path.name}{suffix}.{number}"), number + 1
    try:
        tf.io.gfile.rename(str(path), str(target))
    except tf.errors.NotFoundError:  # another worker sharing the directory moved it first
        pass
    except tf.errors.OpError as error:
        reason = atomic_files.error_reason(error)
        raise FilesystemError(f"could not move the checkpoint {path} aside: {reason}") from None
    return target


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
