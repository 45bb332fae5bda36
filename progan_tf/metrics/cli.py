"""`main.py --mode=evaluate`: SWD / MS-SSIM / FID of a generator or a folder against real images.

Fake side (one of):
    --savedmodel=DIR                   an export (`serve` endpoint)
    --run_dir=DIR [--checkpoint=FILE]  the run's EMA generator at the checkpoint's stage
    --fake_dir=DIR                     a folder of images or a dataset pyramid
Real side: --real_dir (a folder or a pyramid), default the run's `data_dir` (or --data_dir).
Resolution: the generator's; for two image sets, --resolution when given, else the pyramid's
largest level or the first real image's (square) size.

Results are printed as a table, written to `<output_dir>/metrics-kimgNNNNNN.NNN.json` (a run
checkpoint) or `metrics-YYYYmmdd-HHMMSS.json` (default output_dir: the run dir, else the current
directory) and, for a run's checkpoint, appended to `<run_dir>/stats.jsonl` as
{"kind": "evaluate", "kimg": ..., "swd_avg": ..., ...}.
"""

import datetime
import json
import pathlib

import numpy as np

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


def _largest_pyramid_level(path):
    from progan_tf.data import load_manifest

    return max(load_manifest(str(path))["resolutions"])


def _check_image_dir(path, flag):
    path = pathlib.Path(path).expanduser()
    if not path.is_dir():
        raise UserInputError(
            f"--{flag} must be a folder of images or a dataset pyramid (python -m datasets.build). "
            f"Received: {flag}={str(path)!r}"
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
        return _largest_pyramid_level(path)
    from PIL import Image

    with Image.open(sources.list_image_files(path)[0]) as image:
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


def run_from_flags(FLAGS):
    """Evaluates and reports; returns the dict written to the JSON file."""
    names = metric_names(FLAGS.metrics)
    run_dir = pathlib.Path(FLAGS.run_dir) if FLAGS.run_dir else None
    if FLAGS.fake_dir and FLAGS.savedmodel:
        raise UserInputError(
            f"give one fake side: --fake_dir or --savedmodel (or --run_dir). "
            f"Received: fake_dir={FLAGS.fake_dir}, savedmodel={FLAGS.savedmodel}"
        )
    from progan_tf import generate

    generator, config, saved = None, None, None
    if FLAGS.fake_dir:
        fake_path = _check_image_dir(FLAGS.fake_dir, "fake_dir")
        fake_description = sources.describe_image_dir(fake_path)
    elif FLAGS.savedmodel:
        generator = generate.load_savedmodel(FLAGS.savedmodel)
    elif run_dir is not None:
        generator, _, config, saved = generate.load_run_generator(run_dir, FLAGS.checkpoint)
    else:
        raise UserInputError(
            "--mode=evaluate needs a fake side: --savedmodel=DIR, --run_dir=DIR [--checkpoint=FILE] or "
            "--fake_dir=DIR. Received: savedmodel=None, run_dir=None, fake_dir=None"
        )
    if config is None and run_dir is not None:
        from progan_tf import runs

        config = runs.load_train_config(run_dir)

    real_dir = FLAGS.real_dir or (config.data_dir if config is not None else None) or FLAGS.data_dir
    if not real_dir:
        raise UserInputError(
            "--mode=evaluate needs real images: --real_dir=DIR (a folder or a pyramid), or a --run_dir whose "
            "config names its dataset. Received: real_dir=None"
        )
    real_path = _check_image_dir(real_dir, "real_dir")
    if generator is not None:
        resolution = generator.resolution
    elif FLAGS["resolution"].present:
        resolution = FLAGS.resolution
    else:
        resolution = infer_resolution(real_path)

    num_images = FLAGS.num_images if FLAGS["num_images"].present else None
    real_batches = image_dir_batches(real_path, resolution)
    if generator is not None:
        fake_description = generator.description
        fake_count = num_images or max(PROTOCOL_IMAGES.values())
        fake_batches = lambda: sources.generated_batches(  # noqa: E731
            generator, (generator.latent_size,), fake_count, seed=FLAGS.generate_seed
        )
    else:
        fake_batches = image_dir_batches(fake_path, resolution)
    real_description = sources.describe_image_dir(real_path)
    print(f"evaluate: {', '.join(names)} at {resolution}x{resolution}; real: {real_description}; "
          f"fake: {fake_description}; images per side: {num_images or 'protocol counts'}", flush=True)
    results = evaluate(
        names, real_batches, fake_batches, num_images=num_images, seed=FLAGS.generate_seed,
        inception_weights=FLAGS.inception_weights,
    )
    results = _json_ready(results)
    print(format_results_table(results))

    kimg = saved.images_shown / 1000 if saved is not None else None
    report = {
        "metrics": results,
        "resolution": resolution,
        "real": real_description,
        "fake": fake_description,
        "kimg": kimg,
        "checkpoint": str(saved.path) if saved is not None else None,
        "seed": FLAGS.generate_seed,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    output_dir = pathlib.Path(FLAGS.output_dir) if FLAGS.output_dir else (run_dir or pathlib.Path.cwd())
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / results_file_name(kimg)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(path)
    print(f"wrote {path}")
    if saved is not None:
        with open(run_dir / "stats.jsonl", "a") as handle:
            handle.write(json.dumps(stats_record(results, kimg, saved.path)) + "\n")
        print(f"appended the results to {run_dir / 'stats.jsonl'}")
    report["path"] = str(path)
    return report
