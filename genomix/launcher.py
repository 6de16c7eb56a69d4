"""The `genomix` program's entry point: `genomix`, `genomix --help` and `genomix --version` are answered from
`genomix.overview` without importing the commands (and with them torch, most of a cold start's seconds); anything
else is `genomix.cli.main`."""

from __future__ import annotations

import sys

from genomix.overview import overview

OVERVIEW = ([], ["--help"], ["--version"])  # the command lines answered here


def main() -> None:
    if sys.argv[1:] in OVERVIEW:
        overview()()
    from genomix.cli import main as run  # the commands, their options and the libraries they call

    run()
