"""Tests for the tf.data input pipeline (progan_tf/data.py) over built pyramids."""

import json
import os
import shutil

import numpy as np
import pytest

from datasets import build
from datasets.synthetic import synthetic_image
from progan_tf import data, pyramid_check
from progan_tf.errors import UserInputError

NUM_IMAGES = 37  # not a multiple of any batch size used here, so batches straddle epochs
RESOLUTION = 8
SEED = 11


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """A 3-shard synthetic pyramid and its images (uint8, record order)."""
    output = str(tmp_path_factory.mktemp("pipeline") / "faces")
    build.build_pyramid(
        "synthetic",
        output,
        RESOLUTION,
        seed=SEED,
        num_images=NUM_IMAGES,
        shards_per_level=3,
        num_workers=0,
        progress=False,
    )
    images = np.stack([synthetic_image(i, RESOLUTION, SEED) for i in range(NUM_IMAGES)])
    return output, images


def shard_file(pyramid_dir, resolution, index):
    """File name of shard `index` of a level, from the manifest."""
    return pyramid_check.find_level(data.load_manifest(pyramid_dir), pyramid_dir, resolution)["shards"][index]["file"]


def take_batches(pyramid_dir, count, **kwargs):
    kwargs.setdefault("global_batch_size", 8)
    dataset = data.make_dataset(pyramid_dir, RESOLUTION, **kwargs)
    return [batch.numpy() for batch in dataset.take(count)]


def identify(rows, images):
    """Maps each float row back to (image index, flipped) using the uint8 reference images."""
    lookup = {image.tobytes(): (index, False) for index, image in enumerate(images)}
    lookup.update({image[:, ::-1].tobytes(): (index, True) for index, image in enumerate(images)})
    pixels = np.rint((rows + 1.0) * 127.5).astype(np.uint8)
    np.testing.assert_allclose(rows, pixels / 127.5 - 1.0, atol=1e-6)  # exact scaling to [-1, 1]
    return [lookup[row.tobytes()] for row in pixels]


def test_batches_have_contract_shape_and_each_epoch_visits_every_image_once(pyramid):
    pyramid_dir, images = pyramid
    batches = take_batches(pyramid_dir, 10, mirror_augment=False)
    assert all(batch.shape == (8, RESOLUTION, RESOLUTION, 3) and batch.dtype == np.float32 for batch in batches)
    order = [index for index, _ in identify(np.concatenate(batches), images)]
    assert sorted(order[:NUM_IMAGES]) == list(range(NUM_IMAGES))
    assert sorted(order[NUM_IMAGES : 2 * NUM_IMAGES]) == list(range(NUM_IMAGES))
    assert order[:NUM_IMAGES] != order[NUM_IMAGES : 2 * NUM_IMAGES]  # reshuffled every epoch
    assert order[:NUM_IMAGES] != list(range(NUM_IMAGES))


def test_small_shuffle_windows_still_visit_every_image_once_per_epoch(pyramid):
    pyramid_dir, images = pyramid
    batches = take_batches(pyramid_dir, 10, mirror_augment=False, shuffle_buffer=5)
    order = [index for index, _ in identify(np.concatenate(batches), images)]
    for epoch in range(2):
        assert sorted(order[epoch * NUM_IMAGES : (epoch + 1) * NUM_IMAGES]) == list(range(NUM_IMAGES))


def test_mirror_flips_about_half_the_images_and_only_horizontally(pyramid):
    pyramid_dir, images = pyramid
    flips = [flipped for _, flipped in identify(np.concatenate(take_batches(pyramid_dir, 40)), images)]
    assert 0.4 < np.mean(flips) < 0.6


def test_uint8_output_is_the_same_stream_before_scaling(pyramid):
    pyramid_dir, _ = pyramid
    floats = np.concatenate(take_batches(pyramid_dir, 6, seed=3))
    pixels = np.concatenate(take_batches(pyramid_dir, 6, seed=3, as_uint8=True))
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.rint((floats + 1.0) * 127.5).astype(np.uint8))
    np.testing.assert_allclose(data.uint8_to_float(pixels).numpy(), floats, atol=1e-6)


def test_same_seed_same_stream_other_seed_other_stream(pyramid):
    pyramid_dir, _ = pyramid
    first = np.stack(take_batches(pyramid_dir, 6, seed=3))
    np.testing.assert_array_equal(first, np.stack(take_batches(pyramid_dir, 6, seed=3)))
    assert not np.array_equal(first, np.stack(take_batches(pyramid_dir, 6, seed=4)))


@pytest.mark.parametrize("shuffle_buffer", [None, 5])
def test_skip_batches_resumes_the_identical_stream(pyramid, shuffle_buffer):
    pyramid_dir, _ = pyramid
    uninterrupted = take_batches(pyramid_dir, 14, shuffle_buffer=shuffle_buffer, seed=2)
    for skip in (1, 4, 9):  # mid-window, mid-epoch, and in the second epoch
        resumed = take_batches(pyramid_dir, 14 - skip, shuffle_buffer=shuffle_buffer, seed=2, skip_batches=skip)
        np.testing.assert_array_equal(np.stack(resumed), np.stack(uninterrupted[skip:]))


def test_input_pipelines_split_the_same_global_batches(pyramid):
    pyramid_dir, _ = pyramid
    single = take_batches(pyramid_dir, 6, global_batch_size=12, shuffle_buffer=7, skip_batches=2)
    parts = [
        take_batches(
            pyramid_dir,
            6,
            global_batch_size=12,
            shuffle_buffer=7,
            skip_batches=2,
            num_input_pipelines=3,
            input_pipeline_id=pipeline,
        )
        for pipeline in range(3)
    ]
    assert parts[0][0].shape == (4, RESOLUTION, RESOLUTION, 3)
    for step in range(6):
        np.testing.assert_array_equal(np.concatenate([part[step] for part in parts]), single[step])


def test_iterate_images_yields_records_in_order(pyramid):
    pyramid_dir, images = pyramid
    batches = list(data.iterate_images(pyramid_dir, RESOLUTION, batch_size=10))
    assert [len(batch) for batch in batches] == [10, 10, 10, 7]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    limited = list(data.iterate_images(pyramid_dir, 4, batch_size=16, limit=20))
    assert [batch.shape for batch in limited] == [(16, 4, 4, 3), (4, 4, 4, 3)]


def test_load_manifest_exposes_contract_fields(pyramid):
    manifest = data.load_manifest(pyramid[0])
    assert manifest["resolutions"] == [4, 8]
    assert (manifest["num_images"], manifest["channels"], manifest["name"]) == (NUM_IMAGES, 3, "faces")


def test_missing_level_is_a_clear_error(pyramid):
    with pytest.raises(UserInputError, match=r"no 16x16 level; it has \[4, 8\]\. Received: resolution=16"):
        data.make_dataset(pyramid[0], 16, 8)


def test_missing_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "incomplete").mkdir()
    with pytest.raises(UserInputError, match=r"no manifest\.json"):
        data.load_manifest(str(tmp_path / "incomplete"))
    with pytest.raises(UserInputError, match="does not exist"):
        data.make_dataset(str(tmp_path / "nowhere"), 8, 8)


def test_truncated_shard_is_a_clear_error_naming_the_file(pyramid, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(pyramid[0], copy)
    shard = shard_file(copy, RESOLUTION, 1)
    with open(os.path.join(copy, shard), "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(UserInputError, match=rf"truncated or corrupt.*--verify.*{shard}"):
        data.make_dataset(copy, RESOLUTION, 8)
    with pytest.raises(UserInputError, match=shard):
        next(data.iterate_images(copy, RESOLUTION, 8))
    data.make_dataset(copy, 4, 8)  # other levels stay usable


def test_manifest_that_does_not_match_the_files_is_a_clear_error(pyramid, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(pyramid[0], copy)
    manifest_path = os.path.join(copy, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest["levels"][1]["shards"][0]["num_records"] += 1
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    with pytest.raises(UserInputError, match="do not add up"):
        data.make_dataset(copy, RESOLUTION, 8)
    os.remove(os.path.join(copy, shard_file(copy, RESOLUTION, 2)))
    with pytest.raises(UserInputError, match=rf"missing.*{shard_file(copy, RESOLUTION, 2)}"):
        data.make_dataset(copy, RESOLUTION, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"global_batch_size": 10, "num_input_pipelines": 3}, "multiple of num_input_pipelines"),
        (
            {"global_batch_size": 8, "num_input_pipelines": 2, "input_pipeline_id": 2},
            r"input_pipeline_id must be in \[0, 2\)",
        ),
        ({"global_batch_size": 8, "skip_batches": -1}, "skip_batches must be >= 0"),
    ],
)
def test_bad_arguments_are_clear_errors(pyramid, kwargs, message):
    with pytest.raises(UserInputError, match=message):
        data.make_dataset(pyramid[0], RESOLUTION, **kwargs)


def test_a_pyramid_on_another_tensorflow_filesystem_reads_the_same(pyramid):
    """TF's in-memory ram:// filesystem stands in for gs:// and the like."""
    import tensorflow as tf

    pyramid_dir, _ = pyramid
    remote = "ram://pipeline/faces"
    tf.io.gfile.makedirs(remote)
    for name in os.listdir(pyramid_dir):
        tf.io.gfile.copy(os.path.join(pyramid_dir, name), f"{remote}/{name}", overwrite=True)
    assert pyramid_check.check_pyramid(remote, verify=True) == data.load_manifest(pyramid_dir)
    np.testing.assert_array_equal(
        np.stack(take_batches(remote, 5, seed=6)), np.stack(take_batches(pyramid_dir, 5, seed=6))
    )
    np.testing.assert_array_equal(
        np.concatenate(list(data.iterate_images(remote, 4, 16))),
        np.concatenate(list(data.iterate_images(pyramid_dir, 4, 16))),
    )
