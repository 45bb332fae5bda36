"""`--mode=generate`: images, a grid, a latent interpolation strip and a looping GIF walk.

The generator is a `progan_tf.generators.Generator` (from an exported SavedModel or a run's
checkpoint), a callable float32 latents -> uint8 NHWC images, so the writers below do not care
where the images come from.

Latents are `progan_tf.latents.seeded_latents(seed, n, latent_size)`, the ones the SavedModel's
`generate_from_seed(seed, n)` endpoint and `--mode=evaluate` draw, so the same `--generate_seed`
gives the same images everywhere. Interpolation is spherical (slerp) between latents
normalised to the radius sqrt(latent_size) (where standard-normal latents concentrate; ProGAN's
generator pixel-normalises its latents to that radius anyway), so every frame is a typical latent.

Library use:
    >>> generator = generators.load_run_generator("runs/celebahq-1024")[0]  # or load_savedmodel(...)
    >>> written = generate_outputs(generator, "out", num_images=16, seed=0, interpolation_steps=30)
"""

import pathlib

import numpy as np
from PIL import Image

from progan_tf import images as images_lib
from progan_tf.errors import UserInputError
from progan_tf.latents import seeded_latents

# ---------------------------------------------------------------------------------------------
# Latents.


def normalize_latents(latents):
    """Scales each latent (last axis) to norm sqrt(latent_size), the typical norm of N(0, I) draws."""
    latents = np.asarray(latents, dtype=np.float64)
    norms = np.linalg.norm(latents, axis=-1, keepdims=True)
    return (latents / np.maximum(norms, 1e-12) * np.sqrt(latents.shape[-1])).astype(np.float32)


def slerp(a, b, t):
    """Spherical interpolation between vectors `a` and `b` (same norm) at fractions `t`.

    Args:
        a, b: (D,) arrays.
        t: scalar or (T,) array in [0, 1]; t=0 gives exactly `a`, t=1 exactly `b`.

    Returns:
        (T, D) float32 array (or (D,) for a scalar t). Falls back to linear interpolation when the
        vectors are (anti)parallel to within float precision.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t_arr = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        out = (1.0 - t_arr) * a + t_arr * b
    else:
        out = (np.sin((1.0 - t_arr) * omega) * a + np.sin(t_arr * omega) * b) / np.sin(omega)
    out = out.astype(np.float32)
    return out if np.ndim(t) else out[0]


def interpolation_latents(start, end, steps):
    """`steps` latents from normalised `start` to normalised `end`, both ends included (t evenly spaced)."""
    if steps < 2:
        raise UserInputError(f"an interpolation needs at least 2 frames. Received: interpolation_steps={steps}")
    start, end = normalize_latents(start), normalize_latents(end)
    return slerp(start, end, np.linspace(0.0, 1.0, steps))


def walk_latents(keyframes, steps_per_segment):
    """A closed loop through normalised `keyframes`: K segments of `steps_per_segment` frames each.

    Each segment slerps from keyframe k to keyframe (k + 1) mod K with cosine easing (zero speed at
    the keyframes, so the motion has no kinks where segments meet). The end of a segment is the
    start of the next, so it is not repeated: the frames loop seamlessly; frame k * steps is
    keyframe k exactly.

    Returns:
        (K * steps_per_segment, D) float32 latents.
    """
    keyframes = normalize_latents(keyframes)
    if len(keyframes) < 2 or steps_per_segment < 1:
        raise UserInputError(
            f"a latent walk needs >= 2 keyframes and >= 1 step per segment. "
            f"Received: keyframes={len(keyframes)}, steps={steps_per_segment}"
        )
    fractions = np.arange(steps_per_segment) / steps_per_segment
    eased = 0.5 - 0.5 * np.cos(np.pi * fractions)
    segments = [slerp(keyframes[k], keyframes[(k + 1) % len(keyframes)], eased) for k in range(len(keyframes))]
    return np.concatenate(segments)


# ---------------------------------------------------------------------------------------------
# Writers.


def display(image, min_size=images_lib.DISPLAY_MIN_SIZE):
    """Nearest-neighbour enlargement of one (H, W, C) uint8 image for viewing."""
    return images_lib.upscale_nearest(np.asarray(image), min_size)


def save_strip(path, frames, min_size=images_lib.DISPLAY_MIN_SIZE):
    """Writes frames (N, R, R, C) side by side in one row as a PNG; returns the path."""
    frames = np.stack([display(frame, min_size) for frame in frames])
    return images_lib.save_png(path, images_lib.make_grid(frames, columns=len(frames)))


def save_gif(path, frames, frame_ms=80, min_size=images_lib.DISPLAY_MIN_SIZE):
    """Writes uint8 frames (N, R, R, 1|3) as an endlessly looping animated GIF; returns the path.

    PIL's GIF writer, with every frame kept (no merging of identical frames) and its own palette.
    """
    path = pathlib.Path(path)
    pictures = []
    for frame in frames:
        frame = display(frame, min_size)
        pictures.append(Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame))
    if not pictures:
        raise UserInputError("a GIF needs at least one frame. Received: frames=0")
    temporary = path.with_name(path.name + ".tmp")
    pictures[0].save(
        temporary, format="GIF", save_all=True, append_images=pictures[1:], duration=int(frame_ms), loop=0,
        optimize=False, disposal=1,
    )
    temporary.replace(path)
    return path


def generate_outputs(generator, output_dir, num_images=16, seed=0, interpolation_steps=0, walk_keyframes=4,
                     frame_ms=80):
    """Writes the images, a grid, and (if `interpolation_steps`) an interpolation strip and a GIF walk.

    Files in `output_dir` (created):
        image-0000.png ...    `num_images` images at the generator's resolution, latents
                              `seeded_latents(seed, num_images)`.
        grid.png              those images tiled (enlarged to >= 128 px per tile).
        interpolation.png     `interpolation_steps` frames from latent 0 to latent 1 (slerp).
        walk.gif              a loop through `walk_keyframes` latents, `interpolation_steps`
                              frames per segment (walk_keyframes * interpolation_steps frames).

    Returns:
        dict name -> path (and "images": list of the image paths).
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    latents = seeded_latents(seed, max(num_images, 2), generator.latent_size).numpy()
    pictures = generator(latents[:num_images])
    written = {"images": [images_lib.save_png(output_dir / f"image-{i:04d}.png", p) for i, p in enumerate(pictures)]}
    grid = images_lib.make_grid(np.stack([display(p) for p in pictures]))
    written["grid"] = images_lib.save_png(output_dir / "grid.png", grid)
    if interpolation_steps:
        strip = generator(interpolation_latents(latents[0], latents[1], interpolation_steps))
        written["interpolation"] = save_strip(output_dir / "interpolation.png", strip)
        # Keyframes from a separate stream of the same seed, so the walk differs from the strip.
        keyframes = seeded_latents(seed + 1, walk_keyframes, generator.latent_size)
        frames = generator(walk_latents(keyframes, interpolation_steps))
        written["walk"] = save_gif(output_dir / "walk.gif", frames, frame_ms=frame_ms)
    return written
