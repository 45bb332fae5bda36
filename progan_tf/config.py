"""The typed configuration of a training run: one place for every hyper-parameter and its default.

The tree is a `TrainConfig` holding a `NetworkConfig` (networks.py), a `ScheduleConfig`
(schedule.py), a `LossConfig` and an `OptimizerConfig`. Every node is a frozen dataclass;
`to_dict` / `from_dict` turn any node into plain JSON-ready data and back, so the run directory's
`config.json`, the loaders and the tests all go through the same two functions. main.py's flags
take their defaults from these classes (`progan_tf.flags`).

Example:
    >>> config = TrainConfig(data_dir="data/celebahq", run_dir="runs/celebahq-1024")
    >>> TrainConfig.from_dict(json.loads(config.to_json())) == config
    True
"""

import dataclasses
import json
import typing

from progan_tf.errors import UserInputError
from progan_tf.networks import NetworkConfig
from progan_tf.schedule import ScheduleConfig

__all__ = ["LossConfig", "NetworkConfig", "OptimizerConfig", "ScheduleConfig", "TrainConfig", "from_dict", "to_dict"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """WGAN-GP with ProGAN's drift term.

    Args:
        gp_weight: Weight of the gradient penalty `(norm - target)**2 / target**2`.
        gp_target: Target gradient norm of the penalty.
        drift_weight: Weight of `D(real)**2`, which keeps the critic's output near zero.
        gp_reference_scaling: Measure the penalty's gradient norm as the reference code does on
            nearest-upscaled full-resolution inputs (norm / (final_resolution / resolution));
            False: the native-resolution norm.
    """

    gp_weight: float = 10.0
    gp_target: float = 1.0
    drift_weight: float = 0.001
    gp_reference_scaling: bool = True


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """How the weights are updated (the learning rates are per resolution: `ScheduleConfig`).

    Args:
        beta_1: Adam beta_1 of both networks.
        beta_2: Adam beta_2 of both networks.
        epsilon: Adam epsilon of both networks.
        ema_beta: Decay of the generator average, `Gs = G + ema_beta * (Gs - G)` after every
            critic step.
    """

    beta_1: float = 0.0
    beta_2: float = 0.99
    epsilon: float = 1e-8
    ema_beta: float = 0.999


# Iterations per compiled call by resolution (larger: 1) when --steps_per_call is 0: about tens
# of milliseconds of GPU work per call at paper widths.
AUTO_STEPS_PER_CALL = {4: 16, 8: 8, 16: 4, 32: 2}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; `progan_tf.cli` builds it from main.py's flags.

    Args:
        data_dir: Dataset pyramid built by `python -m datasets.build`.
        run_dir: Run directory (config, logs, samples, checkpoints, export).
        network: A `NetworkConfig`.
        schedule: A `ScheduleConfig`.
        loss: A `LossConfig`.
        optimizer: An `OptimizerConfig`.
        seed: Seed of latents, data order and initial weights.
        mirror_augment: Random horizontal flips of the real images (p=0.5).
        mixed_precision: mixed_float16 with dynamic loss scaling (GPU).
        tick_kimg: Log a tick line every this many kimg.
        sample_kimg: Write sample grids every this many kimg (0: phase ends only).
        checkpoint_kimg: Checkpoint every this many kimg (0: phase ends only).
        keep_checkpoints: Checkpoints kept (0: all).
        resume: "latest" (in `run_dir`), "none", or a checkpoint path.
        overwrite: With `resume="none"` on a run directory that holds checkpoints, move it to
            `<run_dir>.old-<time>` and start over (without it such a start is refused).
        max_consecutive_skips: Stop the run (diverged) after this many iterations in a row
            skipped an update because something was not finite (0: never).
        steps_per_call: Training iterations per call of the compiled step (0: by resolution,
            `AUTO_STEPS_PER_CALL`): statistics stay on the device in between, so small phases do
            not pay a Python dispatch and a host sync every iteration. A call never crosses a
            phase, tick, sample, checkpoint or evaluation point, so results do not depend on it.
        jit_compile: Compile the gradient computations with XLA (GPUs; slower on this CPU).
        grid_size: Images in sample grids.
        export_at_end: Export the EMA generator when training ends.
        deterministic: Deterministic TF ops (slower; the input order is always deterministic).
        eval_kimg: Small-sample SWD during training every this many kimg (0: off).
        eval_num_images: Images per side of the periodic SWD.
        verify_data: Check every shard's sha256 before training (sizes are always checked).
    """

    data_dir: str
    run_dir: str
    network: NetworkConfig = NetworkConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    seed: int = 1000
    mirror_augment: bool = True
    mixed_precision: bool = False
    tick_kimg: float = 10.0
    sample_kimg: float = 50.0
    checkpoint_kimg: float = 100.0
    keep_checkpoints: int = 5
    resume: str = "latest"
    overwrite: bool = False
    max_consecutive_skips: int = 50
    steps_per_call: int = 0
    jit_compile: bool = False
    grid_size: int = 36
    export_at_end: bool = True
    deterministic: bool = False
    eval_kimg: float = 0.0
    eval_num_images: int = 256
    verify_data: bool = False

    def to_dict(self):
        return to_dict(self)

    @classmethod
    def from_dict(cls, data):
        return from_dict(cls, _nest_flat_layout(data))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, default=str)


# config.json of runs written before the loss and optimizer settings had their own sections held
# them at the top level, under these names.
_FLAT_LAYOUT = {
    "gp_weight": ("loss", "gp_weight"),
    "gp_target": ("loss", "gp_target"),
    "drift_weight": ("loss", "drift_weight"),
    "gp_reference_scaling": ("loss", "gp_reference_scaling"),
    "adam_beta_1": ("optimizer", "beta_1"),
    "adam_beta_2": ("optimizer", "beta_2"),
    "adam_epsilon": ("optimizer", "epsilon"),
    "ema_beta": ("optimizer", "ema_beta"),
}


def _nest_flat_layout(data):
    """`data` with the old top-level loss / optimizer keys moved into their sections."""
    if not isinstance(data, dict) or not any(key in data for key in _FLAT_LAYOUT):
        return data
    data = dict(data)
    for key, (section, name) in _FLAT_LAYOUT.items():
        if key in data:
            nested = data[section] = dict(data.get(section, {}))
            if name in nested:
                raise UserInputError(f"config sets {section}.{name} twice (also as {key}). Received: {key}={data[key]}")
            nested[name] = data.pop(key)
    return data


def to_dict(config):
    """A config dataclass (and the dataclasses inside it) as plain dicts, lists and scalars."""
    return {field.name: _plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def from_dict(config_class, data, where=None):
    """The `config_class` instance described by `data` (the inverse of `to_dict`).

    Missing keys take the class's defaults; nested dataclass fields are built from nested dicts and
    lists become tuples (JSON has no tuples). An unknown key, a missing required key or a value
    the class rejects is a UserInputError naming the key.

    Args:
        config_class: A config dataclass, e.g. `TrainConfig` or `NetworkConfig`.
        data: A dict, e.g. `json.loads(text)`.
        where: Name of `data` in error messages (default: the class name).
    """
    where = where or config_class.__name__
    if not isinstance(data, dict):
        raise UserInputError(f"{where} must be a JSON object. Received: {where}={data!r}")
    types = typing.get_type_hints(config_class)
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserInputError(
            f"{where} has unknown keys (expected some of {', '.join(fields)}). Received: {', '.join(unknown)}"
        )
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(types[name]):
            values[name] = from_dict(types[name], value, where=f"{where}.{name}")
        else:
            values[name] = _tuples(value)
    missing = [
        name
        for name, field in fields.items()
        if name not in values and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserInputError(f"{where} lacks required keys. Received: missing={', '.join(missing)}")
    return config_class(**values)


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value
