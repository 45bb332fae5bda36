"""Image sources for the metrics: iterators of uint8 NHWC batches.

Every source is a plain iterator of uint8 arrays (N, R, R, 3), so a metric streams over any number
of images while holding one batch. `evaluate` takes zero-argument callables that return such an
iterator, e.g. `lambda: folder_batches("data/celeba128", 128)`. Folders and pyramids may be on any
filesystem `tf.io.gfile` reaches (gs://, s3://, ram://).
"""

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from progan_tf import atomic_files
from progan_tf.data import iterate_images
from progan_tf.errors import UserInputError
from progan_tf.latents import seeded_latents
from progan_tf.pyramid_format import MANIFEST_NAME

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_folder(path):
    return tf.io.gfile.isdir(str(atomic_files.as_user_path(path)))


def list_image_files(folder):
    """Sorted image files (by name) directly inside `folder`; a UserInputError if there are none."""
    folder = atomic_files.as_user_path(folder)
    if not is_folder(folder):
        raise UserInputError(
            f"image folder not found; expected a directory of {'/'.join(IMAGE_SUFFIXES)} files. "
            f"Received: folder={str(folder)!r}"
        )
    files = sorted(folder / name for name in tf.io.gfile.listdir(str(folder)) if name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise UserInputError(
            f"no images in folder; expected {'/'.join(IMAGE_SUFFIXES)} files. Received: folder={str(folder)!r}"
        )
    return files


def open_image(path):
    """A PIL image of a local or `tf.io.gfile` file (use it in a `with`)."""
    return Image.open(path) if atomic_files.is_local(path) else Image.open(io.BytesIO(atomic_files.read_bytes(path)))


def load_image(path, resolution):
    """Reads one image as uint8 (resolution, resolution, 3): RGB, centre-cropped square, Lanczos resize."""
    with open_image(path) as image:
        image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != resolution:
            image = image.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


def folder_batches(folder, resolution, batch_size=64, start=0, limit=None):
    """Batches of the images in a folder (sorted by file name).

    Args:
        folder: directory of .jpg/.jpeg/.png/.bmp/.webp files.
        resolution: output size; images are centre-cropped to a square and resized.
        batch_size: images per batch (the last batch may be smaller).
        start, limit: use files [start, start + limit) in name order (e.g. disjoint halves).

    Returns:
        Iterator of uint8 arrays (N, resolution, resolution, 3).

    Example:
        >>> first_half = folder_batches("../shared/data/celeba128", 128, limit=400)
        >>> second_half = folder_batches("../shared/data/celeba128", 128, start=400)
    """
    files = list_image_files(folder)[start:]
    if limit is not None:
        files = files[:limit]
    for offset in range(0, len(files), batch_size):
        yield np.stack([load_image(p, resolution) for p in files[offset : offset + batch_size]])


def generated_batches(generate_fn, latent_shape, num_images, batch_size=64, seed=0):
    """Batches from a generator callable fed with `progan_tf.latents.seeded_latents(seed, ...)`.

    Args:
        generate_fn: callable mapping float32 latents (N, *latent_shape) to uint8 images (N, H, W, 3)
            (a NumPy array or a tensor).
        latent_shape: shape of one latent, e.g. (512,).
        num_images: total images to produce.
        batch_size: images per call.
        seed: seeds the latents: the same seed gives the latents (and so the images) of
            `--mode=generate` and of the SavedModel's `generate_from_seed` with that seed.

    Returns:
        Iterator of uint8 arrays (N, H, W, 3).

    Example:
        >>> fakes = generated_batches(lambda z: to_uint8(generator(z)), (512,), num_images=16384)
    """
    # One draw for the whole run (50,000 x 512 float32 latents are 100 MB), so every image's latent
    # is that of the same index in `seeded_latents(seed, num_images)`, whatever the batch size.
    size = int(np.prod(latent_shape))
    latents = seeded_latents(seed, num_images, size).numpy().reshape((num_images, *latent_shape))
    for offset in range(0, num_images, batch_size):
        batch = latents[offset : offset + batch_size]
        images = np.asarray(generate_fn(batch))
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(batch):
            raise UserInputError(
                f"generate_fn must return uint8 images shaped ({len(batch)}, H, W, C). "
                f"Received: shape={images.shape}, dtype={images.dtype}"
            )
        yield images


def pyramid_batches(pyramid_dir, resolution, batch_size=64, limit=None):
    """Batches of real training images from a prepared dataset pyramid (`progan_tf.data`)."""
    for batch in iterate_images(pyramid_dir, resolution, batch_size, limit):
        yield np.asarray(batch)


def is_pyramid(path):
    """Whether `path` is a dataset pyramid (has a manifest) rather than a folder of images."""
    manifest = atomic_files.path_in(path, MANIFEST_NAME)
    return atomic_files.exists(manifest) and not tf.io.gfile.isdir(str(manifest))


def describe_image_dir(path):
    return f"{'pyramid' if is_pyramid(path) else 'folder'} {path}"


def image_dir_batches(path, resolution, batch_size=64, limit=None):
    """uint8 batches of a pyramid's level or of a folder's images (resized) at `resolution`."""
    if is_pyramid(path):
        return pyramid_batches(str(path), resolution, batch_size, limit=limit)
    return folder_batches(path, resolution, batch_size, limit=limit)
