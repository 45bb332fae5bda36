"""`--mode=generate`: images, a grid, a latent interpolation strip and a looping walk (GIF and MP4).

The generator is a `progan_tf.generators.Generator` (from an exported SavedModel or a run's
checkpoint), a callable float32 latents -> uint8 NHWC images, so the writers below do not care
where the images come from.

Latents are `progan_tf.latents.seeded_latents(seed, n, latent_size)`, the ones the SavedModel's
`generate_from_seed(seed, n)` endpoint and `--mode=evaluate` draw, so the same `--generate_seed`
gives the same images everywhere. Interpolation is spherical (slerp) between latents
normalised to the radius sqrt(latent_size) (where standard-normal latents concentrate; ProGAN's
generator pixel-normalises its latents to that radius anyway), so every frame is a typical latent.

The walk is also written as an H.264 MP4 (what researchers share) through imageio's ffmpeg
plugin; imageio-ffmpeg's wheel ships the ffmpeg binary. Where no ffmpeg can be run (the package
missing, or IMAGEIO_FFMPEG_EXE naming a program that is not there) the walk is a GIF only, and one
line says why.

Library use:
    >>> generator = generators.load_run_generator("runs/celebahq-1024")[0]  # or load_savedmodel(...)
    >>> written = generate_outputs(generator, "out", num_images=16, seed=0, interpolation_steps=30)
"""

import io
import os
import pathlib
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image

from progan_tf import atomic_files
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
    return images_lib.save_png(path, images_lib.tile_grid(frames, min_size, columns=len(frames)))


def save_gif(path, frames, frame_ms=80, min_size=images_lib.DISPLAY_MIN_SIZE):
    """Writes uint8 frames (N, R, R, 1|3) as an endlessly looping animated GIF; returns the path.

    PIL's GIF writer, with every frame kept (no merging of identical frames) and its own palette.
    """
    path = atomic_files.as_path(path)
    pictures = []
    for frame in frames:
        frame = display(frame, min_size)
        pictures.append(Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame))
    if not pictures:
        raise UserInputError("a GIF needs at least one frame. Received: frames=0")
    encoded = io.BytesIO()
    pictures[0].save(
        encoded,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=int(frame_ms),
        loop=0,
        optimize=False,
        disposal=1,
    )
    atomic_files.write_atomically(path, encoded.getvalue())
    return path


# Video frames are a multiple of this many pixels on each side: H.264 encodes 16x16 macroblocks,
# and imageio would otherwise resize the frames itself.
VIDEO_BLOCK = 16


def video_writer_problem():
    """Why an MP4 cannot be written here (a short reason), or None when ffmpeg is available."""
    try:
        # Optional dependencies: their absence is reported, not raised.
        import imageio  # noqa: F401
        import imageio_ffmpeg
    except ImportError as error:
        return f"the Python package {error.name} is not installed (pip install imageio imageio-ffmpeg)"
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return "imageio-ffmpeg found no ffmpeg program (pip install --force-reinstall imageio-ffmpeg)"
    if not (os.path.isfile(exe) or shutil.which(exe)):
        source = "IMAGEIO_FFMPEG_EXE names" if os.environ.get("IMAGEIO_FFMPEG_EXE") else "imageio-ffmpeg gave"
        return f"{source} the ffmpeg program {exe!r}, which does not exist"
    return None


def video_frame(frame, size):
    """One (R, R, C) uint8 frame as (size, size, 3): nearest-neighbour when enlarging by a whole
    factor (crisp pixels), Lanczos otherwise."""
    frame = np.asarray(frame)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if size % frame.shape[0] == 0:
        factor = size // frame.shape[0]
        return frame.repeat(factor, axis=0).repeat(factor, axis=1)
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.LANCZOS))


def save_mp4(path, frames, fps=30, size=512):
    """Writes uint8 frames (N, R, R, 1|3) as an H.264 MP4 (yuv420p) of size x size pixels at `fps`.

    Written to a temporary name and renamed when complete; `path` may be on any filesystem
    `tf.io.gfile` reaches. Raises OSError or RuntimeError when ffmpeg cannot be run (see
    `video_writer_problem`).
    """
    if size < VIDEO_BLOCK or size % VIDEO_BLOCK:
        raise UserInputError(
            f"the video size must be a positive multiple of {VIDEO_BLOCK} pixels. Received: size={size}"
        )
    if fps <= 0:
        raise UserInputError(f"the video frame rate must be positive. Received: fps={fps}")
    path = atomic_files.as_path(path)
    if atomic_files.is_local(path):
        temporary = path.with_name(path.stem + ".tmp" + path.suffix)  # ffmpeg picks the format by suffix
        _encode_mp4(temporary, frames, fps, size)
        temporary.replace(path)
    else:  # ffmpeg writes local files only: encode in a local folder, then copy the file over
        with tempfile.TemporaryDirectory() as folder:
            encoded = pathlib.Path(folder) / path.name
            _encode_mp4(encoded, frames, fps, size)
            atomic_files.write_atomically(path, encoded.read_bytes())
    return path


def _encode_mp4(path, frames, fps, size):
    """Runs ffmpeg (through imageio) to write the frames to the local file `path`; removes what it
    wrote if it fails."""
    # Optional dependency: save_walk falls back to the GIF where it is missing.
    import imageio.v2 as imageio

    try:
        with imageio.get_writer(
            path,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=8,
            macro_block_size=VIDEO_BLOCK,
        ) as writer:
            for frame in frames:
                writer.append_data(video_frame(frame, size))
        if not path.is_file() or path.stat().st_size == 0:
            raise RuntimeError("ffmpeg exited without writing the video")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def save_walk(output_dir, frames, frame_ms=80, video_fps=30, video_size=512):
    """walk.gif, and walk.mp4 where ffmpeg can be run (else one line says why there is none).

    Returns:
        dict with "walk" (the GIF) and, when written, "video" (the MP4).
    """
    output_dir = atomic_files.as_path(output_dir)
    written = {"walk": save_gif(output_dir / "walk.gif", frames, frame_ms=frame_ms)}
    problem = video_writer_problem()
    if problem is None:
        try:
            written["video"] = save_mp4(output_dir / "walk.mp4", frames, fps=video_fps, size=video_size)
        except (OSError, RuntimeError) as error:
            first_line = "".join(str(error).strip().splitlines()[:1])
            problem = f"ffmpeg failed ({type(error).__name__}: {first_line})"
    if problem is not None:
        print(f"walk.mp4 not written: {problem}; the walk is walk.gif only", flush=True)
    return written


def generate_outputs(
    generator,
    output_dir,
    num_images=16,
    seed=0,
    interpolation_steps=0,
    walk_keyframes=4,
    frame_ms=80,
    video_fps=30,
    video_size=512,
):
    """Writes the images, a grid, and (if `interpolation_steps`) an interpolation strip and a walk.

    Files in `output_dir` (created; local or on any filesystem `tf.io.gfile` reaches):
        image-0000.png ...    `num_images` images at the generator's resolution, latents
                              `seeded_latents(seed, num_images)`.
        grid.png              those images tiled (enlarged to >= 128 px per tile).
        interpolation.png     `interpolation_steps` frames from latent 0 to latent 1 (slerp).
        walk.gif, walk.mp4    a loop through `walk_keyframes` latents, `interpolation_steps`
                              frames per segment (walk_keyframes * interpolation_steps frames);
                              the MP4 at `video_fps`, `video_size` px square, where ffmpeg runs.

    Returns:
        dict name -> path ("images": list of the image paths; "video" only when the MP4 was written).
    """
    output_dir = atomic_files.as_path(output_dir)
    tf.io.gfile.makedirs(str(output_dir))
    latents = seeded_latents(seed, max(num_images, 2), generator.latent_size).numpy()
    pictures = generator(latents[:num_images], progress="images")
    written = {"images": [images_lib.save_png(output_dir / f"image-{i:04d}.png", p) for i, p in enumerate(pictures)]}
    grid = images_lib.tile_grid(pictures, images_lib.DISPLAY_MIN_SIZE)
    written["grid"] = images_lib.save_png(output_dir / "grid.png", grid)
    if interpolation_steps:
        strip = generator(interpolation_latents(latents[0], latents[1], interpolation_steps), progress="interpolation")
        written["interpolation"] = save_strip(output_dir / "interpolation.png", strip)
        # Keyframes from a separate stream of the same seed, so the walk differs from the strip.
        keyframes = seeded_latents(seed + 1, walk_keyframes, generator.latent_size)
        frames = generator(walk_latents(keyframes, interpolation_steps), progress="walk")
        written.update(save_walk(output_dir, frames, frame_ms=frame_ms, video_fps=video_fps, video_size=video_size))
    return written
