"""Reading the authors' network pickles without running anything they contain.

A pickle is a program: loading one calls whatever functions it names. The official loader goes
further and `exec`s the network source stored inside. Here a restricted `pickle.Unpickler`
resolves exactly these globals and refuses every other one before it is called:

- `tfutil.Network` (TF1 format) and `network.Network` (Theano format), mapped to plain state
  holders (`PickledNetwork`) that only keep the dict given to `__setstate__`;
- NumPy's array reconstruction: `numpy.core.multiarray._reconstruct` (`numpy._core` under
  NumPy 2), `numpy.ndarray`, `numpy.dtype`, `numpy.core.multiarray.scalar` (and `numpy._core`);
- `_codecs.encode`, only as Python 3 writes bytes in protocol 2 pickles (a latin-1 string to
  bytes); any other use is refused.

`build_module_src` (the network source) is kept as a string and never run.
"""

import pathlib
import pickle

import numpy as np

from progan_tf.errors import UserInputError


class PickledNetwork:
    """The state of one of the authors' network objects: `self.state`, a dict; nothing runs."""

    source_format = None

    def __setstate__(self, state):
        self.state = state


class TF1PickledNetwork(PickledNetwork):
    """A `tfutil.Network` of the authors' TF1 code."""

    source_format = "tf1"


class TheanoPickledNetwork(PickledNetwork):
    """A `network.Network` of the paper's Theano code."""

    source_format = "theano"


def _latin1_bytes(text, encoding):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UserInputError(
            "the pickle calls _codecs.encode other than to rebuild bytes from a latin-1 string, which an "
            f"official network pickle never does. Received: _codecs.encode(..., {encoding!r})"
        )
    return text.encode("latin1")


# NumPy names its reconstruction functions by the module that defines them (numpy.core in 1.x,
# numpy._core in 2.x); take the functions themselves from how this NumPy pickles an array.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]

ALLOWED_GLOBALS = {
    ("tfutil", "Network"): TF1PickledNetwork,
    ("network", "Network"): TheanoPickledNetwork,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("_codecs", "encode"): _latin1_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS`; any other global is a UserInputError.

    Args:
        file: Binary file object of the pickle.
        source: Path shown in error messages.
    """

    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UserInputError(
                f"{self.source} refers to the global {module}.{name}, which an official ProGAN network pickle "
                f"never holds; refusing to load it (nothing in the file was run). Received: global={module}.{name}"
            )
        return allowed

    def persistent_load(self, pid):
        raise UserInputError(
            f"{self.source} uses persistent ids, which an official ProGAN network pickle never does; refusing "
            f"to load it. Received: persistent_id={pid!r}"
        )


def load_network_pickle(path):
    """Reads the `(G, D, Gs)` tuple of an official network pickle with `RestrictedUnpickler`.

    Args:
        path: The `.pkl` file.

    Returns:
        A tuple of three `PickledNetwork` objects of one format.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserInputError(f"network pickle not found. Received: pickle={path}")
    try:
        with open(path, "rb") as handle:
            loaded = RestrictedUnpickler(handle, path).load()
    except UserInputError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to parse untrusted bytes is a bad file
        raise UserInputError(
            f"{path} is not a readable network pickle ({type(error).__name__}: {error}); expected the authors' "
            f"(G, D, Gs) pickle. Received: pickle={path}"
        ) from None
    if (
        not isinstance(loaded, (tuple, list))
        or len(loaded) != 3
        or not all(
            isinstance(item, PickledNetwork) and isinstance(getattr(item, "state", None), dict) for item in loaded
        )
    ):
        raise UserInputError(
            f"{path} does not hold the tuple (G, D, Gs) of three networks that official ProGAN pickles hold. "
            f"Received: {type(loaded).__name__} of {_describe(loaded)}"
        )
    formats = {item.source_format for item in loaded}
    if len(formats) != 1:
        raise UserInputError(f"{path} mixes TF1 and Theano networks. Received: formats={sorted(formats)}")
    return tuple(loaded)


def _describe(loaded):
    if isinstance(loaded, (tuple, list)):
        return "[" + ", ".join(type(item).__name__ for item in loaded) + "]"
    return type(loaded).__name__
