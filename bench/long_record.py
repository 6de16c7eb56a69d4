"""Peak memory and throughput of `genomix predict`, `scan` and `embed` on one genome-scale record.

A long record is tiled into windows of the model's max_len (`genomix.applying.scoring`); what must not grow with
its length beyond a few bytes per base is the memory around it (its sequence and tokens are a byte per base each).
This makes one record of 1, 10 and 50 Mb by joining the real genomes of ../shared/data/genomes end to end (again
from the first once all are used), written as an ordinary 80-column FASTA in a temporary folder, and runs each
command on it in a fresh process: `genomix.cli.main` behind a few lines (CHILD) that import it, note the peak RSS
so far (VmHWM: the imports' peak, torch's mostly), reset it (/proc/self/clear_refs) and note, when the command
ends, its own peak RSS and CPU seconds. The growth per base is the slope of the command's peak between two sizes:
(peak at 50 Mb - peak at 10 Mb) / 40e6 bytes. Throughput is bases per CPU second of the command (the machine is
shared: wall time measures the other jobs as much), set against the same command on the same number of bases cut
into 10 kb records (`--short-total`; a genome of 10 kb contigs for scan) in the same run.

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
    return [name, str(model), *source, *target, "--device", "cpu", "--threads", str(threads)]


CHILD = """
import json, resource, sys
from genomix.cli import main

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

imports, start, figures = peak(), cpu(), sys.argv[1]
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
sys.argv = ["genomix", *sys.argv[2:]]
try:
    main()
finally:
    with open(figures, "w") as out:
        json.dump({"imports_rss": imports, "peak_rss": peak(), "cpu_s": round(cpu() - start, 3)}, out)
"""


def run(argv: list[str], folder: Path) -> dict:
    """The command's peak RSS after the imports, the imports' peak, its CPU seconds and its wall seconds, in a
    fresh process."""
    figures = folder / "figures.json"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(figures), *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS":
                                                                    argv[-1]})
    if proc.returncode != 0:
        sys.exit(f"failed (exit code {proc.returncode}): genomix {' '.join(argv)}\n{proc.stderr.decode()[-2000:]}")
    return json.loads(figures.read_text()) | {"wall_s": round(time.perf_counter() - start, 2)}


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
    short = write_fasta(folder / "short.fa", text[: args.short_total * MB], SHORT_RECORD)
    result: dict = {"commands": {}}
    for name in COMMANDS:
        row = run(command(name, model, short, folder, args.threads), folder)
        bases = args.short_total * MB
        result["commands"][name] = {"short": row | {"bases": bases, "record": SHORT_RECORD,
                                                    "bases_per_cpu_s": round(bases / row["cpu_s"])}, "long": {}}
        log.log(f"{name}: {args.short_total} Mb in 10 kb records, {row['cpu_s']:.1f} CPU s, peak "
                f"{row['peak_rss'] / 2**20:,.0f} MiB")
    for size in sorted(args.sizes):
        fasta = write_fasta(folder / f"long{size}.fa", text[: size * MB], size * MB)
        for name in COMMANDS:
            runs = result["commands"][name]
            guess = projected({int(s): r["peak_rss"] for s, r in runs["long"].items() if "peak_rss" in r}, size)
            if guess is not None and guess > args.max_rss_gib * 2**30:
                runs["long"][str(size)] = {"skipped": "projected peak over --max-rss-gib", "projected_rss": guess}
                log.log(f"{name} {size} Mb: skipped, projected peak {guess / 2**30:.1f} GiB")
                continue
            row = run(command(name, model, fasta, folder, args.threads), folder)
            speed = size * MB / row["cpu_s"]
            runs["long"][str(size)] = row | {"bases_per_cpu_s": round(speed),
                                             "vs_short": round(speed / runs["short"]["bases_per_cpu_s"], 2)}
            log.log(f"{name} {size} Mb: {row['cpu_s']:.1f} CPU s, peak {row['peak_rss'] / 2**20:,.0f} MiB")
        for path in (fasta, fasta.with_name(fasta.name + ".fai")):
            path.unlink()
    for runs in result["commands"].values():
        peaks = sorted((int(s), r["peak_rss"]) for s, r in runs["long"].items() if "peak_rss" in r)
        runs["bytes_per_base"] = {f"{a}-{b}": round((pb - pa) / ((b - a) * MB), 2)
                                  for (a, pa), (b, pb) in zip(peaks, peaks[1:])}
    return result


def show(result: dict) -> None:
    table = Table(title="one long record: the command's peak RSS (after its imports) and bases per CPU second")
    for col in ("command", "input", "CPU s", "peak MiB", "imports' peak MiB", "bases / CPU s", "vs 10 kb records"):
        table.add_column(col, justify="left" if col in ("command", "input") else "right")
    for name, runs in result["commands"].items():
        rows = [(f"{runs['short']['bases'] // MB} Mb in 10 kb records", runs["short"] | {"vs_short": 1.0}),
                *((f"{size} Mb record", r) for size, r in runs["long"].items())]
        for label, r in rows:
            if "skipped" in r:
                table.add_row(name, label, "-", f"({r['projected_rss'] / 2**20:,.0f} projected)", "-", "-", "-")
            else:
                table.add_row(name, label, f"{r['cpu_s']:.1f}", f"{r['peak_rss'] / 2**20:,.0f}",
                              f"{r['imports_rss'] / 2**20:,.0f}", f"{r['bases_per_cpu_s']:,}", f"{r['vs_short']:.2f}")
        slopes = ", ".join(f"{k} Mb: {v:+.2f}" for k, v in runs["bytes_per_base"].items())
        table.add_row(name, f"growth, bytes per base ({slopes})", "", "", "", "", "")
    Console(width=max(Console().width, 120)).print(table)


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
    code = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result |= {"model": str(args.model or "kmer, trained on data_samples/species_train.fa (max_len 400)"),
               "threads": args.threads, "sizes_mb": sorted(args.sizes), "code": code.stdout.strip()}
    args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    show(result)


if __name__ == "__main__":
    main()
