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

Pyramid layout (one directory per dataset; TAG names the build that wrote the file):
  manifest.json            written last, lists every other file: a directory without it is an
                           incomplete build.
  records-TAG.txt          source name of record i on line i (same for every level).
  rNN-SSSSS-TAG.tfrecord   level with resolution 2**NN (r02 = 4x4 ... r10 = 1024x1024), shard SSSSS.
  Every record is one image as raw uint8 bytes, HWC, RGB, row-major: exactly R*R*3 bytes, with
  no tf.train.Example wrapper (the shape lives in the manifest), so reading is a `decode_raw`
  and a reshape. Record i is the same image at every level; shards of a level hold consecutive
  records. Because all records of a level have the same length, a shard's size must be
  num_records * (R*R*3 + 16) bytes (16 = TFRecord framing), which makes truncation checks cheap.
  Levels: level R is the (cropped, resized) source; each lower level is the 2x2 box average of the
  previous level's float32 values, stored as rint/clip to uint8 (datasets/imaging.py).

Atomicity (datasets/writer.py): a new pyramid is written into `<output_dir>.partial/` and renamed
into place when complete; --overwrite writes the new files beside the old ones and replaces the
manifest by a rename, so a reader sees the old pyramid or the new one at every instant. Whatever
an interrupted build leaves is removed by the next build. A filesystem error (disk full,
read-only, permission denied) ends the build with one line naming the path; the old pyramid is
kept as it was.

Modules: sources.py (where images come from), imaging.py (decoding and pyramid math, in the
worker processes), parallel.py (the worker pool), writer.py (shards and commit), this file (the
build and the command line); verification is progan_tf/pyramid_check.py.
"""

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import os
import sys
import time

from progan_tf import startup

startup.import_tensorflow_quietly()  # before the modules below import TensorFlow: no C++ start-up lines

from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets import imaging, parallel, problems, sources, writer  # noqa: E402
from progan_tf import pyramid_check  # noqa: E402
from progan_tf.errors import UserInputError  # noqa: E402
from progan_tf.pyramid_format import FORMAT_NAME, FORMAT_VERSION  # noqa: E402
from progan_tf.resolutions import resolution_log2  # noqa: E402


def check_resolution(resolution) -> int:
    """Returns `resolution` as an int, or raises UserInputError unless it is a power of two in [4, 1024]."""
    resolution_log2(resolution)
    return int(resolution)


def _check_arguments(non_square, num_images, shards_per_level, num_workers):
    if non_square not in imaging.NON_SQUARE_POLICIES:
        raise UserInputError(
            f"non_square must be one of {imaging.NON_SQUARE_POLICIES}. Received: non_square={non_square!r}"
        )
    if num_images is not None and num_images < 1:
        raise UserInputError(f"num_images must be >= 1. Received: num_images={num_images}")
    if shards_per_level is not None and shards_per_level < 1:
        raise UserInputError(f"shards_per_level must be >= 1. Received: shards_per_level={shards_per_level}")
    if num_workers < 0:
        raise UserInputError(f"num_workers must be >= 0. Received: num_workers={num_workers}")


def build_pyramid(
    source: str,
    output_dir: str,
    resolution: int,
    *,
    name: str | None = None,
    seed: int = 123,
    num_images: int | None = None,
    shards_per_level: int | None = None,
    num_workers: int | None = None,
    strict: bool = False,
    non_square: str = "crop",
    overwrite: bool = False,
    tfds_manual_dir: str | None = None,
    tfds_data_dir: str | None = None,
    tfds_image_key: str = "image",
    progress: bool = True,
) -> dict:
    """Builds a dataset pyramid (see the module docstring for the format).

    Args:
      source: a folder path, "synthetic", or "tfds:NAME[:SPLIT]".
      output_dir: pyramid directory to create (any filesystem TensorFlow reaches).
      resolution: full resolution, a power of two in [4, 1024].
      name: dataset name for the manifest (default: the output directory's base name).
      seed: shuffle seed for folder/TFDS sources; the dataset seed for the synthetic source.
      num_images: stop after this many usable images (default: all; synthetic: 5000).
      shards_per_level: split every level into (at most) this many shards; default: shards of
        about writer.DEFAULT_SHARD_BYTES.
      num_workers: decoding processes (default: all cores; 0 decodes in this process).
      strict: make any skipped or converted image a fatal UserInputError.
      non_square: "crop" (centre crop) or "skip" non-square images.
      overwrite: replace an existing pyramid at output_dir (atomically, once the new one is complete).
      tfds_manual_dir: manual dir for preparing a TFDS dataset (e.g. celeb_a_hq's data1024x1024.tar).
      tfds_data_dir: TFDS data dir (where prepared datasets live).
      tfds_image_key: the TFDS feature holding the image.
      progress: show a progress bar with images/s on stderr.

    Returns:
      The manifest dict (also written to output_dir/manifest.json).

    Raises:
      UserInputError: bad arguments or input, or a filesystem error (the message says which and
        why; an existing pyramid at output_dir is then unchanged).
    """
    output_dir = output_dir.rstrip("/") or output_dir
    settings = _BuildSettings.checked(
        output_dir, name, resolution, seed, num_images, shards_per_level, num_workers, strict, non_square, progress
    )
    data_source = _open_source(source, settings, tfds_manual_dir, tfds_data_dir, tfds_image_key)
    started = time.time()
    return _commit_or_abandon(
        output_dir, overwrite, lambda output: _build_into(output, data_source, source, settings, started)
    )


@dataclasses.dataclass(frozen=True)
class _BuildSettings:
    """build_pyramid's checked arguments that the writing and the manifest need."""

    name: str
    resolution: int
    seed: int
    num_images: int | None
    shards_per_level: int | None
    num_workers: int
    strict: bool
    non_square: str
    progress: bool

    @classmethod
    def checked(
        cls, output_dir, name, resolution, seed, num_images, shards_per_level, num_workers, strict, non_square, progress
    ):
        """The settings, after checking the arguments (raises UserInputError) and filling in defaults."""
        resolution = check_resolution(resolution)
        num_workers = os.cpu_count() if num_workers is None else num_workers
        _check_arguments(non_square, num_images, shards_per_level, num_workers)
        name = name or os.path.basename(output_dir)
        return cls(name, resolution, seed, num_images, shards_per_level, num_workers, strict, non_square, progress)


def _open_source(source, settings, tfds_manual_dir, tfds_data_dir, tfds_image_key) -> sources.Source:
    data_source = sources.make_source(
        source,
        settings.resolution,
        settings.seed,
        settings.num_images,
        parallel.images_per_task(settings.resolution),
        settings.non_square,
        tfds_manual_dir,
        tfds_data_dir,
        tfds_image_key,
    )
    if settings.strict and data_source.problems:
        raise UserInputError(problems.fatal_problem_message(data_source.problems[0]))
    return data_source


def _commit_or_abandon(output_dir, overwrite, build_into):
    """Runs `build_into(output)` on a new writer.PyramidOutput; removes the partial build if anything fails."""
    output = None
    try:
        output = writer.PyramidOutput(output_dir, overwrite)
        return build_into(output)
    except writer.FILESYSTEM_ERRORS as exc:
        if output is not None:
            output.abandon()
        raise UserInputError(
            f"could not write the pyramid ({writer.describe_filesystem_error(exc)}); the partial build was removed and "
            f"any pyramid already at the output is unchanged. Received: output_dir={output_dir!r}"
        ) from None
    except BaseException:
        if output is not None:
            output.abandon()
        raise


def _build_into(output, data_source, source, settings, started) -> dict:
    """Writes every level, the record names and the manifest into `output`, then commits it; returns the manifest."""
    target = data_source.num_candidates
    if settings.num_images is not None:
        target = min(settings.num_images, target)
    levels, record_names = _write_levels(output, data_source, target, settings)
    if not record_names:
        skipped = data_source.problems
        raise UserInputError(
            f"no usable images: all {len(skipped)} candidates were skipped (first: "
            f"{skipped[0]['file']}: {skipped[0]['reason']}). Received: source={source!r}"
        )
    output.write_text(output.record_names_file(), "".join(record_name + "\n" for record_name in record_names))
    manifest = _manifest(settings, levels, record_names, data_source, output.record_names_file(), time.time() - started)
    output.commit(json.dumps(manifest, indent=1))
    return manifest


def _write_levels(output, data_source, target, settings):
    """Loads the source in the workers and writes its first `target` usable images; returns (levels, record names)."""
    # One thread hashes each shard while it is written (sha256 releases the GIL).
    with concurrent.futures.ThreadPoolExecutor(1) as hasher:
        level_writers = [
            writer.LevelWriter(
                output.directory,
                size,
                writer.records_per_shard(size, target, settings.shards_per_level),
                output.build_tag,
                hasher,
            )
            for size in imaging.level_resolutions(settings.resolution)
        ]
        try:
            record_names = []
            loaded = parallel.load_pyramids(data_source.tasks, settings.resolution, settings.num_workers)
            with (
                contextlib.closing(loaded),
                tqdm(
                    total=target, unit="img", disable=not settings.progress, file=sys.stderr, dynamic_ncols=True
                ) as bar,
            ):
                for result, records in loaded:
                    problems.note_problems(result, data_source.problems, settings.strict)
                    if records is None:
                        continue
                    for level_writer, record in zip(level_writers, records):
                        level_writer.write(record)
                    record_names.append(result.name)
                    bar.update(1)
                    if len(record_names) == target:
                        break
            return [level_writer.finish() for level_writer in level_writers], record_names
        finally:
            for level_writer in level_writers:
                level_writer.close()


def _manifest(settings, levels, record_names, data_source, record_names_file, seconds) -> dict:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": settings.name,
        "resolution": settings.resolution,
        "resolutions": [level["resolution"] for level in levels],
        "channels": 3,
        "num_images": len(record_names),
        "record_encoding": "raw uint8 HWC RGB bytes per TFRecord record (no tf.train.Example)",
        "source": data_source.description,
        "seed": settings.seed,
        "levels": levels,
        "record_names_file": record_names_file,
        "problems": data_source.problems,
        "build": {
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "images_per_second": round(len(record_names) / max(seconds, 1e-9), 1),
            "num_workers": settings.num_workers,
            "non_square": settings.non_square,
        },
    }


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
        report = pyramid_check.verify_pyramid(FLAGS.output_dir, progress=True)
        for problem in report["problems"]:
            print(f"problem: {problem}")
        for leftover in report["leftovers"]:
            print(f"note: {leftover} is not in the manifest (left by an interrupted build; the next build removes it)")
        print(
            f"{'OK' if report['ok'] else 'FAILED'}: {FLAGS.output_dir} ({report['files_checked']} shard files checked, "
            f"{len(report['problems'])} problems)"
        )
        return 0 if report["ok"] else 1
    if FLAGS.source is None or FLAGS.resolution is None:
        raise UserInputError(
            "--source and --resolution are required to build. "
            f"Received: source={FLAGS.source!r}, resolution={FLAGS.resolution!r}"
        )
    manifest = build_pyramid(
        FLAGS.source,
        FLAGS.output_dir,
        FLAGS.resolution,
        name=FLAGS.name,
        seed=FLAGS.seed,
        num_images=FLAGS.num_images,
        shards_per_level=FLAGS.shards_per_level,
        num_workers=FLAGS.num_workers,
        strict=FLAGS.strict,
        non_square=FLAGS.non_square,
        overwrite=FLAGS.overwrite,
        tfds_manual_dir=FLAGS.tfds_manual_dir,
        tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_image_key=FLAGS.tfds_image_key,
    )
    for line in problems.summarize_problems(manifest["problems"]):
        print(line)
    build = manifest["build"]
    print(
        f"wrote {FLAGS.output_dir}: {manifest['num_images']} images, levels {manifest['resolutions']}, "
        f"{build['seconds']:.1f} s ({build['images_per_second']:.0f} img/s)"
    )
    return 0


def main(argv):
    try:
        return _run(argv)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    define_flags()
    app.run(main)
