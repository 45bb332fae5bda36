"""The one random draw of generator latents, shared by generate, evaluate, explain and the export.

`seeded_latents(seed, n, latent_size)` depends only on its arguments (a stateless draw), so one
`--generate_seed` gives the same latents, and so the same images, in `--mode=generate`,
`--mode=evaluate`, `--mode=explain`, from a checkpoint and from the exported SavedModel (whose
`generate_from_seed(seed, n)` endpoint runs this same op in its graph). The first k latents of a
draw of n are the draw of k, so a longer run with the same seed extends a shorter one.
"""

import tensorflow as tf


def seeded_latents(seed, num_images, latent_size):
    """Standard-normal latents, float32 (num_images, latent_size), a pure function of the arguments.

    Args:
        seed: integer seed (Python int or int64 tensor).
        num_images: number of latents (Python int or int32 tensor).
        latent_size: latent dimension.

    Returns:
        A float32 `tf.Tensor` (use `.numpy()` for an array); also usable inside a `tf.function`.

    Example:
        >>> seeded_latents(0, 4, 512).shape
        TensorShape([4, 512])
    """
    return tf.random.stateless_normal(
        tf.stack([num_images, latent_size]), seed=tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    )
