"""Image resolutions: powers of two from 4x4 up to 1024x1024.

TensorFlow-free, so the dataset builder's worker processes can import it cheaply.
"""

import numbers

from progan_tf.errors import UserInputError

MIN_RESOLUTION = 4
MAX_RESOLUTION = 1024


def resolution_log2(resolution, name="resolution", minimum=MIN_RESOLUTION, maximum=MAX_RESOLUTION):
    """log2 of a power-of-two `resolution` in [minimum, maximum]; a UserInputError naming `name` otherwise.

    Args:
        resolution: the value to check (an integer; bools are refused).
        name: what the error message calls the value, e.g. "batch_sizes resolution".
        minimum: smallest accepted resolution.
        maximum: largest accepted resolution (None: no upper bound).

    Returns:
        The exponent, e.g. 7 for 128.

    Example:
        >>> resolution_log2(128)
        7
    """
    valid = (
        isinstance(resolution, numbers.Integral)
        and not isinstance(resolution, bool)
        and minimum <= resolution
        and (maximum is None or resolution <= maximum)
        and resolution & (resolution - 1) == 0
    )
    if not valid:
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise UserInputError(f"{name} must be a power of two {bounds}. Received: {name}={resolution}")
    return int(resolution).bit_length() - 1
