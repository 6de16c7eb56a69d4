"""Start-up time of the command line as whole processes: `genomix --help`, `genomix info MODEL` and a bare Python
for reference, each run N times (the minimum is the figure: the rest is other load on the machine), and the
share of the import time that is torch's (`python -X importtime`).

    python bench/startup.py                     # 7 runs each, tests/fixtures/v0_kmer.gmx for info
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"python -c pass": [sys.executable, "-c", "pass"],
            "genomix --help": [sys.executable, "-m", "genomix", "--help"],
            "genomix info MODEL": [sys.executable, "-m", "genomix", "info", str(ROOT / "tests/fixtures/v0_kmer.gmx")]}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def import_share(module: str) -> tuple[float, float]:
    """Seconds to import genomix.cli, and of them torch's, as `-X importtime` counts them (cumulative)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import genomix.cli"], capture_output=True,
                            text=True, check=True)
    cumulative = {}
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, total, name = line.split("|")
            if total.strip().isdigit():
                cumulative[name.strip()] = int(total) / 1e6
    return cumulative.get("genomix.cli", 0.0), cumulative.get(module, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for name, command in COMMANDS.items():
        runs = [timed(command) for _ in range(args.runs)]
        print(f"{name:22s} min {min(runs):.2f} s  median {statistics.median(runs):.2f} s  ({args.runs} runs)")
    cli, torch = import_share("torch")
    print(f"import genomix.cli: {cli:.2f} s, of which torch {torch:.2f} s")


if __name__ == "__main__":
    main()
