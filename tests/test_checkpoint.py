"""Checkpoint files: round trip, pruning, crash leftovers and corrupt files."""

import numpy as np
import pytest
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf.errors import FilesystemError, UserInputError
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases

NETWORK = NetworkConfig(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)
PHASE = phases(
    ScheduleConfig(final_resolution=8, stabilize_kimg=1, transition_kimg=1, total_kimg=3, default_batch_size=4)
)[1]


def started_model(seed):
    model = ProGAN(NETWORK, seed=seed)
    model.start_phase(PHASE)
    rng = np.random.default_rng(seed)
    for network in model.networks.values():
        network.set_weight_values([rng.normal(size=v.shape).astype(v.dtype) for v in network.get_weight_values()])
    for variable in model.d_optimizer.variables:
        variable.assign(
            rng.normal(size=variable.shape).astype(variable.dtype) if variable.dtype == "float32" else variable
        )
    return model


def test_round_trip_restores_networks_and_optimizers(tmp_path):
    source = started_model(1)
    meta = {"images_shown": 1234, "phase_index": PHASE.index, "phase_begin_images": 1000}
    path = ckpt_lib.save_checkpoint(tmp_path, source, meta)
    assert path.name == "ckpt-000000001234.npz"
    target = started_model(2)
    saved = ckpt_lib.load_checkpoint(path)
    ckpt_lib.restore_networks(target, saved)
    ckpt_lib.restore_optimizers(target, saved)
    assert saved.images_shown == 1234 and saved.meta["phase_begin_images"] == 1000
    for name in source.networks:
        for a, b in zip(source.networks[name].get_weight_values(), target.networks[name].get_weight_values()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(source.d_optimizer.variables, target.d_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keeps_the_newest_and_removes_crash_leftovers(tmp_path):
    model = started_model(1)
    leftover = tmp_path / "ckpt-000000000050.npz.tmp"
    leftover.write_bytes(b"half a checkpoint")
    for images in (100, 200, 300):
        ckpt_lib.save_checkpoint(
            tmp_path, model, {"images_shown": images, "phase_index": 1, "phase_begin_images": 0}, keep=2
        )
    assert [p.name for p in ckpt_lib.list_checkpoints(tmp_path)] == ["ckpt-000000000200.npz", "ckpt-000000000300.npz"]
    assert not leftover.exists()


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    path = ckpt_lib.save_checkpoint(
        tmp_path, started_model(1), {"images_shown": 8, "phase_index": 1, "phase_begin_images": 0}
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserInputError, match=f"{path} is truncated or corrupt"):
        ckpt_lib.load_checkpoint(path)
    with pytest.raises(UserInputError, match="not found"):
        ckpt_lib.load_checkpoint(tmp_path / "missing.npz")


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


def test_a_non_finite_model_is_never_saved_and_never_rotates_a_finite_checkpoint_out(tmp_path):
    model = started_model(1)
    position = {"images_shown": 100, "phase_index": 1, "phase_begin_images": 0}
    good = ckpt_lib.save_checkpoint(tmp_path, model, position, keep=1)
    velocity = model.d_optimizer.variables[-1]
    velocity.assign(np.full(velocity.shape, np.inf, np.float32))
    with pytest.raises(ckpt_lib.NonFiniteError) as raised:
        ckpt_lib.save_checkpoint(tmp_path, model, {**position, "images_shown": 200}, keep=1)
    assert raised.value.names == [f"d_optimizer/{len(model.d_optimizer.variables) - 1:04d}"]
    assert ckpt_lib.list_checkpoints(tmp_path) == [good] and not list(tmp_path.glob("*.tmp*"))


def test_newest_usable_checkpoint_skips_corrupt_and_non_finite_ones(tmp_path):
    model = started_model(1)
    paths = [
        ckpt_lib.save_checkpoint(tmp_path, model, {"images_shown": n, "phase_index": 1, "phase_begin_images": 0})
        for n in (100, 200, 300)
    ]
    paths[2].write_bytes(paths[2].read_bytes()[:1000])  # truncated
    with np.load(paths[1]) as archive:  # NaN weights, as runs before the finite-update guard saved them
        arrays = {key: archive[key] for key in archive.files}
    arrays["generator/0000"] = np.full_like(arrays["generator/0000"], np.nan)
    with open(paths[1], "wb") as handle:
        np.savez(handle, **arrays)
    saved, unusable = ckpt_lib.newest_usable_checkpoint(ckpt_lib.list_checkpoints(tmp_path))
    assert saved.path == paths[0]
    assert [p for p, _ in unusable] == [paths[2], paths[1]]
    assert "truncated or corrupt" in unusable[0][1] and "non-finite values (generator/0000)" in unusable[1][1]
    assert ckpt_lib.set_aside(paths[2]) == tmp_path / "ckpt-000000000300.npz.corrupt"
    assert ckpt_lib.list_checkpoints(tmp_path) == paths[:2] and (tmp_path / "ckpt-000000000300.npz.corrupt").is_file()
    paths[2].write_bytes(b"a second bad one of the same name")  # set aside again: numbered, not replaced
    assert ckpt_lib.set_aside(paths[2]) == tmp_path / "ckpt-000000000300.npz.corrupt.1"
    assert (tmp_path / "ckpt-000000000300.npz.corrupt").stat().st_size == 1000
    with pytest.raises(UserInputError, match="holds non-finite values"):
        ckpt_lib.check_finite(ckpt_lib.load_checkpoint(paths[1]))


def test_a_failed_write_is_one_line_naming_the_checkpoint(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder should be")
    expected = r"could not write checkpoint .*not_a_folder/checkpoints/ckpt-000000000100\.npz"
    with pytest.raises(FilesystemError, match=expected):
        ckpt_lib.save_checkpoint(
            blocker / "checkpoints", started_model(1), {"images_shown": 100, "phase_index": 1, "phase_begin_images": 0}
        )


def test_checkpoints_on_a_gfile_filesystem_round_trip_rotate_and_set_aside():
    folder = "ram://test_checkpoint/run/checkpoints"  # TF's in-memory filesystem: no local path
    source = started_model(1)
    paths = [
        ckpt_lib.save_checkpoint(
            folder, source, {"images_shown": n, "phase_index": PHASE.index, "phase_begin_images": 0}, keep=2
        )
        for n in (100, 200, 300)
    ]
    assert paths[2] == f"{folder}/ckpt-000000000300.npz"
    assert ckpt_lib.list_checkpoints(folder) == paths[1:]
    assert sorted(tf.io.gfile.listdir(folder)) == ["ckpt-000000000200.npz", "ckpt-000000000300.npz"]
    target = started_model(2)
    saved = ckpt_lib.load_checkpoint(paths[2])
    ckpt_lib.restore_networks(target, saved)
    ckpt_lib.restore_optimizers(target, saved)
    assert saved.images_shown == 300 and saved.path == paths[2]
    for name in source.networks:
        for a, b in zip(source.networks[name].get_weight_values(), target.networks[name].get_weight_values()):
            np.testing.assert_array_equal(a, b)
    with tf.io.gfile.GFile(paths[2], "rb") as handle:
        head = handle.read(1000)
    tf.io.gfile.remove(paths[2])  # ram:// appends on "wb" to an existing file instead of truncating
    with tf.io.gfile.GFile(paths[2], "wb") as handle:
        handle.write(head)  # truncated
    newest, unusable = ckpt_lib.newest_usable_checkpoint(ckpt_lib.list_checkpoints(folder))
    assert newest.path == paths[1] and [p for p, _ in unusable] == [paths[2]]
    assert ckpt_lib.set_aside(paths[2]) == f"{paths[2]}.corrupt"
    assert ckpt_lib.list_checkpoints(folder) == [paths[1]]
    with tf.io.gfile.GFile(f"{paths[2]}.corrupt", "rb") as handle:
        assert handle.read() == head
