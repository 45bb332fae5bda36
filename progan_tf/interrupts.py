"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption).

The first signal is only recorded: the training loop finishes its step, agrees with every other
worker to stop at that step, checkpoints and exits (130 / 143). The handler then gives both
signals back to the system's default action, so a second one ends the process at once, even
inside a long TensorFlow call (a checkpoint being written stays a `.tmp` file: no damage).
"""

import os
import signal
import threading

from progan_tf.errors import EXIT_SIGINT, EXIT_SIGTERM

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class StopRequests:
    """Context manager that records the first SIGINT / SIGTERM while it is active.

    The previous handlers come back on exit. Outside the main thread (where Python cannot
    install handlers) it records nothing.

    Example:

    ```python
    with StopRequests() as requests:
        while training:
            step(iterator, iterations, requests.as_flags())
    ```
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        self.received = signum
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_DFL)
        # os.write, not print: a handler may run in the middle of another print.
        os.write(
            2,
            f"received {signal.Signals(signum).name}: finishing the step, then writing a checkpoint "
            f"(send it again to stop at once, without one)\n".encode(),
        )

    def as_flags(self):
        """[SIGINT received, SIGTERM received] as floats (the step all-reduces them)."""
        return [float(self.received == signal.SIGINT), float(self.received == signal.SIGTERM)]


def agreed_signal(sigint_flag, sigterm_flag):
    """The signal the workers agreed to stop on (SIGTERM wins), or None; from all-reduced flags."""
    if sigterm_flag > 0:
        return signal.SIGTERM
    if sigint_flag > 0:
        return signal.SIGINT
    return None
