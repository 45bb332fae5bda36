"""progan-tf: Progressive Growing of GANs (Karras et al., ICLR 2018) in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
