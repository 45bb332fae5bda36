"""Checkpoints: TF round trip by name, what TF tools read, rotation, killed saves, corrupt files,
the state file, v1 `.npz` checkpoints, ram://."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf.errors import FilesystemError, UserInputError
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases
from tests import helpers_training as helpers

NETWORK = NetworkConfig(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)
PHASE = phases(
    ScheduleConfig(final_resolution=8, stabilize_kimg=1, transition_kimg=1, total_kimg=3, default_batch_size=4)
)[1]
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def started_model(seed):
    """A ProGAN in the 8x8 fade whose every variable (optimizer slots too) holds random values."""
    model = ProGAN(NETWORK, seed=seed)
    model.start_phase(PHASE)
    rng = np.random.default_rng(seed)
    for variable in ckpt_lib.checkpointed_variables(model).values():
        value = rng.normal(size=variable.shape) if variable.dtype.startswith("float") else rng.integers(1, 99)
        variable.assign(np.asarray(value).astype(variable.dtype))
    return model


def position(images_shown, **extra):
    return {"images_shown": images_shown, "phase_index": PHASE.index, "phase_begin_images": 0, **extra}


def values(model):
    return {name: np.array(variable.numpy()) for name, variable in ckpt_lib.checkpointed_variables(model).items()}


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def state_file_paths(folder):
    state = tf.train.get_checkpoint_state(str(folder))
    return [] if state is None else [path.rpartition("/")[2] for path in state.all_model_checkpoint_paths]


def test_round_trip_restores_every_network_variable_and_optimizer_slot_by_name(tmp_path):
    source = started_model(1)
    before = values(source)
    path = ckpt_lib.save_checkpoint(tmp_path, source, position(1234, phase_begin_images=1000))
    assert path == tmp_path / "ckpt-1234"
    target = started_model(2)
    saved = ckpt_lib.load_checkpoint(path)
    ckpt_lib.restore_networks(target, saved)
    ckpt_lib.restore_optimizers(target, saved)
    assert saved.images_shown == 1234 and saved.meta["phase_begin_images"] == 1000
    after = values(target)
    assert sorted(after) == sorted(before)
    assert any(name.startswith("g_optimizer/") and name.endswith("_velocity") for name in after)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_a_checkpoint_is_read_by_tensorflow_alone_with_its_run_position(tmp_path):
    model = started_model(1)
    meta = position(320, resolution=8, phase="fade_in", tick=7, time_sec=12.5)
    path = ckpt_lib.save_checkpoint(tmp_path, model, meta)
    assert names(tmp_path) == ["checkpoint", "ckpt-320.data-00000-of-00001", "ckpt-320.index"]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(path)
    reader = tf.train.load_checkpoint(str(path))
    stored = {key: reader.get_tensor(f"position/{key}{VALUE}") for key in (*meta, "format_version")}
    assert stored == {**meta, "phase": b"fade_in", "format_version": ckpt_lib.FORMAT_VERSION}
    variables = dict(tf.train.list_variables(str(path)))
    kernel = model.generator.layers_by_name()["g_8x8_conv1"].kernel
    assert variables[f"generator/g_8x8_conv1/kernel{VALUE}"] == list(kernel.shape)
    np.testing.assert_array_equal(reader.get_tensor(f"generator/g_8x8_conv1/kernel{VALUE}"), kernel.numpy())
    iterations = reader.get_tensor(f"optimizers/d_optimizer/_iterations{VALUE}")
    assert iterations == model.d_optimizer.iterations.numpy()


def test_keeps_the_newest_n_and_the_state_file_lists_them(tmp_path):
    model = started_model(1)
    for images in (100, 200, 300):
        ckpt_lib.save_checkpoint(tmp_path, model, position(images), keep=2)
    assert ckpt_lib.list_checkpoints(tmp_path) == [tmp_path / "ckpt-200", tmp_path / "ckpt-300"]
    assert not list(tmp_path.glob("ckpt-100*"))
    assert state_file_paths(tmp_path) == ["ckpt-200", "ckpt-300"]
    for images in (400, 500):
        ckpt_lib.save_checkpoint(tmp_path, model, position(images), keep=0)  # 0 keeps all
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-200", "ckpt-300", "ckpt-400", "ckpt-500"]


def test_what_a_killed_save_leaves_is_not_listed_and_the_next_save_removes_it(tmp_path):
    model = started_model(1)
    good = ckpt_lib.save_checkpoint(tmp_path, model, position(100))
    data = tmp_path / "ckpt-100.data-00000-of-00001"
    # Killed while writing: TF's temporary folder. Killed after renaming the data into place:
    # data without an index. Killed after the index, before the state file: not recorded.
    (tmp_path / "ckpt-200_temp").mkdir()
    (tmp_path / "ckpt-200_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate1").write_bytes(b"half")
    shutil.copy(data, tmp_path / "ckpt-300.data-00000-of-00001")
    shutil.copy(data, tmp_path / "ckpt-400.data-00000-of-00001")
    shutil.copy(tmp_path / "ckpt-100.index", tmp_path / "ckpt-400.index")
    assert ckpt_lib.list_checkpoints(tmp_path) == [good]
    ckpt_lib.save_checkpoint(tmp_path, model, position(500))
    assert names(tmp_path) == [
        "checkpoint",
        "ckpt-100.data-00000-of-00001",
        "ckpt-100.index",
        *("ckpt-400.data-00000-of-00001", "ckpt-400.index"),  # complete files: never deleted
        "ckpt-500.data-00000-of-00001",
        "ckpt-500.index",
    ]
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-100", "ckpt-500"]
    # A folder copied without its state file: the complete files count.
    (tmp_path / "checkpoint").unlink()
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-100", "ckpt-400", "ckpt-500"]


def test_a_non_finite_model_is_never_saved_and_never_rotates_a_finite_checkpoint_out(tmp_path):
    model = started_model(1)
    good = ckpt_lib.save_checkpoint(tmp_path, model, position(100), keep=1)
    velocity = model.d_optimizer.variables[-1]
    velocity.assign(np.full(velocity.shape, np.inf, np.float32))
    with pytest.raises(ckpt_lib.NonFiniteError) as raised:
        ckpt_lib.save_checkpoint(tmp_path, model, position(200), keep=1)
    assert raised.value.names == [f"d_optimizer/{velocity.name}"]
    assert ckpt_lib.list_checkpoints(tmp_path) == [good]
    assert names(tmp_path) == ["checkpoint", "ckpt-100.data-00000-of-00001", "ckpt-100.index"]


def test_corrupt_newest_checkpoints_fall_back_and_are_moved_aside_whole(tmp_path):
    model = started_model(1)
    paths = [ckpt_lib.save_checkpoint(tmp_path, model, position(n)) for n in (100, 200, 300)]
    data = tmp_path / "ckpt-300.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated data
    (tmp_path / "ckpt-200.index").write_bytes(b"not an sstable" * 10)  # garbage index
    saved, unusable = ckpt_lib.newest_usable_checkpoint(ckpt_lib.list_checkpoints(tmp_path))
    assert saved.path == paths[0]
    assert [p for p, _ in unusable] == [paths[2], paths[1]]
    assert all(f"Checkpoint {p} is truncated or corrupt" in reason for p, reason in unusable)
    truncated = data.read_bytes()
    assert ckpt_lib.set_aside(paths[2]) == tmp_path / "ckpt-300.corrupt"
    assert not list(tmp_path.glob("ckpt-300.index")) and not data.exists()
    assert (tmp_path / "ckpt-300.corrupt.data-00000-of-00001").read_bytes() == truncated  # kept, not deleted
    assert (tmp_path / "ckpt-300.corrupt.index").is_file()
    assert ckpt_lib.list_checkpoints(tmp_path) == paths[:2]
    assert state_file_paths(tmp_path) == ["ckpt-100", "ckpt-200"]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(paths[1])
    # Set aside again under the same name: numbered, not replaced.
    ckpt_lib.save_checkpoint(tmp_path, model, position(300))
    assert ckpt_lib.set_aside(paths[2]) == tmp_path / "ckpt-300.corrupt.1"
    assert (tmp_path / "ckpt-300.corrupt.data-00000-of-00001").read_bytes() == truncated
    ckpt_lib.set_aside(paths[1], ".superseded")
    assert names(tmp_path)[:3] == ["checkpoint", "ckpt-100.data-00000-of-00001", "ckpt-100.index"]
    assert state_file_paths(tmp_path) == ["ckpt-100"]


def test_a_checkpoint_with_non_finite_values_is_refused_on_load(tmp_path):
    # What a run before the finite-update guard could save, written without the guard.
    model = started_model(1)
    kernel = model.generator.layers_by_name()["g_4x4_conv1"].kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    meta = {key: tf.Variable(value, dtype=tf.int64) for key, value in {**position(100), "format_version": 2}.items()}
    tf.train.Checkpoint(**model.networks, position=tf.train.Checkpoint(**meta)).write(str(tmp_path / "ckpt-100"))
    saved = ckpt_lib.load_checkpoint(tmp_path / "ckpt-100.index")  # a file of it names it too
    assert saved.path == tmp_path / "ckpt-100"
    with pytest.raises(UserInputError, match=r"holds non-finite values \(generator/g_4x4_conv1/kernel"):
        ckpt_lib.check_finite(saved)


def test_missing_other_architecture_and_foreign_checkpoints_are_one_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="pass a checkpoint prefix such as <run_dir>/checkpoints/ckpt-1234"):
        ckpt_lib.load_checkpoint(tmp_path / "ckpt-5")
    path = ckpt_lib.save_checkpoint(tmp_path, started_model(1), position(100))
    wider = ProGAN(NetworkConfig(resolution=8, latent_size=8, fmap_base=64, fmap_max=16))
    with pytest.raises(UserInputError, match=f"Checkpoint {path} does not fit the networks"):
        ckpt_lib.restore_networks(wider, ckpt_lib.load_checkpoint(path))
    tf.train.Checkpoint(step=tf.Variable(3)).write(str(tmp_path / "other"))
    with pytest.raises(UserInputError, match="has format version None, expected 2"):
        ckpt_lib.load_checkpoint(tmp_path / "other")


def test_a_failed_write_is_one_line_naming_the_checkpoint(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder should be")
    expected = r"could not write checkpoint .*not_a_folder/checkpoints/ckpt-100: "
    with pytest.raises(FilesystemError, match=expected):
        ckpt_lib.save_checkpoint(blocker / "checkpoints", started_model(1), position(100))


def test_every_checkpointed_variable_is_mirrored_so_only_the_chief_needs_to_save():
    # Saving a sync-on-read variable all-reduces it (then every worker must save); a mirrored
    # one is read from the worker's own copy.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = ProGAN(NETWORK)
        model.start_phase(PHASE)
    variables = ckpt_lib.checkpointed_variables(model).values()
    assert {type(v.value).__name__ for v in variables} == {"MirroredVariable"}
    assert {v.value.synchronization for v in variables} == {tf.VariableSynchronization.ON_WRITE}


def v1_arrays(model, meta):
    """A format-1 `.npz`'s arrays, in its documented layout: each network's and optimizer's
    variables numbered in order, the position as JSON."""
    arrays = {}
    for name, network in model.networks.items():
        arrays.update({f"{name}/{i:04d}": value for i, value in enumerate(network.get_weights())})
    for name, optimizer in (("g_optimizer", model.g_optimizer), ("d_optimizer", model.d_optimizer)):
        arrays.update({f"{name}/{i:04d}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.array(json.dumps({**meta, "format_version": 1}))
    return arrays


def test_v1_npz_checkpoints_are_listed_restored_and_set_aside(tmp_path):
    source = started_model(1)
    np.savez(tmp_path / "ckpt-000000000100.npz", **v1_arrays(source, position(100)))
    newer = ckpt_lib.save_checkpoint(tmp_path, started_model(3), position(200), keep=1)
    assert ckpt_lib.list_checkpoints(tmp_path) == [tmp_path / "ckpt-000000000100.npz", newer]
    old = ckpt_lib.load_checkpoint(tmp_path / "ckpt-000000000100.npz")
    ckpt_lib.check_finite(old)
    target = started_model(2)
    ckpt_lib.restore_networks(target, old)
    ckpt_lib.restore_optimizers(target, old)
    assert old.images_shown == 100
    expected, after = values(source), values(target)
    for name, value in expected.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    ckpt_lib.save_checkpoint(tmp_path, target, position(300), keep=1)  # rotation leaves v1 files alone
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-000000000100.npz", "ckpt-300"]
    assert ckpt_lib.set_aside(old.path) == tmp_path / "ckpt-000000000100.npz.corrupt"
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-300"]


def test_checkpoints_on_a_gfile_filesystem_round_trip_rotate_and_set_aside():
    folder = "ram://test_checkpoint/run/checkpoints"  # TF's in-memory filesystem: no local path
    source = started_model(1)
    paths = [ckpt_lib.save_checkpoint(folder, source, position(n), keep=2) for n in (100, 200, 300)]
    assert paths[2] == f"{folder}/ckpt-300"
    assert ckpt_lib.list_checkpoints(folder) == paths[1:]
    target = started_model(2)
    saved = ckpt_lib.load_checkpoint(paths[2])
    ckpt_lib.restore_networks(target, saved)
    ckpt_lib.restore_optimizers(target, saved)
    assert saved.images_shown == 300 and saved.path == paths[2]
    expected, after = values(source), values(target)
    assert all(np.array_equal(after[name], value) for name, value in expected.items())
    data = f"{paths[2]}.data-00000-of-00001"
    with tf.io.gfile.GFile(data, "rb") as handle:
        head = handle.read(100)
    tf.io.gfile.remove(data)  # ram:// appends on "wb" to an existing file instead of truncating
    with tf.io.gfile.GFile(data, "wb") as handle:
        handle.write(head)  # truncated
    newest, unusable = ckpt_lib.newest_usable_checkpoint(ckpt_lib.list_checkpoints(folder))
    assert newest.path == paths[1] and [p for p, _ in unusable] == [paths[2]]
    assert ckpt_lib.set_aside(paths[2]) == f"{paths[2]}.corrupt"
    assert ckpt_lib.list_checkpoints(folder) == [paths[1]]
    assert tf.train.latest_checkpoint(folder) == paths[1]
    with tf.io.gfile.GFile(f"{paths[2]}.corrupt.data-00000-of-00001", "rb") as handle:
        assert handle.read() == head


def test_trained_model_takes_its_stage_from_the_checkpoint_not_the_image_count(tmp_path):
    from progan_tf.config import TrainConfig
    from progan_tf.runs import load_trained_model

    schedule = ScheduleConfig(
        final_resolution=8, stabilize_kimg=0.1, transition_kimg=0.1, total_kimg=0.3, default_batch_size=64
    )
    config = TrainConfig(data_dir="unused", run_dir=str(tmp_path), network=NETWORK, schedule=schedule)
    (tmp_path / "config.json").write_text(config.to_json())
    model = ProGAN(NETWORK, seed=1)
    model.start_phase(phases(schedule)[0])
    # Batches of 64 overshoot the 4x4 phase's end (100 images): its last checkpoint is at 128,
    # an image count that lies inside the next phase (the 8x8 fade).
    ckpt_lib.save_checkpoint(
        tmp_path / "checkpoints", model, {"images_shown": 128, "phase_index": 0, "phase_begin_images": 0}
    )
    restored, _, saved = load_trained_model(tmp_path)
    assert saved.images_shown == 128
    assert (restored.phase.resolution, restored.phase.fade_in) == (4, False)
    assert restored.gs_model.output_shape == (None, 4, 4, 3)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    return helpers.build_tiny_pyramid(tmp_path_factory.mktemp("pyramid") / "synthetic8", resolution=8, num_images=64)


def test_a_run_with_v1_checkpoints_resumes_from_them_exactly_and_writes_tf_checkpoints(pyramid, tmp_path):
    from progan_tf import training
    from progan_tf.config import TrainConfig

    spec = helpers.short_train_spec(pyramid, tmp_path / "reference", checkpoint_kimg=0.016)
    reference = training.train(TrainConfig.from_dict(spec))
    assert int(reference.images_shown.numpy()) == 56
    expected = {ckpt_lib.checkpoint_images(p): p for p in ckpt_lib.list_checkpoints(tmp_path / "reference/checkpoints")}
    assert sorted(expected) == [16, 32, 48, 56]

    # The same run as an older progan-tf left it: config.json and v1 checkpoints up to 32 images.
    old_run = tmp_path / "old"
    (old_run / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "reference" / "config.json", old_run / "config.json")
    config = TrainConfig.from_dict(dict(spec, run_dir=str(old_run)))
    for images in (16, 32):
        saved = ckpt_lib.load_checkpoint(expected[images])
        model = ProGAN(config.network, seed=config.seed)
        ckpt_lib.restore_networks(model, saved)
        model.start_phase(phases(config.schedule)[saved.meta["phase_index"]])
        ckpt_lib.restore_optimizers(model, saved)
        meta = {key: value for key, value in saved.meta.items() if key != "format_version"}
        np.savez(old_run / "checkpoints" / f"ckpt-{images:012d}.npz", **v1_arrays(model, meta))

    resumed = training.train(config)
    log = (old_run / "log.txt").read_text()
    assert f"resumed from {old_run / 'checkpoints' / 'ckpt-000000000032.npz'} at kimg 0.032" in log
    after = {ckpt_lib.checkpoint_images(p): p for p in ckpt_lib.list_checkpoints(old_run / "checkpoints")}
    assert sorted(after) == [16, 32, 48, 56] and after[48].name == "ckpt-48" and after[32].suffix == ".npz"
    for images in (48, 56):
        difference = helpers.max_abs_difference(
            helpers.checkpoint_weights(after[images]), helpers.checkpoint_weights(expected[images])
        )
        assert difference == 0.0, images
        assert helpers.checkpoint_position(after[images]) == helpers.checkpoint_position(expected[images])
    assert int(resumed.images_shown.numpy()) == 56


_SAVE_FOREVER = """
import sys
from progan_tf import checkpoint as ckpt_lib
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases

phase = phases(ScheduleConfig(final_resolution=16, default_batch_size=4))[-1]
# Wide enough (~40 MB) that a save takes a good part of the loop: the kills land inside one.
model = ProGAN(NetworkConfig(resolution=16, latent_size=16, fmap_base=4096, fmap_max=192))
model.start_phase(phase)
images = int(sys.argv[2])
while True:
    images += 1
    position = {"images_shown": images, "phase_index": phase.index, "phase_begin_images": 0}
    ckpt_lib.save_checkpoint(sys.argv[1], model, position, keep=2)
    print("saved", images, flush=True)
"""


@pytest.mark.slow
def test_a_save_killed_at_any_moment_leaves_only_complete_checkpoints(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder, start = tmp_path / "checkpoints", 0
    for delay in (0.01, 0.035, 0.06, 0.085):  # into the loop of saves, after two of them finished
        process = subprocess.Popen(
            [sys.executable, "-c", _SAVE_FOREVER, str(folder), str(start)],
            cwd=helpers.REPO_ROOT,
            env=helpers.subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            process.stdout.readline()
            start = int(process.stdout.readline().split()[1]) + 100
            time.sleep(delay)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        listed = ckpt_lib.list_checkpoints(folder)
        assert len(listed) >= 2, delay
        for path in listed:  # every listed one is whole
            ckpt_lib.check_finite(ckpt_lib.load_checkpoint(path))
    ckpt_lib.save_checkpoint(folder, started_model(1), position(10_000), keep=0)
    leftovers = [p.name for p in folder.iterdir() if "_temp" in p.name or "tmp" in p.name]
    assert not leftovers
    indexed = {p.name.partition(".")[0] for p in folder.glob("*.index")}
    assert {p.name.partition(".")[0] for p in folder.glob("*.data-*")} <= indexed
