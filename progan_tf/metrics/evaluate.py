"""Runs several metrics in one streaming pass over a real and a fake image source.

Each source is read once; every batch goes to every metric that still needs images, so SWD, MS-SSIM
and FID share the decoding (real) and generation (fake) work. Protocol image counts (Karras et al.
2018): SWD 16384 per side, MS-SSIM 10,000 consecutive fake pairs, FID 50,000 per side.
"""

import sys
import time

import numpy as np
from tqdm import tqdm

from progan_tf.errors import UserInputError
from progan_tf.metrics import fid, ms_ssim, swd

METRICS = ("swd", "ms_ssim", "ms_ssim_real", "fid")
PAIRS_IMAGES = 2 * ms_ssim.DEFAULT_NUM_PAIRS
PROTOCOL_IMAGES = {"swd": 16384, "ms_ssim": PAIRS_IMAGES, "ms_ssim_real": PAIRS_IMAGES, "fid": 50000}


class _Feed:
    """One accumulator on one side, fed until it has `count` images."""

    def __init__(self, metric, accumulator, count):
        self.metric = metric
        self.accumulator = accumulator
        self.count = count
        self.received = 0

    def take(self, batch):
        needed = self.count - self.received
        if needed > 0:
            part = batch[:needed]
            self.accumulator.update(part)
            self.received += len(part)


def _stream(side, batches_fn, feeds, verbose):
    """Feeds batches from one source to its accumulators until each has its images."""
    total = max(feed.count for feed in feeds)
    seen = 0
    with tqdm(total=total, desc=f"evaluate {side}", unit="img", file=sys.stderr, disable=not verbose) as bar:
        for batch in batches_fn():
            batch = np.asarray(batch)
            if batch.dtype != np.uint8 or batch.ndim != 4:
                raise UserInputError(
                    f"{side} image source must yield uint8 batches (N, H, W, C). "
                    f"Received: shape={batch.shape}, dtype={batch.dtype}"
                )
            for feed in feeds:
                feed.take(batch)
            bar.update(max(feed.received for feed in feeds) - seen)
            seen = max(feed.received for feed in feeds)
            if seen >= total:
                return
    short = [f"{feed.metric} needs {feed.count}" for feed in feeds if feed.received < feed.count]
    if short:
        raise UserInputError(
            f"the {side} image source ran out ({', '.join(short)}); give more images or "
            f"a smaller num_images. Received: num_images={seen}"
        )


def evaluate(
    metric_names,
    real_batches_fn,
    fake_batches_fn,
    *,
    num_images=None,
    seed=0,
    swd_max_descriptors_per_level=None,
    feature_model=None,
    inception_weights=None,
    verbose=True,
):
    """Computes the requested metrics between a real and a fake image source.

    Args:
        metric_names: any of "swd", "ms_ssim" (fake pairs), "ms_ssim_real" (real pairs), "fid".
        real_batches_fn, fake_batches_fn: zero-argument callables returning an iterator of uint8
            batches (N, H, W, 3), e.g. from `progan_tf.metrics.sources`.
        num_images: images per side for every metric (MS-SSIM scores num_images // 2 pairs);
            None uses the protocol counts in `PROTOCOL_IMAGES`.
        seed: seeds SWD patch positions and projection directions.
        swd_max_descriptors_per_level: reservoir cap on SWD descriptors per level and side (memory).
        feature_model: Keras model images in [-1, 1] -> features, used for FID instead of Inception.
        inception_weights: path to the FID network file (see `progan_tf.metrics.fid`); needed for
            "fid" unless `feature_model` is given.
        verbose: show a progress bar per side (images/s) and the SWD levels' times.

    Returns:
        dict ready for JSON, e.g. {"swd_128": .., "swd_64": .., "swd_32": .., "swd_16": .., "swd_avg": ..,
        "ms_ssim": .., "ms_ssim_pairs": .., "fid": .., "num_images": {"real": .., "fake": ..}, "seconds": ..}.

    Example:
        >>> results = evaluate(["swd", "ms_ssim"], lambda: folder_batches(real_dir, 128),
        ...                    lambda: generated_batches(generate, (512,), 16384))
        >>> print(format_results_table(results))
    """
    names = _checked_names(metric_names, num_images)
    count = {name: num_images or PROTOCOL_IMAGES[name] for name in names}
    if "fid" in names and feature_model is None:
        feature_model = fid.load_feature_model(inception_weights)
    real_feeds, fake_feeds = _feeds(names, count, seed, swd_max_descriptors_per_level, feature_model)

    start = time.perf_counter()
    for side, batches_fn, feeds in (("real", real_batches_fn, real_feeds), ("fake", fake_batches_fn, fake_feeds)):
        if feeds:
            _stream(side, batches_fn, feeds, verbose)
    results = _results(names, real_feeds, fake_feeds, seed, verbose)
    results["num_images"] = {
        "real": max([f.received for f in real_feeds], default=0),
        "fake": max([f.received for f in fake_feeds], default=0),
    }
    results["seconds"] = round(time.perf_counter() - start, 2)
    return results


def _checked_names(metric_names, num_images):
    """The metric names without duplicates; a UserInputError for an unknown one or a bad count."""
    names = list(dict.fromkeys(metric_names))
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        raise UserInputError(
            f"metric names must be among {', '.join(METRICS)}. Received: metric_names={list(metric_names)}"
        )
    if num_images is not None and (not isinstance(num_images, int) or num_images < 2):
        raise UserInputError(
            f"num_images must be an integer >= 2 (or None for the protocol counts). Received: num_images={num_images}"
        )
    return names


def _feeds(names, count, seed, swd_max_descriptors_per_level, feature_model):
    """The (real, fake) lists of `_Feed`s of the metrics `names`, `count[name]` images each."""
    real_feeds, fake_feeds = [], []
    if "swd" in names:
        cap = swd_max_descriptors_per_level
        real_feeds.append(_Feed("swd", swd.SWDDescriptors(seed=seed, max_descriptors_per_level=cap), count["swd"]))
        fake_feeds.append(_Feed("swd", swd.SWDDescriptors(seed=seed + 1, max_descriptors_per_level=cap), count["swd"]))
    if "ms_ssim" in names:
        fake_feeds.append(_Feed("ms_ssim", ms_ssim.MSSSIMAccumulator(count["ms_ssim"] // 2), count["ms_ssim"]))
    if "ms_ssim_real" in names:
        real_pairs = ms_ssim.MSSSIMAccumulator(count["ms_ssim_real"] // 2, key="ms_ssim_real")
        real_feeds.append(_Feed("ms_ssim_real", real_pairs, count["ms_ssim_real"]))
    if "fid" in names:
        real_feeds.append(_Feed("fid", fid.FIDFeatures(feature_model), count["fid"]))
        fake_feeds.append(_Feed("fid", fid.FIDFeatures(feature_model), count["fid"]))
    return real_feeds, fake_feeds


def _results(names, real_feeds, fake_feeds, seed, verbose):
    """The metrics' values from their fed accumulators."""
    by_metric = {
        (side, feed.metric): feed.accumulator
        for side, feeds in (("real", real_feeds), ("fake", fake_feeds))
        for feed in feeds
    }
    results = {}
    if "swd" in names:
        real_swd, fake_swd = by_metric["real", "swd"], by_metric["fake", "swd"]
        results.update(swd.swd_result(real_swd, fake_swd, seed=seed, verbose=verbose))
    if "ms_ssim" in names:
        results.update(by_metric["fake", "ms_ssim"].result())
    if "ms_ssim_real" in names:
        results.update(by_metric["real", "ms_ssim_real"].result())
    if "fid" in names:
        results.update(fid.fid_result(by_metric["real", "fid"], by_metric["fake", "fid"]))
    return results


def format_results_table(results):
    """Formats an `evaluate` result as a two-column text table (metric, value).

    Example:
        >>> print(format_results_table({"swd_16": 6.61, "swd_avg": 5.7}))
        metric   value
        -------  ------
        swd_16   6.6100
        swd_avg  5.7000
    """
    rows = []
    for key, value in results.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{sub}", str(v)) for sub, v in value.items())
        elif isinstance(value, float):
            rows.append((key, f"{value:.4f}"))
        else:
            rows.append((key, str(value)))
    width_key = max(len("metric"), *(len(k) for k, _ in rows))
    width_value = max(len("value"), *(len(v) for _, v in rows))
    lines = [f"{'metric':<{width_key}}  {'value':<{width_value}}".rstrip(), f"{'-' * width_key}  {'-' * width_value}"]
    lines += [f"{k:<{width_key}}  {v}" for k, v in rows]
    return "\n".join(lines)
