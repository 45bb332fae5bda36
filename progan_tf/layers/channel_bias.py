"""A learned per-channel bias."""

import keras


@keras.saving.register_keras_serializable(package="progan_tf")
class ChannelBias(keras.layers.Layer):
    """Adds a learned bias per channel (last axis), initialised to zero.

    ProGAN's generator projects the latent to a 4x4 feature map without a bias and adds one bias
    per channel after the reshape (512 parameters, not 4*4*512).

    Args:
        **kwargs: Base `keras.layers.Layer` arguments.
    """

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),), initializer="zeros")

    def call(self, inputs):
        return inputs + self.bias

    def compute_output_shape(self, input_shape):
        return input_shape
