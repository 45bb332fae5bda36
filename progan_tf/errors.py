"""User-facing errors.

A `UserInputError` means the user gave us something wrong (a path, a flag value, a corrupt file).
Entry points catch it and print its message as one line, without a traceback.
"""


class UserInputError(ValueError):
    """Bad user input; the message names the thing and what was expected."""
