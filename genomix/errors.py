"""The one exception type for mistakes a user can fix (bad input, bad option, bad model file, a missing extra),
and for faults of the machine a command meets (a disk's I/O error).

The CLI turns it into a one-line message and its exit code; any other exception is a bug in genomix.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec


class GenomixError(Exception):
    """A user-facing error: its message is shown as is, on one line, without a traceback.

    `exit_code` is 2 for what the user can fix (the input, an option, a full disk), 1 for a fault the user cannot
    fix from the command line (`genomix.io.files.FAULTS`), so that a script can tell a run to correct from one
    to retry or report.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(KeyboardInterrupt):
    """A termination signal turned into an exception (see `files.exit_on_sigterm`), so that cleanup runs.

    A KeyboardInterrupt, so that code handling Ctrl-C handles it too; `exit_code` is the shell's 128 + signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


def require(modules: Sequence[str], extra: str, what: str) -> None:
    """Stop before any work, in one line that names the extra to install, where `what` needs a library that a
    plain `pip install genomix` leaves out."""
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise GenomixError(f"{what} needs {', '.join(missing)}, which a plain install leaves out: "
                           f"pip install 'genomix[{extra}]'")
