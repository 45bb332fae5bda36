"""What each `--mode` of main.py does, with the parsed flags."""

import pathlib

import keras

from progan_tf import distribute, export, runs, training
from progan_tf.errors import UserInputError
from progan_tf.flags import FLAGS, train_config_from_flags
from progan_tf.schedule import format_schedule


def _require_run_dir():
    if not FLAGS.run_dir:
        raise UserInputError(f"--run_dir is required for --mode={FLAGS.mode}. Received: run_dir=None")
    return pathlib.Path(FLAGS.run_dir)


def run_train():
    config = train_config_from_flags()
    if FLAGS.dry_run:
        print(config.to_json())
        print(format_schedule(config.schedule))
        return
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribute.make_strategy()
    print(distribute.describe(strategy), flush=True)
    training.train(config, strategy)


def run_export():
    run_dir = _require_run_dir()
    model, config, saved = runs.load_trained_model(run_dir, FLAGS.checkpoint)
    target = pathlib.Path(FLAGS.output_dir or run_dir / f"export-kimg{saved.images_shown / 1000:010.3f}")
    export.export_generator(model.gs_model, target, config.network.latent_size)
    print(f"exported {model.gs_model.name} (EMA) to {target} and {target}.keras")


def run_generate():
    from progan_tf import generate

    generate.run_from_flags(FLAGS)


def run_evaluate():
    from progan_tf.metrics import cli as metrics_cli

    metrics_cli.run_from_flags(FLAGS)


def run_explain():
    from progan_tf import explain

    explain.run_from_flags(FLAGS)


def run():
    {
        "train": run_train,
        "export": run_export,
        "generate": run_generate,
        "evaluate": run_evaluate,
        "explain": run_explain,
    }[FLAGS.mode]()
