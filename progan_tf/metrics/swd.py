"""Sliced Wasserstein distance (SWD) between Laplacian-pyramid patch descriptors (ProGAN, Sec. 5).

Protocol (Karras et al. 2018, Appendix D):
  1. Build a Laplacian pyramid of each image from full resolution down to 16x16 (Burt & Adelson:
     5x5 binomial filter [1,4,6,4,1]/16, mirror border; the 16x16 level is the Gaussian itself).
  2. At every level take 128 random 7x7x3 patches per image (uniform positions) as 147-d descriptors.
  3. Standardise each colour channel over the whole descriptor set (real and fake separately).
  4. Project both sets on 4 x 128 random unit directions, sort each direction's projections and
     take the mean |difference| between the sorted real and sorted fake values.
  5. Report each level x 1e3 and the mean over levels.

Streaming: `SWDDescriptors.update` turns each uint8 batch into descriptors right away, so only
descriptors are kept: 128 x 147 float32 = 75 KB per image per level. With the default 16384 images
at 128x128 (4 levels) that is 1.2 GB per level and 4.9 GB per side; `max_descriptors_per_level`
bounds it with a uniform reservoir sample (then the result is an estimate of the protocol's value).
"""

import time

import numpy as np
import tensorflow as tf

from progan_tf.errors import UserInputError
from progan_tf.metrics.filters import separable_filter
from progan_tf.resolutions import resolution_log2

SWD_MIN_RESOLUTION = 16
PATCHES_PER_IMAGE = 128
PATCH_SIZE = 7
NUM_REPEATS = 4
DIRECTIONS_PER_REPEAT = 128
SWD_SCALE = 1e3
BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def pyramid_down(images):
    """Gaussian REDUCE: binomial filter, then keep every second pixel (N,H,W,C) -> (N,H/2,W/2,C)."""
    return separable_filter(images, BINOMIAL_5, "mirror")[:, ::2, ::2, :]


def pyramid_up(images):
    """Gaussian EXPAND: insert zeros between pixels, then filter with 4x the binomial kernel.

    4x in 2-D is 2x per separable pass; it restores the brightness lost to the inserted zeros.
    """
    n, h, w, c = images.shape
    # Place each pixel at even (row, col) positions of a 2x larger zero image.
    zeros = tf.zeros_like(images)
    rows = tf.reshape(tf.stack([images, zeros], axis=2), [n, 2 * h, w, c])
    zeros = tf.zeros_like(rows)
    upsampled = tf.reshape(tf.stack([rows, zeros], axis=3), [n, 2 * h, 2 * w, c])
    return separable_filter(upsampled, 2.0 * BINOMIAL_5, "mirror")


def laplacian_pyramid(images, min_resolution=SWD_MIN_RESOLUTION):
    """Laplacian pyramid from full resolution down to `min_resolution`.

    Args:
        images: float tensor (N, H, W, C), H == W a power of two >= min_resolution.
        min_resolution: the coarsest level; it holds the Gaussian (low-pass) image itself.

    Returns:
        List of float tensors, finest first: [(N,H,W,C), (N,H/2,W/2,C), ..., (N,min,min,C)].

    Example:
        >>> levels = laplacian_pyramid(tf.zeros([2, 64, 64, 3]))
        >>> [lvl.shape[1] for lvl in levels]
        [64, 32, 16]
    """
    levels = []
    current = images
    while current.shape[1] > min_resolution:
        smaller = pyramid_down(current)
        levels.append(current - pyramid_up(smaller))
        current = smaller
    levels.append(current)
    return levels


def pyramid_resolutions(resolution, min_resolution=SWD_MIN_RESOLUTION):
    """Resolutions of the SWD pyramid levels, finest first, e.g. 128 -> [128, 64, 32, 16]."""
    resolution_log2(resolution, name="SWD resolution", minimum=min_resolution, maximum=None)
    resolutions = []
    while resolution >= min_resolution:
        resolutions.append(resolution)
        resolution //= 2
    return resolutions


def extract_patches(level, rows, cols, patch_size=PATCH_SIZE):
    """Cuts patches at given top-left corners and flattens them to descriptors.

    Args:
        level: float tensor (N, H, W, C), one pyramid level.
        rows, cols: int arrays (N, P) of top-left corners, each in [0, H - patch_size].
        patch_size: side of the square patch.

    Returns:
        float32 numpy array (N * P, patch_size * patch_size * C), ordered (image, patch, y, x, c).

    Example:
        >>> d = extract_patches(tf.zeros([1, 16, 16, 3]), np.zeros((1, 2), int), np.zeros((1, 2), int))
        >>> d.shape
        (2, 147)
    """
    n, num_patches = rows.shape
    offsets = np.arange(patch_size)
    y = rows[:, :, None, None] + offsets[None, None, :, None]  # (N, P, s, 1)
    x = cols[:, :, None, None] + offsets[None, None, None, :]  # (N, P, 1, s)
    image_index = np.broadcast_to(np.arange(n)[:, None, None, None], (n, num_patches, patch_size, patch_size))
    y, x = np.broadcast_arrays(y, x)
    indices = np.stack([image_index, y, x], axis=-1).astype(np.int32)
    patches = tf.gather_nd(level, indices)  # (N, P, s, s, C)
    return patches.numpy().reshape(n * num_patches, -1).astype(np.float32, copy=False)


def random_patch_corners(rng, num_images, level_resolution, num_patches=PATCHES_PER_IMAGE, patch_size=PATCH_SIZE):
    """Uniform top-left corners (rows, cols), each an int array (num_images, num_patches)."""
    high = level_resolution - patch_size + 1
    return rng.integers(0, high, size=(2, num_images, num_patches))


def channel_statistics(descriptors, channels=3):
    """Mean and std (population) per colour channel over all patches and pixels, in float64.

    Descriptors are flattened (y, x, c), so channel c is every `channels`-th column. Computed in
    row chunks so that a multi-GB descriptor set is not copied to float64 all at once.
    """
    count = 0
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(descriptors), 1 << 16):
        chunk = descriptors[start : start + (1 << 16)].astype(np.float64).reshape(-1, channels)
        count += len(chunk)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    mean = total / count
    # Shift-free formula is fine here: values are pixel-scale (|v| <= ~512) and accumulated in float64.
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean, std


def random_directions(dim, num_repeats=NUM_REPEATS, directions_per_repeat=DIRECTIONS_PER_REPEAT, seed=None):
    """Random unit directions, one float32 array (dim, directions_per_repeat) per repeat.

    Example:
        >>> dirs = random_directions(147, seed=0)
        >>> len(dirs), dirs[0].shape
        (4, (147, 128))
    """
    rng = np.random.default_rng(seed)
    directions = []
    for _ in range(num_repeats):
        d = rng.standard_normal((dim, directions_per_repeat))
        directions.append((d / np.linalg.norm(d, axis=0, keepdims=True)).astype(np.float32))
    return directions


def _sorted_projections(descriptors, mean, std, directions, channels, chunk_rows=1 << 16):
    """Standardises descriptors per channel and projects them, chunk by chunk, then sorts each column."""
    reps = descriptors.shape[1] // channels
    mean_vec = tf.constant(np.tile(mean, reps), tf.float32)
    std_vec = tf.constant(np.tile(std, reps), tf.float32)
    dirs = tf.constant(directions, tf.float32)
    projections = []
    for start in range(0, len(descriptors), chunk_rows):
        chunk = tf.constant(descriptors[start : start + chunk_rows], tf.float32)
        projections.append(tf.matmul((chunk - mean_vec) / std_vec, dirs))
    projections = tf.concat(projections, axis=0)
    # tf.sort is fast on a GPU but ~6x slower than NumPy's sort on CPU (it is built on top_k).
    # Asked here, not at import: listing devices starts the TF runtime, after which a
    # MultiWorkerMirroredStrategy can no longer be created.
    if tf.config.list_logical_devices("GPU"):
        return tf.sort(projections, axis=0).numpy()
    return np.sort(projections.numpy(), axis=0)


def sliced_wasserstein(real_descriptors, fake_descriptors, directions, channels=3, direction_group=32):
    """SWD between two descriptor sets, each standardised per colour channel on its own.

    Args:
        real_descriptors, fake_descriptors: float arrays (M, D), same M (the protocol compares
            equally sized sets so that sorted projections can be paired one to one).
        directions: list of (D, K) unit-direction arrays, one per repeat (see `random_directions`).
        channels: colour channels interleaved in the descriptor (last axis of the patch).
        direction_group: directions projected at once; bounds the (M, group) projection buffer.

    Returns:
        float: mean over repeats and directions of mean |sorted(real.d) - sorted(fake.d)| (not x1e3).

    Example:
        >>> a = np.random.default_rng(0).normal(size=(1000, 147)).astype(np.float32)
        >>> sliced_wasserstein(a, a, random_directions(147, seed=0)) == 0.0
        True
    """
    if len(real_descriptors) != len(fake_descriptors):
        raise UserInputError(
            "SWD needs the same number of real and fake descriptors (use the same number of images). "
            f"Received: real={len(real_descriptors)}, fake={len(fake_descriptors)}"
        )
    real_stats = channel_statistics(real_descriptors, channels)
    fake_stats = channel_statistics(fake_descriptors, channels)
    per_direction = []
    for repeat_dirs in directions:
        for start in range(0, repeat_dirs.shape[1], direction_group):
            group = repeat_dirs[:, start : start + direction_group]
            real_sorted = _sorted_projections(real_descriptors, *real_stats, group, channels)
            fake_sorted = _sorted_projections(fake_descriptors, *fake_stats, group, channels)
            per_direction.append(np.mean(np.abs(real_sorted - fake_sorted), axis=0))
    return float(np.mean(np.concatenate(per_direction)))


class SWDDescriptors:
    """Streams uint8 image batches into per-level patch descriptors for SWD.

    Args:
        num_patches: patches per image per level (protocol: 128).
        patch_size: patch side (protocol: 7).
        min_resolution: coarsest pyramid level (protocol: 16).
        seed: int seeding the patch positions (and the reservoir), so runs are reproducible.
        max_descriptors_per_level: if set, keep a uniform reservoir sample of at most this many
            descriptors per level instead of all of them (bounds memory; see module docstring).

    Example:
        >>> real, fake = SWDDescriptors(seed=1), SWDDescriptors(seed=2)
        >>> real.update(real_uint8_batch); fake.update(fake_uint8_batch)
        >>> swd_result(real, fake)  # {"swd_128": ..., ..., "swd_16": ..., "swd_avg": ...}
    """

    def __init__(
        self,
        num_patches=PATCHES_PER_IMAGE,
        patch_size=PATCH_SIZE,
        min_resolution=SWD_MIN_RESOLUTION,
        seed=0,
        max_descriptors_per_level=None,
    ):
        self.num_patches = num_patches
        self.patch_size = patch_size
        self.min_resolution = min_resolution
        self.max_descriptors_per_level = max_descriptors_per_level
        self.rng = np.random.default_rng(seed)
        # A separate stream for the reservoir keeps patch positions identical with and without a cap.
        self._reservoir_rng = np.random.default_rng([seed, 1])
        self.resolutions = None
        self.channels = None
        self.num_images = 0
        self._chunks = None  # per level: list of arrays (exact mode)
        self._reservoir = None  # per level: preallocated array (reservoir mode)
        self._seen = 0  # descriptors offered per level so far

    def update(self, images):
        """Adds a uint8 batch (N, H, W, 3) of square images; all batches must share one size."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise UserInputError(
                "SWD expects uint8 image batches shaped (N, H, W, C) with H == W. "
                f"Received: shape={images.shape}, dtype={images.dtype}"
            )
        if self.resolutions is None:
            self.resolutions = pyramid_resolutions(images.shape[1], self.min_resolution)
            self.channels = images.shape[-1]
            self._chunks = [[] for _ in self.resolutions]
        elif images.shape[1] != self.resolutions[0]:
            raise UserInputError(
                f"SWD batches must all have the same size ({self.resolutions[0]}). Received: size={images.shape[1]}"
            )
        levels = laplacian_pyramid(tf.constant(images, tf.float32), self.min_resolution)
        batch_descriptors = []
        for level, resolution in zip(levels, self.resolutions):
            rows, cols = random_patch_corners(self.rng, len(images), resolution, self.num_patches, self.patch_size)
            batch_descriptors.append(extract_patches(level, rows, cols, self.patch_size))
        self._store(batch_descriptors)
        self.num_images += len(images)

    def _store(self, batch_descriptors):
        count = len(batch_descriptors[0])
        cap = self.max_descriptors_per_level
        if cap is None:
            for chunks, desc in zip(self._chunks, batch_descriptors):
                chunks.append(desc)
        else:
            if self._reservoir is None:
                self._reservoir = [np.empty((cap, d.shape[1]), np.float32) for d in batch_descriptors]
            # Algorithm R, vectorised: item t (0-based) goes to slot j ~ U[0, t] if j < cap. Numpy
            # assignment with repeated slots keeps the last write, matching the sequential order.
            t = self._seen + np.arange(count)
            slots = np.where(t < cap, t, (self._reservoir_rng.random(count) * (t + 1)).astype(np.int64))
            keep = slots < cap
            for store, desc in zip(self._reservoir, batch_descriptors):
                store[slots[keep]] = desc[keep]
        self._seen += count

    def descriptors(self):
        """Returns {resolution: float32 array (M, 147)} for each pyramid level."""
        if self.resolutions is None:
            raise UserInputError("SWD got no images. Received: num_images=0")
        if self.max_descriptors_per_level is None:
            stacked = [np.concatenate(chunks) for chunks in self._chunks]
            self._chunks = [[s] for s in stacked]  # keep one array so repeated calls don't copy again
        else:
            stacked = [store[: min(self._seen, self.max_descriptors_per_level)] for store in self._reservoir]
        return dict(zip(self.resolutions, stacked))


def swd_result(real, fake, num_repeats=NUM_REPEATS, directions_per_repeat=DIRECTIONS_PER_REPEAT, seed=0, verbose=False):
    """SWD per pyramid level (x1e3) and their mean, from two `SWDDescriptors` accumulators.

    Args:
        real, fake: `SWDDescriptors` that saw images of the same resolution.
        num_repeats, directions_per_repeat: random projections (protocol: 4 x 128).
        seed: seeds the random directions (each level draws its own set).
        verbose: print one line per level with its time.

    Returns:
        dict like {"swd_128": 8.1, "swd_64": 5.0, "swd_32": 3.2, "swd_16": 6.6, "swd_avg": 5.7}.
    """
    real_desc, fake_desc = real.descriptors(), fake.descriptors()
    if list(real_desc) != list(fake_desc):
        raise UserInputError(
            "SWD real and fake images must have the same resolution. "
            f"Received: real={real.resolutions[0]}, fake={fake.resolutions[0]}"
        )
    rng = np.random.default_rng(seed)
    result = {}
    for resolution in real_desc:
        start = time.perf_counter()
        directions = random_directions(
            real_desc[resolution].shape[1], num_repeats, directions_per_repeat, seed=rng.integers(2**63)
        )
        result[f"swd_{resolution}"] = SWD_SCALE * sliced_wasserstein(
            real_desc[resolution], fake_desc[resolution], directions, real.channels
        )
        if verbose:
            print(f"swd: level {resolution}px done in {time.perf_counter() - start:.1f}s", flush=True)
    result["swd_avg"] = float(np.mean(list(result.values())))
    return result
