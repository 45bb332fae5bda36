"""Dataset failures, injected for real: damaged shards seen by the trainer, full and read-only
filesystems under the builder, builds killed mid-way, and a reader during an --overwrite."""

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading

import pytest

from datasets import build
from progan_tf import data, pyramid_check
from progan_tf.errors import UserInputError
from progan_tf.pyramid_format import MANIFEST_NAME, is_build_file
from tests import helpers_training as helpers


def shard_path(pyramid_dir, resolution, index=0):
    level = pyramid_check.find_level(data.load_manifest(str(pyramid_dir)), str(pyramid_dir), resolution)
    return os.path.join(str(pyramid_dir), level["shards"][index]["file"])


def flip_byte(path, offset):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def run_main(pyramid, run_dir, *extra):
    command = helpers.main_command(*helpers.main_flags(pyramid, run_dir), *extra)
    return helpers.run_command(command)


def build_files(pyramid_dir):
    return sorted(name for name in os.listdir(pyramid_dir) if is_build_file(name) or name == MANIFEST_NAME)


def small_synthetic(output_dir, num_images, **kwargs):
    return build.build_pyramid(
        "synthetic", str(output_dir), 16, num_images=num_images, num_workers=0, progress=False, **kwargs
    )


@pytest.fixture
def tiny_pyramid(tmp_path):
    return helpers.build_tiny_pyramid(tmp_path / "faces")


# --- The trainer ---------------------------------------------------------------------------------


def test_truncated_shard_of_the_highest_level_is_reported_before_the_first_step(tiny_pyramid, tmp_path):
    shard = shard_path(tiny_pyramid, 16)  # the run reaches 16x16 only in its third phase
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) - 100)
    result = run_main(tiny_pyramid, tmp_path / "run")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "tick" not in result.stdout
    [line] = error_lines(result)
    assert os.path.basename(shard) in line and "truncated or corrupt" in line
    assert f"python -m datasets.build --verify --output_dir={tiny_pyramid}" in line


@pytest.mark.slow
def test_flipped_bytes_give_one_line_naming_the_shard_with_and_without_verify_data(tiny_pyramid, tmp_path):
    shard = shard_path(tiny_pyramid, 4)
    flip_byte(shard, 12 + 5)  # inside record 0's pixels: the size still matches the manifest
    checked = run_main(tiny_pyramid, tmp_path / "checked", "--verify_data")
    assert checked.returncode == 1 and "tick" not in checked.stdout, checked.stderr[-3000:]
    [line] = error_lines(checked)
    assert line.startswith("error: dataset pyramid failed verification: ") and os.path.basename(shard) in line
    assert "checksum mismatch" in line
    # Without --verify_data the record is found corrupt by TensorFlow while the first phase reads it.
    found_late = run_main(tiny_pyramid, tmp_path / "late")
    assert found_late.returncode == 1, found_late.stderr[-3000:]
    assert "Traceback" not in found_late.stderr
    [line] = error_lines(found_late)
    assert line.startswith("error: dataset shard is corrupt (record 0 unreadable (DataLossError: corrupted record")
    assert line.endswith(f"Received: {shard!r}") and "--verify" in line


def test_explain_data_error_names_the_corrupt_shard_among_several(tmp_path):
    pyramid = str(tmp_path / "p")
    small_synthetic(pyramid, 30, shards_per_level=3)
    shard = shard_path(pyramid, 8, index=2)
    flip_byte(shard, 3 * (8 * 8 * 3 + 16) + 12 + 7)  # record 3 of the third shard
    with pytest.raises(Exception) as raised:
        for _ in data.make_dataset(pyramid, 8, 10, shuffle_buffer=30).take(6):
            pass
    assert type(raised.value).__name__ == "DataLossError"
    explained = pyramid_check.explain_data_error(pyramid, 8, raised.value)
    assert isinstance(explained, UserInputError)
    assert str(explained).startswith("dataset shard is corrupt (record 3 unreadable (DataLossError: corrupted record")
    assert str(explained).endswith(f"Received: {shard!r}")
    assert "\n" not in str(explained)


def test_a_shard_deleted_after_the_start_checks_is_one_line_naming_it(tmp_path):
    pyramid = str(tmp_path / "p")
    small_synthetic(pyramid, 30, shards_per_level=3)
    dataset = data.make_dataset(pyramid, 8, 10, shuffle_buffer=30)  # checks the shards, opens none
    shard = shard_path(pyramid, 8, index=1)
    os.remove(shard)
    with pytest.raises(Exception) as raised:
        for _ in dataset.take(6):
            pass
    assert type(raised.value).__name__ == "NotFoundError"
    explained = pyramid_check.explain_data_error(pyramid, 8, raised.value)
    assert isinstance(explained, UserInputError) and "\n" not in str(explained)
    assert str(explained).startswith("dataset shard ") and "missing" in str(explained)
    assert str(explained).endswith(f"Received: {shard!r}")


# --- The builder under filesystem faults --------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path, size_kib):
    """A real size-limited tmpfs at `path` (root), or None where this process cannot mount."""
    os.makedirs(path)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_disk_full_gives_one_line_and_keeps_the_old_pyramid(tmp_path):
    with tmpfs(tmp_path / "disk", 256) as disk:
        root = disk or tmp_path / "disk"
        pyramid = str(root / "faces")
        small_synthetic(pyramid, 64)
        before = {name: open(os.path.join(pyramid, name), "rb").read() for name in build_files(pyramid)}
        command = [
            sys.executable,
            "-m",
            "datasets.build",
            "--source=synthetic",
            "--resolution=16",
            "--num_images=3000",
            "--num_workers=0",
            f"--output_dir={pyramid}",
            "--overwrite",
        ]
        limit = None
        if disk is None:  # no tmpfs: a per-process file size limit (Python ignores SIGXFSZ, so writes fail EFBIG)
            limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200 << 10, 200 << 10))  # noqa: E731
        result = helpers.run_command(command, preexec_fn=limit)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        [line] = error_lines(result)
        reason = "No space left on device" if disk else "File too large"
        assert line.startswith(f"error: could not write the pyramid ({pyramid}/r04-00000-")
        assert f".tfrecord: {reason}); the partial build was removed" in line
        assert {name: open(os.path.join(pyramid, name), "rb").read() for name in build_files(pyramid)} == before
        assert pyramid_check.verify_pyramid(pyramid) == {
            "ok": True,
            "problems": [],
            "files_checked": 3,
            "leftovers": [],
        }


def test_read_only_output_gives_one_line_and_keeps_the_old_pyramid(tmp_path):
    with tmpfs(tmp_path / "disk", 1024) as disk:
        root = disk or tmp_path / "disk"
        pyramid = str(root / "faces")
        manifest = small_synthetic(pyramid, 16)
        if disk:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        elif os.geteuid() != 0:
            os.chmod(pyramid, 0o555)
            os.chmod(root, 0o555)
        else:
            pytest.skip("root without mount: no way to make a folder read-only for this process")
        try:
            reason = "Read-only file system" if disk else "Permission denied"
            with pytest.raises(
                UserInputError,
                match=rf"^could not write the pyramid \({pyramid}/r02-00000-\w+"
                rf"\.tfrecord: {reason}\); .* is unchanged\. Received",
            ):
                small_synthetic(pyramid, 16, overwrite=True, seed=1)
            with pytest.raises(
                UserInputError, match=rf"^could not write the pyramid \({root}/new\.partial: {reason}\)"
            ):
                small_synthetic(root / "new", 16)
        finally:
            if not disk:
                os.chmod(root, 0o755)
                os.chmod(pyramid, 0o755)
        assert data.load_manifest(pyramid) == manifest
        assert pyramid_check.verify_pyramid(pyramid)["ok"]


# --- Atomic replace and leftovers ----------------------------------------------------------------


def test_overwrite_replaces_every_file_and_removes_the_old_ones(tmp_path):
    pyramid = str(tmp_path / "faces")
    old = small_synthetic(pyramid, 20, shards_per_level=2)
    (tmp_path / "faces" / "notes.txt").write_text("the user's own file")
    new = small_synthetic(pyramid, 12, overwrite=True, seed=9)
    listed = {new["record_names_file"]} | {shard["file"] for level in new["levels"] for shard in level["shards"]}
    assert set(build_files(pyramid)) == listed | {MANIFEST_NAME}
    assert not listed & {shard["file"] for level in old["levels"] for shard in level["shards"]}
    assert (tmp_path / "faces" / "notes.txt").read_text() == "the user's own file"
    assert data.load_manifest(pyramid)["num_images"] == 12 and pyramid_check.verify_pyramid(pyramid)["ok"]


def test_a_reader_sees_a_complete_pyramid_throughout_an_overwrite(tmp_path):
    pyramid = str(tmp_path / "faces")
    small_synthetic(pyramid, 200, shards_per_level=4)
    seen, failures, done = [], [], threading.Event()

    def overwrite_repeatedly():
        try:
            for seed in range(4):
                small_synthetic(pyramid, 200 + seed, shards_per_level=4, overwrite=True, seed=seed)
        finally:
            done.set()

    writer = threading.Thread(target=overwrite_repeatedly)
    writer.start()
    while not done.is_set():
        manifest_text = open(os.path.join(pyramid, MANIFEST_NAME)).read()
        try:
            manifest = pyramid_check.check_pyramid(pyramid)
        except UserInputError as exc:
            # Allowed only when a newer manifest was committed between our two reads.
            if open(os.path.join(pyramid, MANIFEST_NAME)).read() == manifest_text:
                failures.append(str(exc))
            continue
        seen.append(manifest["num_images"])
    writer.join()
    assert failures == []
    assert len(set(seen)) >= 2  # the reader overlapped at least one replace
    assert data.load_manifest(pyramid)["num_images"] == 203


def test_killed_builds_leave_the_old_pyramid_and_the_next_build_cleans_up(tmp_path):
    pyramid = str(tmp_path / "faces")
    old = small_synthetic(pyramid, 16)
    old_files = build_files(pyramid)
    command = [
        sys.executable,
        "-m",
        "datasets.build",
        "--source=synthetic",
        "--resolution=64",
        "--num_images=100000",
        "--num_workers=0",
        "--shards_per_level=1",
    ]
    victims = [(pyramid, ["--overwrite"]), (str(tmp_path / "fresh"), [])]
    for output_dir, extra in victims:
        process = subprocess.Popen(
            [*command, f"--output_dir={output_dir}", *extra],
            cwd=helpers.REPO_ROOT,
            env=helpers.subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        written_dir = output_dir if extra else output_dir + ".partial"
        helpers.wait_for(
            lambda written_dir=written_dir: (
                os.path.isdir(written_dir)
                and any(
                    name.startswith("r06-") and os.path.getsize(os.path.join(written_dir, name)) > 0
                    for name in os.listdir(written_dir)
                )
            ),
            process,
            timeout=120,
        )
        helpers.kill_process(process)
    # The overwritten pyramid is the old one, whole; the interrupted build's files are leftovers.
    assert data.load_manifest(pyramid) == old
    report = pyramid_check.verify_pyramid(pyramid)
    assert (
        report["ok"] and report["leftovers"] and set(build_files(pyramid)) == set(old_files) | set(report["leftovers"])
    )
    with pytest.raises(UserInputError, match=r"does not exist \(a \.partial build is still there"):
        data.load_manifest(str(tmp_path / "fresh"))
    # The next builds remove them.
    new = small_synthetic(pyramid, 8, overwrite=True)
    assert set(build_files(pyramid)) == {MANIFEST_NAME, new["record_names_file"]} | {
        level["shards"][0]["file"] for level in new["levels"]
    }
    small_synthetic(tmp_path / "fresh", 8)
    assert not os.path.exists(str(tmp_path / "fresh") + ".partial")
    assert pyramid_check.verify_pyramid(str(tmp_path / "fresh"))["leftovers"] == []


def test_leftovers_of_the_previous_replace_scheme_are_removed(tmp_path):
    pyramid = str(tmp_path / "faces")
    small_synthetic(pyramid, 8)
    shutil.copytree(pyramid, pyramid + ".old")  # a crash between the old scheme's two renames
    os.makedirs(pyramid + ".partial")
    small_synthetic(pyramid, 8, overwrite=True)
    assert not os.path.exists(pyramid + ".old") and not os.path.exists(pyramid + ".partial")
    with open(os.path.join(pyramid, MANIFEST_NAME)) as handle:
        assert json.load(handle)["num_images"] == 8


def test_an_empty_existing_folder_is_built_into_without_overwrite(tmp_path):
    (tmp_path / "faces").mkdir()
    small_synthetic(tmp_path / "faces", 8)
    assert pyramid_check.verify_pyramid(str(tmp_path / "faces"))["ok"]


def test_too_little_shared_memory_is_one_line_before_anything_is_written(tmp_path):
    script = (
        f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {sys.executable} -m datasets.build --source=synthetic "
        f"--resolution=1024 --num_images=4 --num_workers=2 --output_dir={tmp_path / 'faces'}"
    )
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root and mount namespaces (unshare -m) to give the builder a small /dev/shm")
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=helpers.REPO_ROOT,
        env=helpers.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = error_lines(result)
    assert line.startswith("error: not enough shared memory: the builder needs 32 MiB in /dev/shm for 2 workers, ")
    assert not os.path.exists(tmp_path / "faces") and not os.path.exists(f"{tmp_path / 'faces'}.partial")
