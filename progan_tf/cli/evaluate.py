"""`--mode=evaluate`: SWD / MS-SSIM / FID of a generator or a folder against real images.

Fake side (one of):
    --savedmodel=DIR                   an export (`serve` endpoint)
    --run_dir=DIR [--checkpoint=FILE]  the run's EMA generator at the checkpoint's stage
    --fake_dir=DIR                     a folder of images or a dataset pyramid
Real side: --real_dir (a folder or a pyramid), default the run's `data_dir` (or --data_dir).
Resolution: the generator's; for two image sets, --resolution when given, else the pyramid's
largest level or the first real image's (square) size. --num_images when given, else the
protocol counts. The report goes to --output_dir (default: the run dir, else the current
directory); see `progan_tf.metrics.report`.
"""

import pathlib

from progan_tf import atomic_files, generators, runs
from progan_tf.errors import UserInputError
from progan_tf.metrics import report


def run(values):
    """Evaluates and reports; returns the dict written to the JSON file."""
    names = report.metric_names(values.metrics)
    run_dir = atomic_files.as_path(values.run_dir) if values.run_dir else None
    if values.fake_dir and values.savedmodel:
        raise UserInputError(
            f"give one fake side: --fake_dir or --savedmodel (or --run_dir). "
            f"Received: fake_dir={values.fake_dir}, savedmodel={values.savedmodel}"
        )
    generator, config, saved = None, None, None
    if values.savedmodel:
        generator = generators.load_savedmodel(values.savedmodel)
    elif not values.fake_dir and run_dir is not None:
        generator, _, config, saved = generators.load_run_generator(run_dir, values.checkpoint)
    elif not values.fake_dir:
        raise UserInputError(
            "--mode=evaluate needs a fake side: --savedmodel=DIR, --run_dir=DIR [--checkpoint=FILE] or "
            "--fake_dir=DIR. Received: savedmodel=None, run_dir=None, fake_dir=None"
        )
    if config is None and run_dir is not None:
        config = runs.load_train_config(run_dir)
    real_dir = values.real_dir or (config.data_dir if config is not None else None) or values.data_dir
    if not real_dir:
        raise UserInputError(
            "--mode=evaluate needs real images: --real_dir=DIR (a folder or a pyramid), or a --run_dir whose "
            "config names its dataset. Received: real_dir=None"
        )
    return report.evaluate_to_files(
        names,
        real_dir,
        values.output_dir or run_dir or pathlib.Path.cwd(),
        generator=generator,
        fake_dir=values.fake_dir or None,
        resolution=values.resolution if values["resolution"].present else None,
        num_images=values.num_images if values["num_images"].present else None,
        seed=values.generate_seed,
        inception_weights=values.inception_weights,
        checkpoint=saved.path if saved is not None else None,
        stats_path=run_dir / "stats.jsonl" if saved is not None else None,
    )
