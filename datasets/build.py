r"""Builds ProGAN dataset pyramids (TFRecord shards per resolution) and verifies them.

Usage:
  python -m datasets.build --source=/data/celebahq_images --resolution=1024 --output_dir=data/celebahq
  python -m datasets.build --source=synthetic --num_images=4000 --resolution=32 --output_dir=data/faces
  python -m datasets.build --source=tfds:celeb_a_hq/1024 --tfds_manual_dir=/data/celebahq_tars \
      --tfds_data_dir=/data/tfds --resolution=1024 --output_dir=data/celebahq
  python -m datasets.build --verify --output_dir=data/celebahq

Sources (`--source`):
  * a folder: searched recursively for .jpg/.jpeg/.png/.bmp/.webp files (other files are counted
    and ignored). Images are shuffled once by `--seed` (a permutation of the sorted file list).
    Square images are used as-is, others are centre-cropped (or skipped: --non_square=skip);
    images whose short side is below the resolution are skipped; larger ones are downscaled
    (box filter for integer factors, Lanczos otherwise). Grayscale, palette, RGBA and CMYK
    images are converted to RGB and reported. Two files with the same path except for the
    extension (a.jpg and a.png) are duplicates: the first in sorted order is kept.
  * `synthetic`: procedural cartoon faces (datasets/synthetic.py), image i = synthetic_image(i).
  * `tfds:NAME[:SPLIT]` (e.g. `tfds:celeb_a_hq/1024`): a TensorFlow Datasets image dataset,
    prepared from `--tfds_manual_dir` when given, else it must already be prepared in
    `--tfds_data_dir` (nothing is downloaded). Its shard files are read in an order shuffled by
    `--seed`; within a file, records keep TFDS's own (hash-shuffled) order.
  With --strict, any skipped or converted image is a fatal error.

Pyramid layout (one directory per dataset):
  manifest.json            written last: a directory without it is an incomplete build.
  records.txt              source name of record i on line i (same for every level).
  rNN-SSSSS.tfrecord       level with resolution 2**NN (r02 = 4x4 ... r10 = 1024x1024), shard SSSSS.
  Every record is one image as raw uint8 bytes, HWC, RGB, row-major: exactly R*R*3 bytes, with
  no tf.train.Example wrapper (the shape lives in the manifest), so reading is a `decode_raw`
  and a reshape. Record i is the same image at every level; shards of a level hold consecutive
  records. Because all records of a level have the same length, a shard's size must be
  num_records * (R*R*3 + 16) bytes (16 = TFRecord framing), which makes truncation checks cheap.
  Levels: level R is the (cropped, resized) source; each lower level is the 2x2 box average of the
  previous level's float32 values, stored as rint/clip to uint8 (datasets/imaging.py).

Atomicity: a build writes into `<output_dir>.partial/` and renames it to `<output_dir>` only when
complete (manifest included); a crashed build leaves only the .partial directory, which the next
build removes.
"""

import collections
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import types
from typing import Iterator, Optional

import numpy as np
from absl import app, flags

from datasets import imaging
from progan_tf.errors import UserInputError
from progan_tf.pyramid_format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, TFRECORD_FRAMING_BYTES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
RECORD_NAMES_FILE = "records.txt"
# Automatic sharding aims for shards of about this size (a whole low-resolution level fits in one).
DEFAULT_SHARD_BYTES = 256 << 20
# Each worker task carries about this many bytes of output (bounds memory and keeps workers busy).
_TASK_BYTES = 8 << 20


def shard_file_name(resolution: int, shard_index: int) -> str:
    """File name of shard `shard_index` of the level with the given resolution."""
    return f"r{resolution.bit_length() - 1:02d}-{shard_index:05d}.tfrecord"


def record_bytes(resolution: int, channels: int = 3) -> int:
    return resolution * resolution * channels


def check_resolution(resolution) -> int:
    """Returns `resolution` as an int, or raises UserInputError if it is not a power of two >= 4."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or (
        resolution < 4 or not imaging.is_power_of_two(int(resolution))
    ):
        raise UserInputError(
            f"resolution must be a power of two >= 4 (4, 8, ..., 1024). Received: resolution={resolution!r}"
        )
    return int(resolution)


# ----------------------------------------------------------------------------------------------
# Sources: each yields worker tasks (see imaging.load_chunk) lazily, so nothing is held in memory.


class _Source:
    """A stream of worker tasks plus what the manifest records about where images came from."""

    def __init__(self, description: dict, num_candidates: int, tasks: Iterator, problems=()):
        self.description = description
        self.num_candidates = num_candidates
        self.tasks = tasks
        self.problems = list(problems)


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _folder_source(folder, resolution, seed, chunk_size, non_square) -> _Source:
    if not os.path.isdir(folder):
        kind = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UserInputError(f"source folder {kind}; expected a folder of images. Received: source={folder!r}")
    images, ignored = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            if file_name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(os.path.relpath(os.path.join(root, file_name), folder))
            else:
                ignored += 1
    images.sort()
    if not images:
        raise UserInputError(
            f"source folder contains no images (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively; "
            f"{ignored} other files). Received: source={folder!r}"
        )
    unique, problems, first_by_stem = [], [], {}
    for relative in images:
        stem = os.path.splitext(relative)[0].lower()
        if stem in first_by_stem:
            problems.append(
                {"file": relative, "reason": f"duplicate name (same as {first_by_stem[stem]})", "fatal": True}
            )
        else:
            first_by_stem[stem] = relative
            unique.append(relative)
    order = np.random.default_rng(seed).permutation(len(unique))
    items = ((unique[i], os.path.join(folder, unique[i])) for i in order)
    tasks = (("file", chunk, resolution, non_square) for chunk in _chunks(items, chunk_size))
    description = {"kind": "folder", "path": os.path.abspath(folder), "image_files": len(images),
                   "ignored_files": ignored}
    return _Source(description, len(unique), tasks, problems)


def _synthetic_source(resolution, seed, num_images, chunk_size) -> _Source:
    count = 5000 if num_images is None else num_images
    tasks = (("synthetic", list(chunk), resolution, seed) for chunk in _chunks(range(count), chunk_size))
    return _Source({"kind": "synthetic", "generator": "datasets.synthetic.synthetic_image"}, count, tasks)


def _tfds_source(spec, resolution, seed, chunk_size, non_square, manual_dir, data_dir, image_key) -> _Source:
    import tensorflow_datasets as tfds

    name, _, split = spec.partition(":")
    split = split or "train"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises several types (DatasetNotFoundError, ValueError, ...)
        raise UserInputError(f"unknown TFDS dataset or config: {exc}. Received: source='tfds:{spec}'") from None
    if manual_dir is not None:
        if not os.path.isdir(manual_dir):
            raise UserInputError(f"TFDS manual dir does not exist. Received: tfds_manual_dir={manual_dir!r}")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as exc:  # surfaces the builder's own explanation (e.g. missing tar)
            message = " ".join(str(exc).split())
            raise UserInputError(
                f"TFDS could not prepare {name} from the manual dir: {message}. Received: tfds_manual_dir={manual_dir!r}"
            ) from None
    elif not builder.is_prepared():
        raise UserInputError(
            f"TFDS dataset {name} is not prepared in {builder.data_dir} and nothing is downloaded: pass "
            f"--tfds_manual_dir or --tfds_data_dir. Received: source='tfds:{spec}'"
        )
    if split not in builder.info.splits:
        raise UserInputError(
            f"TFDS dataset {name} has no split {split!r}; it has {sorted(builder.info.splits)}. Received: source='tfds:{spec}'"
        )
    if image_key not in builder.info.features:
        raise UserInputError(
            f"TFDS dataset {name} has no feature {image_key!r}; it has {sorted(builder.info.features)}. "
            f"Received: tfds_image_key={image_key!r}"
        )
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=True,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
        decoders={image_key: tfds.decode.SkipDecoding()},
    )

    def items():
        for index, example in enumerate(dataset.as_numpy_iterator()):
            yield f"{name}:{split}[{index}]", example[image_key]

    tasks = (("bytes", chunk, resolution, non_square) for chunk in _chunks(items(), chunk_size))
    description = {"kind": "tfds", "name": name, "split": split, "data_dir": builder.data_dir,
                   "manual_dir": manual_dir}
    return _Source(description, builder.info.splits[split].num_examples, tasks)


# ----------------------------------------------------------------------------------------------
# Writing.


def _sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _LevelWriter:
    """Writes one level's records into consecutive shards of at most `records_per_shard` records."""

    def __init__(self, directory, resolution, records_per_shard, hasher):
        import tensorflow as tf

        self._tf = tf
        self.directory = directory
        self.resolution = resolution
        self.records_per_shard = records_per_shard
        self._hasher = hasher
        self._writer = None
        self._in_shard = 0
        self.shards = []  # [file name, num_records, future of sha256]

    def write(self, record: bytes):
        if self._writer is None:
            file_name = shard_file_name(self.resolution, len(self.shards))
            self._writer = self._tf.io.TFRecordWriter(os.path.join(self.directory, file_name))
            self.shards.append([file_name, 0, None])
        self._writer.write(record)
        self.shards[-1][1] += 1
        if self.shards[-1][1] == self.records_per_shard:
            self._close_shard()

    def _close_shard(self):
        self._writer.close()
        self._writer = None
        self.shards[-1][2] = self._hasher.submit(_sha256_of_file, os.path.join(self.directory, self.shards[-1][0]))

    def finish(self) -> dict:
        if self._writer is not None:
            self._close_shard()
        size = record_bytes(self.resolution)
        return {
            "resolution": self.resolution,
            "record_bytes": size,
            "num_records": sum(count for _, count, _ in self.shards),
            "shards": [
                {"file": name, "num_records": count, "bytes": count * (size + TFRECORD_FRAMING_BYTES),
                 "sha256": digest.result()}
                for name, count, digest in self.shards
            ],
        }


def _records_per_shard(resolution, num_candidates, shards_per_level):
    if shards_per_level is None:
        return max(1, DEFAULT_SHARD_BYTES // record_bytes(resolution))
    return max(1, -(-num_candidates // shards_per_level))


@contextlib.contextmanager
def _main_module_hidden():
    """Keeps new worker processes from re-importing the parent's __main__ module.

    multiprocessing re-imports the main script (or `-m` module) in every spawned/forkserver
    child; for a trainer or this CLI that means importing TensorFlow in each worker (seconds and
    hundreds of MB each). Workers need only datasets.imaging, so the main module is swapped for
    an empty one while the pool starts its processes.
    """
    main_module = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main_module


def _ordered_parallel_map(function, tasks, num_workers):
    """Maps `function` over `tasks` in worker processes, in order, with bounded work in flight."""
    if num_workers == 0:
        yield from map(function, tasks)
        return
    # forkserver: workers never inherit TensorFlow's threads from this process, and preload only
    # the TF-free imaging module, so they start fast.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["datasets.imaging", "datasets.synthetic"])
    with _main_module_hidden(), context.Pool(num_workers) as pool:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(function, (task,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _fatal_problem_message(problem) -> str:
    return (
        f"{problem['file']}: {problem['reason']}; refusing because of --strict "
        f"(without it the file is {'skipped' if problem['fatal'] else 'converted'} and reported)"
    )


def _make_source(source, resolution, seed, num_images, chunk_size, non_square, tfds_manual_dir,
                 tfds_data_dir, tfds_image_key) -> _Source:
    if source == "synthetic":
        return _synthetic_source(resolution, seed, num_images, chunk_size)
    if source.startswith("tfds:"):
        return _tfds_source(source[len("tfds:"):], resolution, seed, chunk_size, non_square,
                            tfds_manual_dir, tfds_data_dir, tfds_image_key)
    return _folder_source(source, resolution, seed, chunk_size, non_square)


def build_pyramid(
    source: str,
    output_dir: str,
    resolution: int,
    *,
    name: Optional[str] = None,
    seed: int = 123,
    num_images: Optional[int] = None,
    shards_per_level: Optional[int] = None,
    num_workers: Optional[int] = None,
    strict: bool = False,
    non_square: str = "crop",
    overwrite: bool = False,
    tfds_manual_dir: Optional[str] = None,
    tfds_data_dir: Optional[str] = None,
    tfds_image_key: str = "image",
    progress: bool = True,
) -> dict:
    """Builds a dataset pyramid (see the module docstring for the format).

    Args:
      source: a folder path, "synthetic", or "tfds:NAME[:SPLIT]".
      output_dir: pyramid directory to create.
      resolution: full resolution, a power of two >= 4.
      name: dataset name for the manifest (default: the output directory's base name).
      seed: shuffle seed for folder/TFDS sources; the dataset seed for the synthetic source.
      num_images: stop after this many usable images (default: all; synthetic: 5000).
      shards_per_level: split every level into (at most) this many shards; default: shards of
        about DEFAULT_SHARD_BYTES.
      num_workers: decoding processes (default: all cores; 0 decodes in this process).
      strict: make any skipped or converted image a fatal UserInputError.
      non_square: "crop" (centre crop) or "skip" non-square images.
      overwrite: replace an existing pyramid at output_dir (only once the new one is complete).
      tfds_manual_dir: manual dir for preparing a TFDS dataset (e.g. celeb_a_hq's data1024x1024.tar).
      tfds_data_dir: TFDS data dir (where prepared datasets live).
      tfds_image_key: the TFDS feature holding the image.
      progress: show a progress bar with images/s on stderr.

    Returns:
      The manifest dict (also written to output_dir/manifest.json).

    Raises:
      UserInputError: bad arguments or input (the message says which and why).
    """
    resolution = check_resolution(resolution)
    if non_square not in imaging.NON_SQUARE_POLICIES:
        raise UserInputError(f"non_square must be one of {imaging.NON_SQUARE_POLICIES}. Received: non_square={non_square!r}")
    if num_images is not None and num_images < 1:
        raise UserInputError(f"num_images must be >= 1. Received: num_images={num_images}")
    if shards_per_level is not None and shards_per_level < 1:
        raise UserInputError(f"shards_per_level must be >= 1. Received: shards_per_level={shards_per_level}")
    num_workers = os.cpu_count() if num_workers is None else num_workers
    if num_workers < 0:
        raise UserInputError(f"num_workers must be >= 0. Received: num_workers={num_workers}")
    output_dir = os.path.normpath(output_dir)
    if os.path.exists(output_dir) and not overwrite:
        raise UserInputError(f"output directory already exists (pass --overwrite to replace it). Received: output_dir={output_dir!r}")
    bytes_per_image = sum(record_bytes(4 << level) for level in range(imaging.num_levels(resolution)))
    chunk_size = int(np.clip(_TASK_BYTES // bytes_per_image, 1, 256))
    data_source = _make_source(source, resolution, seed, num_images, chunk_size, non_square,
                               tfds_manual_dir, tfds_data_dir, tfds_image_key)
    problems = data_source.problems
    if strict and problems:
        raise UserInputError(_fatal_problem_message(problems[0]))
    target = data_source.num_candidates if num_images is None else min(num_images, data_source.num_candidates)

    partial_dir = output_dir + ".partial"
    shutil.rmtree(partial_dir, ignore_errors=True)
    os.makedirs(partial_dir)
    started = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as hasher:
            writers = [
                _LevelWriter(partial_dir, 4 << level,
                             _records_per_shard(4 << level, target, shards_per_level), hasher)
                for level in range(imaging.num_levels(resolution))
            ]
            record_names = _write_records(data_source, writers, problems, target, strict, num_workers, progress)
            levels = [writer.finish() for writer in writers]
        if not record_names:
            raise UserInputError(
                f"no usable images: all {len(problems)} candidates were skipped (first: "
                f"{problems[0]['file']}: {problems[0]['reason']}). Received: source={source!r}"
            )
        with open(os.path.join(partial_dir, RECORD_NAMES_FILE), "w") as handle:
            handle.write("".join(record_name + "\n" for record_name in record_names))
        seconds = time.time() - started
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": name or os.path.basename(output_dir),
            "resolution": resolution,
            "resolutions": [level["resolution"] for level in levels],
            "channels": 3,
            "num_images": len(record_names),
            "record_encoding": "raw uint8 HWC RGB bytes per TFRecord record (no tf.train.Example)",
            "source": data_source.description,
            "seed": seed,
            "levels": levels,
            "record_names_file": RECORD_NAMES_FILE,
            "problems": problems,
            "build": {
                "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3),
                "images_per_second": round(len(record_names) / max(seconds, 1e-9), 1),
                "num_workers": num_workers,
                "non_square": non_square,
            },
        }
        with open(os.path.join(partial_dir, MANIFEST_NAME), "w") as handle:
            json.dump(manifest, handle, indent=1)
        _replace_directory(partial_dir, output_dir)
    except BaseException:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    return manifest


def _write_records(data_source, writers, problems, target, strict, num_workers, progress) -> list:
    """Runs the workers over the source and writes every usable image; returns record names."""
    from tqdm import tqdm

    record_names = []
    chunk_results = _ordered_parallel_map(imaging.load_chunk, data_source.tasks, num_workers)
    with contextlib.closing(chunk_results), tqdm(total=target, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for results in chunk_results:
            for result in results:
                if result.note:
                    problems.append({"file": result.name, "reason": result.note, "fatal": False})
                if result.skip_reason:
                    problems.append({"file": result.name, "reason": result.skip_reason, "fatal": True})
                if strict and (result.note or result.skip_reason):
                    raise UserInputError(_fatal_problem_message(problems[-1]))
                if result.skip_reason:
                    continue
                for writer, level in zip(writers, result.levels):
                    writer.write(level)
                record_names.append(result.name)
                bar.update(1)
                if len(record_names) == target:
                    return record_names
    return record_names


def _replace_directory(new_dir, output_dir):
    """Moves the finished build into place; an existing pyramid is replaced only at this point."""
    if os.path.exists(output_dir):
        retired = output_dir + ".old"
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(output_dir, retired)
        os.rename(new_dir, output_dir)
        shutil.rmtree(retired)
    else:
        os.rename(new_dir, output_dir)


def summarize_problems(problems: list, max_files: int = 5) -> list:
    """One line per kind of problem: count, reason and the first few files."""
    groups = collections.defaultdict(list)
    for problem in problems:
        groups[(problem["fatal"], problem["reason"].split(" (")[0])].append(problem["file"])
    lines = []
    for (skipped, reason), files in sorted(groups.items()):
        shown = ", ".join(files[:max_files]) + (f", ... ({len(files) - max_files} more)" if len(files) > max_files else "")
        lines.append(f"{'skipped' if skipped else 'converted'} {len(files)}: {reason}: {shown}")
    return lines


# ----------------------------------------------------------------------------------------------
# Verification.


def _first_bad_record(path, expected_record_bytes) -> Optional[str]:
    """Reads a shard record by record; describes the first bad record (None if all are fine)."""
    import tensorflow as tf

    index = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            if len(record.numpy()) != expected_record_bytes:
                return f"record {index} has {len(record.numpy())} bytes, expected {expected_record_bytes}"
            index += 1
    except tf.errors.OpError as exc:
        return f"record {index} unreadable ({type(exc).__name__}: {exc.message.splitlines()[0]})"
    return None


def verify_pyramid(output_dir: str) -> dict:
    """Re-reads a pyramid and checks counts, sizes and checksums against its manifest.

    Args:
      output_dir: the pyramid directory.

    Returns:
      {"ok": bool, "problems": [one line per problem, naming the file], "files_checked": int}.

    Raises:
      UserInputError: the directory or its manifest is missing or invalid.
    """
    from progan_tf import data

    manifest = data.load_manifest(output_dir)
    problems, files_checked, listed = [], 0, {MANIFEST_NAME, manifest["record_names_file"]}
    for level in manifest["levels"]:
        if level["num_records"] != manifest["num_images"]:
            problems.append(
                f"level {level['resolution']}: manifest lists {level['num_records']} records, expected {manifest['num_images']}"
            )
        for shard in level["shards"]:
            listed.add(shard["file"])
            path = os.path.join(output_dir, shard["file"])
            files_checked += 1
            if not os.path.exists(path):
                problems.append(f"{shard['file']}: missing")
                continue
            size = os.path.getsize(path)
            if size != shard["bytes"]:
                problems.append(f"{shard['file']}: {size} bytes, expected {shard['bytes']} ({shard['num_records']} records): truncated or corrupt")
            elif _sha256_of_file(path) != shard["sha256"]:
                where = _first_bad_record(path, level["record_bytes"]) or "records parse, but contents differ"
                problems.append(f"{shard['file']}: checksum mismatch ({where})")
    names_path = os.path.join(output_dir, manifest["record_names_file"])
    if not os.path.exists(names_path):
        problems.append(f"{manifest['record_names_file']}: missing")
    for file_name in sorted(os.listdir(output_dir)):
        if file_name.endswith(".tfrecord") and file_name not in listed:
            problems.append(f"{file_name}: not listed in the manifest")
    return {"ok": not problems, "problems": problems, "files_checked": files_checked}


# ----------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def define_flags():
    """Defines the CLI flags; only when run as a program, so importing this module adds none."""
    flags.DEFINE_string("source", None, "A folder of images, 'synthetic', or 'tfds:NAME[:SPLIT]'.")
    flags.DEFINE_string("output_dir", None, "Pyramid directory to create (or to check with --verify).")
    flags.DEFINE_integer("resolution", None, "Full resolution: a power of two >= 4.")
    flags.DEFINE_string("name", None, "Dataset name for the manifest (default: output dir's base name).")
    flags.DEFINE_integer("seed", 123, "Shuffle seed (folder/TFDS); dataset seed (synthetic).")
    flags.DEFINE_integer("num_images", None, "Use at most this many images (synthetic default: 5000).")
    flags.DEFINE_integer("shards_per_level", None, "Shards per level (default: about 256 MiB per shard).")
    flags.DEFINE_integer("num_workers", None, "Decoding processes (default: all cores).")
    flags.DEFINE_bool("strict", False, "Fail on any skipped or converted image instead of reporting it.")
    flags.DEFINE_enum("non_square", "crop", list(imaging.NON_SQUARE_POLICIES), "Centre-crop or skip non-square images.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing pyramid (once the new one is complete).")
    flags.DEFINE_string("tfds_manual_dir", None, "TFDS manual dir (e.g. with celeb_a_hq's data1024x1024.tar).")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir.")
    flags.DEFINE_string("tfds_image_key", "image", "TFDS feature holding the image.")
    flags.DEFINE_bool("verify", False, "Verify the pyramid at --output_dir instead of building.")


def _run(argv) -> int:
    if len(argv) > 1:
        raise UserInputError(f"unexpected positional arguments (use --flags). Received: {argv[1:]}")
    if FLAGS.output_dir is None:
        raise UserInputError("--output_dir is required. Received: output_dir=None")
    if FLAGS.verify:
        report = verify_pyramid(FLAGS.output_dir)
        for problem in report["problems"]:
            print(f"problem: {problem}")
        print(f"{'OK' if report['ok'] else 'FAILED'}: {FLAGS.output_dir} ({report['files_checked']} shard files checked, "
              f"{len(report['problems'])} problems)")
        return 0 if report["ok"] else 1
    if FLAGS.source is None or FLAGS.resolution is None:
        raise UserInputError(f"--source and --resolution are required to build. Received: source={FLAGS.source!r}, resolution={FLAGS.resolution!r}")
    manifest = build_pyramid(
        FLAGS.source, FLAGS.output_dir, FLAGS.resolution, name=FLAGS.name, seed=FLAGS.seed,
        num_images=FLAGS.num_images, shards_per_level=FLAGS.shards_per_level, num_workers=FLAGS.num_workers,
        strict=FLAGS.strict, non_square=FLAGS.non_square, overwrite=FLAGS.overwrite,
        tfds_manual_dir=FLAGS.tfds_manual_dir, tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_image_key=FLAGS.tfds_image_key,
    )
    for line in summarize_problems(manifest["problems"]):
        print(line)
    build = manifest["build"]
    print(f"wrote {FLAGS.output_dir}: {manifest['num_images']} images, levels {manifest['resolutions']}, "
          f"{build['seconds']:.1f} s ({build['images_per_second']:.0f} img/s)")
    return 0


def main(argv):
    try:
        return _run(argv)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from progan_tf.startup import import_tensorflow_quietly

    import_tensorflow_quietly()  # the shard writers need TensorFlow; without its start-up log lines
    define_flags()
    app.run(main)
