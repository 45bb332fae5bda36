"""User-facing errors.

A `UserInputError` means the user gave us something wrong (a path, a flag value, a corrupt file).
Entry points catch it and print its message as one line, without a traceback.
"""


class UserInputError(ValueError):
    """Bad user input; the message names the thing and what was expected."""


class FilesystemError(UserInputError):
    """A file or folder could not be written (disk full, read-only, no permission); the message
    names the path and what failed."""


class RunStopped(Exception):
    """Training stopped early on purpose (it diverged, or a signal asked it to stop).

    Entry points print the one-line message and exit with `exit_code`.
    """

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


# Exit statuses of main.py: 1 is a UserInputError (or FilesystemError); the signal codes follow
# the shell convention 128 + signal number.
EXIT_DIVERGED = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
