"""The separable image filter shared by the metrics (SWD's Laplacian pyramid, MS-SSIM's Gaussian window)."""

import tensorflow as tf

BORDERS = ("mirror", "valid")


def separable_filter(images, kernel_1d, border):
    """Filters NHWC float images with a separable kernel: along rows, then along columns, per channel.

    Args:
        images: float tensor (N, H, W, C).
        kernel_1d: 1-D taps (odd length for "mirror").
        border: "mirror" keeps the size by reflecting at the edges (d c b | a b c d | c b a: the edge
            pixel is not repeated, scipy's 'mirror'); "valid" keeps only outputs whose window lies
            inside the image, (N, H - K + 1, W - K + 1, C).

    Returns:
        The filtered tensor, in the dtype of `images`.

    Example:
        >>> separable_filter(tf.ones([1, 8, 8, 3]), [0.25, 0.5, 0.25], "valid").shape
        TensorShape([1, 6, 6, 3])
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}. Received: border={border!r}")
    if border == "mirror":
        radius = len(kernel_1d) // 2
        images = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    channels = images.shape[-1]
    kernel = tf.constant(kernel_1d, dtype=images.dtype)
    along_rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    along_columns = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    filtered = tf.nn.depthwise_conv2d(images, along_rows, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(filtered, along_columns, strides=[1, 1, 1, 1], padding="VALID")
