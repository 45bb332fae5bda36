"""A quiet TensorFlow start-up for the command-line programs (no TensorFlow import at module level).

TensorFlow prints C++ log lines on import and on device discovery: a oneDNN notice, "Could not
find cuda drivers", "failed call to cuInit: UNKNOWN ERROR (303)" on every machine without a GPU.
`TF_CPP_MIN_LOG_LEVEL=3` silences the device-discovery lines, but TensorFlow 2.19+ logs its
import-time lines through absl before `absl::InitializeLog()` runs (hence "WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR"), and those ignore it. So,
unless the user chose a log level, `import_tensorflow_quietly` sets `TF_CPP_MIN_LOG_LEVEL=3` and
imports TensorFlow with file descriptor 2 pointed at a temporary file; if the import fails, what
was captured is written back to stderr before the exception propagates.

Python-side logging is quietened to WARNING too: TensorFlow's logger, and absl's, which
`absl.app.run` turns to INFO after parsing flags unless `--verbosity` was given; at INFO, saving
a SavedModel logs a dozen lines about renamed inputs, sharding callbacks and fingerprints.

A user who sets `TF_CPP_MIN_LOG_LEVEL` (any value, e.g. 0) gets TensorFlow's logging untouched,
and `--verbosity` keeps its usual meaning.
"""

import os
import sys
import tempfile

from absl import logging as absl_logging

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
_state = {"quiet": False}


def import_tensorflow_quietly():
    """Imports TensorFlow (returned) without its start-up log lines, unless the user set a level."""
    if LOG_LEVEL_VARIABLE in os.environ or "tensorflow" in sys.modules:
        # Imported here, not at module level: the point of this module is how TensorFlow is imported.
        import tensorflow

        return tensorflow
    _state["quiet"] = True
    os.environ[LOG_LEVEL_VARIABLE] = "3"
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            # With stderr captured (see the module docstring).
            import tensorflow
        except BaseException:
            os.dup2(saved_stderr, 2)
            captured.seek(0)
            sys.stderr.buffer.write(captured.read())
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
    tensorflow.get_logger().setLevel("WARNING")
    return tensorflow


def quiet_absl_logging(verbosity_given):
    """Call inside `app.run`'s main: absl logging at WARNING, unless TensorFlow was imported loudly
    (the user's TF_CPP_MIN_LOG_LEVEL) or the user gave --verbosity (`verbosity_given`)."""
    if _state["quiet"] and not verbosity_given:
        absl_logging.set_verbosity(absl_logging.WARNING)
