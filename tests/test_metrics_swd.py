"""SWD against an independent NumPy/SciPy computation, plus its properties."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from progan_tf.errors import UserInputError
from progan_tf.metrics import swd

BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def smooth_images(rng, n, size=32):
    """Random colour images: a smooth background with sharp-edged discs (edges like natural images), uint8."""
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    images = scipy.ndimage.zoom(coarse, (1, size / 4, size / 4, 1), order=1)
    yy, xx = np.mgrid[:size, :size]
    for image in images:
        for _ in range(6):
            cy, cx, radius = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, size / 4)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
    return np.clip(images, 0, 255).astype(np.uint8)


def np_blur(images, kernel):
    out = scipy.ndimage.convolve1d(images, kernel, axis=1, mode="mirror")
    return scipy.ndimage.convolve1d(out, kernel, axis=2, mode="mirror")


def np_laplacian_pyramid(images, min_resolution=16):
    levels, current = [], images.astype(np.float64)
    while current.shape[1] > min_resolution:
        smaller = np_blur(current, BINOMIAL)[:, ::2, ::2]
        expanded = np.zeros_like(current)
        expanded[:, ::2, ::2] = smaller
        levels.append(current - np_blur(expanded, 2 * BINOMIAL))
        current = smaller
    return levels + [current]


def np_patches(level, rows, cols, size=7):
    out = [level[i, r : r + size, c : c + size, :].ravel() for i in range(len(level)) for r, c in zip(rows[i], cols[i])]
    return np.array(out)


def np_swd(a, b, directions):
    def standardise(d):
        px = d.reshape(-1, 3)
        return ((px - px.mean(axis=0)) / px.std(axis=0)).reshape(d.shape)

    a, b = standardise(a), standardise(b)
    dists = [np.mean(np.abs(np.sort(a @ dirs, axis=0) - np.sort(b @ dirs, axis=0))) for dirs in directions]
    return np.mean(dists)


def test_laplacian_pyramid_matches_scipy_burt_adelson():
    images = smooth_images(np.random.default_rng(0), 3, size=64)
    ours = swd.laplacian_pyramid(tf.constant(images, tf.float32))
    ref = np_laplacian_pyramid(images)
    assert [lvl.shape[1] for lvl in ours] == [64, 32, 16]
    for mine, theirs in zip(ours, ref):
        np.testing.assert_allclose(mine.numpy(), theirs, atol=1e-3)


def test_pyramid_reconstructs_the_image():
    images = smooth_images(np.random.default_rng(1), 2)
    fine, coarse = swd.laplacian_pyramid(tf.constant(images, tf.float32))
    np.testing.assert_allclose((fine + swd.pyramid_up(coarse)).numpy(), images, atol=1e-3)


def test_swd_pipeline_matches_numpy_reference():
    rng = np.random.default_rng(2)
    real, fake = smooth_images(rng, 6), smooth_images(rng, 6)
    real_acc, fake_acc = swd.SWDDescriptors(seed=11), swd.SWDDescriptors(seed=12)
    real_acc.update(real[:4]), real_acc.update(real[4:])
    fake_acc.update(fake)
    result = swd.swd_result(real_acc, fake_acc, seed=5)

    # Same random draws as the accumulators: seeded patch corners per batch and level, then
    # one seeded direction set per level.
    def np_descriptors(batches, seed):
        corner_rng = np.random.default_rng(seed)
        per_level = {32: [], 16: []}
        for batch in batches:
            for res, level in zip((32, 16), np_laplacian_pyramid(batch)):
                rows, cols = swd.random_patch_corners(corner_rng, len(batch), res)
                per_level[res].append(np_patches(level, rows, cols))
        return {res: np.concatenate(d) for res, d in per_level.items()}

    real_desc = np_descriptors([real[:4], real[4:]], 11)
    fake_desc = np_descriptors([fake], 12)
    direction_rng = np.random.default_rng(5)
    expected = {}
    for res in (32, 16):
        directions = swd.random_directions(147, seed=direction_rng.integers(2**63))
        expected[f"swd_{res}"] = 1e3 * np_swd(real_desc[res], fake_desc[res], directions)
    expected["swd_avg"] = np.mean(list(expected.values()))
    assert result.keys() == expected.keys()
    for key in expected:
        assert result[key] == pytest.approx(expected[key], rel=1e-4), key


def test_random_directions_are_unit_vectors():
    dirs = swd.random_directions(147, seed=0)
    assert len(dirs) == 4 and dirs[0].shape == (147, 128)
    np.testing.assert_allclose(np.linalg.norm(dirs[2], axis=0), 1.0, rtol=1e-5)


def _swd(real, fake, real_seed=1, fake_seed=2):
    real_acc, fake_acc = swd.SWDDescriptors(seed=real_seed), swd.SWDDescriptors(seed=fake_seed)
    real_acc.update(real)
    fake_acc.update(fake)
    return swd.swd_result(real_acc, fake_acc)


def test_identical_sets_score_near_zero_and_degraded_sets_worse():
    rng = np.random.default_rng(3)
    real = smooth_images(rng, 48)
    assert _swd(real, real, 1, 1)["swd_avg"] == 0.0  # same patches: exactly zero
    same = _swd(real, real)["swd_avg"]  # other patches of the same images: sampling noise only
    blurred = np.clip(scipy.ndimage.gaussian_filter(real.astype(float), (0, 1.2, 1.2, 0)), 0, 255).astype(np.uint8)
    noised = np.clip(real + rng.normal(0, 25, real.shape), 0, 255).astype(np.uint8)
    blurred_swd = _swd(real, blurred)
    noised_swd = _swd(real, noised)
    assert same < 0.5 * blurred_swd["swd_avg"]
    assert same < 0.5 * noised_swd["swd_avg"]
    assert blurred_swd["swd_32"] > blurred_swd["swd_16"]  # blur removes fine detail first


def test_reservoir_caps_descriptors_with_a_uniform_sample():
    images = smooth_images(np.random.default_rng(4), 8)
    capped = swd.SWDDescriptors(seed=0, max_descriptors_per_level=300)
    for batch in np.split(images, 4):  # 4 batches x 256 descriptors per level
        capped.update(batch)
    full = swd.SWDDescriptors(seed=0)
    for batch in np.split(images, 4):
        full.update(batch)
    kept = capped.descriptors()[32]
    all_rows = full.descriptors()[32]
    assert kept.shape == (300, 147)
    # Kept rows are actual descriptors (same patch positions as uncapped), drawn from every batch.
    row_index = {row.tobytes(): i for i, row in enumerate(all_rows)}
    batch_of_kept = np.array([row_index[row.tobytes()] for row in kept]) // 256
    assert set(batch_of_kept) == {0, 1, 2, 3}


def test_unequal_counts_and_bad_sizes_are_user_errors():
    rng = np.random.default_rng(5)
    with pytest.raises(UserInputError, match="Received: real=768, fake=1024"):
        _swd(smooth_images(rng, 6), smooth_images(rng, 8))
    with pytest.raises(UserInputError, match="power of two >= 16. Received: SWD resolution=24"):
        swd.SWDDescriptors().update(np.zeros((2, 24, 24, 3), np.uint8))
