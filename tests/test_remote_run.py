"""A run whose dataset and run directory live on a non-local filesystem TensorFlow reaches.

TF's in-memory `ram://` filesystem stands in for gs:// / s3:// / HDFS: it is reachable only
through `tf.io.gfile` and only inside this process, so the run trains in-process.
"""

import json
import types

import numpy as np
import tensorflow as tf

from datasets.build import build_pyramid
from progan_tf import checkpoint as ckpt_lib
from progan_tf import runs, training
from progan_tf.cli import export as cli_export
from progan_tf.config import TrainConfig
from progan_tf.images import to_uint8_tensor
from tests import helpers_training as helpers


def _read(path):
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read().decode()


def test_a_ram_run_trains_checkpoints_resumes_and_exports():
    data_dir, run_dir = "ram://remote_run/data", "ram://remote_run/run"
    build_pyramid("synthetic", data_dir, 8, num_images=64, progress=False)
    spec = helpers.short_train_spec(data_dir, run_dir, checkpoint_kimg=0.016, sample_kimg=0.016)
    first = dict(spec, schedule=dict(spec["schedule"], total_kimg=0.032))
    training.train(TrainConfig.from_dict(first))
    written = ckpt_lib.list_checkpoints(f"{run_dir}/checkpoints")
    assert [ckpt_lib.checkpoint_images(p) for p in written] == [16, 32]
    assert not tf.io.gfile.exists(f"{run_dir}/export")

    model = training.train(TrainConfig.from_dict(dict(spec, export_at_end=True)))  # same process: resumes
    assert int(model.images_shown.numpy()) == 56
    log = _read(f"{run_dir}/log.txt").splitlines()
    assert f"resumed from {run_dir}/checkpoints/ckpt-32 at kimg 0.032" in log
    assert [json.loads(line)["event"] for line in _read(f"{run_dir}/config_history.jsonl").splitlines()] == [
        "start",
        "resume",
    ]
    kimgs = [json.loads(line)["kimg"] for line in _read(f"{run_dir}/stats.jsonl").splitlines()]
    assert kimgs == sorted(set(kimgs)) and kimgs[-1] == 0.056
    samples = tf.io.gfile.listdir(f"{run_dir}/samples")
    assert "reals.png" in samples and any(name.startswith("fakes-") for name in samples)
    restored, _, saved = runs.load_trained_model(run_dir)
    assert saved.images_shown == 56 and saved.path == f"{run_dir}/checkpoints/ckpt-56"

    exported = tf.saved_model.load(f"{run_dir}/export")
    latents = np.random.default_rng(0).normal(size=(2, 16)).astype("float32")
    served = exported.serve(tf.constant(latents)).numpy()
    assert served.shape == (2, 8, 8, 3) and served.dtype == np.uint8
    np.testing.assert_array_equal(served, to_uint8_tensor(model.gs_model(latents, training=False)).numpy())
    for name in model.networks:  # the ram:// checkpoint holds the final weights (alpha aside: a
        # restored model takes it from the image count, the training loop set it before the last step)
        for a, b in zip(model.networks[name].weights, restored.networks[name].weights):
            if "fade" not in a.path:
                np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert tf.io.gfile.exists(f"{run_dir}/export.keras")

    cli_export.run(types.SimpleNamespace(mode="export", run_dir=run_dir, checkpoint=None, output_dir=None))
    reexported = tf.saved_model.load(f"{run_dir}/export-kimg000000.056")  # --mode=export of the ram:// run
    np.testing.assert_array_equal(
        reexported.serve(tf.constant(latents)).numpy(),
        to_uint8_tensor(restored.gs_model(latents, training=False)).numpy(),
    )
