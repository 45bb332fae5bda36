"""Metric throughput on this machine, and the real-vs-real noise floor on celeba128.

Prints images/s for each metric stage (random uint8 images; speed does not depend on content):
SWD descriptor extraction (pyramid + patches), the SWD distance itself (sorting 4 x 128
projections per level), MS-SSIM pairs and FID features (InceptionV3 at 299 px; random weights run at
the same speed as trained ones). With --noise-floor it also evaluates two disjoint halves of
../shared/data/celeba128 against each other (SWD, MS-SSIM of each half): the values a perfect
generator would get with that many images.

Usage:
    .venv/bin/python bench/bench_metrics.py [--images 256] [--resolution 128] [--noise-floor]
"""

import argparse
import json
import pathlib
import time

import numpy as np

from progan_tf.metrics import fid, ms_ssim, sources, swd
from progan_tf.metrics.evaluate import evaluate, format_results_table

CELEBA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128"


def images_per_second(fn, num_images):
    fn()  # warm-up: traces TF functions and allocates
    start = time.perf_counter()
    fn()
    return num_images / (time.perf_counter() - start)


def bench(num_images, resolution, batch_size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_images, resolution, resolution, 3), dtype=np.uint8)
    batches = np.array_split(images, max(1, num_images // batch_size))
    rows = []

    def swd_descriptors():
        acc = swd.SWDDescriptors()
        for batch in batches:
            acc.update(batch)
        return acc

    rows.append((f"SWD descriptors ({resolution}px)", images_per_second(swd_descriptors, num_images)))
    real, fake = swd_descriptors(), swd_descriptors()
    rows.append(
        (
            f"SWD distance ({num_images}/side, per side)",
            images_per_second(lambda: swd.swd_result(real, fake), num_images),
        )
    )

    def ms_ssim_pairs():
        acc = ms_ssim.MSSSIMAccumulator(num_pairs=None)
        for batch in batches:
            acc.update(batch)

    rows.append((f"MS-SSIM ({resolution}px, images)", images_per_second(ms_ssim_pairs, num_images)))

    model = fid.inception_feature_model()
    fid_images = images[: min(num_images, 64)]

    def fid_features():
        fid.FIDFeatures(model, batch_size=32).update(fid_images)

    rows.append(("FID InceptionV3 features (299px)", images_per_second(fid_features, len(fid_images))))
    return rows


def noise_floor(batch_size):
    files = sources.list_image_files(CELEBA)
    half = len(files) // 2
    first = lambda: sources.folder_batches(CELEBA, 128, batch_size, limit=half)  # noqa: E731
    second = lambda: sources.folder_batches(CELEBA, 128, batch_size, start=half, limit=half)  # noqa: E731
    # "real" = first half, "fake" = second half; ms_ssim is the second half's pairs.
    return evaluate(["swd", "ms_ssim", "ms_ssim_real"], first, second, num_images=half)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images per timed run")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--noise-floor", action="store_true", help="also evaluate celeba128 half vs half")
    args = parser.parse_args()

    rows = bench(args.images, args.resolution, args.batch_size)
    width = max(len(name) for name, _ in rows)
    print(f"\n{'stage':<{width}}  images/s")
    print(f"{'-' * width}  --------")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:8.1f}")

    if args.noise_floor:
        if not CELEBA.is_dir():
            print(f"\nnoise floor skipped: {CELEBA} not found")
            return
        results = noise_floor(args.batch_size)
        print("\nreal vs real noise floor (celeba128, two disjoint halves):")
        print(format_results_table(results))
        print(json.dumps(results))


if __name__ == "__main__":
    main()
