"""The one power-of-two resolution check."""

import numpy as np
import pytest

from progan_tf.errors import UserInputError
from progan_tf.metrics.swd import pyramid_resolutions
from progan_tf.resolutions import resolution_log2


def test_powers_of_two_in_range_give_their_exponent():
    assert [resolution_log2(2**k) for k in range(2, 11)] == list(range(2, 11))
    assert resolution_log2(np.int64(64)) == 6
    assert resolution_log2(4096, maximum=None) == 12


@pytest.mark.parametrize("value", [0, 2, 3, 12, 100, 2048, -4, 8.0, True, "8"])
def test_everything_else_is_one_line_naming_the_value(value):
    with pytest.raises(
        UserInputError,
        match=rf"^resolution must be a power of two between 4 and 1024\. "
        rf"Received: resolution={value}$",
    ):
        resolution_log2(value)


def test_swd_levels_use_it_with_their_own_minimum():
    assert pyramid_resolutions(128) == [128, 64, 32, 16]
    with pytest.raises(UserInputError, match="power of two >= 16. Received: SWD resolution=8"):
        pyramid_resolutions(8)
    with pytest.raises(UserInputError, match="Received: SWD resolution=48"):
        pyramid_resolutions(48)
