"""Minibatch standard deviation (Karras et al. 2018, section 3)."""

import keras
from keras import ops

from progan_tf.errors import UserInputError


def checked_group_size(batch_size, group_size, batch_name="The batch"):
    """The group size G = min(group_size, batch_size) that `MinibatchStdDev(group_size)` uses on a batch.

    The one check that a batch splits into minibatch-stddev groups, made by the layer itself and,
    before any work, for every phase of a run.

    Args:
        batch_size: samples in the batch the layer sees (per replica under a distribution strategy).
        group_size: the layer's `group_size`.
        batch_name: how the error message calls the batch, e.g. "The 16x16 batch size".

    Returns:
        The group size G.

    Raises:
        UserInputError (a ValueError): G does not divide `batch_size`.
    """
    group = min(int(group_size), int(batch_size))
    if batch_size % group:
        raise UserInputError(
            f"{batch_name} must be divisible by the minibatch-stddev group size {group}. "
            f"Received: batch_size={batch_size}"
        )
    return group


@keras.saving.register_keras_serializable(package="progan_tf")
class MinibatchStdDev(keras.layers.Layer):
    """Appends one feature map holding the average feature standard deviation of a sample group.

    The batch of N samples is split into N/G groups with strided membership: group m holds
    samples m, m + N/G, m + 2N/G, ... (a reshape to [G, N/G, ...]). For each group the (biased)
    standard deviation over its G members is averaged over height, width and channels, giving
    one scalar that is broadcast to an extra channel of every member. Computed in float32.

    Args:
        group_size: Upper bound on G; G = min(group_size, N), and N must be divisible by G.
        epsilon: Added to the variance before the square root.
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> MinibatchStdDev(group_size=4)(np.zeros((8, 4, 4, 16), "float32")).shape
    (8, 4, 4, 17)
    """

    def __init__(self, group_size=4, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if int(group_size) < 1:
            raise ValueError(f"`group_size` must be >= 1. Received: group_size={group_size}")
        self.group_size = int(group_size)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        batch_size = x.shape[0]
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        if batch_size is not None:
            group_size = checked_group_size(batch_size, self.group_size, f"The batch of {self.name}")
        else:
            batch_size = ops.shape(x)[0]
            group_size = ops.minimum(self.group_size, batch_size)
        grouped = ops.reshape(x, (group_size, -1, height, width, channels))
        variance = ops.var(grouped, axis=0)
        stddev = ops.sqrt(variance + self.epsilon)
        per_group = ops.mean(stddev, axis=(1, 2, 3), keepdims=True)
        feature = ops.tile(per_group, (group_size, height, width, 1))
        return ops.cast(ops.concatenate([x, feature], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)

    def get_config(self):
        config = super().get_config()
        config.update({"group_size": self.group_size, "epsilon": self.epsilon})
        return config
