"""The trainer's one user-facing error type: the CLI prints it as a single line and exits non-zero."""


class TrainerError(Exception):
    """A problem with the user's input or environment (bad data file, unknown recipe, ...), not a bug."""
