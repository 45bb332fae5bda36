"""Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) between consecutive image pairs (ProGAN, Sec. 5).

Protocol: pairs (0, 1), (2, 3), ... of generated images, 10,000 pairs by default; 5 scales with
weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]; 11x11 Gaussian window (sigma 1.5), 'valid'
filtering; K1 = 0.01, K2 = 0.03, dynamic range 255; 2x2 box average between scales. Scales 1-4
contribute their mean contrast-structure term cs, scale 5 the mean of luminance x cs. Means run over
all pixels and the three colour channels. Reported value: the mean over pairs (lower = more diverse).

Small images: the window must fit the image for 'valid' filtering (at scale 5 an image has 1/16 of
its size: 11 px there needs >= 176 px input). As in the paper's reference implementation, when a
scale is smaller than 11 px the window shrinks to the image size s and sigma to 1.5 * s / 11, so a
128 px image uses an 8x8 window at scale 5 (one output pixel) and a 32 px image 8, 4 and 2 px
windows at scales 3-5. Even-sized windows are centred between pixels (symmetric).
Odd sizes lose their last row/column at a 2x2 box downsampling (the protocol sizes are powers of two).
"""

import numpy as np
import tensorflow as tf

from progan_tf.errors import UserInputError
from progan_tf.metrics.filters import separable_filter

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MAX_VALUE = 255.0
DEFAULT_NUM_PAIRS = 10000


def gaussian_window(size, sigma):
    """1-D normalised Gaussian of `size` taps centred on the middle (between pixels if size is even)."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def window_for(image_size, filter_size=FILTER_SIZE, filter_sigma=FILTER_SIGMA):
    """The window used at a scale of `image_size` px: shrunk (size and sigma) when the image is smaller."""
    size = min(filter_size, image_size)
    return gaussian_window(size, filter_sigma * size / filter_size)


def ssim_terms(a, b, window_1d, max_value=MAX_VALUE, k1=K1, k2=K2):
    """Per-image means of the SSIM map (luminance x cs) and of the contrast-structure map cs.

    Args:
        a, b: float32 tensors (N, H, W, C) in [0, max_value].
        window_1d: separable Gaussian window (see `window_for`).

    Returns:
        (ssim, cs): float tensors (N,), means over the valid-filtered pixels and channels.
    """
    c1 = (k1 * max_value) ** 2
    c2 = (k2 * max_value) ** 2
    # One blur pass for all five moments (stacked on the batch axis) keeps the conv count low.
    stacked = tf.concat([a, b, a * a, b * b, a * b], axis=0)
    mu_a, mu_b, e_aa, e_bb, e_ab = tf.split(separable_filter(stacked, window_1d, "valid"), 5, axis=0)
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov_ab = e_ab - mu_a * mu_b
    cs_map = (2.0 * cov_ab + c2) / (var_a + var_b + c2)
    luminance_map = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    return tf.reduce_mean(luminance_map * cs_map, axis=[1, 2, 3]), tf.reduce_mean(cs_map, axis=[1, 2, 3])


def ms_ssim_pairs(a, b, weights=MS_SSIM_WEIGHTS, filter_size=FILTER_SIZE, filter_sigma=FILTER_SIGMA):
    """MS-SSIM of each pair (a[i], b[i]).

    Args:
        a, b: uint8 or float arrays/tensors (N, H, W, C) with values in [0, 255], same shape.
        weights: per-scale exponents, finest first; their count is the number of scales.
        filter_size, filter_sigma: Gaussian window at full size (shrunk on small scales).

    Returns:
        float64 numpy array (N,) of MS-SSIM values in [0, 1] (1 for identical images).

    Example:
        >>> x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        >>> ms_ssim_pairs(x, x)
        array([1., 1.])
    """
    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    if a.shape != b.shape or a.shape.rank != 4:
        raise UserInputError(
            f"MS-SSIM needs two image batches of one shape (N, H, W, C). Received: {a.shape} and {b.shape}"
        )
    min_size = 2 ** (len(weights) - 1)
    if min(a.shape[1], a.shape[2]) < min_size:
        raise UserInputError(
            f"MS-SSIM with {len(weights)} scales needs images of at least {min_size} px. Received: shape={a.shape}"
        )
    cs_terms = []
    for scale in range(len(weights)):
        window = window_for(min(a.shape[1], a.shape[2]), filter_size, filter_sigma)
        ssim, cs = ssim_terms(a, b, window)
        cs_terms.append(cs)
        if scale < len(weights) - 1:
            a = tf.nn.avg_pool2d(a, 2, 2, "VALID")
            b = tf.nn.avg_pool2d(b, 2, 2, "VALID")
    # Scales 1..M-1 use cs, scale M uses the full SSIM (luminance x cs). A negative mean cs (images
    # anti-correlated at that scale) would make the fractional power undefined; clamp it to 0.
    terms = tf.stack(cs_terms[:-1] + [ssim], axis=1)
    terms = tf.maximum(tf.cast(terms, tf.float64), 0.0)
    return tf.reduce_prod(terms ** tf.constant(weights, tf.float64), axis=1).numpy()


class MSSSIMAccumulator:
    """Streams uint8 batches and averages MS-SSIM over consecutive pairs (0,1), (2,3), ...

    Pairs run across batch boundaries: an odd image left at the end of a batch is paired with the
    first image of the next batch. Stops using images once `num_pairs` pairs are scored.

    Args:
        num_pairs: pairs to score (protocol: 10,000); None scores every pair it gets.

    Example:
        >>> acc = MSSSIMAccumulator(num_pairs=100)
        >>> for batch in batches: acc.update(batch)
        >>> acc.result()  # {"ms_ssim": 0.28, "ms_ssim_pairs": 100}
    """

    def __init__(self, num_pairs=DEFAULT_NUM_PAIRS, key="ms_ssim"):
        self.num_pairs = num_pairs
        self.key = key
        self._values = []
        self._scored = 0
        self._leftover = None

    @property
    def done(self):
        return self.num_pairs is not None and self._scored >= self.num_pairs

    def update(self, images):
        """Adds a uint8 batch (N, H, W, C); consecutive images form pairs."""
        images = np.asarray(images)
        if self._leftover is not None:
            images = np.concatenate([self._leftover, images])
            self._leftover = None
        usable = len(images) // 2
        if self.num_pairs is not None:
            usable = min(usable, self.num_pairs - self._scored)
        if usable <= 0:
            return
        pairs = images[: 2 * usable]
        self._values.append(ms_ssim_pairs(pairs[0::2], pairs[1::2]))
        self._scored += usable
        if len(images) % 2 == 1 and not self.done:
            self._leftover = images[-1:]

    def result(self):
        """Returns {key: mean MS-SSIM, key + "_pairs": number of pairs scored}."""
        if self._scored == 0:
            raise UserInputError("MS-SSIM needs at least one pair of images. Received: num_pairs=0")
        return {self.key: float(np.mean(np.concatenate(self._values))), f"{self.key}_pairs": self._scored}
