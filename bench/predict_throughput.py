"""End-to-end throughput of `genomix predict` against the bare forward pass of the same network.

Prediction wraps the network in reading (decompression, FASTQ parsing, normalisation), tokenising, windowing,
length bucketing, padding, softmax, calls and TSV writing. This measures what all of that costs, for each model
given, on reads cut from a genome and written as FASTQ, plain and gzip: both paths run in the same process, over the
same reads, in the same batches, alternately, so machine load affects them alike. The ratio is the bare forward's
time over the end-to-end time: the share of its bare speed that `predict` keeps. The networks are untrained: their
speed does not depend on their weights.

    python bench/predict_throughput.py --threads 1                # 100,000 reads of 150 bp: kmer, paramixer-cdil
    python bench/predict_throughput.py --models kmer --records 1000000 --packings gz   # a million reads, gzip only
    python bench/predict_throughput.py --window 2048 --records 1000 --models paramixer-cdil   # long windows
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from genomix.applying.predicting import predict
from genomix.console import autocast, resolve_device, reuse_large_allocations
from genomix.console import console as genomix_console
from genomix.io.reading import read_inputs
from genomix.io.sources import RecordSource
from genomix.models import create_model
from genomix.models.modelfile import TrainedModel, load_model, save_model
from genomix.models.registry import DEFAULT_MODEL
from genomix.sequences.batching import bucket_batches, pad
from genomix.sequences.tokens import encode

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared/data/genomes/corynebacterium_diphtheriae_NCTC11397.fna.gz"
TARGET_RATIO = 0.9  # end to end keeps at least 90% of the bare forward's speed
MODELS = ("paramixer-cdil", "paramixer-chord", "kmer")

log = Console(stderr=True, highlight=False)


def genome_windows(path: Path, records: int, window: int) -> list[str]:
    """Consecutive, non-overlapping windows of the genome's records joined end to end; where the genome holds
    fewer than `records`, windows at random starts (seed 0), as reads sequenced from it would be."""
    genome = "".join(r.seq for r in read_inputs([str(path)]))
    if records <= len(genome) // window:
        return [genome[i * window : (i + 1) * window] for i in range(records)]
    starts = np.random.default_rng(0).integers(0, len(genome) - window + 1, records)
    return [genome[s : s + window] for s in starts.tolist()]


def write_fastq(windows: list[str], path: Path, source: str) -> None:
    """A FASTQ file of the windows as reads, one line each, gzip-compressed where the name ends in .gz."""
    with (gzip.open(path, "wt", compresslevel=6) if path.suffix == ".gz" else open(path, "w")) as f:
        for i, seq in enumerate(windows):
            f.write(f"@w{i} src={source}\n{seq}\n+\n{'I' * len(seq)}\n")


def bare_forward_s(network: torch.nn.Module, windows: list[str], batch_size: int, device: torch.device) -> float:
    """Seconds for the network alone over the windows, tokenised, bucketed, padded and on the device beforehand."""
    tokens = [encode(seq) for seq in windows]
    lengths = np.array([len(t) for t in tokens])
    batches = [tuple(t.to(device) for t in pad([tokens[i] for i in batch]))
               for batch in bucket_batches(lengths, batch_size)]
    start = time.perf_counter()
    with torch.no_grad(), autocast(device):
        for batch_tokens, batch_lengths in batches:
            network(batch_tokens, batch_lengths)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def end_to_end_s(model_path: Path, reads: Path, output: Path, batch_size: int, device: torch.device) -> float:
    """Seconds for `genomix predict` as the CLI runs it: model file and FASTQ in, TSV out."""
    start = time.perf_counter()
    predict(model_path, RecordSource([str(reads)]), output=output, batch_size=batch_size, device=str(device))
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=GENOME, help=f"FASTA to cut windows from (default: {GENOME})")
    parser.add_argument("--records", type=int, default=100_000, help="number of reads (default: 100000)")
    parser.add_argument("--window", type=int, default=150, help="read length in bp, also max_len (default: 150)")
    parser.add_argument("--batch-size", type=int, default=64, help="prediction batch size (default: 64, as predict)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["kmer", DEFAULT_MODEL],
                        help=f"models to measure (default: kmer {DEFAULT_MODEL})")
    parser.add_argument("--packings", nargs="+", choices=("plain", "gz"), default=["plain", "gz"],
                        help="FASTQ files to read: plain, gzip (default: both)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each path, alternating; medians are reported (default: 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is steadier on a shared machine")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.records < 1 or args.window < 1 or args.batch_size < 1:
        parser.error("--repeats, --records, --window and --batch-size must be at least 1")
    return args


def measure(model: str, reads: dict[str, Path], windows: list[str], tmp: Path, args: argparse.Namespace,
            device: torch.device) -> list[dict]:
    """One result per packing: end to end and bare forward seconds (medians), reads/s and their ratio."""
    model_path, output = tmp / f"{model}.gmx", tmp / "out.tsv"
    torch.manual_seed(0)
    save_model(TrainedModel.of(create_model(model, 2, max_len=args.window), ["a", "b"]), model_path)
    network = load_model(model_path, device).network  # the weights and mode predict will use
    bare_forward_s(network, windows[: args.batch_size], args.batch_size, device)  # warm-up: first-call costs
    results = []
    for packing, path in reads.items():
        e2e, bare = [], []
        for i in range(args.repeats):
            e2e.append(end_to_end_s(model_path, path, output, args.batch_size, device))
            bare.append(bare_forward_s(network, windows, args.batch_size, device))
            log.log(f"{model}, {packing}, run {i + 1}/{args.repeats}: end to end {e2e[-1]:.2f} s, "
                    f"bare forward {bare[-1]:.2f} s")
        rows = len(output.read_text().splitlines()) - 1  # minus the header
        if rows != len(windows):
            sys.exit(f"predict wrote {rows} rows for {len(windows)} reads")
        e2e_s, bare_s = statistics.median(e2e), statistics.median(bare)
        results.append({"model": model, "input": f"fastq ({packing})", "end_to_end_s": e2e_s, "bare_forward_s": bare_s,
                        "end_to_end_reads_per_s": len(windows) / e2e_s, "bare_reads_per_s": len(windows) / bare_s,
                        "ratio": bare_s / e2e_s})
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reuse_large_allocations()  # as the genomix CLI does, so the figures are what a user gets
    if not args.genome.is_file():
        log.log(f"skipped: {args.genome} is absent (it comes with ../shared/data; see --genome)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    genomix_console.quiet = True  # predict's log lines would interleave with ours, once per repeat

    windows = genome_windows(args.genome, args.records, args.window)
    log.log(f"{len(windows):,} reads of {args.window:,} bp, batch {args.batch_size}, {device}, "
            f"{torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory() as tmp:
        reads = {packing: Path(tmp, "reads.fq" + (".gz" if packing == "gz" else "")) for packing in args.packings}
        for path in reads.values():
            write_fastq(windows, path, args.genome.name)
        results = [r for model in args.models for r in measure(model, reads, windows, Path(tmp), args, device)]
    setting = {"device": str(device), "reads": len(windows), "window": args.window, "batch_size": args.batch_size,
               "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps({**setting, "results": results}, indent=1))
        return
    table = Table(title=f"genomix predict, {len(windows):,} reads of {args.window:,} bp, {torch.get_num_threads()} "
                        f"CPU threads")
    for col in ("model", "input", "end to end reads/s", "bare forward reads/s", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "input") else "right")
    for r in results:
        table.add_row(r["model"], r["input"], f"{r['end_to_end_reads_per_s']:,.0f}", f"{r['bare_reads_per_s']:,.0f}",
                      f"{r['ratio']:.2f}")
    Console(width=max(Console().width, 100)).print(table)
    print(f"target: end to end at least {TARGET_RATIO:.0%} of the bare forward: " + ", ".join(
        f"{r['model']} {r['input']} {'met' if r['ratio'] >= TARGET_RATIO else 'missed'}" for r in results))


if __name__ == "__main__":
    main()
