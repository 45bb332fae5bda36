"""The one write-to-a-temporary-name-then-rename helper of runs, datasets and reports.

Readers see a file's old contents or its new ones, never a part: the data goes to
`<path>.tmp-<random>` (random, so two workers writing the same name never share a temporary)
and is renamed over `path`. On a local disk the file is flushed to the device before the rename
and the rename itself is made durable (fsync of the folder), so a power cut cannot leave an
empty file under the real name. Any other filesystem TensorFlow reaches (`gs://`, `s3://`,
`hdfs://`, `ram://`) goes through `tf.io.gfile`, whose object stores make a closed object
visible at once or not at all; fsync has no meaning there.

`move_tree` moves a folder on any of them, also where folders cannot be renamed (object stores).
"""

import contextlib
import os
import pathlib
import secrets

import tensorflow as tf

TEMPORARY_MARK = ".tmp-"


def is_local(path):
    """Whether `path` is on the local filesystem (no `scheme://` prefix)."""
    return "://" not in str(path)


class UrlPath(str):
    """A `scheme://...` path with the few `pathlib` spellings runs use (`/`, `name`, `parent`,
    `with_name`); pathlib itself would fold `ram://x` into `ram:/x`. Filesystem calls on it go
    through `tf.io.gfile`."""

    def __truediv__(self, name):
        return UrlPath(f"{self.rstrip('/')}/{name}")

    @property
    def name(self):
        return self.rstrip("/").rpartition("/")[2]

    @property
    def parent(self):
        head = self.rstrip("/").rpartition("/")[0]
        return UrlPath(head if not head.endswith(":/") else head + "/")

    def with_name(self, name):
        return self.parent / name


def as_path(path):
    """`path` as a `pathlib.Path` when local, a `UrlPath` otherwise; both join with `/`."""
    return pathlib.Path(path) if is_local(path) else UrlPath(path)


def as_user_path(path):
    """`as_path(path)`, with a local path's `~` expanded (for paths a person typed)."""
    return pathlib.Path(path).expanduser() if is_local(path) else UrlPath(path)


def path_in(directory, name):
    return as_path(directory) / name


def error_reason(error):
    """The first line of why an OSError or a `tf.errors.OpError` happened."""
    reason = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    lines = reason.strip().splitlines()
    return lines[0] if lines else "no reason given"


def exists(path):
    return tf.io.gfile.exists(str(path))


def read_bytes(path):
    with tf.io.gfile.GFile(str(path), "rb") as handle:
        return handle.read()


def read_text(path):
    return read_bytes(path).decode()


def open_append(path):
    """A text file opened for appending, line-buffered on a local disk; elsewhere a `GFile`
    (flushed by the caller after each record)."""
    if is_local(path):
        return open(path, "a", buffering=1)
    return tf.io.gfile.GFile(str(path), "a")


def temporary_name(path):
    return f"{path}{TEMPORARY_MARK}{secrets.token_hex(4)}"


def write_atomically(path, contents):
    """Writes `contents` (str or bytes) to `path` so that readers never see a partial file.

    Args:
        path: str or `pathlib.Path`; local, or any URL `tf.io.gfile` reaches.
        contents: `str` (written as UTF-8) or `bytes`.

    Returns:
        `path`, unchanged.

    Raises:
        OSError: a local write failed (disk full, read-only, permissions); `strerror` says why.
        tf.errors.OpError: a write through `tf.io.gfile` failed.
        In both cases the temporary file is removed and `path` is untouched.

    Example:
    >>> write_atomically("ram://doc/notes.txt", "hello")
    'ram://doc/notes.txt'
    """
    data = contents.encode() if isinstance(contents, str) else bytes(contents)
    temporary = temporary_name(path)
    try:
        if is_local(path):
            _write_local(str(path), temporary, data)
        else:
            with tf.io.gfile.GFile(temporary, "wb") as handle:
                handle.write(data)
            tf.io.gfile.rename(temporary, str(path), overwrite=True)
    except BaseException:
        with contextlib.suppress(OSError, tf.errors.OpError):  # the write failed; the cleanup may too
            tf.io.gfile.remove(temporary)
        raise
    return path


def _write_local(path, temporary, data):
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    # Make the rename durable too (POSIX only: a folder cannot be opened on Windows).
    if hasattr(os, "O_DIRECTORY"):
        folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


# Filesystems whose rename moves a whole folder in one step. Object stores (gs://, s3://) have no
# folders, only names sharing a prefix; TF's ram:// "renames" a folder by renaming its own entry
# and leaves every file under the old name.
_FOLDER_RENAME_SCHEMES = ("file", "hdfs", "viewfs")


def renames_folders(path):
    """Whether `tf.io.gfile.rename` moves a folder with everything in it on `path`'s filesystem."""
    return is_local(path) or str(path).partition("://")[0] in _FOLDER_RENAME_SCHEMES


def move_tree(source, destination):
    """Moves the folder `source` (everything in it) to `destination`, which must not exist.

    A rename where the filesystem can move a folder in one step (`renames_folders`); elsewhere a
    copy of every file, then the removal of the originals:
    - a failure while copying leaves `source` complete; the copies made so far are removed;
    - a failure while removing leaves every file in `destination` and some also in `source`
      (duplicates, nothing lost);
    - the emptied folders of `source` are removed, unless a new file appeared in them meanwhile.

    Args:
        source, destination: str or `pathlib.Path`; local, or any URL `tf.io.gfile` reaches.

    Returns:
        `destination`, unchanged.

    Raises:
        tf.errors.OpError: the move failed (see above for what is where).

    Example:
    >>> write_atomically("ram://doc/run/log.txt", "hello")
    'ram://doc/run/log.txt'
    >>> move_tree("ram://doc/run", "ram://doc/run.old")
    'ram://doc/run.old'
    """
    if exists(destination):
        raise tf.errors.AlreadyExistsError(None, None, f"{destination} already exists; it would be merged into")
    if renames_folders(source):
        tf.io.gfile.rename(str(source), str(destination))
    else:
        _copy_then_remove_tree(str(source), str(destination))
    return destination


def _tree_files(root):
    """(folders, files) under `root`, as paths relative to it; names a listing gives but that are
    not there (removed meanwhile; on ram://, siblings whose names start with root's) are left out."""
    folders, files = [], []
    for folder, _, names in tf.io.gfile.walk(root):
        relative = folder[len(root) :].lstrip("/")
        folders.append(relative)
        files += [f"{relative}/{name}".lstrip("/") for name in names if exists(f"{folder}/{name}")]
    return folders, files


def _copy_then_remove_tree(source, destination):
    source, destination = source.rstrip("/"), destination.rstrip("/")
    folders, files = _tree_files(source)  # listed before anything is written beside source
    try:
        for folder in folders:
            tf.io.gfile.makedirs(f"{destination}/{folder}".rstrip("/"))
        for name in files:
            tf.io.gfile.copy(f"{source}/{name}", f"{destination}/{name}")
    except BaseException:
        with contextlib.suppress(tf.errors.OpError):  # only copies: the originals are all in source
            tf.io.gfile.rmtree(destination)
        raise
    for name in files:
        tf.io.gfile.remove(f"{source}/{name}")
    if not _tree_files(source)[1]:
        with contextlib.suppress(tf.errors.NotFoundError):  # ram:// also lists siblings it cannot delete
            tf.io.gfile.rmtree(source)
