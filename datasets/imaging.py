"""Image loading and pyramid math for the dataset builder (PIL + NumPy only).

This module is what the builder's worker processes import, so it must stay free of TensorFlow:
workers are started with the `forkserver` method and preload only this module, which keeps
them small and safe to start after TensorFlow has spun up threads in the parent.

Pyramid math (the reference's): each lower level is the 2x2 box average of the previous level's
float32 values (not of its rounded copy), and every level is stored as `rint(clip(level, 0, 255))`
in uint8; `pack_pyramid` computes exactly that in integers.
"""

import dataclasses
import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from datasets import synthetic

# Files taken as images (by lower-case suffix), by the builder and by evaluation's folder source.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Which non-square policy values the builder accepts.
NON_SQUARE_POLICIES = ("crop", "skip")

# PIL modes that convert to RGB without losing anything but an alpha channel / colour space.
_MODE_DESCRIPTIONS = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "1": "1-bit black and white",
    "P": "palette",
    "PA": "palette with alpha",
    "RGBA": "RGBA (alpha dropped)",
    "RGBa": "RGBA (alpha dropped)",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "I": "32-bit integer grayscale",
    "I;16": "16-bit grayscale",
    "F": "float grayscale",
}


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """Outcome of loading one source image (its pixels go to the caller's buffer, see load_chunk).

    Attributes:
      name: the item's name for reports (a path relative to the source folder, or a TFDS id).
      skip_reason: why the item was skipped (None when it was used).
      note: a non-fatal remark, e.g. a colour-mode conversion (None when nothing to report).
    """

    name: str
    skip_reason: str | None = None
    note: str | None = None


def num_levels(resolution: int) -> int:
    """Number of pyramid levels from 4x4 up to `resolution` (a power of two >= 4)."""
    return resolution.bit_length() - 2


def level_resolutions(resolution: int) -> list:
    """The pyramid's resolutions, lowest (4) first."""
    return [4 << level for level in range(num_levels(resolution))]


def level_spans(resolution: int, channels: int = 3) -> list:
    """(offset, size) in bytes of each level in one image's packed pyramid, lowest level first."""
    spans, offset = [], 0
    for size in level_resolutions(resolution):
        spans.append((offset, size * size * channels))
        offset += size * size * channels
    return spans


def pyramid_levels(image: np.ndarray) -> list:
    """Builds the resolution pyramid of one square image.

    Args:
      image: uint8 array [R, R, C], R a power of two in [4, 1024].

    Returns:
      A list of uint8 arrays [r, r, C] for r = 4, 8, ..., R (lowest first; the last equals `image`),
      views into one packed buffer (see `pack_pyramid`).
    """
    resolution, _, channels = image.shape
    packed = np.empty(sum(size for _, size in level_spans(resolution, channels)), np.uint8)
    return _level_views(pack_pyramid(image, packed), resolution, channels)


def pack_pyramid(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Writes the resolution pyramid of one square image into `out`, packed lowest level first.

    The reference's math is float32: each level is the 2x2 mean of the previous level's float32
    (unrounded) values, stored as rint (round half to even). Level k below the image is then
    exactly S / 4**k, S the integer sum of the 4**k pixels it covers: every partial sum is an
    integer multiple of 4**-(k-1) below 2**24 units (S <= 255 * 4**8 < 2**24 for 1024 -> 4), so no
    float32 operation rounds. We therefore sum integers (uint16 while S fits, then uint32) and
    round S / 4**k half to even: bit-identical to the float32 reference. The sums stay in HWC
    order and each level is rounded straight into its place in `out`, so no level is transposed
    or copied (1.0 ms per 1024 px image; summing channel planes and packing took 2.7 ms).

    Args:
      image: uint8 array [R, R, C], R a power of two in [4, 1024].
      out: uint8 array of at least the packed size (see `level_spans`).

    Returns:
      `out`, holding every level (lowest first) at its `level_spans` offset.
    """
    resolution, _, channels = image.shape
    if resolution > 1024:
        raise ValueError(f"pack_pyramid handles up to 1024 px (exact integer sums). Received: shape={image.shape}")
    levels = _level_views(out, resolution, channels)
    np.copyto(levels[-1], image)
    sums = image
    for halvings, level in enumerate(reversed(levels[:-1]), start=1):
        sums = _box_sums(sums, _sum_dtype(halvings))
        _round_mean_into(sums, halvings, level)
    return out


def _sum_dtype(halvings):
    """uint16 while the sums of 4**halvings pixels plus the rounding offset fit in it, else uint32."""
    return np.uint16 if 255 << (2 * halvings) < (1 << 16) - (1 << (2 * halvings - 1)) else np.uint32


def _level_views(packed, resolution, channels):
    return [
        packed[offset : offset + size].reshape(side, side, channels)
        for side, (offset, size) in zip(level_resolutions(resolution), level_spans(resolution, channels))
    ]


def _box_sums(values: np.ndarray, dtype) -> np.ndarray:
    """Sums of each 2x2 block of `values` [r, r, C], as `dtype` [r / 2, r / 2, C]."""
    side, _, channels = values.shape
    row_pairs = values.reshape(side // 2, 2, side * channels)
    # Each row holds two horizontally adjacent pixels' vertical sums side by side.
    column_sums = np.add(row_pairs[:, 0], row_pairs[:, 1], dtype=dtype).reshape(-1, 2 * channels)
    sums = np.empty((column_sums.shape[0], channels), dtype)
    for channel in range(channels):
        # One long strided loop per channel: over [n, C] at once NumPy loops over the C channels
        # innermost, 5x slower.
        np.add(column_sums[:, channel], column_sums[:, channels + channel], out=sums[:, channel])
    return sums.reshape(side // 2, side // 2, channels)


def _round_mean_into(sums: np.ndarray, halvings: int, out: np.ndarray):
    """Writes rint(sums / 4**halvings), rounding half to even, into the uint8 array `out`, in integers."""
    shift = 2 * halvings
    # Adding half - 1, plus 1 when the quotient is odd, makes the floor division round a tie
    # (remainder == half) up exactly when that lands on an even quotient.
    rounded = sums >> shift
    rounded &= 1
    rounded += sums
    rounded += (1 << (shift - 1)) - 1
    np.right_shift(rounded, shift, out=out, casting="unsafe")


def _to_rgb(img: Image.Image) -> tuple:
    """Returns (RGB image, note or None)."""
    if img.mode == "RGB":
        return img, None
    description = _MODE_DESCRIPTIONS.get(img.mode, img.mode)
    if img.mode in ("I", "I;16", "F"):
        # High bit-depth grayscale: scale to 8 bits first; PIL's direct conversion clips.
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB"), f"{description} converted to RGB"


def _square_and_resize(img: Image.Image, resolution: int, non_square: str) -> tuple:
    """Returns (uint8 array [R, R, 3] or None, skip reason or None)."""
    width, height = img.size
    side = min(width, height)
    if side < resolution:
        return None, f"smaller than {resolution}x{resolution} ({width}x{height})"
    if width != height:
        if non_square == "skip":
            return None, f"not square ({width}x{height})"
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        if side % resolution == 0:
            # Exact integer factor: a box filter, consistent with the pyramid's own math.
            img = img.reduce(side // resolution)
        else:
            img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8), None


def load_image(data, resolution: int, non_square: str = "crop") -> tuple:
    """Decodes, squares and resizes one image.

    Args:
      data: a file path, or the encoded image bytes.
      resolution: target resolution (power of two >= 4).
      non_square: "crop" (centre crop) or "skip" for images that are not square.

    Returns:
      (uint8 array [R, R, 3] or None, skip reason or None, note or None): corrupt, unreadable or
      too small images give no array and a reason.
    """
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(source) as img:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            img, note = _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL raises OSError for truncated files, SyntaxError for some malformed headers.
        return None, f"corrupt or unreadable ({exc})", None
    except Image.DecompressionBombError as exc:
        return None, f"refused by PIL as too large ({exc})", None
    array, skip_reason = _square_and_resize(img, resolution, non_square)
    return array, skip_reason, note


def load_chunk(task: tuple, out: np.ndarray) -> list:
    """Worker entry point: loads a chunk of items and writes their pyramids into `out`.

    Args:
      task: (kind, items, resolution, options). kind "file" or "bytes": items are (name, path
        or bytes) pairs, options the non-square policy; kind "synthetic": items are indices,
        options the seed.
      out: uint8 array [>= len(items), bytes per image]: row j receives item j's levels, packed
        lowest first (see `level_spans`); rows of skipped items are left as they were.

    Returns:
      A list of LoadResult, in item order.
    """
    kind, items, resolution, options = task
    results = []
    for row, item in zip(out, items):
        name, array, skip_reason, note = _load_item(kind, item, resolution, options)
        if array is not None:
            pack_pyramid(array, row)
        results.append(LoadResult(name, skip_reason, note))
    return results


def _load_item(kind, item, resolution, options) -> tuple:
    """(name, uint8 array or None, skip reason or None, note or None) of one task item."""
    if kind == "synthetic":
        return f"synthetic[{item}]", synthetic.synthetic_image(item, resolution, options), None, None
    name, data = item
    return (name, *load_image(data, resolution, options))
