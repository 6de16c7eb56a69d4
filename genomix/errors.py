"""The one exception type for mistakes a user can fix (bad input, bad option, bad model file).

The CLI turns it into a one-line message and exit code 2; any other exception is a bug in genomix.
"""


class GenomixError(Exception):
    """A user-facing error: its message is shown as is, on one line, without a traceback."""


class Interrupted(KeyboardInterrupt):
    """A termination signal turned into an exception (see `files.exit_on_sigterm`), so that cleanup runs.

    A KeyboardInterrupt, so that code handling Ctrl-C handles it too; `exit_code` is the shell's 128 + signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
