"""MS-SSIM against an independent NumPy/SciPy computation, plus its properties."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from progan_tf.errors import UserInputError
from progan_tf.metrics import ms_ssim

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def np_window_2d(image_size):
    size = min(11, image_size)
    sigma = 1.5 * size / 11
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def np_ms_ssim(a, b):
    """Wang et al. 2003 on one pair (H, W, C), float64, scipy 'valid' convolution per channel."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    terms = []
    for scale in range(5):
        window = np_window_2d(a.shape[0])

        def blur(x, window=window):
            return np.stack([scipy.signal.fftconvolve(x[..., c], window, mode="valid") for c in range(x.shape[-1])], -1)

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        cs = (2 * cov + c2) / (var_a + var_b + c2)
        lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        terms.append(np.mean(cs) if scale < 4 else np.mean(lum * cs))
        box = np.ones((2, 2, 1)) / 4
        a, b = [scipy.ndimage.convolve(x, box, mode="reflect")[::2, ::2] for x in (a, b)]
    return np.prod(np.maximum(terms, 0.0) ** WEIGHTS)  # negative means clamp to 0, as documented


def faces_like(rng, n, size):
    """Smooth random images with some texture, uint8."""
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    base = scipy.ndimage.zoom(coarse, (1, size / 4, size / 4, 1), order=3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [128, 32])
def test_ms_ssim_matches_numpy_reference(size):
    rng = np.random.default_rng(size)
    a, b = faces_like(rng, 3, size), faces_like(rng, 3, size)
    b[0] = np.clip(a[0] + rng.normal(0, 30, a[0].shape), 0, 255)  # one similar pair
    ours = ms_ssim.ms_ssim_pairs(a, b)
    expected = [np_ms_ssim(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, expected, rtol=2e-4)
    assert ours[0] > ours[1]


def test_windows_shrink_on_small_scales():
    assert len(ms_ssim.window_for(128)) == 11
    small = ms_ssim.window_for(4)
    assert len(small) == 4 and small.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(small, small[::-1])  # even windows are centred


def test_identical_pairs_score_one_and_unrelated_images_low():
    rng = np.random.default_rng(0)
    images = faces_like(rng, 4, 64)
    np.testing.assert_allclose(ms_ssim.ms_ssim_pairs(images, images), 1.0, rtol=1e-5)
    noise = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    assert ms_ssim.ms_ssim_pairs(noise[:2], noise[2:]).max() < 0.1


def test_accumulator_pairs_consecutive_images_across_batches():
    rng = np.random.default_rng(1)
    images = faces_like(rng, 10, 32)
    acc = ms_ssim.MSSSIMAccumulator(num_pairs=4)
    for batch in (images[:3], images[3:6], images[6:]):  # odd batch sizes split pairs
        acc.update(batch)
    expected = np.mean(ms_ssim.ms_ssim_pairs(images[0:8:2], images[1:8:2]))
    result = acc.result()
    assert result["ms_ssim_pairs"] == 4
    assert result["ms_ssim"] == pytest.approx(expected, rel=1e-6)


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserInputError, match="at least 16 px"):
        ms_ssim.ms_ssim_pairs(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
    with pytest.raises(UserInputError, match="num_pairs=0"):
        ms_ssim.MSSSIMAccumulator().result()
