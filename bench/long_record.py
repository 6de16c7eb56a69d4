"""Peak memory and throughput of `genomix predict`, `scan` and `embed` on one genome-scale record.

A long record is tiled into windows of the model's max_len (`genomix.applying.scoring`); what must not grow with
its length beyond a few bytes per base is the memory around it (its sequence and tokens are a byte per base each).
This makes one record of 1, 10 and 50 Mb by joining the real genomes of ../shared/data/genomes end to end (again
from the first once all are used), written as an ordinary 80-column FASTA in a temporary folder, and runs each
command on it in a fresh process (`python -m genomix ...`, peak RSS from wait4). The growth per base is the slope
between two sizes: (peak at 50 Mb - peak at 10 Mb) / 40e6 bytes. Throughput is set against the same command on the
same number of bases cut into 10 kb records (`--short-total`, a genome of 10 kb contigs for scan), in the same run:
bases over the command's wall time less its start-up (the same command on one 1 kb record).

The model is the fastest real one: a k-mer model (`--arch kmer`, max_len 400, both strands, novelty statistics),
trained in seconds on data_samples/species_train.fa; its 5,460 pooled features are what `embed` writes and what
`predict` scores novelty from. A size whose peak the two smaller sizes project past `--max-rss-gib` is not run
(its projection is reported): the machine is shared.

    python bench/long_record.py --threads 1                       # 1, 10 and 50 Mb; docs/long_record.json
    python bench/long_record.py --sizes 1 10 --json-out /tmp/x.json  # without the 50 Mb runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from genomix.io.genomes import Genome
from genomix.io.reading import read_records

REPO = Path(__file__).resolve().parents[1]
GENOMES = REPO.parent / "shared/data/genomes"
TRAIN_FA = REPO / "data_samples/species_train.fa"
JSON_OUT = REPO / "docs/long_record.json"
COMMANDS = ("predict", "scan", "embed")
MB = 1_000_000
SHORT_RECORD = 10_000
STARTUP_RECORD = 1_000
LINE = 80

log = Console(stderr=True, highlight=False)


def genome_text(total: int) -> str:
    """`total` bases of the real genomes joined end to end, in name order, repeated when they hold fewer."""
    seqs = [r.seq for path in sorted(GENOMES.glob("*.fna.gz")) for r in read_records(str(path))]
    joined = "".join(seqs)
    return (joined * -(-total // len(joined)))[:total]


def write_fasta(path: Path, seq: str, record: int) -> Path:
    """`seq` as records of `record` bases (one record where it is longer), 80 bases a line."""
    with open(path, "w") as out:
        for number, start in enumerate(range(0, len(seq), record)):
            part = seq[start : start + record]
            out.write(f">r{number} {len(part)} bp\n")
            out.writelines(part[i : i + LINE] + "\n" for i in range(0, len(part), LINE))
    Genome(path)  # indexed here, so that scan's figures are the scan's
    return path


def command(name: str, model: Path, fasta: Path, folder: Path, threads: int) -> list[str]:
    target = {"predict": ["-o", str(folder / "out.tsv")], "scan": ["-o", str(folder / "out.bedgraph")],
              "embed": ["-o", str(folder / "out.npy")]}[name]
    source = ["--reference", str(fasta)] if name == "scan" else [str(fasta)]
    return [sys.executable, "-m", "genomix", name, str(model), *source, *target, "--device", "cpu",
            "--threads", str(threads)]


def run(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one command in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": argv[-1]})
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; tell Popen so it does not wait again
    if proc.returncode != 0:
        sys.exit(f"failed (exit code {proc.returncode}): {' '.join(argv)}\n{err.decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def train(folder: Path, threads: int) -> Path:
    model = folder / "kmer.gmx"
    log.log(f"training a k-mer model on {TRAIN_FA.name}")
    subprocess.run([sys.executable, "-m", "genomix", "train", str(TRAIN_FA), "--arch", "kmer", "-o", str(model),
                    "--device", "cpu", "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": str(REPO)})
    return model


def projected(peaks: dict[int, int], size: int) -> int | None:
    """The peak at `size` Mb on the line through the two largest sizes measured (None with fewer than two)."""
    if len(peaks) < 2:
        return None
    (a, pa), (b, pb) = sorted(peaks.items())[-2:]
    return int(pb + (pb - pa) / (b - a) * (size - b))


def measure(args: argparse.Namespace, folder: Path) -> dict:
    model = args.model or train(folder, args.threads)
    text = genome_text(max(max(args.sizes), args.short_total) * MB)
    startup = write_fasta(folder / "startup.fa", text[:STARTUP_RECORD], STARTUP_RECORD)
    short = write_fasta(folder / "short.fa", text[: args.short_total * MB], SHORT_RECORD)
    result: dict = {"commands": {}}
    for name in COMMANDS:
        startup_s, startup_rss = run(command(name, model, startup, folder, args.threads))
        short_s, short_rss = run(command(name, model, short, folder, args.threads))
        row = {"startup_s": round(startup_s, 2), "startup_rss": startup_rss,
               "short": {"bases": args.short_total * MB, "record": SHORT_RECORD, "wall_s": round(short_s, 2),
                         "peak_rss": short_rss, "bases_per_s": round(args.short_total * MB / (short_s - startup_s))},
               "long": {}}
        log.log(f"{name}: start-up {startup_s:.1f} s, {startup_rss / 2**20:,.0f} MiB; {args.short_total} Mb in "
                f"10 kb records {short_s:.1f} s, {short_rss / 2**20:,.0f} MiB")
        result["commands"][name] = row
    for size in sorted(args.sizes):
        fasta = write_fasta(folder / f"long{size}.fa", text[: size * MB], size * MB)
        for name in COMMANDS:
            row = result["commands"][name]
            peaks = {int(s): r["peak_rss"] for s, r in row["long"].items() if "peak_rss" in r}
            guess = projected(peaks, size)
            if guess is not None and guess > args.max_rss_gib * 2**30:
                row["long"][str(size)] = {"skipped": "projected peak over --max-rss-gib", "projected_rss": guess}
                log.log(f"{name} {size} Mb: skipped, projected peak {guess / 2**30:.1f} GiB")
                continue
            wall, rss = run(command(name, model, fasta, folder, args.threads))
            speed = size * MB / (wall - row["startup_s"])
            row["long"][str(size)] = {"wall_s": round(wall, 2), "peak_rss": rss, "bases_per_s": round(speed),
                                      "vs_short": round(speed / row["short"]["bases_per_s"], 2)}
            log.log(f"{name} {size} Mb: {wall:.1f} s, {rss / 2**20:,.0f} MiB")
        for path in (fasta, fasta.with_name(fasta.name + ".fai")):
            path.unlink()
    for row in result["commands"].values():
        peaks = sorted((int(s), r["peak_rss"]) for s, r in row["long"].items() if "peak_rss" in r)
        row["bytes_per_base"] = {f"{a}-{b}": round((pb - pa) / ((b - a) * MB), 2)
                                 for (a, pa), (b, pb) in zip(peaks, peaks[1:])}
    return result


def show(result: dict) -> None:
    table = Table(title="one long record: peak RSS and throughput (wall less start-up)")
    for col in ("command", "input", "wall s", "peak RSS MiB", "bases / s", "vs 10 kb records"):
        table.add_column(col, justify="left" if col in ("command", "input") else "right")
    for name, row in result["commands"].items():
        short = row["short"]
        table.add_row(name, f"{short['bases'] // MB} Mb in 10 kb records", f"{short['wall_s']:.1f}",
                      f"{short['peak_rss'] / 2**20:,.0f}", f"{short['bases_per_s']:,}", "1.00")
        for size, r in row["long"].items():
            if "skipped" in r:
                table.add_row(name, f"{size} Mb record", "-", f"({r['projected_rss'] / 2**20:,.0f} projected)", "-",
                              "-")
            else:
                table.add_row(name, f"{size} Mb record", f"{r['wall_s']:.1f}", f"{r['peak_rss'] / 2**20:,.0f}",
                              f"{r['bases_per_s']:,}", f"{r['vs_short']:.2f}")
        slopes = ", ".join(f"{k} Mb: {v:+.2f}" for k, v in row["bytes_per_base"].items())
        table.add_row(name, f"growth, bytes per base ({slopes})", "", "", "", "")
    Console(width=max(Console().width, 110)).print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], help="record sizes in Mb")
    parser.add_argument("--short-total", type=int, default=10, help="Mb of 10 kb records to compare with")
    parser.add_argument("--model", type=Path, help="model file (default: train a k-mer model)")
    parser.add_argument("--threads", type=int, default=1, help="--threads of every command (default: 1)")
    parser.add_argument("--max-rss-gib", type=float, default=6.0, help="skip a size projected past this peak")
    parser.add_argument("--json-out", type=Path, default=JSON_OUT, help=f"default: {JSON_OUT.relative_to(REPO)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not GENOMES.is_dir():
        log.log(f"skipped: {GENOMES} is absent (it comes with ../shared/data)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    result |= {"model": str(args.model or "kmer, trained on data_samples/species_train.fa (max_len 400)"),
               "threads": args.threads, "sizes_mb": sorted(args.sizes)}
    args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    show(result)


if __name__ == "__main__":
    main()
