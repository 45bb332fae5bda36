"""Equalized learning rate (Karras et al. 2018, section 4.1).

Weights are drawn from N(0, 1) and multiplied at run time by the He constant
`gain / sqrt(fan_in)`, so that Adam's per-parameter step size acts on all layers at the same
effective rate. Biases start at zero and are never scaled.
"""

import math

import keras
from keras import ops

_RESAMPLE_MODES = (None, "up", "down")


def he_scale(fan_in, gain):
    """The run-time weight multiplier `gain / sqrt(fan_in)`."""
    return gain / math.sqrt(fan_in)


@keras.saving.register_keras_serializable(package="progan_tf")
class EqualizedDense(keras.layers.Layer):
    """Fully connected layer with the equalized-learning-rate weight scale.

    Args:
        units: Number of output features.
        gain: Multiplier of the He constant; `sqrt(2)` for layers followed by a leaky ReLU, `1` for
            linear outputs. ProGAN's first generator layer uses `sqrt(2) / 4`.
        use_bias: Whether to add a (never scaled) bias.
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> layer = EqualizedDense(8, gain=1.0)
    >>> layer(np.ones((2, 4), "float32")).shape
    (2, 8)
    """

    def __init__(self, units, gain=math.sqrt(2.0), use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"`units` must be a positive integer. Received: units={units}")
        self.units = int(units)
        self.gain = float(gain)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.scale = he_scale(fan_in, self.gain)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(fan_in, self.units),
            initializer=keras.initializers.RandomNormal(0.0, 1.0),
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.kernel * self.scale)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "gain": self.gain, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="progan_tf")
class EqualizedConv2D(keras.layers.Layer):
    """Stride-1 "same" 2D convolution (NHWC) with the equalized-learning-rate weight scale.

    With `resample="up"` the layer computes nearest-neighbour 2x upsampling followed by the
    convolution as one transposed convolution whose 4x4 kernel is the sum of the four shifted
    copies of the 3x3 kernel; with `resample="down"` it computes the convolution followed by 2x2
    average pooling as one stride-2 convolution. Both are mathematically identical to the
    two-step path and share its weights, but touch 4x fewer pixels.

    Args:
        filters: Number of output channels.
        kernel_size: Odd square kernel size.
        gain: Multiplier of the He constant (`sqrt(2)` before a leaky ReLU, `1` for `to_rgb`).
        use_bias: Whether to add a (never scaled) bias.
        resample: `None`, `"up"` or `"down"` (fused resampling, see above; needs an odd kernel).
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> conv = EqualizedConv2D(16, 3, resample="up")
    >>> conv(np.ones((1, 4, 4, 8), "float32")).shape
    (1, 8, 8, 16)
    """

    def __init__(self, filters, kernel_size, gain=math.sqrt(2.0), use_bias=True, resample=None, **kwargs):
        super().__init__(**kwargs)
        if int(filters) <= 0:
            raise ValueError(f"`filters` must be a positive integer. Received: filters={filters}")
        if int(kernel_size) <= 0 or int(kernel_size) % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd integer. Received: kernel_size={kernel_size}")
        if resample not in _RESAMPLE_MODES:
            raise ValueError(f"`resample` must be one of {_RESAMPLE_MODES}. Received: resample={resample!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.gain = float(gain)
        self.use_bias = bool(use_bias)
        self.resample = resample

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.scale = he_scale(self.kernel_size * self.kernel_size * in_channels, self.gain)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=keras.initializers.RandomNormal(0.0, 1.0),
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def _summed_shifted_kernel(self, kernel):
        # Sum of the kernel placed at the four offsets of a 2x2 pixel block: (k+1)x(k+1).
        padded = ops.pad(kernel, [[1, 1], [1, 1], [0, 0], [0, 0]])
        return padded[1:, 1:] + padded[:-1, 1:] + padded[1:, :-1] + padded[:-1, :-1]

    def call(self, inputs):
        kernel = self.kernel * self.scale
        if self.resample == "up":
            # A transposed convolution correlates with the spatially flipped kernel, and takes
            # kernels as (h, w, out_channels, in_channels).
            kernel = self._summed_shifted_kernel(ops.flip(kernel, axis=(0, 1)))
            kernel = ops.transpose(kernel, (0, 1, 3, 2))
            outputs = ops.conv_transpose(inputs, kernel, strides=2, padding="same")
        elif self.resample == "down":
            kernel = self._summed_shifted_kernel(kernel) * 0.25
            outputs = ops.conv(inputs, kernel, strides=2, padding="same")
        else:
            outputs = ops.conv(inputs, kernel, strides=1, padding="same")
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        factor = {"up": 2.0, "down": 0.5, None: 1.0}[self.resample]
        resize = lambda size: None if size is None else int(size * factor)  # noqa: E731
        return (batch, resize(height), resize(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "gain": self.gain,
                "use_bias": self.use_bias,
                "resample": self.resample,
            }
        )
        return config
