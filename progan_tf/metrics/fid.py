"""Fréchet Inception Distance (Heusel et al. 2017) with streaming feature statistics.

FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)) over Inception-v3 pool features
(2048-d). Images are resized to the feature model's input size (299) with bilinear interpolation
and scaled to [-1, 1]. Mean and covariance are accumulated in float64 as the feature sum and the
sum of outer products, so memory is O(d^2) (32 MB for d = 2048) whatever the image count.

Matrix square root: only its trace is needed, and tr((S_r S_f)^(1/2)) = sum_i sqrt(lambda_i) where
lambda_i are the eigenvalues of S_r S_f. Those equal the eigenvalues of the symmetric PSD matrix
R S_f R with R = S_r^(1/2) (a similarity transform), so two symmetric eigen-decompositions give the
trace with real arithmetic, no imaginary parts to drop and no failure when the covariances are
singular (fewer images than feature dimensions); tiny negative eigenvalues from rounding are clipped
to 0. This needs only NumPy; tests check it against scipy.linalg.sqrtm.

Weights (no download is possible here; `load_feature_model(path)` reads a local file):
  * `.keras`: a whole saved Keras model mapping (N, 299, 299, 3) images in [-1, 1] to (N, 2048) pool
    features. This is how the standard FID network (the 2015-12-05 TF Inception graph, pool_3)
    must be supplied after converting it to Keras; only that network gives values comparable with
    the literature.
  * `.h5` / `.weights.h5`: weights for `keras.applications.InceptionV3(include_top=False,
    pooling="avg")`, e.g. Keras' `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`. Its
    ImageNet weights differ from the FID graph, so a warning says values are not comparable.
"""

import pathlib
import warnings

import keras
import numpy as np
import tensorflow as tf

from progan_tf.errors import UserInputError

INCEPTION_SIZE = 299
ACCEPTED_WEIGHTS = (
    "a .keras model file mapping (N,299,299,3) images in [-1,1] to (N,2048) features (e.g. the FID "
    "Inception converted to Keras), or InceptionV3 no-top weights (.h5 / .weights.h5)"
)


def inception_feature_model():
    """Keras InceptionV3 without the classifier, global-average pooled: (N,299,299,3) -> (N,2048)."""
    return keras.applications.InceptionV3(
        include_top=False, pooling="avg", weights=None, input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3)
    )


def load_feature_model(path):
    """Loads the FID feature network from a local file (see the module docstring for the formats).

    Args:
        path: str or Path to a `.keras`, `.h5` or `.weights.h5` file.

    Returns:
        A Keras model mapping float images in [-1, 1] to feature vectors.

    Example:
        >>> model = load_feature_model("~/weights/fid_inception.keras")
    """
    if path is None:
        raise UserInputError(
            f"FID needs Inception weights: pass inception_weights=PATH to {ACCEPTED_WEIGHTS}. "
            "Received: inception_weights=None"
        )
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(
            f"FID Inception weights file not found; expected {ACCEPTED_WEIGHTS}. "
            f"Received: inception_weights={str(path)!r}"
        )
    try:
        if path.name.endswith(".keras"):
            return keras.models.load_model(path, compile=False)
        if path.name.endswith(".h5"):
            model = inception_feature_model()
            model.load_weights(path)
            warnings.warn(
                f"FID uses Keras InceptionV3 weights from {path}; these are not the FID Inception graph, "
                "so FID values are not comparable with published numbers.",
                stacklevel=2,
            )
            return model
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise UserInputError(
            f"could not load FID Inception weights ({error}); expected {ACCEPTED_WEIGHTS}. "
            f"Received: inception_weights={str(path)!r}"
        ) from error
    raise UserInputError(
        f"unknown FID weights file type; expected {ACCEPTED_WEIGHTS}. Received: inception_weights={str(path)!r}"
    )


def preprocess_for_features(images, size):
    """uint8 (N,H,W,3) -> float32 (N,size,size,3) in [-1, 1], bilinear resize (skipped if already size)."""
    x = tf.cast(images, tf.float32)
    if x.shape[1] != size or x.shape[2] != size:
        x = tf.image.resize(x, (size, size), method="bilinear")
    return x / 127.5 - 1.0


class FeatureStatistics:
    """Streaming mean and covariance of feature vectors in float64.

    Example:
        >>> stats = FeatureStatistics()
        >>> stats.update(np.ones((4, 8))); stats.update(np.zeros((4, 8)))
        >>> mean, cov = stats.result()
    """

    def __init__(self):
        self.count = 0
        self._sum = None
        self._outer = None

    def update(self, features):
        """Adds a (N, D) batch of feature vectors."""
        f = np.asarray(features, dtype=np.float64)
        if self._sum is None:
            self._sum = np.zeros(f.shape[1])
            self._outer = np.zeros((f.shape[1], f.shape[1]))
        self.count += len(f)
        self._sum += f.sum(axis=0)
        self._outer += f.T @ f

    def result(self):
        """Returns (mean (D,), covariance (D, D)) with the unbiased (N - 1) normalisation."""
        if self.count < 2:
            raise UserInputError(f"FID needs at least 2 images per side. Received: num_images={self.count}")
        mean = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def _symmetric_sqrt(matrix):
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(cov_a, cov_b):
    """tr((cov_a cov_b)^(1/2)) for symmetric PSD covariances, via sqrt eigenvalues of R cov_b R."""
    root_a = _symmetric_sqrt(cov_a)
    eigenvalues = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """Fréchet distance between Gaussians N(mean_a, cov_a) and N(mean_b, cov_b).

    Example:
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
        2.0
    """
    diff = mean_a - mean_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_product(cov_a, cov_b)
    return float(value)


class FIDFeatures:
    """Streams uint8 batches through a feature model into `FeatureStatistics`.

    Args:
        feature_model: Keras model mapping float images in [-1, 1] to (N, D) features; images are
            resized to its input size (299 when the model does not fix one).
        batch_size: images per forward pass (bounds memory: 299x299x3 float32 is 1 MB per image).

    Example:
        >>> real, fake = FIDFeatures(model), FIDFeatures(model)
        >>> real.update(real_batch); fake.update(fake_batch)
        >>> fid_result(real, fake)  # {"fid": 12.3}
    """

    def __init__(self, feature_model, batch_size=64):
        self.feature_model = feature_model
        self.batch_size = batch_size
        input_size = feature_model.input_shape[1]
        self.input_size = input_size if input_size is not None else INCEPTION_SIZE
        self.statistics = FeatureStatistics()

    def update(self, images):
        """Adds a uint8 batch (N, H, W, 3)."""
        for start in range(0, len(images), self.batch_size):
            x = preprocess_for_features(images[start : start + self.batch_size], self.input_size)
            self.statistics.update(self.feature_model.predict_on_batch(x))

    @property
    def num_images(self):
        return self.statistics.count


def fid_result(real, fake):
    """Returns {"fid": value} from two `FIDFeatures` accumulators."""
    return {"fid": frechet_distance(*real.statistics.result(), *fake.statistics.result())}
