"""Image loading and pyramid math for the dataset builder (PIL + NumPy only).

This module is what the builder's worker processes import, so it must stay free of TensorFlow:
workers are started with the `forkserver` method and preload only this module, which keeps
them small and safe to start after TensorFlow has spun up threads in the parent.

Pyramid math (the reference's): the full-resolution image is converted to float32; each lower
level is the 2x2 box average of the previous level's float32 values (not of its rounded
copy), and every level is stored as `rint(clip(level, 0, 255))` in uint8.
"""

import dataclasses
import io
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
    """Outcome of loading one source image.

    Attributes:
      name: the item's name for reports (a path relative to the source folder, or a TFDS id).
      levels: raw uint8 HWC bytes per level, lowest resolution (4x4) first; None when skipped.
      skip_reason: why the item was skipped (None when it was used).
      note: a non-fatal remark, e.g. a colour-mode conversion (None when nothing to report).
    """

    name: str
    levels: Optional[list]
    skip_reason: Optional[str] = None
    note: Optional[str] = None


def is_power_of_two(value: int) -> bool:
    return value >= 1 and (value & (value - 1)) == 0


def num_levels(resolution: int) -> int:
    """Number of pyramid levels from 4x4 up to `resolution` (a power of two >= 4)."""
    return resolution.bit_length() - 2


def pyramid_levels(image: np.ndarray) -> list:
    """Builds the resolution pyramid of one square image.

    Args:
      image: uint8 array [R, R, C], R a power of two >= 4.

    Returns:
      A list of uint8 arrays [r, r, C] for r = 4, 8, ..., R (lowest first).
    """
    current = image.astype(np.float32)
    levels = [image]
    while current.shape[0] > 4:
        current = (
            current[0::2, 0::2] + current[0::2, 1::2] + current[1::2, 0::2] + current[1::2, 1::2]
        ) * np.float32(0.25)
        # Averages of values in [0, 255] stay in range, so rint alone is the reference's rint/clip.
        levels.append(np.rint(current).astype(np.uint8))
    return levels[::-1]


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


def load_image(name: str, data, resolution: int, non_square: str = "crop") -> LoadResult:
    """Decodes, squares and resizes one image and builds its pyramid.

    Args:
      name: name used in reports.
      data: a file path, or the encoded image bytes.
      resolution: target resolution (power of two >= 4).
      non_square: "crop" (centre crop) or "skip" for images that are not square.

    Returns:
      A LoadResult; corrupt, unreadable or too small images are skipped with a reason.
    """
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(source) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            img, note = _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL raises OSError for truncated files, SyntaxError for some malformed headers.
        return LoadResult(name, None, skip_reason=f"corrupt or unreadable ({exc})")
    except Image.DecompressionBombError as exc:
        return LoadResult(name, None, skip_reason=f"refused by PIL as too large ({exc})")
    array, skip_reason = _square_and_resize(img, resolution, non_square)
    if skip_reason:
        return LoadResult(name, None, skip_reason=skip_reason, note=note)
    return LoadResult(name, [level.tobytes() for level in pyramid_levels(array)], note=note)


def load_chunk(task: tuple) -> list:
    """Worker entry point: loads a chunk of items.

    Args:
      task: (kind, items, resolution, options). kind "file" or "bytes": items are (name, path
        or bytes) pairs, options the non-square policy; kind "synthetic": items are indices,
        options the seed.

    Returns:
      A list of LoadResult, in item order.
    """
    kind, items, resolution, options = task
    if kind == "synthetic":
        from datasets import synthetic

        return [
            LoadResult(
                f"synthetic[{index}]",
                [
                    level.tobytes()
                    for level in pyramid_levels(synthetic.synthetic_image(index, resolution, options))
                ],
            )
            for index in items
        ]
    return [load_image(name, data, resolution, options) for name, data in items]
