"""Training checkpoints: TensorFlow checkpoints of the networks, the phase's optimizers and the
run position, numbered by images shown.

A checkpoint is what `tf.train.Checkpoint` writes for the prefix `<dir>/ckpt-<images shown>`:
`ckpt-N.index` and `ckpt-N.data-00000-of-00001`, under the object names `generator`,
`discriminator`, `ema_generator` (each layer by its name: `generator/g_8x8_conv1/kernel`),
`optimizers/g_optimizer`, `optimizers/d_optimizer` (Keras' layout) and `position`
(images_shown, phase_index, phase_begin_images, resolution, phase, tick, time_sec,
format_version), so `tf.train.load_checkpoint(prefix)` and `tf.train.list_variables(prefix)`
read everything without progan-tf. `tf.train.CheckpointManager` writes them, keeps `keep` of
them and records them in the folder's `checkpoint` state file.
All randomness of the training loop is a stateless function of (seed, images shown) and the
data order a function of (seed, phase, batches consumed), so the position is the whole random
state.

Which checkpoints are complete, the state file, leftovers of killed saves and moving a
checkpoint aside: `progan_tf.checkpoint_files` (its names used by callers are re-exported here,
so a run's checkpoints have one API).

A checkpoint holding a non-finite value is never written (`NonFiniteError`), so it can never
rotate a finite one out; on resume, a newest checkpoint that is corrupt or not finite is moved
aside whole (`ckpt-N.corrupt.index`, `ckpt-N.corrupt.data-...`: still a readable prefix) and the
newest usable one is used instead; a resume from an older checkpoint of the same run moves the
newer ones aside (`.superseded`). The state file is rewritten to match after every move.

Checkpoints of format version 1 (one `ckpt-<12 digits>.npz` per snapshot, written before the
move to TensorFlow checkpoints) are still listed, resumed and set aside; new ones are always
TensorFlow checkpoints, and rotation leaves the old files alone.

Only the chief saves under MultiWorkerMirroredStrategy. TensorFlow asks every worker to save
because reading a sync-on-read variable is an all-reduce; every variable saved here is mirrored
(sync on write: each worker holds the value), so saving involves no collective
(`tests/test_checkpoint.py` checks this).
"""

import contextlib
import dataclasses
import io
import json
import re
import zipfile

import numpy as np
import tensorflow as tf

from progan_tf import atomic_files
from progan_tf.checkpoint_files import (
    CHECKPOINT_NAME,
    as_prefix,
    checkpoint_files,
    checkpoint_images,
    checkpoint_path,
    is_legacy,
    list_checkpoints,
    remove_leftovers,
    set_aside,
    write_state,
)
from progan_tf.errors import FilesystemError, UserInputError
from progan_tf.guarded_update import all_finite

__all__ = [
    "Checkpoint",
    "NonFiniteError",
    "check_finite",
    "checkpoint_files",
    "checkpoint_images",
    "checkpoint_path",
    "checkpointed_variables",
    "list_checkpoints",
    "load_checkpoint",
    "newest_usable_checkpoint",
    "restore_networks",
    "restore_optimizers",
    "save_checkpoint",
    "set_aside",
]

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_POSITION = "position/"
# The checkpoint reader raises IndexError for data that ends early (an out-of-range status).
_CORRUPT_ERRORS = (tf.errors.OpError, ValueError, KeyError, IndexError, UnicodeDecodeError)


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint found on disk and its run position.

    Attributes:
        path: The checkpoint prefix (`<dir>/ckpt-N`; a v1 checkpoint: its `.npz` file), as an
            `atomic_files.as_path` path.
        meta: The run position: images_shown, phase_index, phase_begin_images, and (from
            training runs) resolution, phase, tick, time_sec; format_version.
        legacy_arrays: A v1 checkpoint's arrays (`generator/0000`, ...); None for TF ones.
    """

    path: object
    meta: dict
    legacy_arrays: dict = None

    @property
    def images_shown(self):
        return int(self.meta["images_shown"])

    def group(self, prefix):
        """A v1 checkpoint's arrays saved under `prefix/NNNN`, in order."""
        keys = sorted(k for k in self.legacy_arrays if k.startswith(prefix + "/"))
        return [self.legacy_arrays[k] for k in keys]


class NonFiniteError(ValueError):
    """The model holds non-finite values; `names` lists the variables (`generator/g_4x4_conv1/kernel`)."""

    def __init__(self, names):
        super().__init__(f"non-finite values in {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")
        self.names = names


def _optimizers(model):
    return {"g_optimizer": model.g_optimizer, "d_optimizer": model.d_optimizer}


def _nested_optimizers(model):
    # One level down: an optimizer also reaches the weights it updates, and TensorFlow keys each
    # variable by its shortest path, which must be the network's (`generator/g_4x4_conv1/kernel`).
    return {"optimizers": tf.train.Checkpoint(**_optimizers(model))}


def checkpointed_variables(model):
    """{`<network>/<variable path>` or `<optimizer>/<variable name>`: variable} of what a checkpoint of a `ProGAN`
    with a started phase holds besides the run position."""
    variables = {}
    for group, network in model.networks.items():
        variables.update({f"{group}/{variable.path}": variable for variable in network.weights})
    for group, optimizer in _optimizers(model).items():
        # Keras numbers optimizer paths per process (`adam_3/...`); the names are the run's.
        variables.update({f"{group}/{variable.name}": variable for variable in optimizer.variables})
    return variables


def non_finite_variables(model):
    """Names of the floating-point variables of `checkpointed_variables(model)` that hold a NaN or an infinity."""
    floating = {name: v for name, v in checkpointed_variables(model).items() if tf.as_dtype(v.dtype).is_floating}
    if bool(all_finite(list(floating.values()))):  # on the device: no host copy before the save's own
        return []
    return sorted(name for name, variable in floating.items() if not np.all(np.isfinite(variable.numpy())))


def _save_error_reason(error):
    # TensorFlow names the temporary file first and its op last: "<file>; File too large [Op:SaveV2]".
    reason = re.sub(r"\s*\[Op:\w+\]$", "", atomic_files.error_reason(error))
    return reason.rpartition("; ")[2]


def _position(meta):
    """The run position as a trackable of scalar variables (int64, float64 or string)."""

    def variable(value):
        if isinstance(value, str):
            return tf.Variable(value, dtype=tf.string, trainable=False)
        return tf.Variable(
            value, dtype=tf.int64 if isinstance(value, (int, np.integer)) else tf.float64, trainable=False
        )

    with tf.init_scope():
        return tf.train.Checkpoint(**{key: variable(value) for key, value in meta.items()})


def save_checkpoint(directory, model, meta, keep=5):
    """Writes the model's networks, current optimizers and run position; keeps the `keep` newest.

    Args:
        directory: Folder of the run's checkpoints (created if needed).
        model: A `ProGAN` with a started phase.
        meta: The run position, {name: int, float or str}; must hold `images_shown`,
            `phase_index` and `phase_begin_images`.
        keep: How many TF checkpoints to keep (0 keeps all; v1 `.npz` ones are never removed).

    Returns:
        The checkpoint's prefix.

    Raises:
        NonFiniteError: a value is NaN or infinite (nothing is written).
        FilesystemError: the write failed (disk full, read-only, permissions); what it wrote is
            removed and the earlier checkpoints are untouched.
    """
    bad = non_finite_variables(model)
    if bad:
        raise NonFiniteError(bad)
    path = checkpoint_path(directory, meta["images_shown"])
    checkpoint = tf.train.Checkpoint(
        **model.networks, **_nested_optimizers(model), position=_position({**meta, "format_version": FORMAT_VERSION})
    )
    try:
        tf.io.gfile.makedirs(str(directory))
        remove_leftovers(directory)
        write_state(directory)  # the manager rotates what its state file lists
        manager = tf.train.CheckpointManager(
            checkpoint, str(directory), max_to_keep=keep or None, checkpoint_name=CHECKPOINT_NAME
        )
        manager.save(checkpoint_number=int(meta["images_shown"]))
    except (OSError, tf.errors.OpError) as error:
        with contextlib.suppress(OSError, tf.errors.OpError):  # the disk may refuse the cleanup too
            remove_leftovers(directory, failed=path)
        raise FilesystemError(f"could not write checkpoint {path}: {_save_error_reason(error)}") from None
    return path


def _corrupt(path, error):
    return UserInputError(
        f"Checkpoint {path} is truncated or corrupt ({type(error).__name__}: {atomic_files.error_reason(error)}); "
        f"expected a complete progan-tf checkpoint. Received: checkpoint={path}"
    )


def _check_version(path, meta, expected):
    if meta.get("format_version") != expected:
        raise UserInputError(
            f"Checkpoint {path} has format version {meta.get('format_version')}, expected {expected} "
            f"(not a progan-tf training checkpoint?). Received: checkpoint={path}"
        )


def _reader(path):
    # `tf.train.load_checkpoint` takes a prefix that `gfile.isdir` calls a folder (ram:// does,
    # when files start with it) for a folder and looks for its state file; the reader does not.
    return tf.compat.v1.train.NewCheckpointReader(str(path))


def _read_position(reader):
    meta = {}
    for key in reader.get_variable_to_dtype_map():
        if key.startswith(_POSITION) and key.endswith(_VALUE_SUFFIX):
            value = reader.get_tensor(key)
            value = value.decode() if isinstance(value, bytes) else value.item()
            meta[key[len(_POSITION) : -len(_VALUE_SUFFIX)]] = value
    return meta


def load_checkpoint(path):
    """Reads a checkpoint's run position; a UserInputError names it if it is missing, truncated or corrupt.

    Args:
        path: A checkpoint prefix (`<run_dir>/checkpoints/ckpt-N`, or one of its files), or a
            v1 `.npz` checkpoint.

    Returns:
        A `Checkpoint`.
    """
    path = as_prefix(atomic_files.as_path(path))
    if is_legacy(path):
        return _load_legacy(path)
    if not atomic_files.exists(f"{path}.index"):
        raise UserInputError(
            f"Checkpoint not found: there is no {path.name}.index in {path.parent}; pass a checkpoint prefix such as "
            f"<run_dir>/checkpoints/ckpt-1234 (files ckpt-1234.index and ckpt-1234.data-*) or an older "
            f"ckpt-<12 digits>.npz. Received: checkpoint={path}"
        )
    try:
        meta = _read_position(_reader(path))
    except _CORRUPT_ERRORS as error:
        raise _corrupt(path, error) from None
    _check_version(path, meta, FORMAT_VERSION)
    return Checkpoint(path=path, meta=meta)


def _load_legacy(path):
    if not tf.io.gfile.exists(str(path)) or tf.io.gfile.isdir(str(path)):
        raise UserInputError(f"Checkpoint file not found. Received: checkpoint={path}")
    try:
        with np.load(io.BytesIO(atomic_files.read_bytes(path)), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (zipfile.BadZipFile, OSError, EOFError, *_CORRUPT_ERRORS) as error:
        raise _corrupt(path, error) from None
    _check_version(path, meta, LEGACY_FORMAT_VERSION)
    return Checkpoint(path=path, meta=meta, legacy_arrays=arrays)


def _non_finite_values(checkpoint):
    if checkpoint.legacy_arrays is not None:
        values = checkpoint.legacy_arrays.items()
    else:
        reader = _reader(checkpoint.path)
        keys = sorted(k for k, dtype in reader.get_variable_to_dtype_map().items() if dtype.is_floating)
        values = ((key.removesuffix(_VALUE_SUFFIX), reader.get_tensor(key)) for key in keys)
    return [name for name, value in values if value.dtype.kind == "f" and not np.all(np.isfinite(value))]


def check_finite(checkpoint):
    """Reads every value of a checkpoint; a UserInputError names it if one is not finite or cannot be read."""
    try:
        bad = _non_finite_values(checkpoint)
    except _CORRUPT_ERRORS as error:
        raise _corrupt(checkpoint.path, error) from None
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


def _does_not_fit(checkpoint, what, detail):
    return UserInputError(
        f"Checkpoint {checkpoint.path} does not fit the {what} ({detail}); expected a checkpoint of a run "
        f"with the same architecture flags. Received: checkpoint={checkpoint.path}"
    )


def _read_into(checkpoint, objects, what):
    """Restores `objects` ({checkpoint name: trackable}) from a TF checkpoint; every variable they
    hold must get a value."""
    try:
        status = tf.train.Checkpoint(**objects).read(str(checkpoint.path))
        status.expect_partial()  # the file holds more than `objects`
        status.assert_existing_objects_matched()
    except (AssertionError, *_CORRUPT_ERRORS) as error:
        raise _does_not_fit(checkpoint, what, f"{type(error).__name__}: {atomic_files.error_reason(error)}") from None


def restore_networks(model, checkpoint):
    """Sets G, D and Gs of `model` to a checkpoint's."""
    if checkpoint.legacy_arrays is None:
        _read_into(checkpoint, model.networks, "networks")
        return
    for name, network in model.networks.items():
        try:
            network.set_weights(checkpoint.group(name))
        except ValueError as error:
            raise _does_not_fit(checkpoint, name, error) from None


def restore_optimizers(model, checkpoint):
    """Sets the current phase's optimizers to a checkpoint's (one written in the same phase)."""
    if checkpoint.legacy_arrays is None:
        _read_into(checkpoint, _nested_optimizers(model), "optimizers of the phase")
        return
    for name, optimizer in _optimizers(model).items():
        values = checkpoint.group(name)
        if len(values) != len(optimizer.variables):
            raise UserInputError(
                f"Checkpoint {checkpoint.path} holds {len(values)} {name} variables, the phase needs "
                f"{len(optimizer.variables)}. Received: checkpoint={checkpoint.path}"
            )
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
