"""ProGAN's custom Keras layers."""

from progan_tf.layers.channel_bias import ChannelBias
from progan_tf.layers.equalized import EqualizedConv2D, EqualizedDense
from progan_tf.layers.minibatch_stddev import MinibatchStdDev
from progan_tf.layers.pixel_norm import PixelNormalization
from progan_tf.layers.weighted_sum import WeightedSum

__all__ = [
    "ChannelBias",
    "EqualizedConv2D",
    "EqualizedDense",
    "MinibatchStdDev",
    "PixelNormalization",
    "WeightedSum",
]
