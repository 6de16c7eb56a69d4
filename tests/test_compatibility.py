"""genomix runs on the oldest Python that pyproject.toml admits, not only on the one CI uses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLDEST = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)


def test_the_standard_library_is_used_as_the_oldest_python_has_it() -> None:
    """vermin knows in which version each standard-library member appeared (hashlib.file_digest: 3.11)."""
    pytest.importorskip("vermin")
    command = "import sys, vermin; sys.argv = ['vermin', *sys.argv[1:]]; sys.exit(vermin.main())"
    result = subprocess.run([sys.executable, "-c", command, "--no-tips", "--violations", f"--target={OLDEST}-",
                             str(ROOT / "genomix")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_compiles_under_the_oldest_python(tmp_path: Path) -> None:
    """Syntax newer than the oldest Python (a `match` is fine in 3.10, `except*` is not) fails here, where that
    interpreter can be run; the rest of the suite needs torch, which only CI's Python has."""
    oldest = shutil.which(f"python{OLDEST}")
    if oldest is None or subprocess.run([oldest, "-c", "pass"], capture_output=True).returncode != 0:
        pytest.skip(f"no working python{OLDEST} here")
    files = [str(p) for p in (ROOT / "genomix").rglob("*.py")]
    result = subprocess.run([oldest, "-m", "py_compile", *files], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)})
    assert result.returncode == 0, result.stderr
