"""A run directory across starts: what a start may do (checked before anything is written), the
config and its history, moving a used run aside, `stats.jsonl` continuation, one-line write errors.

Files: `config.json` is the current resolved config (what `runs.load_train_config` reads);
`config_history.jsonl` gets one record per start or resume with the flags that changed.
"""

import contextlib
import dataclasses
import datetime
import json

import tensorflow as tf

from progan_tf import atomic_files
from progan_tf import checkpoint as ckpt_lib
from progan_tf.config import TrainConfig
from progan_tf.errors import FilesystemError, UserInputError
from progan_tf.networks import WEIGHT_SHAPING_FIELDS

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
STATS_FILE = "stats.jsonl"

# Fields that describe one invocation, not the run.
_PER_INVOCATION = {"run_dir", "resume", "overwrite", "verify_data"}
# Fields a checkpoint only fits with the same values: the weights' shapes, and the optimizer
# variables' layout (mixed precision wraps Adam in a loss-scale optimizer).
_ARCHITECTURE = {*(f"network.{name}" for name in WEIGHT_SHAPING_FIELDS), "schedule.final_resolution", "mixed_precision"}
# Config fields whose main.py flag has another name.
_FLAG_NAMES = {
    "schedule.default_batch_size": "batch_size",
    "schedule.final_resolution": "resolution",
    "optimizer.beta_1": "adam_beta1",
    "optimizer.beta_2": "adam_beta2",
    "optimizer.epsilon": "adam_epsilon",
}


@contextlib.contextmanager
def writing(path, what):
    """Turns a failed write (disk full, read-only, permissions) into one FilesystemError line."""
    try:
        yield
    except FilesystemError:
        raise
    except (OSError, tf.errors.OpError) as error:
        raise FilesystemError(f"could not write {what} {path}: {atomic_files.error_reason(error)}") from None


def flag_name(key):
    """The main.py flag of a flattened config key (`network.fmap_base` -> `fmap_base`)."""
    return _FLAG_NAMES.get(key, key.rpartition(".")[2])


def _flatten(config_dict, prefix=""):
    flat = {}
    for key, value in config_dict.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" not in _PER_INVOCATION:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(previous, current):
    """{flattened key: (previous value, current value)} of two configs as `to_dict()` dicts."""
    old, new = _flatten(previous), _flatten(current)
    keys = sorted(set(old) | set(new), key=lambda key: (flag_name(key), key))
    return {key: (old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)}


def is_architecture(key):
    return key in _ARCHITECTURE


def describe_changes(changes):
    return ", ".join(f"--{flag_name(key)} {old} -> {new}" for key, (old, new) in changes.items())


def read_run_config(run_dir):
    """The run's `config.json` as `TrainConfig.to_dict()` data (older layouts read as
    `TrainConfig.from_dict` reads them), or None when there is none."""
    path = atomic_files.path_in(run_dir, CONFIG_FILE)
    if not atomic_files.exists(path):
        return None
    try:
        return TrainConfig.from_dict(json.loads(atomic_files.read_text(path))).to_dict()
    # Unreadable, bad JSON, a key TrainConfig rejects.
    except (OSError, tf.errors.OpError, ValueError, TypeError) as error:
        raise UserInputError(
            f"{path} is not a readable run config ({error}); fix or move it. Received: run_dir={run_dir}"
        ) from None


def aside_path(run_dir):
    """A free `<run_dir>.old-<time>` name to move a used run to."""
    run_dir = atomic_files.as_path(run_dir)
    base = run_dir.with_name(f"{run_dir.name}.old-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    candidate, number = base, 1
    while atomic_files.exists(candidate):
        candidate, number = base.with_name(f"{base.name}-{number}"), number + 1
    return candidate


@dataclasses.dataclass
class Start:
    """What a start of `train` does to the run directory, decided before any write.

    Attributes:
        checkpoint: The `Checkpoint` to resume from, or None (a new run).
        unusable: [(path, reason)] newer checkpoints that are corrupt or not finite; the start
            moves them aside (`<name>.corrupt`) and resumes from an older one.
        superseded: Checkpoints of the run newer than an explicit `--resume` checkpoint of the
            same run: the continuation that is abandoned. The start moves them aside
            (`<name>.superseded`), so that a later `--resume=latest` cannot mix them in.
        changes: {key: (old, new)} of the config against the run's `config.json`.
        previous_text: That `config.json`'s text (None: the run has none).
        move_to: With `--resume=none --overwrite` on a used run: where the old run goes.
    """

    checkpoint: object
    unusable: list
    superseded: list
    changes: dict
    previous_text: object
    move_to: object


def check_start(config):
    """Checks a start of `train(config)` against its run directory; writes nothing.

    Raises:
        UserInputError: `--resume=none` on a run with checkpoints without `--overwrite`; a
            resume whose architecture flags differ from the checkpoint's run; a corrupt or
            non-finite `--resume` checkpoint; a run whose checkpoints are all unusable.
    """
    run_dir = atomic_files.as_path(config.run_dir)
    existing = ckpt_lib.list_checkpoints(run_dir / "checkpoints")
    current = config.to_dict()
    if config.resume == "none" and existing:
        if not config.overwrite:
            raise UserInputError(
                f"{run_dir} already holds {len(existing)} checkpoint(s) (newest {existing[-1].name}); --resume=none "
                f"would mix two runs. Resume it with --resume=latest, train elsewhere (--run_dir), or start over "
                f"with --resume=none --overwrite (moves the old run to {run_dir.name}.old-<time>). "
                f"Received: resume=none, run_dir={run_dir}"
            )
        return Start(
            checkpoint=None, unusable=[], superseded=[], changes={}, previous_text=None, move_to=aside_path(run_dir)
        )
    previous_path = run_dir / CONFIG_FILE
    previous = read_run_config(run_dir)
    previous_text = atomic_files.read_text(previous_path) if previous is not None else None
    checkpoint, unusable, superseded, reference = None, [], [], previous
    if config.resume == "latest":
        checkpoint, unusable = ckpt_lib.newest_usable_checkpoint(existing)
        if existing and checkpoint is None:
            reasons = "; ".join(reason for _, reason in unusable)
            raise UserInputError(
                f"No usable checkpoint in {run_dir / 'checkpoints'}: {reasons}. Start over with --resume=none "
                f"--overwrite (moves the run aside). Received: resume=latest"
            )
    elif config.resume != "none":
        checkpoint = ckpt_lib.load_checkpoint(config.resume)
        ckpt_lib.check_finite(checkpoint)
        reference = read_run_config(checkpoint.path.parent.parent)
        if _same_folder(checkpoint.path.parent, run_dir / "checkpoints"):
            superseded = [p for p in existing if ckpt_lib.checkpoint_images(p) > checkpoint.images_shown]
    changes = config_changes(previous, current) if previous is not None else {}
    if checkpoint is not None and reference is not None:
        refused = {k: v for k, v in config_changes(reference, current).items() if is_architecture(k)}
        if refused:
            differing = ", ".join(f"--{flag_name(k)} (run: {old}, now: {new})" for k, (old, new) in refused.items())
            raise UserInputError(
                f"Cannot resume {checkpoint.path}: it was trained with other architecture flags: {differing}. "
                f"Resume with the run's values, or train a new run (another --run_dir). Received: run_dir={run_dir}"
            )
    return Start(
        checkpoint=checkpoint,
        unusable=unusable,
        superseded=superseded,
        changes=changes,
        previous_text=previous_text,
        move_to=None,
    )


def history_record(start, config_text):
    """The `config_history.jsonl` record of a start."""
    record = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if start.checkpoint is None:
        record.update(event="start", images_shown=0, config=json.loads(config_text))
    else:
        record.update(
            event="resume",
            images_shown=start.checkpoint.images_shown,
            checkpoint=str(start.checkpoint.path),
            changes={flag_name(k): [old, new] for k, (old, new) in start.changes.items()},
        )
    return record


def _same_folder(a, b):
    if atomic_files.is_local(a) and atomic_files.is_local(b):
        return a.resolve() == b.resolve()
    return str(a).rstrip("/") == str(b).rstrip("/")


def append_line(path, record):
    with atomic_files.open_append(path) as handle:
        handle.write(json.dumps(record, default=str) + "\n")


def continue_stats(path, images_shown):
    """Drops the training rows of `stats.jsonl` after `images_shown` (a resume redoes them).

    Rows written by `--mode=evaluate` (`"kind"` set) stay. Rewritten atomically, only when a row
    goes. Returns the number of rows dropped.
    """
    if not atomic_files.exists(path):
        return 0
    kept, dropped = [], 0
    for line in atomic_files.read_text(path).splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a crash
            dropped += 1
            continue
        if "kind" not in row and round(float(row.get("kimg", 0)) * 1000) > images_shown:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_files.write_atomically(path, "".join(line + "\n" for line in kept))
    return dropped
