"""Writes a pyramid's shards, hashing while writing, and commits the build atomically.

The manifest is the commit point. Every file of a build carries the build's tag
(`r10-00000-<tag>.tfrecord`, `records-<tag>.txt`) and the manifest lists them:
  * a new local pyramid is written into `<output_dir>.partial/` and renamed into place when
    complete (on object stores such as gs:// it is written in place, manifest last);
  * an --overwrite build writes its files beside the old pyramid's, then replaces manifest.json
    by a rename, and only then removes the old pyramid's files.
So a reader sees the old pyramid or the new one, complete, at every instant. A build that fails
removes its own files; one that is killed leaves files no manifest lists (or a .partial folder),
and the next build of the same output removes them.

All I/O goes through `tf.io.gfile`, so the output may be on any filesystem TensorFlow reaches.
"""

import contextlib
import hashlib
import os
import secrets

import tensorflow as tf

from progan_tf.atomic_files import write_atomically
from progan_tf.errors import UserInputError
from progan_tf.pyramid_check import load_manifest
from progan_tf.pyramid_format import (
    MANIFEST_NAME,
    TFRECORD_FRAMING_BYTES,
    is_build_file,
    record_names_file_name,
    shard_file_name,
)

# Automatic sharding aims for shards of about this size (a whole low-resolution level fits in one).
DEFAULT_SHARD_BYTES = 256 << 20
# The hasher reads back what was written whenever this much has accumulated (from the page cache).
_HASH_CHUNK_BYTES = 8 << 20
FILESYSTEM_ERRORS = (OSError, tf.errors.OpError)


def describe_filesystem_error(error: Exception) -> str:
    """'<path>: <reason>' for an OSError or a TensorFlow filesystem error ("<path>; <reason>")."""
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error)
    path, separator, reason = error.message.partition("; ")
    return f"{path}: {reason}" if separator else error.message


def records_per_shard(resolution: int, num_images: int, shards_per_level: int | None) -> int:
    if shards_per_level is None:
        return max(1, DEFAULT_SHARD_BYTES // (resolution * resolution * 3))
    return max(1, -(-num_images // shards_per_level))


class _ShardHash:
    """sha256 of a shard, read back while the shard is being written (run on the hasher thread).

    The reads come from the page cache. Objects on remote filesystems (gs://, ...) can only be
    read once closed, so there the whole shard is hashed when it is finished.
    """

    def __init__(self, path):
        self._path, self._digest, self._hashed, self._handle = path, hashlib.sha256(), 0, None
        self._local = "://" not in path

    def update(self, size):
        """Hashes the shard's bytes up to `size` (flushed by the writer)."""
        if self._local:
            self._read_to(size)

    def finish(self, size) -> str:
        self._read_to(size)
        self._handle.close()
        return self._digest.hexdigest()

    def _read_to(self, size):
        if self._handle is None:
            # One sequential handle: GFile's seek re-reads from the start, and its buffered
            # reader keeps reporting the end of a file once it met it.
            self._handle = open(self._path, "rb") if self._local else tf.io.gfile.GFile(self._path, "rb")
        while self._hashed < size:
            block = self._handle.read(min(size - self._hashed, _HASH_CHUNK_BYTES))
            if not block:
                raise OSError(f"{self._path} is shorter than the {size} bytes written")
            self._digest.update(block)
            self._hashed += len(block)


class LevelWriter:
    """Writes one level's records into consecutive shards of at most `records_per_shard` records."""

    def __init__(self, directory, resolution, records_per_shard, build_tag, hasher):
        self.directory = directory
        self.resolution = resolution
        self.records_per_shard = records_per_shard
        self._build_tag = build_tag
        self._hasher = hasher
        self._writer = None
        self._shard_hash = None
        self._written = self._flushed = 0
        self.shards = []  # [file name, num_records, future of sha256]

    def write(self, record: bytes):
        if self._writer is None:
            file_name = shard_file_name(self.resolution, len(self.shards), self._build_tag)
            path = os.path.join(self.directory, file_name)
            self._writer = tf.io.TFRecordWriter(path)
            self._shard_hash = _ShardHash(path)
            self._written = self._flushed = 0
            self.shards.append([file_name, 0, None])
        self._writer.write(record)
        self._written += len(record) + TFRECORD_FRAMING_BYTES
        self.shards[-1][1] += 1
        if self.shards[-1][1] == self.records_per_shard:
            self._close_shard()
        elif self._written - self._flushed >= _HASH_CHUNK_BYTES:
            self._writer.flush()
            self._flushed = self._written
            self._hasher.submit(self._shard_hash.update, self._written)

    def _close_shard(self):
        self._writer.close()
        self._writer = None
        self.shards[-1][2] = self._hasher.submit(self._shard_hash.finish, self._written)

    def close(self):
        """Closes an open shard without finishing the level (after a failure)."""
        if self._writer is not None:
            with contextlib.suppress(*FILESYSTEM_ERRORS):
                self._writer.close()
            self._writer = None

    def finish(self) -> dict:
        """Closes the last shard and returns the level's manifest entry (waits for the hashes)."""
        if self._writer is not None:
            self._close_shard()
        size = self.resolution * self.resolution * 3
        return {
            "resolution": self.resolution,
            "record_bytes": size,
            "num_records": sum(count for _, count, _ in self.shards),
            "shards": [
                {
                    "file": name,
                    "num_records": count,
                    "bytes": count * (size + TFRECORD_FRAMING_BYTES),
                    "sha256": digest.result(),
                }
                for name, count, digest in self.shards
            ],
        }


class PyramidOutput:
    """Where one build writes (a new folder or beside an old pyramid) and how it commits.

    Args:
      output_dir: the pyramid directory.
      overwrite: whether an existing pyramid (or any existing folder) may be replaced.

    Raises:
      UserInputError: output_dir exists and may not be replaced.
    """

    def __init__(self, output_dir: str, overwrite: bool):
        self.output_dir = output_dir
        self._partial_dir = output_dir + ".partial"
        exists = tf.io.gfile.isdir(output_dir)
        # An empty folder, or one holding only what a killed build left, needs no --overwrite.
        if exists and not overwrite and not all(map(is_build_file, tf.io.gfile.listdir(output_dir))):
            raise UserInputError(
                f"output directory already exists (pass --overwrite to replace it). Received: output_dir={output_dir!r}"
            )
        self.build_tag = secrets.token_hex(3)
        while any(self.build_tag in name for name in (tf.io.gfile.listdir(output_dir) if exists else ())):
            self.build_tag = secrets.token_hex(3)
        # Folders cannot be renamed atomically (or at all) on object stores: build in place there.
        self.in_place = exists or "://" in output_dir
        self.directory = output_dir if self.in_place else self._partial_dir
        remove_leftovers(output_dir)
        tf.io.gfile.makedirs(self.directory)

    def write_text(self, file_name: str, contents: str):
        write_atomically(os.path.join(self.directory, file_name), contents)

    def record_names_file(self) -> str:
        return record_names_file_name(self.build_tag)

    def commit(self, manifest_text: str):
        """Makes the build the pyramid at output_dir (atomically), then removes what it replaced."""
        self.write_text(MANIFEST_NAME, manifest_text)
        if not self.in_place:
            tf.io.gfile.rename(self._partial_dir, self.output_dir)
        remove_leftovers(self.output_dir)

    def abandon(self):
        """Removes this build's files after a failure; the old pyramid (if any) stays as it was."""
        with contextlib.suppress(*FILESYSTEM_ERRORS):
            if not self.in_place:
                tf.io.gfile.rmtree(self._partial_dir)
                return
            for name in tf.io.gfile.listdir(self.directory):
                if is_build_file(name) and self.build_tag in name:
                    tf.io.gfile.remove(os.path.join(self.directory, name))


def _listed_files(output_dir: str) -> set | None:
    """Files the pyramid's manifest refers to (None when there is no valid manifest)."""
    try:
        manifest = load_manifest(output_dir)
    except UserInputError:
        return None
    return {manifest["record_names_file"]} | {
        shard["file"] for level in manifest["levels"] for shard in level["shards"]
    }


def remove_leftovers(output_dir: str):
    """Removes what interrupted builds left: `.partial` / `.old` pyramids and unlisted build files.

    Only files the builder writes are considered (see pyramid_format.is_build_file), and only
    those the current manifest does not list; without a readable manifest none are removed.
    """
    if tf.io.gfile.isdir(output_dir + ".partial"):
        tf.io.gfile.rmtree(output_dir + ".partial")
    # Earlier versions replaced a pyramid by renaming it to .old first (a crash could leave it).
    if _listed_files(output_dir + ".old") is not None:
        tf.io.gfile.rmtree(output_dir + ".old")
    if not tf.io.gfile.isdir(output_dir):
        return
    listed = _listed_files(output_dir)
    if listed is None:
        return
    for name in tf.io.gfile.listdir(output_dir):
        if is_build_file(name) and name not in listed:
            tf.io.gfile.remove(os.path.join(output_dir, name))
