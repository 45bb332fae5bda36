r"""Benchmarks the dataset builder and the tf.data input pipeline.

  .venv/bin/python bench/bench_data.py --source=../shared/data/celeba128 --resolution=128
  .venv/bin/python bench/bench_data.py --source=../shared/data/celebahq1024 --resolution=1024 \
      --trainer_images_per_second=4:900,8:900,16:700,32:500,64:250,128:100

1. What each build stage costs per image in one thread (CPU time, best of 3, up to 64 images):
   the decode the decode-only pass does, the builder's load, pyramid, record bytes, TFRecord writes
   and sha256; the floor that decode + writes + sha256 (what the format requires) puts under the
   build / decode CPU ratio.
2. Builder time against decoding the same source images with the same number of worker
   processes and nothing else (the ratio build time / decode time; goal <= 1.5). Decode and build
   alternate --repeats times, so both see the same machine load; the table gives each repeat and
   the median, in wall time (of the whole build_pyramid call) and in CPU time of this process and
   all its children (read from /proc; on a machine shared with other jobs the CPU ratio is the
   steadier one). (The first build of a process also starts the worker pool's fork server.)
3. make_dataset images/s per resolution at the reference 1-GPU batch sizes (mirror augment on, uint8
   as the trainer reads it),
   against what the trainer consumes (--trainer_images_per_second, measured by the trainer;
   goal >= 5x).
"""

import hashlib
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from datasets import build, imaging  # noqa: E402
from datasets.imaging import IMAGE_EXTENSIONS  # noqa: E402
from progan_tf import data  # noqa: E402

flags.DEFINE_string("source", "../shared/data/celeba128", "Image folder to build from.")
flags.DEFINE_integer("resolution", 128, "Pyramid resolution.")
flags.DEFINE_integer("num_workers", None, "Builder/decoder processes (default: all cores).")
flags.DEFINE_float("seconds", 3.0, "Measuring time per pipeline resolution.")
flags.DEFINE_string("trainer_images_per_second", "", "Trainer consumption per resolution, 'res:ips,...'.")
flags.DEFINE_integer("repeats", 3, "Alternating decode-only / build measurements.", lower_bound=1)
flags.DEFINE_bool("pipeline", True, "Also measure the tf.data pipeline per resolution.")
flags.DEFINE_bool("stages", True, "Also measure each build stage's CPU per image in one thread.")
FLAGS = flags.FLAGS

# Reference minibatch sizes on one GPU (PAPER_NOTES.md).
BATCH_SIZES = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4}


class TreeCpuSeconds:
    """CPU seconds (user + system) of this process and its descendants during a `with` block.

    Read from /proc at the start and at the end only: a thread sampling every few milliseconds
    cost 17% of a core, which both inflated and slowed what it measured. Each process counts its
    own time plus that of the children it has reaped (cutime/cstime), so workers that exit
    during the block count through the process that waited for them (this process for a fork
    pool, the fork server for forkserver). Processes alive at the start count only from then.
    """

    def __init__(self):
        self.seconds = 0.0
        self._ticks = os.sysconf("SC_CLK_TCK")

    def _tree(self):
        seconds, children = {}, {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(name))
                seconds[int(name)] = sum(map(int, fields[11:15])) / self._ticks  # utime stime cutime cstime
        tree, stack = {}, [os.getpid()]
        while stack:
            pid = stack.pop()
            tree[pid] = seconds.get(pid, 0.0)
            stack.extend(children.get(pid, ()))
        return tree

    def __enter__(self):
        self._start = self._tree()
        return self

    def __exit__(self, *exc):
        self.seconds = sum(seconds - self._start.get(pid, 0.0) for pid, seconds in self._tree().items())


def _decode(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB").size


def image_paths(folder):
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def decode_only_seconds(folder, num_workers):
    paths = image_paths(folder)
    started = time.time()
    # fork: the children only run PIL, and forkserver would re-import this TF-importing script.
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        pool.map(_decode, paths, chunksize=8)
    return len(paths), time.time() - started


def _write_records(directory, records_per_image):
    writers = [
        tf.io.TFRecordWriter(os.path.join(directory, f"level{index}")) for index in range(len(records_per_image[0]))
    ]
    for records in records_per_image:
        for writer, record in zip(writers, records):
            writer.write(record)
    for writer in writers:
        writer.close()


def _sha256_all(records_per_image):
    digest = hashlib.sha256()
    for records in records_per_image:
        for record in records:
            digest.update(record)
    return digest.hexdigest()


def stage_table(folder, resolution, max_images=64, repeats=3):
    """Prints what each build stage costs per image in one thread, and the floor that puts under build / decode."""
    paths = image_paths(folder)[:max_images]
    images = [image for image, _, _ in (imaging.load_image(path, resolution) for path in paths) if image is not None]
    spans = imaging.level_spans(resolution)
    row = np.empty(spans[-1][0] + spans[-1][1], np.uint8)
    records = [
        [imaging.pack_pyramid(image, row)[offset : offset + size].tobytes() for offset, size in spans]
        for image in images
    ]
    with tempfile.TemporaryDirectory() as directory:
        stages = {
            "decode (as the decode-only pass)": (len(paths), lambda: [_decode(path) for path in paths]),
            "load (decode, RGB, square, resize)": (
                len(paths),
                lambda: [imaging.load_image(path, resolution) for path in paths],
            ),
            "pyramid (pack_pyramid)": (len(images), lambda: [imaging.pack_pyramid(image, row) for image in images]),
            "record bytes out of the shared block": (
                len(images),
                lambda: [[row[offset : offset + size].tobytes() for offset, size in spans] for _ in images],
            ),
            "TFRecord writes (CRC, page cache)": (len(images), lambda: _write_records(directory, records)),
            "sha256 of the shards (in memory)": (len(images), lambda: _sha256_all(records)),
        }
        cost = {}
        for name, (count, run) in stages.items():
            best = math.inf
            for _ in range(repeats):
                started = time.thread_time()
                run()
                best = min(best, time.thread_time() - started)
            cost[name] = best / count * 1e3
    decode = cost["decode (as the decode-only pass)"]
    print(
        f"| build stage ({len(paths)} images -> {resolution}px, one thread, best of {repeats}) | "
        "CPU ms per image | / decode |"
    )
    print("|---|---|---|")
    for name, milliseconds in cost.items():
        print(f"| {name} | {milliseconds:.2f} | {milliseconds / decode:.2f} |")
    required = decode + cost["TFRecord writes (CRC, page cache)"] + cost["sha256 of the shards (in memory)"]
    everything = sum(milliseconds for name, milliseconds in cost.items() if not name.startswith("decode"))
    print(f"| floor: decode + writes + sha256 (no pyramid, no transfer) | {required:.2f} | {required / decode:.2f}x |")
    print(f"| all stages but the decode-only pass | {everything:.2f} | {everything / decode:.2f}x |")
    print()


def pipeline_images_per_second(pyramid_dir, resolution, seconds):
    batch_size = BATCH_SIZES[resolution]
    # uint8, as the trainer reads it (the float conversion happens on its device).
    iterator = iter(data.make_dataset(pyramid_dir, resolution, batch_size, seed=1, as_uint8=True))
    for _ in range(5):  # warm-up: first window read, autotuning
        next(iterator)
    images, started = 0, time.time()
    while time.time() - started < seconds:
        next(iterator)
        images += batch_size
    return images / (time.time() - started)


def main(argv):
    del argv
    num_workers = FLAGS.num_workers or os.cpu_count()
    trainer = dict(
        (int(res), float(ips))
        for res, ips in (item.split(":") for item in FLAGS.trainer_images_per_second.split(",") if item)
    )
    work_dir = tempfile.mkdtemp(prefix="bench_data_")
    try:
        if FLAGS.stages:
            stage_table(FLAGS.source, FLAGS.resolution)
        pyramid_dir = builder_table(work_dir, num_workers)
        if FLAGS.pipeline:
            pipeline_table(pyramid_dir, trainer)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def builder_table(work_dir, num_workers):
    """Prints decode-only vs build for each repeat and the medians; returns the last pyramid."""
    print(
        f"| builder ({FLAGS.source} -> {FLAGS.resolution}px, {num_workers} workers) | decode s | build s | "
        f"build / decode wall (goal <= 1.5x) | decode CPU s | build CPU s | build / decode CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    wall_ratios, cpu_ratios = [], []
    for repeat in range(FLAGS.repeats):
        with TreeCpuSeconds() as decode_cpu:
            count, decode_seconds = decode_only_seconds(FLAGS.source, num_workers)
        pyramid_dir = os.path.join(work_dir, f"pyramid{repeat}")
        started = time.time()
        with TreeCpuSeconds() as build_cpu:
            build.build_pyramid(FLAGS.source, pyramid_dir, FLAGS.resolution, num_workers=num_workers, progress=False)
        build_seconds = time.time() - started
        wall_ratios.append(build_seconds / decode_seconds)
        cpu_ratios.append(build_cpu.seconds / decode_cpu.seconds)
        print(
            f"| repeat {repeat + 1} ({count} images) | {decode_seconds:.2f} | {build_seconds:.2f} | "
            f"{wall_ratios[-1]:.2f}x | {decode_cpu.seconds:.2f} | {build_cpu.seconds:.2f} | {cpu_ratios[-1]:.2f}x |"
        )
    print(f"| median | | | {statistics.median(wall_ratios):.2f}x | | | {statistics.median(cpu_ratios):.2f}x |")
    print()
    return pyramid_dir


def pipeline_table(pyramid_dir, trainer):
    print("| resolution | batch | pipeline img/s | trainer img/s | ratio (goal >= 5x) |")
    print("|---|---|---|---|---|")
    for resolution in data.load_manifest(pyramid_dir)["resolutions"]:
        rate = pipeline_images_per_second(pyramid_dir, resolution, FLAGS.seconds)
        consumed = trainer.get(resolution)
        ratio = f"{rate / consumed:.1f}x" if consumed else "n/a"
        print(f"| {resolution} | {BATCH_SIZES[resolution]} | {rate:.0f} | {consumed or 'n/a'} | {ratio} |")


if __name__ == "__main__":
    app.run(main)
