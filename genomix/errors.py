"""The one exception type for mistakes a user can fix (bad input, bad option, bad model file).

The CLI turns it into a one-line message and exit code 2; any other exception is a bug in genomix.
"""


class GenomixError(Exception):
    """A user-facing error: its message is shown as is, on one line, without a traceback."""
