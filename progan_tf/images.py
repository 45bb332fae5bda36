"""Converting generator output to uint8 images, tiling grids and writing PNG files."""

import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

# Grids, strips, GIFs and overlays enlarge small images (nearest neighbour) to at least this size.
DISPLAY_MIN_SIZE = 128


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


def upscale_nearest(image, min_size):
    """Nearest-neighbour enlargement of an (H, W, C) image by an integer factor up to `min_size`."""
    factor = max(1, int(np.ceil(min_size / max(image.shape[0], 1))))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_png(path, image):
    """Writes an (H, W, 1|3) uint8 image as PNG, atomically."""
    path = pathlib.Path(path)
    image = np.asarray(image)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    temporary = path.with_name(path.name + ".tmp")
    pil.save(temporary, format="PNG")
    temporary.replace(path)
    return path
