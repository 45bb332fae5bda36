"""Is a dataset pyramid on disk what its manifest says? Cheap checks, the full check, and diagnosis.

* `check_pyramid` (before training): the manifest is valid and every shard of the levels asked
  for exists with exactly the manifest's size. Every record of a level has the same length, so
  a truncated or padded shard is found by a `stat`, without reading it.
* `verify_pyramid` (`python -m datasets.build --verify`, `--verify_data`): also the sha256 of
  every shard, and for a mismatch the first record that does not parse.
* `explain_data_error`: turns the `tf.errors.DataLossError` that a corrupt record raises while
  training reads it (TensorFlow names a byte offset, not the file) into one line naming the shard.

All file access goes through `tf.io.gfile`, so a pyramid may live on any filesystem TensorFlow
reaches (`gs://`, `ram://`, ...).
"""

import hashlib
import json
import re
from collections.abc import Iterable
from os.path import join

import tensorflow as tf
from tqdm import tqdm

from progan_tf.errors import UserInputError
from progan_tf.pyramid_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    TFRECORD_FRAMING_BYTES,
    is_build_file,
)

_REQUIRED_KEYS = ("name", "resolutions", "channels", "num_images", "levels", "record_names_file")
_HASH_BLOCK_BYTES = 8 << 20


def verify_command(pyramid_dir: str) -> str:
    return f"`python -m datasets.build --verify --output_dir={pyramid_dir}`"


def load_manifest(pyramid_dir: str) -> dict:
    """Reads and checks a pyramid's manifest.

    Args:
      pyramid_dir: a directory written by `python -m datasets.build`.

    Returns:
      The manifest dict: "name", "resolutions" (ints, ascending), "num_images", "channels",
      "levels" (per level: "resolution", "record_bytes", "num_records", "shards" with "file",
      "num_records", "bytes", "sha256"), "record_names_file", "source", "seed", "build", ...

    Raises:
      UserInputError: the directory or manifest is missing, unreadable or not a pyramid manifest.
    """
    partial = (
        " (a .partial build is still there: the build did not finish; run it again)"
        if tf.io.gfile.isdir(pyramid_dir.rstrip("/") + ".partial")
        else ""
    )
    if not tf.io.gfile.isdir(pyramid_dir):
        raise UserInputError(
            f"dataset pyramid directory does not exist{partial}. Received: pyramid_dir={pyramid_dir!r}"
        )
    path = join(pyramid_dir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"no {MANIFEST_NAME} in the dataset directory: not a pyramid built by `python -m datasets.build`, "
            f"or an incomplete build{partial}. Received: pyramid_dir={pyramid_dir!r}"
        )
    try:
        with tf.io.gfile.GFile(path) as handle:
            manifest = json.loads(handle.read())
    except (tf.errors.OpError, OSError, ValueError) as exc:
        raise UserInputError(f"unreadable pyramid manifest ({_first_line(exc)}). Received: {path!r}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserInputError(f"not a progan-tf pyramid manifest (format is not {FORMAT_NAME!r}). Received: {path!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserInputError(
            f"unsupported pyramid format version (this code reads version {FORMAT_VERSION}; rebuild the "
            f"pyramid). Received: format_version={manifest.get('format_version')!r}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise UserInputError(f"pyramid manifest lacks keys {missing}. Received: {path!r}")
    return manifest


def find_level(manifest: dict, pyramid_dir: str, resolution: int) -> dict:
    """The manifest's entry for one resolution (a UserInputError if the pyramid lacks it)."""
    for level in manifest["levels"]:
        if level["resolution"] == resolution:
            return level
    raise UserInputError(
        f"dataset pyramid {pyramid_dir!r} has no {resolution}x{resolution} level; it has "
        f"{manifest['resolutions']}. Received: resolution={resolution!r}"
    )


def level_paths(pyramid_dir: str, level: dict) -> list:
    """Paths of a level's shards, after checking each exists with the manifest's size.

    Raises:
      UserInputError: naming the first missing or wrongly sized shard, and the --verify command.
    """
    paths = []
    for shard in level["shards"]:
        path = join(pyramid_dir, shard["file"])
        problem = _size_problem(path, shard)
        if problem:
            raise UserInputError(
                f"dataset shard {problem}; check the pyramid with {verify_command(pyramid_dir)}. Received: {path!r}"
            )
        paths.append(path)
    if sum(shard["num_records"] for shard in level["shards"]) != level["num_records"]:
        raise UserInputError(
            f"dataset manifest is inconsistent: the {level['resolution']}x{level['resolution']} shards' record "
            f"counts do not add up to {level['num_records']}. Received: pyramid_dir={pyramid_dir!r}"
        )
    return paths


def check_pyramid(pyramid_dir: str, resolutions: Iterable[int] | None = None, verify: bool = False) -> dict:
    """Checks a pyramid before training: manifest, levels, and the size of every shard.

    Args:
      pyramid_dir: the pyramid directory.
      resolutions: the levels that will be read (default: all).
      verify: also compare every shard's sha256 with the manifest (reads the whole pyramid).

    Returns:
      The manifest.

    Raises:
      UserInputError: one line naming the missing level, or the first bad shard and --verify.
    """
    manifest = load_manifest(pyramid_dir)
    wanted = manifest["resolutions"] if resolutions is None else list(resolutions)
    for resolution in wanted:
        level_paths(pyramid_dir, find_level(manifest, pyramid_dir, resolution))
    if verify:
        report = verify_pyramid(pyramid_dir)
        if not report["ok"]:
            more = f" (and {len(report['problems']) - 1} more)" if len(report["problems"]) > 1 else ""
            raise UserInputError(
                f"dataset pyramid failed verification: {report['problems'][0]}{more}; rebuild it (see "
                f"{verify_command(pyramid_dir)}). Received: data_dir={pyramid_dir!r}"
            )
    return manifest


def verify_pyramid(pyramid_dir: str, progress: bool = False) -> dict:
    """Re-reads a pyramid and checks counts, sizes and checksums against its manifest.

    Args:
      pyramid_dir: the pyramid directory.
      progress: show a progress bar (bytes hashed) on stderr.

    Returns:
      {"ok": bool, "problems": [one line per problem, naming the file], "files_checked": int,
      "leftovers": [files an interrupted build left, which do not affect the pyramid]}.

    Raises:
      UserInputError: the directory or its manifest is missing or invalid.
    """
    manifest = load_manifest(pyramid_dir)
    problems, listed = [], {MANIFEST_NAME, manifest["record_names_file"]}
    shards = [(level, shard) for level in manifest["levels"] for shard in level["shards"]]
    for level in manifest["levels"]:
        if level["num_records"] != manifest["num_images"]:
            problems.append(
                f"level {level['resolution']}: manifest lists {level['num_records']} records, "
                f"expected {manifest['num_images']}"
            )
    total = sum(shard["bytes"] for _, shard in shards)
    with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc="verify") as bar:
        for level, shard in shards:
            listed.add(shard["file"])
            path = join(pyramid_dir, shard["file"])
            problem = _size_problem(path, shard)
            if problem is None and sha256_of_file(path, bar.update) != shard["sha256"]:
                where = first_bad_record(path, level["record_bytes"]) or "records parse, but contents differ"
                problem = f"checksum mismatch ({where})"
            if problem:
                problems.append(f"{shard['file']}: {problem}")
    if not tf.io.gfile.exists(join(pyramid_dir, manifest["record_names_file"])):
        problems.append(f"{manifest['record_names_file']}: missing")
    leftovers = sorted(name for name in tf.io.gfile.listdir(pyramid_dir) if is_build_file(name) and name not in listed)
    return {"ok": not problems, "problems": problems, "files_checked": len(shards), "leftovers": leftovers}


def explain_data_error(pyramid_dir: str, resolution: int, error: Exception) -> UserInputError:
    """The one-line error for a read failure (e.g. a DataLossError) of one pyramid level.

    TensorFlow reports a corrupt record by byte offset only ("corrupted record at 1234"). This
    re-checks the level's shard sizes, then reads the record at that offset in every shard (one
    record each, so it is quick at any size), and names the first shard that fails.

    Args:
      pyramid_dir: the pyramid being read.
      resolution: the level being read.
      error: the exception TensorFlow raised.

    Returns:
      A UserInputError to raise (naming the shard and the --verify command).
    """
    try:
        level = find_level(load_manifest(pyramid_dir), pyramid_dir, resolution)
        level_paths(pyramid_dir, level)
    except UserInputError as found:
        return found
    framed = level["record_bytes"] + TFRECORD_FRAMING_BYTES
    match = re.search(r"record at (\d+)", str(error))
    record_index = int(match.group(1)) // framed if match else None
    for shard in level["shards"]:
        path = join(pyramid_dir, shard["file"])
        if record_index is not None and record_index >= shard["num_records"]:
            continue
        problem = first_bad_record(path, level["record_bytes"], first=record_index)
        if problem:
            return UserInputError(
                f"dataset shard is corrupt ({problem}); check the pyramid with {verify_command(pyramid_dir)} and "
                f"rebuild it. Received: {path!r}"
            )
    return UserInputError(
        f"reading the {resolution}x{resolution} level failed ({_first_line(error)}), but its shards look intact; "
        f"check the pyramid with {verify_command(pyramid_dir)}. Received: data_dir={pyramid_dir!r}"
    )


def sha256_of_file(path: str, on_block=None) -> str:
    """Hex sha256 of a file; `on_block(num_bytes)` is called after each block read."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK_BYTES), b""):
            digest.update(block)
            if on_block:
                on_block(len(block))
    return digest.hexdigest()


def first_bad_record(path: str, expected_record_bytes: int, first: int | None = None) -> str | None:
    """Reads a shard's records (all, or only record `first`); describes the first bad one, else None."""
    records = tf.data.TFRecordDataset(path)
    index = first or 0
    if first is not None:
        records = records.skip(first).take(1)
    try:
        for record in records:
            if len(record.numpy()) != expected_record_bytes:
                return f"record {index} has {len(record.numpy())} bytes, expected {expected_record_bytes}"
            index += 1
    except tf.errors.OpError as exc:
        return f"record {index} unreadable ({type(exc).__name__}: {_first_line(exc)})"
    return None


def _size_problem(path: str, shard: dict) -> str | None:
    """What is wrong with a shard file's existence or size (None if nothing)."""
    try:
        size = tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
        return "listed in the manifest is missing"
    if size != shard["bytes"]:
        return (
            f"does not match the manifest (truncated or corrupt): {size} bytes, expected {shard['bytes']} "
            f"for {shard['num_records']} records"
        )
    return None


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    # TF prefixes messages from inside a function with "{{function_node ...}} ".
    return re.sub(r"^\{\{[^}]*\}\}\s*", "", message.strip().splitlines()[0] if message.strip() else repr(error))
