"""Converting generator output to uint8 images, tiling grids and writing PNG files."""

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from progan_tf import atomic_files

# Grids, strips, GIFs and overlays enlarge small images (nearest neighbour) to at least this size.
DISPLAY_MIN_SIZE = 128
# Training's sample grids (reals.png, fakes-*.png): tiles of at least this size, so 36 of them
# fill a screen without zooming.
SAMPLE_MIN_TILE = 64


def to_uint8_tensor(images):
    """Maps [-1, 1] float images to uint8 [0, 255], rounding half to even and clipping (graph op)."""
    scaled = tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5)
    return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)


def to_uint8(images):
    """`to_uint8_tensor` as a NumPy array, for any array-like input."""
    return to_uint8_tensor(images).numpy()


def make_grid(images, columns=None):
    """Tiles (N, H, W, C) uint8 images into one (rows*H, columns*W, C) image, row-major."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.zeros((rows * height, columns * width, channels), images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return grid


def upscale_factor(size, min_size):
    """The smallest integer factor that enlarges `size` pixels to at least `min_size` (>= 1)."""
    return max(1, -(-int(min_size) // max(int(size), 1)))


def upscale_nearest(image, min_size):
    """Nearest-neighbour enlargement of an (H, W, C) image by an integer factor up to `min_size`."""
    factor = upscale_factor(image.shape[0], min_size)
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def tile_grid(images, min_tile, columns=None):
    """`make_grid` of (N, H, W, C) uint8 images, each enlarged (nearest) to at least `min_tile` px.

    Example:
        >>> tile_grid(np.zeros((36, 4, 4, 3), np.uint8), 64).shape  # 4 px tiles drawn 16x
        (384, 384, 3)
    """
    images = np.asarray(images)
    factor = upscale_factor(images.shape[1], min_tile)
    return make_grid(images.repeat(factor, axis=1).repeat(factor, axis=2), columns)


def save_png(path, image):
    """Writes an (H, W, 1|3) uint8 image as PNG, atomically."""
    path = atomic_files.as_path(path)
    image = np.asarray(image)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    encoded = io.BytesIO()
    pil.save(encoded, format="PNG")
    atomic_files.write_atomically(path, encoded.getvalue())
    return path
