"""tf.data input pipeline over dataset pyramids built by `python -m datasets.build`.

The pyramid format (raw uint8 HWC records, one set of shards per resolution, manifest.json) is
described in datasets/build.py.

Stream semantics of `make_dataset` (what makes multi-worker runs and resumes exact):
  * The stream is an infinite sequence of element positions 0, 1, 2, ...; position k belongs to
    epoch k // N (N images). Each epoch visits every image once: the level's shards are put in an
    order drawn from (seed, epoch), the resulting sequence is cut into windows of
    `shuffle_buffer` records, and each window is permuted with a permutation drawn from
    (seed, window). Windows are read whole, so the shuffle is exact within a window, and a new
    window is read while the current one is consumed.
  * The mirror flip of position k is drawn from (seed, window, offset in window): a pure
    function of k, independent of where the stream started.
  * Batches are consecutive runs of `global_batch_size` positions (batches may straddle epochs;
    "shuffle before batch", never a ragged batch). `skip_batches=n` starts at position
    n * global_batch_size without reading the skipped data (whole windows are skipped
    arithmetically, and shard reads use TFRecord seeks).
  * Every input pipeline builds the same global batches and keeps rows
    [id * per, (id + 1) * per) of each, slicing the raw records before decoding.
With several input pipelines use `strategy.distribute_datasets_from_function` and pass its
context's `num_input_pipelines` / `input_pipeline_id`; auto-sharding is then turned off here.

During a fade-in the trainer needs each real image at the previous resolution as well; that is
computed in-graph in the train step (2x2 average pool, then nearest upsampling), not here.
"""

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from progan_tf.errors import UserInputError
from progan_tf.pyramid_check import find_level, level_paths, load_manifest

# Default shuffle window: as many records as fit in this many bytes (capped at the level size).
DEFAULT_SHUFFLE_BYTES = 256 << 20
# Separate random streams derived from the user's seed.
_SHARD_ORDER_STREAM, _WINDOW_ORDER_STREAM, _MIRROR_STREAM = 1, 2, 3


def _stateless_permutation(size, key):
    return tf.argsort(tf.random.stateless_uniform([size], seed=key))


def uint8_to_float(pixels):
    """uint8 [0, 255] pixels -> float32 [-1, 1], the networks' image range."""
    return tf.cast(pixels, tf.float32) * (1.0 / 127.5) - 1.0


def _mirror(pixels, flips):
    """Horizontally flips the images whose `flips` entry is true.

    Works on uint8 (a quarter of the bytes of float32) and reverses only the flipped images, then
    stitches the batch back in order: a select over the whole batch with a broadcast mask was
    7x slower at 1024 px, a per-image cond 3x slower at 4 px.
    """
    kept, flipped = tf.where(~flips)[:, 0], tf.where(flips)[:, 0]
    return tf.dynamic_stitch(
        [tf.cast(kept, tf.int32), tf.cast(flipped, tf.int32)],
        [tf.gather(pixels, kept), tf.reverse(tf.gather(pixels, flipped), axis=[2])],
    )


def _decode_batch(records, resolution, channels):
    """[n] raw records -> uint8 [n, R, R, C]."""
    pixels = tf.io.decode_raw(records, tf.uint8)
    return tf.reshape(pixels, [-1, resolution, resolution, channels])


def make_dataset(
    pyramid_dir: str,
    resolution: int,
    global_batch_size: int,
    *,
    mirror_augment: bool = True,
    seed: int = 0,
    shuffle_buffer: int | None = None,
    skip_batches: int = 0,
    num_input_pipelines: int = 1,
    input_pipeline_id: int = 0,
    deterministic: bool = True,
    as_uint8: bool = False,
) -> tf.data.Dataset:
    """The training input for one resolution (see the module docstring for exact semantics).

    Args:
      pyramid_dir: a pyramid directory.
      resolution: which level to read.
      global_batch_size: images per global batch (over all input pipelines).
      mirror_augment: flip each image horizontally with probability 1/2.
      seed: determines the shuffle order and the flips.
      shuffle_buffer: shuffle window in records (default: DEFAULT_SHUFFLE_BYTES worth, at most
        the number of images, i.e. an exact full shuffle for small levels).
      skip_batches: start at this global batch of the same stream (for resuming).
      num_input_pipelines: how many pipelines split each global batch.
      input_pipeline_id: which rows this pipeline keeps.
      deterministic: keep element order reproducible (needed for exact resumes and for several
        input pipelines to agree); False lets tf.data reorder reads for speed.
      as_uint8: yield the uint8 pixels in [0, 255]; the trainer converts them on its device
        (`uint8_to_float`), which takes the float conversion, the largest remaining cost at high
        resolution, off the host.

    Returns:
      An infinite dataset of float32 [global_batch_size // num_input_pipelines, R, R, C] in [-1, 1]
      (uint8 in [0, 255] with `as_uint8`).

    Raises:
      UserInputError: bad arguments, a missing level, or shards that do not match the manifest.
    """
    _check_stream_arguments(global_batch_size, num_input_pipelines, input_pipeline_id, skip_batches, shuffle_buffer)
    manifest = load_manifest(pyramid_dir)
    level = find_level(manifest, pyramid_dir, resolution)
    paths = level_paths(pyramid_dir, level)
    windows = _Windows.plan(
        level["num_records"], level["record_bytes"], shuffle_buffer, skip_batches * global_batch_size
    )
    batches = _shuffled_elements(paths, level, windows, seed, deterministic).batch(
        global_batch_size, drop_remainder=True
    )
    per_pipeline = global_batch_size // num_input_pipelines
    if num_input_pipelines > 1:
        rows = slice(input_pipeline_id * per_pipeline, (input_pipeline_id + 1) * per_pipeline)
        batches = batches.map(lambda records, flips: (records[rows], flips[rows]))
    shape = [per_pipeline, resolution, resolution, manifest["channels"]]
    images = batches.map(
        _batch_to_images(shape, mirror_augment, as_uint8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return images.prefetch(tf.data.AUTOTUNE).with_options(_stream_options(deterministic, num_input_pipelines))


def _stream_options(deterministic, num_input_pipelines):
    options = tf.data.Options()
    options.deterministic = deterministic
    if num_input_pipelines > 1:
        # Each pipeline already keeps only its own rows of every global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _check_stream_arguments(global_batch_size, num_input_pipelines, input_pipeline_id, skip_batches, shuffle_buffer):
    if global_batch_size < 1 or num_input_pipelines < 1 or global_batch_size % num_input_pipelines:
        raise UserInputError(
            f"global_batch_size must be a positive multiple of num_input_pipelines. Received: "
            f"global_batch_size={global_batch_size}, num_input_pipelines={num_input_pipelines}"
        )
    if not 0 <= input_pipeline_id < num_input_pipelines:
        raise UserInputError(
            f"input_pipeline_id must be in [0, {num_input_pipelines}). Received: input_pipeline_id={input_pipeline_id}"
        )
    if skip_batches < 0:
        raise UserInputError(f"skip_batches must be >= 0. Received: skip_batches={skip_batches}")
    if shuffle_buffer is not None and shuffle_buffer < 1:
        raise UserInputError(f"shuffle_buffer must be >= 1. Received: shuffle_buffer={shuffle_buffer}")


@dataclasses.dataclass(frozen=True)
class _Windows:
    """How one level's stream is cut into shuffle windows, and where a resumed stream starts.

    Attributes:
      size: records per window (the last window of an epoch may be shorter).
      per_epoch: windows per epoch.
      first: the window holding the stream's first element.
      offset_in_first: elements of the first window that the stream skips.
    """

    size: int
    per_epoch: int
    first: int
    offset_in_first: int

    @classmethod
    def plan(cls, num_records, record_bytes, shuffle_buffer, first_element):
        size = min(shuffle_buffer or max(1, DEFAULT_SHUFFLE_BYTES // record_bytes), num_records)
        per_epoch = math.ceil(num_records / size)
        first_epoch, offset_in_epoch = divmod(first_element, num_records)
        return cls(size, per_epoch, first_epoch * per_epoch + offset_in_epoch // size, offset_in_epoch % size)


def _window_reader(paths, level, windows, shard_order_key, deterministic):
    """The function from a window id to a dataset of one element: (window id, [n] records of the window)."""
    num_records = level["num_records"]
    shard_paths = tf.constant(paths)
    shard_counts = tf.constant([shard["num_records"] for shard in level["shards"]], tf.int64)
    reads_in_parallel = min(len(paths), 4)

    def read_window(window_id):
        """All records of one window (in the epoch's shard order), as one [n] string tensor."""
        epoch, index = window_id // windows.per_epoch, window_id % windows.per_epoch
        order = _stateless_permutation(len(paths), tf.random.experimental.stateless_fold_in(shard_order_key, epoch))
        counts = tf.gather(shard_counts, order)
        shard_end = tf.cumsum(counts)
        shard_start = shard_end - counts
        window_start = index * windows.size
        window_end = tf.minimum(window_start + windows.size, num_records)
        first = tf.maximum(shard_start, window_start)
        take = tf.maximum(tf.minimum(shard_end, window_end) - first, 0)
        used = take > 0
        pieces = tf.data.Dataset.from_tensor_slices(
            (
                tf.boolean_mask(tf.gather(shard_paths, order), used),
                tf.boolean_mask(first - shard_start, used),
                tf.boolean_mask(take, used),
            )
        )
        records = pieces.interleave(
            lambda path, skip, count: tf.data.TFRecordDataset(path, buffer_size=1 << 20).skip(skip).take(count),
            cycle_length=reads_in_parallel,
            num_parallel_calls=reads_in_parallel,
            deterministic=deterministic,
        )
        return records.batch(windows.size).map(lambda batch: (window_id, batch))

    return read_window


def _window_shuffler(window_order_key, mirror_key):
    """The function from (window id, records) to a dataset of (record, flip) in the window's shuffled order."""

    def shuffle_window(window_id, records):
        size = tf.shape(records, out_type=tf.int64)[0]
        permutation = _stateless_permutation(
            size, tf.random.experimental.stateless_fold_in(window_order_key, window_id)
        )
        flips = (
            tf.random.stateless_uniform([size], seed=tf.random.experimental.stateless_fold_in(mirror_key, window_id))
            < 0.5
        )
        return tf.data.Dataset.from_tensor_slices((tf.gather(records, permutation), flips))

    return shuffle_window


def _shuffled_elements(paths, level, windows, seed, deterministic):
    """The level's infinite stream of (raw record, flip), from the first element of the resumed stream on."""
    base_key = tf.constant([seed, 0], tf.int64)
    shard_order_key = tf.random.experimental.stateless_fold_in(base_key, _SHARD_ORDER_STREAM)
    window_order_key = tf.random.experimental.stateless_fold_in(base_key, _WINDOW_ORDER_STREAM)
    mirror_key = tf.random.experimental.stateless_fold_in(base_key, _MIRROR_STREAM)
    read_window = _window_reader(paths, level, windows, shard_order_key, deterministic)
    return (
        tf.data.Dataset.range(windows.first, np.iinfo(np.int64).max)
        .flat_map(read_window)
        .prefetch(1)
        .flat_map(_window_shuffler(window_order_key, mirror_key))
        .skip(windows.offset_in_first)
    )


def _batch_to_images(shape, mirror_augment, as_uint8):
    """The function from a batch of (raw record, flip) to images of `shape` [n, R, R, C]."""

    def to_images(records, flips):
        pixels = _decode_batch(records, shape[1], shape[3])
        if mirror_augment:
            pixels = _mirror(pixels, flips)
        images = pixels if as_uint8 else uint8_to_float(pixels)
        return tf.ensure_shape(images, shape)

    return to_images


def iterate_images(
    pyramid_dir: str, resolution: int, batch_size: int, limit: int | None = None
) -> Iterator[np.ndarray]:
    """Yields a level's images in record order, without augmentation.

    Args:
      pyramid_dir: a pyramid directory.
      resolution: which level to read.
      batch_size: images per yielded batch (the last one may be smaller).
      limit: stop after this many images (default: all).

    Yields:
      uint8 numpy arrays [n, R, R, C].
    """
    if batch_size < 1:
        raise UserInputError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    manifest = load_manifest(pyramid_dir)
    paths = level_paths(pyramid_dir, find_level(manifest, pyramid_dir, resolution))
    records = tf.data.TFRecordDataset(paths, buffer_size=1 << 20)
    if limit is not None:
        records = records.take(limit)
    channels = manifest["channels"]
    batches = records.batch(batch_size).map(
        lambda batch: _decode_batch(batch, resolution, channels), num_parallel_calls=tf.data.AUTOTUNE
    )
    yield from batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
