"""FID against an independent NumPy/SciPy computation, with a small random feature network."""

import keras
import numpy as np
import pytest
import scipy.linalg

from progan_tf.errors import UserInputError
from progan_tf.metrics import fid


def scipy_fid(mu1, s1, mu2, s2):
    """Textbook FID with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root))


def random_covariance(rng, dim, rank=None):
    factor = rng.normal(size=(dim, rank or 2 * dim))
    return factor @ factor.T / factor.shape[1]


def small_feature_model(size=32, dim=16, seed=0):
    """A randomly initialised network with the FID interface: images in [-1, 1] -> feature vectors."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(dim, activation="tanh"),
        ]
    )


def images(rng, n, size=32, noise=0.0):
    coarse = rng.uniform(0, 255, (n, 1, 1, 3)) * np.linspace(0.3, 1.0, size)[None, :, None, None]
    x = np.broadcast_to(coarse, (n, size, size, 3)) + rng.normal(0, 10 + noise, (n, size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    s1, s2 = random_covariance(rng, 20), random_covariance(rng, 20)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_fid(mu1, s1, mu2, s2), rel=1e-8)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_is_stable_for_singular_covariances():
    # Fewer samples than dimensions (rank 5 in 20-d): sqrtm of the singular product is ill-posed
    # for scipy, which needs the usual eps * I offset; our eigen route handles it directly.
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    s1, s2 = random_covariance(rng, 20, rank=5), random_covariance(rng, 20, rank=5)
    offset = 1e-6 * np.eye(20)
    expected = scipy_fid(mu1, s1 + offset, mu2, s2 + offset) - 2 * np.trace(offset)
    value = fid.frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-4)


def test_streaming_statistics_match_numpy():
    features = np.random.default_rng(2).normal(3.0, 2.0, size=(100, 7))
    stats = fid.FeatureStatistics()
    for chunk in np.array_split(features, 3):
        stats.update(chunk)
    mean, cov = stats.result()
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-10)


def test_fid_pipeline_matches_numpy_reference():
    rng = np.random.default_rng(3)
    model = small_feature_model()
    real, fake = images(rng, 80), images(rng, 80, noise=30)
    real_acc, fake_acc = fid.FIDFeatures(model, batch_size=32), fid.FIDFeatures(model, batch_size=32)
    for batch in np.array_split(real, 3):
        real_acc.update(batch)
    fake_acc.update(fake)
    value = fid.fid_result(real_acc, fake_acc)["fid"]

    def np_stats(x):
        feats = model.predict(x.astype(np.float64) / 127.5 - 1.0, verbose=0).astype(np.float64)
        return feats.mean(axis=0), np.cov(feats, rowvar=False)

    assert value == pytest.approx(scipy_fid(*np_stats(real), *np_stats(fake)), rel=1e-4)


def test_fid_properties_identical_zero_noised_worse():
    rng = np.random.default_rng(4)
    model = small_feature_model()
    a, b = images(rng, 100), images(rng, 100)
    noised_b = np.clip(b + rng.normal(0, 80, b.shape), 0, 255).astype(np.uint8)

    def score(x, y):
        acc_x, acc_y = fid.FIDFeatures(model), fid.FIDFeatures(model)
        acc_x.update(x)
        acc_y.update(y)
        return fid.fid_result(acc_x, acc_y)["fid"]

    assert score(a, a) == pytest.approx(0.0, abs=1e-9)
    assert score(a, noised_b) > 3 * score(a, b)


def test_images_are_resized_to_the_model_input():
    model = small_feature_model(size=48)
    acc = fid.FIDFeatures(model)
    acc.update(images(np.random.default_rng(5), 4, size=32))
    assert acc.num_images == 4
    x = fid.preprocess_for_features(np.full((1, 32, 32, 3), 255, np.uint8), 48)
    assert x.shape == (1, 48, 48, 3) and np.allclose(x, 1.0)


def test_missing_or_bad_weights_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="Received: inception_weights=None"):
        fid.load_feature_model(None)
    missing = tmp_path / "nope.h5"
    with pytest.raises(UserInputError, match=f"Received: inception_weights='{missing}'"):
        fid.load_feature_model(missing)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(UserInputError, match="InceptionV3 no-top weights"):
        fid.load_feature_model(garbage)
    other = tmp_path / "weights.npz"
    other.write_bytes(b"x")
    with pytest.raises(UserInputError, match="unknown FID weights file type"):
        fid.load_feature_model(other)


def test_keras_model_file_loads_as_feature_model(tmp_path):
    model = small_feature_model()
    path = tmp_path / "features.keras"
    model.save(path)
    loaded = fid.load_feature_model(path)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.slow
def test_inception_weights_file_loads_with_a_warning(tmp_path):
    path = tmp_path / "inception_notop.weights.h5"
    fid.inception_feature_model().save_weights(path)
    with pytest.warns(UserWarning, match="not comparable"):
        model = fid.load_feature_model(path)
    assert model.output_shape == (None, 2048)
