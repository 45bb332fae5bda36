"""main.py's modes: each module turns the parsed flags into the arguments of a library call.

Only this package and `progan_tf.flags` know about absl flags; every function here takes the
parsed `absl.flags.FLAGS` object (`values`) as its argument.
"""

import tensorflow as tf

from progan_tf.cli import evaluate, explain, export, generate, train

MODES = {
    "train": train.run,
    "export": export.run,
    "generate": generate.run,
    "evaluate": evaluate.run,
    "explain": explain.run,
}


def set_process_options(values):
    """Applies the flags that configure the TensorFlow process (`--intra_op_threads`); before any
    op runs, since TensorFlow fixes its thread pools when its context starts."""
    if values.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(values.intra_op_threads)


def run(values):
    """Runs `values.mode` with the parsed flags `values`."""
    set_process_options(values)
    return MODES[values.mode](values)
