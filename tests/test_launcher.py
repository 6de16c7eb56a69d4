"""The entry point answers `genomix`, `--help` and `--version` without importing the commands (and torch), with the
same text as the command line itself; everything else reaches the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from genomix import __version__
from genomix.cli import app
from genomix.overview import overview


@pytest.mark.parametrize("args", [["--help"], [], ["--version"]])
def test_the_overview_says_what_the_command_line_says(args):
    runner = CliRunner()
    quick, full = runner.invoke(overview(), args), runner.invoke(app, args)
    assert quick.output == full.output and quick.exit_code == full.exit_code
    assert ("train" in quick.output) if args != ["--version"] else quick.output == f"genomix {__version__}\n"


def test_help_loads_no_torch_and_other_commands_run_the_command_line():
    probe = ("import sys\nfrom genomix.launcher import main\nsys.argv = ['genomix', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)\n")
    quick = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, timeout=60)
    assert "Commands" in quick.stdout and quick.stderr.strip() == "False"
    full = subprocess.run([sys.executable, "-c", probe, "models"], capture_output=True, text=True, timeout=120)
    assert "kmer:" in full.stdout and full.stderr.strip().endswith("True")
