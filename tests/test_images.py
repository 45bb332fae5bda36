"""progan_tf.images: grid size arithmetic (tiles of at least the minimum size) and tile contents."""

import numpy as np
import pytest

from progan_tf import images


@pytest.mark.parametrize(
    "size, min_size, factor",
    [(4, 64, 16), (8, 64, 8), (32, 64, 2), (48, 64, 2), (64, 64, 1), (100, 64, 1), (1024, 64, 1), (5, 64, 13)],
)
def test_upscale_factor_is_the_smallest_whole_factor_reaching_the_minimum(size, min_size, factor):
    assert images.upscale_factor(size, min_size) == factor
    assert size * factor >= min_size
    assert factor == 1 or size * (factor - 1) < min_size


@pytest.mark.parametrize(
    "count, size, rows, columns", [(36, 4, 6, 6), (36, 32, 6, 6), (10, 8, 3, 4), (1, 16, 1, 1), (5, 128, 2, 3)]
)
def test_tile_grid_size_and_nearest_tiles(count, size, rows, columns):
    rng = np.random.default_rng(count + size)
    batch = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    grid = images.tile_grid(batch, images.SAMPLE_MIN_TILE)
    tile = size * max(1, -(-64 // size))  # ceil(64 / size) whole-factor enlargement
    assert tile >= 64
    assert grid.shape == (rows * tile, columns * tile, 3)
    factor = tile // size
    for index in range(count):
        row, column = divmod(index, columns)
        cell = grid[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile]
        np.testing.assert_array_equal(cell, np.kron(batch[index], np.ones((factor, factor, 1), np.uint8)))
    # Cells past the last image stay black.
    for index in range(count, rows * columns):
        row, column = divmod(index, columns)
        assert not grid[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile].any()


def test_tile_grid_columns_and_the_old_whole_grid_rule_no_longer_applies():
    batch = np.full((36, 32, 32, 3), 7, np.uint8)
    # 36 tiles of 32 px: the grid used to be 192 px (the whole grid compared with 256 / 6 px).
    assert images.tile_grid(batch, 64).shape == (384, 384, 3)
    assert images.tile_grid(batch, 64, columns=9).shape == (4 * 64, 9 * 64, 3)
    assert images.tile_grid(batch[:, :1, :1], 128).shape == (6 * 128, 6 * 128, 3)
