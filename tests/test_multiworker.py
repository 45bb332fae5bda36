"""MultiWorkerMirroredStrategy from TF_CONFIG: two CPU workers on localhost train the same global
batch as one worker and end with the same weights."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers_training as helpers


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    return helpers.build_tiny_pyramid(tmp_path_factory.mktemp("pyramid") / "synthetic8", resolution=8, num_images=64)


def _launch(spec, spec_path, tf_config=None):
    spec_path.write_text(json.dumps(spec))
    env = helpers.subprocess_env(**({"TF_CONFIG": json.dumps(tf_config)} if tf_config else {}))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers_training", str(spec_path)],
        cwd=helpers.REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_workers_match_one_worker(pyramid, tmp_path):
    workers = [f"localhost:{port}" for port in helpers.free_ports(2)]
    outputs = [tmp_path / "worker0.npz", tmp_path / "worker1.npz", tmp_path / "single.npz"]
    run_dirs = [tmp_path / "run_worker0", tmp_path / "run_worker1", tmp_path / "run_single"]
    processes = []
    try:
        for index in range(2):
            spec = {
                "runs": [
                    {
                        "config": helpers.short_train_spec(pyramid, run_dirs[index], export_at_end=True),
                        "out": str(outputs[index]),
                    }
                ]
            }
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(_launch(spec, tmp_path / f"spec{index}.json", tf_config))
        spec = {
            "runs": [
                {"config": helpers.short_train_spec(pyramid, run_dirs[2], export_at_end=True), "out": str(outputs[2])}
            ]
        }
        processes.append(_launch(spec, tmp_path / "spec_single.json"))
        logs = [process.communicate(timeout=420)[0] for process in processes]
    finally:
        for process in processes:
            helpers.kill_process(process)
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-6000:]

    # Worker 0 is the chief: it alone logs, checkpoints and exports.
    assert "2 replica(s)" in logs[0] and "1 replica(s)" in logs[2]
    assert "done: kimg 0.056" in logs[0] and "done: kimg" not in logs[1]
    assert sorted(p.name for p in (run_dirs[0] / "checkpoints").iterdir()) == [
        "checkpoint",
        "ckpt-32.data-00000-of-00001",
        "ckpt-32.index",
        "ckpt-56.data-00000-of-00001",
        "ckpt-56.index",
    ]
    assert not (run_dirs[1] / "checkpoints").exists() and not (run_dirs[1] / "log.txt").exists()
    assert (run_dirs[0] / "export" / "saved_model.pb").is_file()

    worker0, worker1, single = (dict(np.load(path)) for path in outputs)
    assert int(worker0.pop("images_shown")) == int(worker1.pop("images_shown")) == int(single.pop("images_shown")) == 56
    between_workers = helpers.max_abs_difference(worker0, worker1)
    against_single = helpers.max_abs_difference(worker0, single)
    print(f"max |worker0 - worker1| = {between_workers:.3g}, max |2 workers - 1 worker| = {against_single:.3g}")
    assert between_workers == 0.0
    assert against_single < 2e-5
    # The chief's last checkpoint holds the same networks it saved at the end.
    checkpoint = helpers.checkpoint_weights(run_dirs[0] / "checkpoints" / "ckpt-56")
    assert helpers.max_abs_difference(checkpoint, worker0) == 0.0
