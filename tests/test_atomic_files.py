import pytest
import tensorflow as tf

from progan_tf import atomic_files


def test_local_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    assert atomic_files.write_atomically(path, "new ünïcode") == path
    assert path.read_text(encoding="utf-8") == "new ünïcode"
    atomic_files.write_atomically(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_failed_rename_removes_the_temporary_and_keeps_the_target(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # a file cannot be renamed over a folder: the write fails after the data
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        atomic_files.write_atomically(target, "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_text() == "kept"


def test_gfile_filesystem_write_round_trips():
    folder = "ram://atomic_files_test"
    tf.io.gfile.makedirs(folder)
    path = f"{folder}/data.bin"
    atomic_files.write_atomically(path, b"first")
    atomic_files.write_atomically(path, "second")
    with tf.io.gfile.GFile(path, "rb") as handle:
        assert handle.read() == b"second"
    assert tf.io.gfile.listdir(folder) == ["data.bin"]
    assert not atomic_files.is_local(path) and atomic_files.is_local("/tmp/x")
