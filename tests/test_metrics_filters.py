"""The metrics' one separable filter against SciPy's correlation (an asymmetric kernel pins the orientation)."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from progan_tf.metrics.filters import separable_filter

KERNEL = np.array([0.1, 0.2, 0.4, 0.3])  # asymmetric: rows and columns, correlation not convolution


def scipy_reference(images, kernel, mode):
    out = scipy.ndimage.correlate1d(images, kernel, axis=1, mode=mode, origin=-1 if len(kernel) % 2 == 0 else 0)
    return scipy.ndimage.correlate1d(out, kernel, axis=2, mode=mode, origin=-1 if len(kernel) % 2 == 0 else 0)


def test_mirror_border_matches_scipy_mirror():
    images = np.random.default_rng(0).normal(size=(2, 9, 7, 3))
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 2.0]) / 17.0
    got = separable_filter(tf.constant(images), kernel, "mirror").numpy()
    np.testing.assert_allclose(got, scipy_reference(images, kernel, "mirror"), rtol=1e-10, atol=1e-12)


def test_valid_border_keeps_the_full_windows():
    images = np.random.default_rng(1).normal(size=(2, 9, 8, 2)).astype(np.float32)
    got = separable_filter(tf.constant(images), KERNEL, "valid").numpy()
    assert got.shape == (2, 6, 5, 2) and got.dtype == np.float32
    expected = np.zeros((2, 6, 5, 2))
    for i in range(6):
        for j in range(5):
            window = images[:, i : i + 4, j : j + 4, :].astype(np.float64)
            expected[:, i, j, :] = np.einsum("nhwc,h,w->nc", window, KERNEL, KERNEL)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unknown_border_is_rejected():
    with pytest.raises(ValueError, match="Received: border='same'"):
        separable_filter(tf.zeros([1, 4, 4, 1]), KERNEL, "same")
