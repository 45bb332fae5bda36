"""Shared helpers of the training tests, and a script that trains and saves the final weights.

Script use (in a subprocess; logical devices must be configured before TensorFlow starts):

    python -m tests.helpers_training SPEC.json

SPEC holds {"logical_cpus": int or null, "runs": [RUN, ...]} and each RUN holds
{"config": `TrainConfig.to_dict()` data (missing keys take the defaults), "devices": null (the
default strategy of `distribute.make_strategy`, e.g. from TF_CONFIG) or a list of device names
for a MirroredStrategy, "out": path of an .npz of the final weights, keyed as `checkpoint_weights`
keys a checkpoint}. Every worker writes its own .npz (only the chief writes checkpoints). A run
stopped early (`RunStopped`) prints its line and exits with its code, as main.py does.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def subprocess_env(**extra):
    """The environment of a test subprocess: quiet TF, the repo importable, no cluster, no GPU."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        CUDA_VISIBLE_DEVICES="",
        # Two cores are shared by everything: one compute thread per op keeps processes from
        # oversubscribing them (inter-op threads stay at the default: collectives need them).
        TF_NUM_INTRAOP_THREADS="1",
    )
    env.update(extra)
    return env


def build_tiny_pyramid(output_dir, resolution=16, num_images=128):
    from datasets.build import build_pyramid

    build_pyramid("synthetic", str(output_dir), resolution, num_images=num_images, progress=False)
    return pathlib.Path(output_dir)


def main_flags(data_dir, run_dir, **overrides):
    """`main.py` flags of a tiny 4 -> 8 -> 16 run (widths 16, batch 8, 128-image phases)."""
    flags = dict(
        data_dir=data_dir,
        run_dir=run_dir,
        resolution=16,
        latent_size=16,
        fmap_base=64,
        fmap_max=16,
        stabilize_kimg=0.128,
        transition_kimg=0.128,
        total_kimg=0.64,
        batch_size=8,
        tick_kimg=0.064,
        sample_kimg=0.256,
        checkpoint_kimg=0.064,
        grid_size=4,
        seed=1234,
    )
    flags.update(overrides)
    args = []
    for key, value in flags.items():
        if isinstance(value, bool):
            args.append(f"--{key}" if value else f"--no{key}")
        else:
            args.append(f"--{key}={value}")
    return args


def main_command(*flag_args):
    return [sys.executable, str(REPO_ROOT / "main.py"), *flag_args]


def run_command(command, timeout=300, env=None, **kwargs):
    """Runs a command to completion in the repo root (quiet TF, no GPU); returns the CompletedProcess."""
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def free_ports(count):
    """`count` localhost TCP ports that were free a moment ago (for TF_CONFIG clusters)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_checked(command, timeout=300, env=None):
    """Runs a command to completion; fails the test with its output if it fails."""
    result = run_command(command, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"command failed ({result.returncode}): {' '.join(map(str, command))}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def short_train_spec(data_dir, run_dir, **overrides):
    """`TrainConfig.from_dict` data of a short 4x4 -> 8x8 fade run (minibatch-stddev group 1: with groups of
    several samples the groups depend on how the batch is split over replicas, as in the paper)."""
    spec = dict(
        data_dir=str(data_dir),
        run_dir=str(run_dir),
        network=dict(resolution=8, latent_size=16, fmap_base=64, fmap_max=16, mbstd_group_size=1),
        schedule=dict(
            final_resolution=8, stabilize_kimg=0.032, transition_kimg=0.032, total_kimg=0.056, default_batch_size=8
        ),
        seed=11,
        tick_kimg=0.016,
        sample_kimg=0,
        checkpoint_kimg=0,
        grid_size=4,
        deterministic=True,
        export_at_end=False,
    )
    spec.update(overrides)
    return spec


# progan_tf is imported inside functions: importing this module must not start TensorFlow (the
# script below configures logical devices first).


def checkpoint_weights(path):
    """{key: array} of a TF checkpoint's networks and optimizers (everything but the run position),
    keyed by TensorFlow's names without `/.ATTRIBUTES/VARIABLE_VALUE`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    return {
        key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE"): reader.get_tensor(key)
        for key in reader.get_variable_to_dtype_map()
        if key.startswith(("generator/", "discriminator/", "ema_generator/", "optimizers/"))
    }


def checkpoint_meta(path):
    from progan_tf import checkpoint as ckpt_lib

    return ckpt_lib.load_checkpoint(path).meta


def remove_checkpoint(path):
    """Deletes a checkpoint's files (as if the run had stopped before writing it)."""
    from progan_tf import checkpoint as ckpt_lib

    for file in ckpt_lib.checkpoint_files(path):
        file.unlink()


def checkpoint_position(path):
    """A checkpoint's meta without its wall-clock training time (which differs between runs)."""
    meta = checkpoint_meta(path)
    meta.pop("time_sec", None)
    return meta


def max_abs_difference(a, b):
    """Largest |a - b| over two {key: array} dicts with the same keys and shapes."""
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    worst = 0.0
    for key in a:
        assert a[key].shape == b[key].shape, key
        worst = max(worst, float(np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)), initial=0.0)))
    return worst


def wait_for(predicate, process, timeout, poll=0.01):
    """Polls `predicate()` until it returns a truthy value; fails if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before the condition held")
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def kill_process(process):
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


# ---------------------------------------------------------------------------------------------
# The training script.


def _script(spec_path):
    spec = json.loads(pathlib.Path(spec_path).read_text())
    import tensorflow as tf

    if spec.get("logical_cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(spec["logical_cpus"])]
        )
    from progan_tf import checkpoint as ckpt_lib
    from progan_tf import training
    from progan_tf.config import TrainConfig
    from progan_tf.errors import RunStopped

    for run in spec["runs"]:
        devices = run.get("devices")
        strategy = tf.distribute.MirroredStrategy(devices) if devices else None
        try:
            model = training.train(TrainConfig.from_dict(run["config"]), strategy=strategy)
        except RunStopped as stop:  # as main.py does
            print(stop, flush=True)
            sys.exit(stop.exit_code)
        images_shown = int(model.images_shown.numpy())
        with tempfile.TemporaryDirectory() as folder:  # what a checkpoint of the final model holds
            position = {"images_shown": images_shown, "phase_index": model.phase.index, "phase_begin_images": 0}
            arrays = checkpoint_weights(ckpt_lib.save_checkpoint(folder, model, position))
        np.savez(run["out"], images_shown=np.array(images_shown), **arrays)
        print(f"saved {run['out']}", flush=True)


if __name__ == "__main__":
    _script(sys.argv[1])
