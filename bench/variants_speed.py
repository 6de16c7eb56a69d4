"""Variants per second of `genomix variants` on the CPU, and its peak memory on 10,000 and 1,000,000 variants.

The VCFs hold random SNVs (sorted, REF from the genome) on the E. coli K-12 W3110 genome. Each run is a
fresh child process (this script with the hidden `--one`, calling what the CLI calls after the CLI's
allocator setting) on one CPU thread, so its peak RSS (ru_maxrss from wait4) is its own. Speed does not
depend on the weights, so the models are untrained: the default model at 81 bases (the σ70 promoters'
length) and at 1,024 bases; the million-variant memory run uses the k-mer model at 81 bases, which scores a
million variants (two million windows, batches of 256) in minutes where the default model would take hours
on a CPU. The load average is printed with each run: on a shared machine it, not genomix, sets the pace. The
child also reports the peak of what genomix holds in Python and numpy (tracemalloc), which stays at one
chunk of records whatever the VCF's size.

    python bench/variants_speed.py                    # the figures in docs/VARIANTS.md
    python bench/variants_speed.py --million 100000   # a quicker look at the memory
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from genomix.applying.variants import score_variants
from genomix.console import reuse_large_allocations, use_threads
from genomix.models import DEFAULT_MODEL, create_model
from genomix.models.modelfile import TrainedModel, save_model

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared/data/genomes/escherichia_coli_K12_W3110.fna.gz"
BASES = "ACGT"


def one(argv: list[str]) -> None:
    """The child: one `genomix variants` run; seconds and counts as JSON on stdout."""
    model, vcf, reference, output, batch_size = argv
    reuse_large_allocations()
    use_threads(1)
    tracemalloc.start()
    start = time.perf_counter()
    summary = score_variants(model, vcf, reference, output, device="cpu", batch_size=int(batch_size))
    seconds = time.perf_counter() - start
    print(json.dumps({"variants": summary.scored, "seconds": seconds, "variants_per_s": summary.scored / seconds,
                      "traced_peak_bytes": tracemalloc.get_traced_memory()[1]}))


def child(args: list[str]) -> tuple[dict, int]:
    """(the child's figures, its peak RSS in bytes)."""
    proc = subprocess.Popen([sys.executable, __file__, "--one", *args], stdout=subprocess.PIPE, cwd=REPO)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; tell Popen so it does not wait again
    if proc.returncode != 0:
        sys.exit(f"genomix variants failed (exit code {proc.returncode}): {' '.join(args)}")
    return json.loads(out), usage.ru_maxrss * 1024  # KiB on Linux


def write_vcf(path: Path, contig: str, genome: str, count: int, rng: np.random.Generator) -> None:
    """`count` SNVs at distinct random positions, sorted, REF as the genome has it."""
    positions = np.sort(rng.choice(len(genome), size=count, replace=False))
    shifts = rng.integers(1, 4, size=count)
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={contig},length={len(genome)}>\n"
                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for start in range(0, count, 100_000):
            lines = []
            for p, s in zip(positions[start : start + 100_000].tolist(), shifts[start : start + 100_000].tolist()):
                ref = genome[p]
                lines.append(f"{contig}\t{p + 1}\t.\t{ref}\t{BASES[(BASES.index(ref) + s) % 4]}\t.\t.\t.\n")
            out.writelines(lines)


def untrained(name: str, max_len: int, path: Path) -> Path:
    torch.manual_seed(0)
    save_model(TrainedModel.of(create_model(name, 2, max_len=max_len), ["non_promoter", "promoter"]), path)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one"]:
        one(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genome", type=Path, default=GENOME, help="gzipped genome FASTA (default: E. coli W3110)")
    parser.add_argument("--speed-variants", type=int, nargs=2, default=[1000, 100], metavar=("N81", "N1024"),
                        help="variants of the speed runs at 81 and 1,024 bases (default: 1000 100)")
    parser.add_argument("--million", type=int, default=1_000_000, help="variants of the large memory run")
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.genome.is_file():
        print(f"skipped: {args.genome} is absent (it comes with ../shared/data; see --genome)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with gzip.open(args.genome, "rt") as file:
            header, *lines = file.read().split("\n")
        genome, contig = "".join(lines).upper(), header[1:].split()[0]
        reference = folder / "genome.fa"
        reference.write_text(f">{contig}\n{genome}\n")
        rng = np.random.default_rng(0)
        runs = [("speed", DEFAULT_MODEL, 81, args.speed_variants[0], 64),
                ("speed", DEFAULT_MODEL, 1024, args.speed_variants[1], 64),
                ("memory", "kmer", 81, 10_000, 256), ("memory", "kmer", 81, args.million, 256)]
        rows = []
        for kind, name, max_len, count, batch_size in runs:
            vcf = folder / f"{count}.vcf"
            if not vcf.exists():
                write_vcf(vcf, contig, genome, count, rng)
            model = untrained(name, max_len, folder / f"{name}_{max_len}.gmx")
            output = folder / ("effects.tsv" if kind == "speed" else "effects.vcf.gz")
            figures, rss = child([str(model), str(vcf), str(reference), str(output), str(batch_size)])
            rows.append({"run": kind, "model": name, "max_len": max_len, "batch_size": batch_size, **figures,
                         "peak_rss_bytes": rss, "load_average": os.getloadavg()[0]})
            print(f"{kind}: {name} at {max_len} bases, batch {batch_size}, {figures['variants']:,} variants: "
                  f"{figures['variants_per_s']:,.1f} variants/s, peak RSS {rss / 2**20:,.0f} MiB, traced "
                  f"{figures['traced_peak_bytes'] / 2**20:,.1f} MiB; load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores", flush=True)
    small, large = rows[2], rows[3]
    growth = large["peak_rss_bytes"] / small["peak_rss_bytes"] - 1
    print(f"{large['variants'] / small['variants']:,.0f}x the variants: peak RSS {100 * growth:+.1f}%, traced "
          f"{small['traced_peak_bytes'] / 2**20:.1f} → {large['traced_peak_bytes'] / 2**20:.1f} MiB")
    if args.json_out:
        args.json_out.write_text(json.dumps({"genome": args.genome.name, "threads": 1, "runs": rows,
                                             "peak_rss_growth": growth}, indent=1) + "\n")


if __name__ == "__main__":
    main()
