"""Throughput and peak memory of `genomix scan` on a 500 kb prefix of a genome and on the whole genome.

Scanning reads a contig a block at a time and streams every output, so its peak memory should be the same
for half a megabase and for a whole chromosome; this checks that on a real bacterial genome. Each scan runs
in a fresh child process (this script with the hidden `--one`, which calls what the CLI calls, after the
CLI's allocator setting), so its peak RSS (ru_maxrss from wait4) is its own and starts clean.

Peak RSS is mostly the network's forward pass plus the freed memory glibc keeps for the next batch (up to
1 GiB by design, see genomix.console.reuse_large_allocations); it varies by a few hundred MiB from run to
run. So the child also reports the peak of what genomix itself holds (sequence blocks, tokens, windows,
output lines: Python and numpy allocations, traced by tracemalloc at no measurable cost), which grows with
the input only up to one block (scanning.BLOCK_BASES).

    python bench/scan.py                          # trains a small model first (1 epoch, max-len 1024)
    python bench/scan.py --model species.gmx      # scan with an existing model
    python bench/scan.py --json-out scan.json     # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from rich.console import Console
from rich.table import Table

from genomix.applying.scanning import BLOCK_BASES, scan
from genomix.console import reuse_large_allocations
from genomix.io.genomes import Genome

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared/data/genomes/corynebacterium_diphtheriae_NCTC11397.fna.gz"
TRAIN_FA = REPO / "data_samples/species_train.fa"
PREFIX = 500_000

log = Console(stderr=True, highlight=False)


def child(args: list[str]) -> tuple[dict, float, int]:
    """(scan summary, wall seconds, peak RSS in bytes) of one scan in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--one", *args], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; tell Popen so it does not wait again
    if proc.returncode != 0:
        sys.exit(f"scan failed (exit code {proc.returncode}): {' '.join(args)}")
    return json.loads(out), time.perf_counter() - start, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def one(argv: list[str]) -> None:
    """The child: one scan as `genomix scan` runs it, its summary as JSON on stdout."""
    model, genome, output, batch_size, window, step, device = argv
    reuse_large_allocations()
    tracemalloc.start()
    summary = scan(model, genome, output, window=int(window) or None, step=int(step) or None,
                   batch_size=int(batch_size), device=device)
    print(json.dumps(summary | {"traced_peak_bytes": tracemalloc.get_traced_memory()[1]}))


def prepare(args: argparse.Namespace, folder: Path) -> tuple[Path, Path, Path]:
    """The decompressed genome, its 500 kb prefix and the model, in `folder`."""
    whole, prefix = folder / "genome.fa", folder / "prefix.fa"
    with gzip.open(args.genome, "rb") as source, open(whole, "wb") as target:
        shutil.copyfileobj(source, target)
    genome = Genome(whole)
    contig, length = next(iter(genome.contigs.items()))
    seq = genome.fetch(contig, 0, min(args.prefix, length))
    prefix.write_text(f">{contig} first {len(seq)} bp\n" + "".join(seq[i : i + 80] + "\n"
                                                                  for i in range(0, len(seq), 80)))
    model = args.model
    if model is None:
        model = folder / "model.gmx"
        log.log(f"training a small model on {TRAIN_FA.name} (1 epoch, max-len 1024)")
        subprocess.run([sys.executable, "-m", "genomix", "train", str(TRAIN_FA), "-o", str(model), "--max-len",
                        "1024", "--epochs", "1", "--device", "cpu"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return whole, prefix, model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=GENOME, help=f"gzipped genome FASTA (default: {GENOME})")
    parser.add_argument("--model", type=Path, help="model file to scan with (default: train a small one)")
    parser.add_argument("--prefix", type=int, default=PREFIX, help=f"bases of the smaller input (default: {PREFIX})")
    parser.add_argument("--window", type=int, default=0, help="scan window (default: the model's max_len)")
    parser.add_argument("--step", type=int, default=0, help="scan step (default: half the window)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per batch (default: 64, as scan)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one"]:
        one(argv[1:])
        return
    args = parse_args(argv)
    if not args.genome.is_file():
        log.log(f"skipped: {args.genome} is absent (it comes with ../shared/data; see --genome)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        whole, prefix, model = prepare(args, Path(tmp))
        rows = []
        for name, fasta in (("prefix", prefix), ("whole genome", whole)):
            summary, wall, rss = child([str(model), str(fasta), str(Path(tmp, "track.bedgraph")),
                                        str(args.batch_size), str(args.window), str(args.step), args.device])
            rows.append({"input": name, **summary, "wall_s": round(wall, 2), "peak_rss_bytes": rss})
            log.log(f"{name}: {summary['bases']:,} bp, {summary['bases_per_s']:,.0f} bp/s, "
                    f"peak RSS {rss / 2**20:,.0f} MiB")
    growth = rows[1]["peak_rss_bytes"] / rows[0]["peak_rss_bytes"] - 1
    result = {"device": args.device, "genome": args.genome.name,
              "model": str(args.model or "trained: 1 epoch, max-len 1024"),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "block_bases": BLOCK_BASES, "runs": rows,
              "peak_rss_growth": growth}
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    table = Table(title=f"genomix scan on {args.genome.name}")
    for col in ("input", "bases", "windows", "scan s", "bases / s", "child wall s", "peak RSS MiB", "traced MiB"):
        table.add_column(col, justify="left" if col == "input" else "right")
    for row in rows:
        table.add_row(row["input"], f"{row['bases']:,}", f"{row['windows']:,}", f"{row['seconds']:.1f}",
                      f"{row['bases_per_s']:,.0f}", f"{row['wall_s']:.1f}", f"{row['peak_rss_bytes'] / 2**20:,.0f}",
                      f"{row['traced_peak_bytes'] / 2**20:,.1f}")
    Console(width=max(Console().width, 100)).print(table)
    print(f"{rows[1]['bases'] / rows[0]['bases']:.1f}x the bases: peak RSS {100 * growth:+.1f}% (allocator noise: "
          f"a few hundred MiB), traced data {rows[0]['traced_peak_bytes'] / 2**20:.1f} → "
          f"{rows[1]['traced_peak_bytes'] / 2**20:.1f} MiB (at most one block of {BLOCK_BASES:,} bp)")


if __name__ == "__main__":
    main()
