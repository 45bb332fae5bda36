"""Generators as plain callables: float32 latents -> uint8 images, whatever they were loaded from.

A `Generator` wraps an exported SavedModel (`serve` endpoint, only TensorFlow needed), a run's
checkpoint (its EMA generator at the checkpoint's stage) or any per-stage Keras generator, so
`--mode=generate`, `--mode=evaluate`, `--mode=explain` and the periodic SWD during training do not
care where the images come from.

Feed them `progan_tf.latents.seeded_latents`: the same seed then gives the same images from a
checkpoint, from its export, in generate, evaluate and explain.

Example:
    >>> generator = load_run_generator("runs/celebahq-1024")[0]  # or load_savedmodel(...)
    >>> images = generator(latents.seeded_latents(0, 16, generator.latent_size))  # uint8 (16, 1024, 1024, 3)
"""

import dataclasses
import sys

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from progan_tf import atomic_files, runs
from progan_tf import images as images_lib
from progan_tf.errors import UserInputError


@dataclasses.dataclass
class Generator:
    """A generator as a plain callable: float32 latents (N, latent_size) -> uint8 (N, R, R, C).

    Attributes:
        fn: the callable (a SavedModel endpoint or a wrapped Keras model).
        latent_size: the latent dimension.
        resolution: the image size.
        description: where it came from, for logs and result files.
        kimg: thousands of images the generator was trained on (None for a SavedModel).
    """

    fn: object
    latent_size: int
    resolution: int
    description: str
    kimg: float = None

    def __call__(self, latents, batch_size=64, progress=None):
        """Images of `latents`; `progress` (a label) shows a progress bar when there are several batches."""
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_size:
            raise UserInputError(f"latents must be shaped (N, {self.latent_size}). Received: shape={latents.shape}")
        outputs = []
        disable = progress is None or len(latents) <= batch_size
        with tqdm(total=len(latents), desc=progress, unit="img", file=sys.stderr, disable=disable) as bar:
            for i in range(0, len(latents), batch_size):
                outputs.append(np.asarray(self.fn(latents[i : i + batch_size])))
                bar.update(len(outputs[-1]))
        return np.concatenate(outputs) if outputs else np.zeros((0, self.resolution, self.resolution, 3), np.uint8)


def generator_from_keras(model, description="keras model", kimg=None):
    """Wraps a per-stage generator `keras.Model` (latents -> images in [-1, 1]) as a `Generator`."""

    def fn(latents):
        return images_lib.to_uint8(model(latents, training=False))

    return Generator(fn, int(model.input_shape[-1]), int(model.output_shape[1]), description, kimg)


def load_savedmodel(path):
    """A `Generator` from a SavedModel written by `progan_tf.export` (only TensorFlow needed)."""
    path = atomic_files.as_user_path(path)
    if not atomic_files.exists(path / "saved_model.pb"):
        raise UserInputError(
            f"not a SavedModel directory (no saved_model.pb); expected the folder written by --mode=export or "
            f"<run_dir>/export. Received: savedmodel={str(path)!r}"
        )
    try:
        loaded = tf.saved_model.load(str(path))
        serve = loaded.serve
        latent_size = int(serve.input_signature[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError, OSError, tf.errors.OpError) as error:
        raise UserInputError(
            f"could not load a progan-tf generator with a `serve(latents)` endpoint from the SavedModel "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Received: savedmodel={str(path)!r}"
        ) from None
    probe = serve(tf.zeros((1, latent_size), tf.float32))
    resolution = int(probe.shape[1])

    def fn(latents):
        return serve(tf.convert_to_tensor(latents, tf.float32)).numpy()

    generator = Generator(fn, latent_size, resolution, f"SavedModel {path}")
    generator.loaded = loaded  # keep the restored object (and its variables) alive
    return generator


def load_run_generator(run_dir, checkpoint=None):
    """(Generator of the run's EMA generator at the checkpoint's stage, model, config, checkpoint)."""
    model, config, saved = runs.load_trained_model(run_dir, checkpoint)
    kimg = saved.images_shown / 1000
    generator = generator_from_keras(model.gs_model, f"EMA generator of {saved.path} (kimg {kimg:.3f})", kimg)
    return generator, model, config, saved
