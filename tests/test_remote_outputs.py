"""--mode=generate / evaluate / explain and --overwrite on a run on a non-local filesystem.

TF's in-memory `ram://` filesystem stands in for gs:// / s3:// / HDFS: only `tf.io.gfile` reaches
it, and only inside this process. The run read is a copy of `tiny_run` (test_generate.py) with
its dataset, so every output can be checked against the same command on the local original.
"""

import dataclasses
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from progan_tf import atomic_files, generate, generators, training
from progan_tf.config import TrainConfig
from progan_tf.latents import seeded_latents
from progan_tf.metrics import report, sources
from tests import helpers_training as helpers
from tests.test_atomic_files import read_tree
from tests.test_generate import LATENT_SIZE, main_in_process, tiny_run

REMOTE = "ram://remote_outputs"


def copy_tree(local, remote):
    for folder, _, names in tf.io.gfile.walk(str(local)):
        target = remote + folder[len(str(local)) :]
        tf.io.gfile.makedirs(target)
        for name in names:
            tf.io.gfile.copy(os.path.join(folder, name), f"{target}/{name}", overwrite=True)


def read_png(path):
    return np.asarray(Image.open(io.BytesIO(atomic_files.read_bytes(path))))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(local run_dir, local data_dir, ram:// run_dir): the ram:// run's config names its ram:// dataset."""
    run_dir, data_dir = tiny_run(tmp_path_factory)
    remote_run, remote_data = f"{REMOTE}/run", f"{REMOTE}/data"
    if not tf.io.gfile.exists(remote_run):
        copy_tree(data_dir, remote_data)
        copy_tree(run_dir, remote_run)
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        moved = dataclasses.replace(config, data_dir=remote_data, run_dir=remote_run)
        atomic_files.write_atomically(f"{remote_run}/config.json", moved.to_json())
    return run_dir, data_dir, remote_run


def test_generate_writes_images_grid_strip_and_walk_into_a_ram_run(runs, tmp_path, capsys):
    run_dir, _, remote_run = runs
    flags = ["--mode=generate", "--num_images=3", "--interpolation_steps=2", "--walk_keyframes=2", "--video_size=32"]
    code, err = main_in_process(capsys, *flags, f"--run_dir={remote_run}")
    assert code == 0, err
    out = f"{remote_run}/generated-kimg000000.640"
    expected_names = {"image-0000.png", "image-0001.png", "image-0002.png", "grid.png", "interpolation.png"}
    expected_names |= {"walk.gif"} | ({"walk.mp4"} if generate.video_writer_problem() is None else set())
    assert set(tf.io.gfile.listdir(out)) == expected_names  # no temporaries left
    generator = generators.load_run_generator(run_dir)[0]  # the local original
    images = generator(seeded_latents(0, 3, LATENT_SIZE))
    for index, image in enumerate(images):
        np.testing.assert_array_equal(read_png(f"{out}/image-{index:04d}.png"), image)
    gif = Image.open(io.BytesIO(atomic_files.read_bytes(f"{out}/walk.gif")))
    assert gif.n_frames == 2 * 2
    if "walk.mp4" in expected_names:
        import imageio.v2 as imageio

        local_mp4 = tmp_path / "walk.mp4"
        local_mp4.write_bytes(atomic_files.read_bytes(f"{out}/walk.mp4"))
        with imageio.get_reader(local_mp4, format="FFMPEG") as reader:
            assert np.stack(list(reader.iter_data())).shape == (4, 32, 32, 3)

    # From the ram:// run's export: the same images, beside it by default.
    code, err = main_in_process(capsys, "--mode=generate", "--num_images=2", f"--savedmodel={remote_run}/export")
    assert code == 0, err
    for index, image in enumerate(images[:2]):
        np.testing.assert_array_equal(read_png(f"{remote_run}/export-generated/image-{index:04d}.png"), image)


def test_evaluate_reads_a_ram_run_and_its_dataset_and_writes_the_report_and_stats_there(runs, tmp_path, capsys):
    run_dir, data_dir, remote_run = runs
    stats_path = f"{remote_run}/stats.jsonl"  # tiny_run never trained, but test_metrics_cli evaluates it
    stats_before = atomic_files.read_text(stats_path) if atomic_files.exists(stats_path) else ""
    code, err = main_in_process(
        capsys, "--mode=evaluate", f"--run_dir={remote_run}", "--num_images=16", "--metrics=swd"
    )
    assert code == 0, err
    written = json.loads(atomic_files.read_text(f"{remote_run}/metrics-kimg000000.640.json"))
    assert written["real"] == f"pyramid {REMOTE}/data"
    assert written["checkpoint"] == f"{remote_run}/checkpoints/ckpt-640"
    stats = atomic_files.read_text(stats_path)
    assert stats.startswith(stats_before)
    (line,) = stats[len(stats_before) :].splitlines()
    assert json.loads(line)["swd_avg"] == written["metrics"]["swd_avg"]
    # The same evaluation of the local original gives the same numbers.
    generator = generators.load_run_generator(run_dir)[0]
    local = report.evaluate_to_files(["swd"], data_dir, tmp_path, generator=generator, num_images=16)
    local["metrics"].pop("seconds"), written["metrics"].pop("seconds")
    assert local["metrics"] == written["metrics"]


def test_evaluate_reads_a_ram_folder_of_images(runs, tmp_path, capsys):
    _, data_dir, _ = runs
    images = np.concatenate(list(sources.image_dir_batches(data_dir, 16, limit=8)))
    folder, local_folder = f"{REMOTE}/folder", tmp_path / "folder"
    for target in (folder, str(local_folder)):  # the same files, in ram:// and on the local disk
        tf.io.gfile.makedirs(target)
        for index, image in enumerate(images):
            encoded = io.BytesIO()
            Image.fromarray(image).save(encoded, format="PNG")
            atomic_files.write_atomically(f"{target}/{index:02d}.png", encoded.getvalue())
        atomic_files.write_atomically(f"{target}/notes.txt", "not an image")
    args = ["--mode=evaluate", f"--real_dir={folder}", f"--fake_dir={data_dir}", "--num_images=8", "--metrics=swd"]
    code, err = main_in_process(capsys, *args, f"--output_dir={REMOTE}/folder-report")
    assert code == 0, err
    (name,) = tf.io.gfile.listdir(f"{REMOTE}/folder-report")
    written = json.loads(atomic_files.read_text(f"{REMOTE}/folder-report/{name}"))
    assert written["resolution"] == 16  # of the ram:// folder's first image
    assert written["real"] == f"folder {folder}" and written["metrics"]["num_images"] == {"real": 8, "fake": 8}
    local = report.evaluate_to_files(["swd"], local_folder, tmp_path, fake_dir=data_dir, num_images=8)
    local["metrics"].pop("seconds"), written["metrics"].pop("seconds")
    assert local["metrics"] == written["metrics"]

    capsys.readouterr()
    code, err = main_in_process(capsys, "--mode=evaluate", f"--real_dir={REMOTE}/nowhere", f"--fake_dir={data_dir}")
    assert code == 1 and err.count("\n") == 1 and f"{REMOTE}/nowhere" in err


def test_explain_reads_a_ram_run_and_writes_the_maps_there(runs, tmp_path, capsys):
    run_dir, _, remote_run = runs
    args = ["--mode=explain", "--num_images=4", "--explain_methods=saliency"]
    code, err = main_in_process(capsys, *args, f"--run_dir={remote_run}")
    assert code == 0, err
    out = f"{remote_run}/explain-kimg000000.640"
    assert sorted(tf.io.gfile.listdir(out)) == ["explain-fake.png", "explain-real.png", "explain.npz"]
    assert read_png(f"{out}/explain-real.png").shape == (4 * 128, 2 * 128, 3)
    code, err = main_in_process(capsys, *args, f"--run_dir={run_dir}", f"--output_dir={tmp_path}")
    assert code == 0, err
    with np.load(io.BytesIO(atomic_files.read_bytes(f"{out}/explain.npz"))) as remote:
        with np.load(tmp_path / "explain.npz") as local:
            assert sorted(remote.files) == sorted(local.files)
            np.testing.assert_array_equal(remote["methods"], local["methods"])
            for key in sorted(set(local.files) - {"methods"}):
                np.testing.assert_allclose(remote[key], local[key], rtol=1e-5, atol=1e-6)

    code, err = main_in_process(capsys, *args, f"--run_dir={remote_run}", f"--real_dir={REMOTE}/none")
    assert code == 1 and err.count("\n") == 1 and f"{REMOTE}/none" in err


def test_overwrite_moves_a_ram_run_aside_with_every_file(tmp_path):
    from datasets.build import build_pyramid

    data_dir, run_dir = f"{REMOTE}/overwrite/data", f"{REMOTE}/overwrite/run"
    build_pyramid("synthetic", data_dir, 8, num_images=32, progress=False)
    spec = helpers.short_train_spec(data_dir, run_dir, checkpoint_kimg=0.016, sample_kimg=0.016)
    spec["schedule"] = dict(spec["schedule"], total_kimg=0.016)
    training.train(TrainConfig.from_dict(spec))
    before = read_tree(run_dir)
    assert "checkpoints/ckpt-16.data-00000-of-00001" in before and "log.txt" in before

    training.train(TrainConfig.from_dict(dict(spec, resume="none", overwrite=True, seed=99)))
    (aside,) = [name for name in tf.io.gfile.listdir(f"{REMOTE}/overwrite") if name.startswith("run.old-")]
    assert read_tree(f"{REMOTE}/overwrite/{aside}") == before
    log = atomic_files.read_text(f"{run_dir}/log.txt")
    assert log.startswith(f"--overwrite: moved the previous run to {REMOTE}/overwrite/{aside}\n")
    history = atomic_files.read_text(f"{run_dir}/config_history.jsonl").splitlines()
    assert [json.loads(line)["event"] for line in history] == ["start"]
    after = read_tree(run_dir)
    assert (
        after["checkpoints/ckpt-16.data-00000-of-00001"] != before["checkpoints/ckpt-16.data-00000-of-00001"]
    )  # seed 99
