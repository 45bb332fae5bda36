import socket

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


def _write_tree(root, files):
    for name, data in files.items():
        tf.io.gfile.makedirs(f"{root}/{name}".rpartition("/")[0])
        with tf.io.gfile.GFile(f"{root}/{name}", "wb") as handle:
            handle.write(data)


def read_tree(root):
    """{relative path: bytes} of the files under `root` that are really there (ram:// also lists
    the names of siblings that share root's prefix)."""
    found = {}
    for folder, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = f"{folder}/{name}"
            if tf.io.gfile.exists(path):
                with tf.io.gfile.GFile(path, "rb") as handle:
                    found[path[len(root) + 1 :]] = handle.read()
    return found


TREE = {"config.json": b"{}", "checkpoints/ckpt-1.npz": b"\x00" * 100, "samples/a/b.png": b"png", "log.txt": b"log"}


def test_ram_folder_rename_leaves_the_files_behind_so_move_tree_copies():
    # The trap move_tree exists for: on ram:// (as on object stores) renaming a folder does not
    # move what is in it.
    _write_tree("ram://move_trap/run", TREE)
    tf.io.gfile.rename("ram://move_trap/run", "ram://move_trap/run.old")
    assert read_tree("ram://move_trap/run.old") == {}
    assert not atomic_files.renames_folders("ram://x") and not atomic_files.renames_folders("gs://b/x")
    assert atomic_files.renames_folders("/tmp/x") and atomic_files.renames_folders("hdfs://h/x")

    _write_tree("ram://move_tree/run", TREE)
    tf.io.gfile.makedirs("ram://move_tree/run/empty")
    assert atomic_files.move_tree("ram://move_tree/run", "ram://move_tree/run.old-1") == "ram://move_tree/run.old-1"
    assert read_tree("ram://move_tree/run.old-1") == TREE
    assert tf.io.gfile.isdir("ram://move_tree/run.old-1/empty")
    assert read_tree("ram://move_tree/run") == {}
    # A second move beside the first: ram:// lists "run.old-1" as an entry ".old-1" of "run".
    _write_tree("ram://move_tree/run", {"log.txt": b"second"})
    atomic_files.move_tree("ram://move_tree/run", "ram://move_tree/run.old-2")
    assert read_tree("ram://move_tree/run.old-2") == {"log.txt": b"second"}
    assert read_tree("ram://move_tree/run.old-1") == TREE
    with pytest.raises(tf.errors.AlreadyExistsError, match="run.old-1 already exists"):
        atomic_files.move_tree("ram://move_tree/run.old-2", "ram://move_tree/run.old-1")


def test_local_move_tree_renames(tmp_path):
    _write_tree(str(tmp_path / "run"), TREE)
    atomic_files.move_tree(tmp_path / "run", tmp_path / "run.old")
    assert read_tree(str(tmp_path / "run.old")) == TREE and not (tmp_path / "run").exists()


def test_a_copy_that_fails_half_way_leaves_the_source_whole(tmp_path):
    # The file-by-file move on a local tree, with a file no one can read: a socket ("No such
    # device or address"), listed after the top folder's files, which copy.
    source = tmp_path / "run"
    _write_tree(str(source), TREE)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(source / "checkpoints" / "lock"))
    try:
        with pytest.raises(tf.errors.NotFoundError, match="lock"):
            atomic_files._copy_then_remove_tree(str(source), str(tmp_path / "run.old"))
    finally:
        listener.close()
        (source / "checkpoints" / "lock").unlink()
    assert read_tree(str(source)) == TREE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the partial copy is removed
