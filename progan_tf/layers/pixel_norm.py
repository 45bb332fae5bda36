"""Pixelwise feature vector normalization (Karras et al. 2018, section 4.2)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="progan_tf")
class PixelNormalization(keras.layers.Layer):
    """Scales each feature vector (the last axis) to unit root-mean-square.

    `y = x * rsqrt(mean(x**2, axis=-1) + epsilon)`, computed in float32 also under mixed precision.
    Used on the latent vector and after every generator activation.

    Args:
        epsilon: Added to the mean square for stability.
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> PixelNormalization()(np.full((1, 2, 2, 4), 3.0, "float32"))[0, 0, 0]  # -> ones
    """

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        normalized = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(normalized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
