"""Where checkpoints live on disk: their names, which of them are complete, the folder's state
file, the leftovers of killed saves, and moving a checkpoint aside (`progan_tf.checkpoint` reads
and writes them).

A TensorFlow checkpoint is the prefix `<dir>/ckpt-<images shown>`: the files `ckpt-N.index` and
`ckpt-N.data-<shard>-of-<shards>`. It is complete when its `.index` and all its data shards exist
and the folder's `checkpoint` state file names it: TensorFlow renames the data into place, then
writes the index, and the manager replaces the state file (atomically) only after that, so a save
killed at any point leaves nothing that counts. `remove_leftovers` clears what a killed one left
(`ckpt-N_temp/`, data without an index). A folder without a state file (copied without it)
counts the files alone. A v1 checkpoint is one `ckpt-<12 digits>.npz` file.
"""

import re
import time

import tensorflow as tf

from progan_tf import atomic_files
from progan_tf.errors import FilesystemError

STATE_FILE = "checkpoint"
CHECKPOINT_NAME = "ckpt"
_PREFIX = re.compile(r"^ckpt-(\d+)$")
_INDEX = re.compile(r"^(ckpt-\d+)\.index$")
_DATA = re.compile(r"^(ckpt-\d+)\.data-(\d{5})-of-(\d{5})$")
_LEGACY = re.compile(r"^ckpt-(\d{12})\.npz$")
# Left by a save that was killed or failed: TensorFlow's temporary folder, a state file being
# replaced, our old `.npz.tmp-*`.
_LEFTOVER = re.compile(rf"^(ckpt-\d+(_temp|\.npz\.tmp)|{STATE_FILE}{re.escape(atomic_files.TEMPORARY_MARK)})")


def checkpoint_path(directory, images_shown):
    """The prefix of the checkpoint at `images_shown` in `directory` (`<directory>/ckpt-N`)."""
    return atomic_files.path_in(directory, f"{CHECKPOINT_NAME}-{int(images_shown)}")


def checkpoint_images(path):
    """The images count in a checkpoint's name."""
    name = atomic_files.as_path(path).name
    return int((_PREFIX.match(name) or _LEGACY.match(name)).group(1))


def is_legacy(path):
    return str(path).endswith(".npz")


def _names(directory):
    return {name.rstrip("/") for name in tf.io.gfile.listdir(str(directory))}


def _shards(names):
    """{prefix: [data file names]} of the prefixes whose data shards are all there."""
    shards = {}
    for name in names:
        match = _DATA.match(name)
        if match:
            shards.setdefault(match.group(1), []).append((int(match.group(2)), int(match.group(3)), name))
    complete = {}
    for prefix, found in shards.items():
        counts = {count for _, count, _ in found}
        if len(counts) == 1 and sorted(index for index, _, _ in found) == list(range(counts.pop())):
            complete[prefix] = sorted(name for _, _, name in found)
    return complete


def _recorded(directory):
    """{name: save time} of the checkpoints the folder's state file records; None without a
    (readable) state file."""
    if not atomic_files.exists(atomic_files.path_in(directory, STATE_FILE)):
        return None
    state = tf.train.get_checkpoint_state(str(directory))
    if state is None:
        return None
    times = list(state.all_model_checkpoint_timestamps)
    names = [str(path).replace("\\", "/").rstrip("/").rpartition("/")[2] for path in state.all_model_checkpoint_paths]
    return dict(zip(names, times + [time.time()] * (len(names) - len(times))))


def list_checkpoints(directory):
    """Complete checkpoints in `directory` (TF prefixes and v1 `.npz` files), oldest first."""
    if not tf.io.gfile.isdir(str(directory)):
        return []
    names = _names(directory)
    recorded = _recorded(directory)
    complete = _shards(names)
    found = [name for name in names if _LEGACY.match(name)]
    for name in names:
        match = _INDEX.match(name)
        if match and match.group(1) in complete and (recorded is None or match.group(1) in recorded):
            found.append(match.group(1))
    return [atomic_files.path_in(directory, name) for name in sorted(found, key=checkpoint_images)]


def checkpoint_files(path):
    """The files of a checkpoint: its `.index` first, then its data shards (a v1 one: its `.npz`)."""
    path = atomic_files.as_path(path)
    if is_legacy(path):
        return [path]
    names = _names(path.parent) if tf.io.gfile.isdir(str(path.parent)) else set()
    data = sorted(name for name in names if (match := _DATA.match(name)) and match.group(1) == path.name)
    index = [f"{path.name}.index"] if f"{path.name}.index" in names else []
    return [path.with_name(name) for name in index + data]


def write_state(directory):
    """Makes the `checkpoint` state file list the complete TF checkpoints in `directory` (none:
    no state file), so that the manager's rotation and TF tools see what is on disk."""
    prefixes = [path.name for path in list_checkpoints(directory) if not is_legacy(path)]
    state = atomic_files.path_in(directory, STATE_FILE)
    if not prefixes:
        if atomic_files.exists(state):
            tf.io.gfile.remove(str(state))
        return
    # The manager rotates the checkpoints saved after `last_preserved_timestamp` (0 here).
    times = _recorded(directory) or {}
    lines = [f'model_checkpoint_path: "{prefixes[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{prefix}"' for prefix in prefixes]
    lines += [f"all_model_checkpoint_timestamps: {times.get(prefix, time.time())!r}" for prefix in prefixes]
    atomic_files.write_atomically(state, "\n".join(lines) + "\n")


def remove_leftovers(directory, failed=None):
    """Removes what killed or failed saves left: temporary folders, data without an index, and
    the files of `failed` (a prefix whose save just failed) unless the state file records it."""
    names = _names(directory)
    doomed = [name for name in names if _LEFTOVER.match(name)]
    indexed = {match.group(1) for name in names if (match := _INDEX.match(name))}
    doomed += [name for name in names if (match := _DATA.match(name)) and match.group(1) not in indexed]
    if failed is not None and failed.name not in (_recorded(directory) or set()):
        doomed += [path.name for path in checkpoint_files(failed)]
    for name in doomed:
        path = str(atomic_files.path_in(directory, name))
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def as_prefix(path):
    """A checkpoint named by one of its files (`ckpt-N.index`, `ckpt-N.data-...`) as its prefix."""
    name = path.name
    match = _INDEX.match(name) or _DATA.match(name)
    return path.with_name(match.group(1)) if match else path


def _aside_target(path, suffix):
    taken = atomic_files.exists if is_legacy(path) else (lambda target: atomic_files.exists(f"{target}.index"))
    target, number = path.with_name(path.name + suffix), 1
    while taken(target):
        target, number = path.with_name(f"{path.name}{suffix}.{number}"), number + 1
    return target


def set_aside(path, suffix=".corrupt"):
    """Renames a checkpoint's files to the prefix `<name><suffix>` (a v1 one: `<name>.npz<suffix>`),
    never deleted and no longer listed; a name taken by an earlier one gets a number. The state
    file follows.

    Returns:
        The new prefix (a v1 checkpoint: the new file name).
    """
    path = atomic_files.as_path(path)
    target = _aside_target(path, suffix)
    try:
        # The data first: from the first rename on the checkpoint no longer counts, and a move
        # killed half-way leaves an index without data (never removed), not data without an
        # index, which `remove_leftovers` would delete.
        files = checkpoint_files(path)
        for old in files[1:] + files[:1]:
            tf.io.gfile.rename(str(old), str(target) + old.name[len(path.name) :])
        if not is_legacy(path):
            write_state(path.parent)
    except tf.errors.NotFoundError:  # another worker sharing the directory moved it first
        pass
    except (OSError, tf.errors.OpError) as error:  # the state file is written locally with open()
        reason = atomic_files.error_reason(error)
        raise FilesystemError(f"could not move the checkpoint {path} aside: {reason}") from None
    return target
