"""Exporting the (EMA) generator for serving.

The SavedModel needs only TensorFlow to load: our custom layers are traced into graphs. It has
two endpoints (also its signatures):
- `serve(latents)`: float32 (N, latent_size) -> uint8 (N, R, R, C) images.
- `generate_from_seed(seed, num_images)`: int64 scalar, int32 scalar -> uint8 images from
  standard-normal latents `progan_tf.latents.seeded_latents(seed, num_images)` (the same seed
  gives the same images as `--mode=generate` and `--mode=evaluate`).
A `.keras` file of the same model is written beside it (loading it needs `progan_tf`).
"""

import keras
import numpy as np
import tensorflow as tf

from progan_tf import atomic_files
from progan_tf.errors import UserInputError
from progan_tf.images import to_uint8_tensor
from progan_tf.latents import seeded_latents
from progan_tf.run_files import writing


def export_generator(generator_model, export_dir, latent_size):
    """Writes `generator_model` as a SavedModel at `export_dir` and a `.keras` file beside it.

    Args:
        generator_model: A per-stage generator `keras.Model` (latents -> images in [-1, 1]).
        export_dir: Output folder of the SavedModel (replaced if it exists).
        latent_size: Latent dimension of the model's input.

    Returns:
        `export_dir` as `atomic_files.as_path` spells it (a `pathlib.Path` when local).

    Raises:
        UserInputError: a weight is NaN or infinite (a diverged generator is not exported).
        FilesystemError: the files could not be written.
    """
    export_dir = atomic_files.as_path(export_dir)
    non_finite = [w.path for w in generator_model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(w)))]
    if non_finite:
        raise UserInputError(
            f"Not exporting {generator_model.name}: its weights hold non-finite values ({', '.join(non_finite[:3])}). "
            f"Received: export_dir={export_dir}"
        )
    archive = keras.export.ExportArchive()
    archive.track(generator_model)

    def serve(latents):
        return to_uint8_tensor(generator_model(latents, training=False))

    def generate_from_seed(seed, num_images):
        return serve(seeded_latents(seed, num_images, latent_size))

    archive.add_endpoint(
        name="serve", fn=serve, input_signature=[tf.TensorSpec((None, latent_size), tf.float32, name="latents")]
    )
    archive.add_endpoint(
        name="generate_from_seed",
        fn=generate_from_seed,
        input_signature=[tf.TensorSpec((), tf.int64, name="seed"), tf.TensorSpec((), tf.int32, name="num_images")],
    )
    with writing(export_dir, "the exported generator"):
        archive.write_out(str(export_dir), verbose=False)
        generator_model.save(export_dir.with_name(export_dir.name + ".keras"))
    return export_dir
