"""The fade-in blend between a network's old and new resolution paths."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="progan_tf")
class WeightedSum(keras.layers.Layer):
    """Returns `old + alpha * (new - old)` for inputs `[old, new]`.

    `alpha` (the weight of the newly added layers) lives in a non-trainable variable, so a
    training loop moves it every step with `set_alpha` without retracing compiled functions.

    Args:
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> fade = WeightedSum()
    >>> fade.set_alpha(0.25)
    >>> fade([np.zeros((1, 2)), np.ones((1, 2))])  # -> 0.25
    """

    def build(self, input_shape):
        if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2):
            raise ValueError(f"WeightedSum takes a list [old, new]. Received: input_shape={input_shape}")
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="zeros", trainable=False)

    def set_alpha(self, value):
        if not self.built:
            self.build([(), ()])
        self.alpha.assign(value)

    def call(self, inputs):
        old, new = inputs
        alpha = ops.cast(self.alpha, old.dtype)
        return old + alpha * (new - old)

    def compute_output_shape(self, input_shape):
        return input_shape[0]
