"""Evaluating a generator or a folder against real images, and the report files (`--mode=evaluate`).

Fake side: a `progan_tf.generators.Generator` (an export, or a run's EMA generator at a
checkpoint's stage) fed `progan_tf.latents.seeded_latents(seed, ...)`, or a folder of images or a
dataset pyramid. Real side: a folder or a pyramid. Resolution: the generator's; for two image sets
the one given, else the pyramid's largest level or the first real image's (square) size.

Results are printed as a table, written to `<output_dir>/metrics-kimgNNNNNN.NNN.json` (a run
checkpoint) or `metrics-YYYYmmdd-HHMMSS.json` and, for a run's checkpoint, appended to the run's
`stats.jsonl` as {"kind": "evaluate", "kimg": ..., "swd_avg": ..., ...}.
"""

import datetime
import json

import numpy as np
import tensorflow as tf

from progan_tf import atomic_files, run_files
from progan_tf.data import load_manifest
from progan_tf.errors import UserInputError
from progan_tf.metrics import sources
from progan_tf.metrics.evaluate import PROTOCOL_IMAGES, evaluate, format_results_table

# Accepted spellings of --metrics entries -> names of `evaluate`.
METRIC_ALIASES = {
    "swd": "swd",
    "msssim": "ms_ssim",
    "ms_ssim": "ms_ssim",
    "ms-ssim": "ms_ssim",
    "msssim_real": "ms_ssim_real",
    "ms_ssim_real": "ms_ssim_real",
    "ms-ssim-real": "ms_ssim_real",
    "fid": "fid",
}


def metric_names(requested):
    """Maps --metrics entries (e.g. ["swd", "msssim", "fid"]) to `evaluate` names."""
    names = []
    for name in requested:
        key = name.strip().lower()
        if key not in METRIC_ALIASES:
            raise UserInputError(
                f"unknown metric; expected any of swd, msssim, msssim_real, fid. "
                f"Received: metrics={','.join(requested)}"
            )
        names.append(METRIC_ALIASES[key])
    if not names:
        raise UserInputError("--metrics is empty; expected any of swd, msssim, msssim_real, fid. Received: metrics=")
    return list(dict.fromkeys(names))


def _check_image_dir(path, name):
    path = atomic_files.as_user_path(path)
    if not sources.is_folder(path):
        raise UserInputError(
            f"--{name} must be a folder of images or a dataset pyramid (python -m datasets.build). "
            f"Received: {name}={str(path)!r}"
        )
    if not sources.is_pyramid(path):
        sources.list_image_files(path)  # fails early (UserInputError) on an empty folder
    return path


def image_dir_batches(path, resolution, batch_size=64):
    """A zero-argument callable giving uint8 batches of a folder or pyramid at `resolution`."""
    return lambda: sources.image_dir_batches(path, resolution, batch_size)


def infer_resolution(path):
    """A pyramid's largest level, or the smaller side of a folder's first image."""
    if sources.is_pyramid(path):
        return max(load_manifest(str(path))["resolutions"])
    with sources.open_image(sources.list_image_files(path)[0]) as image:
        return min(image.size)


def results_file_name(kimg=None, now=None):
    if kimg is not None:
        return f"metrics-kimg{kimg:010.3f}.json"
    now = now or datetime.datetime.now()
    return f"metrics-{now:%Y%m%d-%H%M%S}.json"


def stats_record(results, kimg, checkpoint):
    """A flat `stats.jsonl` line: numbers at the top level (as training's records), plus provenance."""
    record = {"kind": "evaluate", "kimg": kimg, "checkpoint": str(checkpoint)}
    for key, value in results.items():
        if isinstance(value, dict):
            record.update({f"{key}_{sub}": v for sub, v in value.items()})
        else:
            record[key] = value
    return record


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def evaluate_to_files(
    metric_names,
    real_dir,
    output_dir,
    *,
    generator=None,
    fake_dir=None,
    resolution=None,
    num_images=None,
    seed=0,
    inception_weights=None,
    checkpoint=None,
    stats_path=None,
):
    """Evaluates a generator or a folder against real images; prints the table and writes the report.

    Args:
        metric_names: `evaluate` names (see `metric_names` for the --metrics spellings).
        real_dir: real images, a folder or a dataset pyramid.
        output_dir: folder of the JSON report (created).
        generator: the fake side, a `progan_tf.generators.Generator`; or
        fake_dir: the fake side, a folder or a dataset pyramid.
        resolution: image size for two image sets (default: `infer_resolution(real_dir)`); a
            generator's own resolution always wins.
        num_images: images per side (None: the protocol counts).
        seed: seeds the fake latents and the SWD patches / directions.
        inception_weights: local Inception-v3 weights file for FID.
        checkpoint: the run checkpoint the generator came from: the report is named by the
            generator's kimg and records the path.
        stats_path: a run's stats.jsonl to append the results to.
        Each path may be local or on any filesystem `tf.io.gfile` reaches (gs://, s3://, ram://).

    Returns:
        The report dict written to the JSON file, plus "path".
    """
    if (generator is None) == (fake_dir is None):
        raise UserInputError(
            f"give one fake side: a generator or fake_dir. Received: fake_dir={fake_dir}, "
            f"generator={generator.description if generator is not None else None}"
        )
    real_path = _check_image_dir(real_dir, "real_dir")
    resolution, fake_description, fakes = _fake_side(generator, fake_dir, resolution, real_path, num_images, seed)
    real_description = sources.describe_image_dir(real_path)
    print(
        f"evaluate: {', '.join(metric_names)} at {resolution}x{resolution}; real: {real_description}; "
        f"fake: {fake_description}; images per side: {num_images or 'protocol counts'}",
        flush=True,
    )
    reals = image_dir_batches(real_path, resolution)
    options = dict(num_images=num_images, seed=seed, inception_weights=inception_weights)
    results = _json_ready(evaluate(metric_names, reals, fakes, **options))
    print(format_results_table(results))
    report = {
        "metrics": results,
        "resolution": resolution,
        "real": real_description,
        "fake": fake_description,
        "kimg": generator.kimg if checkpoint is not None else None,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "seed": seed,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    report["path"] = str(_write_report(report, output_dir, stats_path))
    return report


def _fake_side(generator, fake_dir, resolution, real_path, num_images, seed):
    """(resolution, description, batches callable) of the fake side: a generator at its own
    resolution, or a folder at `resolution` (default: `infer_resolution(real_path)`)."""
    if generator is not None:
        count = num_images or max(PROTOCOL_IMAGES.values())
        batches = lambda: sources.generated_batches(generator, (generator.latent_size,), count, seed=seed)  # noqa: E731
        return generator.resolution, generator.description, batches
    fake_path = _check_image_dir(fake_dir, "fake_dir")
    resolution = resolution or infer_resolution(real_path)
    return resolution, sources.describe_image_dir(fake_path), image_dir_batches(fake_path, resolution)


def _write_report(report, output_dir, stats_path):
    """Writes the JSON report into `output_dir` (created) and appends its results to `stats_path`
    (when given); returns the report's path."""
    output_dir = atomic_files.as_path(output_dir)
    tf.io.gfile.makedirs(str(output_dir))
    path = output_dir / results_file_name(report["kimg"])
    atomic_files.write_atomically(path, json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    if stats_path is not None:
        run_files.append_line(stats_path, stats_record(report["metrics"], report["kimg"], report["checkpoint"]))
        print(f"appended the results to {stats_path}")
    return path
