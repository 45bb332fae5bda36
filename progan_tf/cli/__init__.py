"""main.py's modes: each module turns the parsed flags into the arguments of a library call.

Only this package and `progan_tf.flags` know about absl flags; every function here takes the
parsed `absl.flags.FLAGS` object (`values`) as its argument.
"""

from progan_tf.cli import evaluate, explain, export, generate, train

MODES = {
    "train": train.run,
    "export": export.run,
    "generate": generate.run,
    "evaluate": evaluate.run,
    "explain": explain.run,
}


def run(values):
    """Runs `values.mode` with the parsed flags `values`."""
    return MODES[values.mode](values)
