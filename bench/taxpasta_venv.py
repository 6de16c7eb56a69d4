"""Build the virtual environment that tests/test_kraken.py runs taxpasta from, once, under a cache folder.

taxpasta 0.7 pins numpy 1 and pandas 1 and needs pandera < 0.24, which genomix's own environment does not have,
so it gets an environment of its own; the test skips while this one is not built.

    python bench/taxpasta_venv.py            # into $GENOMIX_TOOLS_CACHE/taxpasta (default ~/.cache/genomix-tools)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = ["taxpasta>=0.7,<0.8", "pandera<0.24", "numpy<2", "pandas<2"]


def main() -> None:
    cache = Path(os.environ.get("GENOMIX_TOOLS_CACHE", Path.home() / ".cache" / "genomix-tools"))
    venv = cache / "taxpasta"
    if (venv / "bin" / "taxpasta").exists():
        print(f"already built: {venv}")
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run([str(venv / "bin" / "taxpasta"), "--version"], check=True)
    print(f"built: {venv}")


if __name__ == "__main__":
    main()
