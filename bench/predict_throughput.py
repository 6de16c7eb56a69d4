"""End-to-end throughput of `genomix predict` against the bare forward pass of the same network.

Prediction wraps the network in reading (gzip, FASTA parsing, normalisation), tokenising, windowing,
length bucketing, padding, softmax and TSV writing. This measures what all of that costs on a
multi-megabase input: both paths run in the same process, over the same windows, in the same batches,
alternately, so machine load affects them alike. The network is untrained: its speed does not depend on
its weights.

    python bench/predict_throughput.py                    # 1,000 windows of 2,048 bp of C. diphtheriae
    python bench/predict_throughput.py --records 200      # a quicker look
    python bench/predict_throughput.py --window 150 --records 1000000 --model kmer   # a million short reads
"""

from __future__ import annotations

import argparse
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
from genomix.sequences.batching import bucket_batches, pad
from genomix.sequences.tokens import encode

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared/data/genomes/corynebacterium_diphtheriae_NCTC11397.fna.gz"
TARGET_OVERHEAD = 0.25  # end-to-end may take at most 25% longer than the bare forward pass

log = Console(stderr=True, highlight=False)


def genome_windows(path: Path, records: int, window: int) -> list[str]:
    """Consecutive, non-overlapping windows of the genome's records joined end to end; where the genome holds
    fewer than `records`, windows at random starts (seed 0), as reads sequenced from it would be."""
    genome = "".join(r.seq for r in read_inputs([str(path)]))
    if records <= len(genome) // window:
        return [genome[i * window : (i + 1) * window] for i in range(records)]
    starts = np.random.default_rng(0).integers(0, len(genome) - window + 1, records)
    return [genome[s : s + window] for s in starts.tolist()]


def write_fasta(windows: list[str], path: Path, source: str) -> None:
    """A FASTA file with 80-column sequence lines, as genome FASTA files usually have."""
    with open(path, "w") as f:
        for i, seq in enumerate(windows):
            f.write(f">w{i} src={source}\n")
            f.writelines(seq[j : j + 80] + "\n" for j in range(0, len(seq), 80))


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


def end_to_end_s(model_path: Path, fasta: Path, output: Path, batch_size: int, device: torch.device) -> float:
    """Seconds for `genomix predict` as the CLI runs it: model file and FASTA in, TSV out."""
    start = time.perf_counter()
    predict(model_path, RecordSource([str(fasta)]), output=output, batch_size=batch_size, device=str(device))
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=GENOME, help=f"FASTA to cut windows from (default: {GENOME})")
    parser.add_argument("--records", type=int, default=1000, help="number of windows (default: 1000)")
    parser.add_argument("--window", type=int, default=2048, help="window length in bp, also max_len (default: 2048)")
    parser.add_argument("--batch-size", type=int, default=64, help="prediction batch size (default: 64, as predict)")
    parser.add_argument("--model", choices=("paramixer-cdil", "paramixer-chord", "kmer"), default="paramixer-cdil")
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
    bases = sum(map(len, windows))
    with tempfile.TemporaryDirectory() as tmp:
        fasta, model_path, output = Path(tmp, "windows.fa"), Path(tmp, "model.gmx"), Path(tmp, "out.tsv")
        write_fasta(windows, fasta, args.genome.name)
        torch.manual_seed(0)
        net = create_model(args.model, 2, max_len=args.window)
        save_model(TrainedModel.of(net, ["a", "b"]), model_path)
        network = load_model(model_path, device).network  # the weights and mode predict will use
        log.log(f"{len(windows):,} windows of {args.window:,} bp ({bases / 1e6:.2f} Mb), batch {args.batch_size}, "
                f"{args.model}, {device}, {torch.get_num_threads()} CPU threads")

        bare_forward_s(network, windows[: args.batch_size], args.batch_size, device)  # warm-up: first-call costs
        e2e, bare = [], []
        for i in range(args.repeats):
            e2e.append(end_to_end_s(model_path, fasta, output, args.batch_size, device))
            bare.append(bare_forward_s(network, windows, args.batch_size, device))
            log.log(f"run {i + 1}/{args.repeats}: end to end {e2e[-1]:.2f} s, bare forward {bare[-1]:.2f} s")
        rows = len(output.read_text().splitlines()) - 1  # minus the header
        if rows != len(windows):
            sys.exit(f"predict wrote {rows} rows for {len(windows)} windows")

    e2e_s, bare_s = statistics.median(e2e), statistics.median(bare)
    result = {"device": str(device), "records": len(windows), "window": args.window, "bases": bases,
              "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "end_to_end_s": e2e_s, "bare_forward_s": bare_s,
              "model": args.model, "end_to_end_bases_per_s": bases / e2e_s, "bare_bases_per_s": bases / bare_s,
              "end_to_end_records_per_s": len(windows) / e2e_s, "bare_records_per_s": len(windows) / bare_s,
              "overhead": e2e_s / bare_s - 1}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    table = Table(title=f"genomix predict, {bases / 1e6:.2f} Mb in {len(windows):,} windows of {args.window:,} bp")
    for col in ("path", "seconds (median)", "bases / s", "records / s"):
        table.add_column(col, justify="left" if col == "path" else "right")
    table.add_row("end to end (predict)", f"{e2e_s:.2f}", f"{bases / e2e_s:,.0f}", f"{len(windows) / e2e_s:,.0f}")
    table.add_row("bare forward", f"{bare_s:.2f}", f"{bases / bare_s:,.0f}", f"{len(windows) / bare_s:,.0f}")
    Console(width=max(Console().width, 100)).print(table)
    verdict = "met" if result["overhead"] < TARGET_OVERHEAD else "missed"
    print(f"overhead: {100 * result['overhead']:.1f}% (target < {100 * TARGET_OVERHEAD:.0f}%: {verdict})")


if __name__ == "__main__":
    main()
