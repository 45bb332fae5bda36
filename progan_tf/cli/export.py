"""`--mode=export`: a run's EMA generator (at a checkpoint's stage) as a SavedModel and a .keras file."""

from progan_tf import atomic_files, export, runs
from progan_tf.errors import UserInputError


def run(values):
    if not values.run_dir:
        raise UserInputError(f"--run_dir is required for --mode={values.mode}. Received: run_dir=None")
    run_dir = atomic_files.as_path(values.run_dir)
    model, config, saved = runs.load_trained_model(run_dir, values.checkpoint)
    target = atomic_files.as_path(values.output_dir or run_dir / f"export-kimg{saved.images_shown / 1000:010.3f}")
    export.export_generator(model.gs_model, target, config.network.latent_size)
    print(f"exported {model.gs_model.name} (EMA) to {target} and {target}.keras")
