"""What long context buys: species of origin from genome windows, and a synthetic long-range task.

Species: every species in ../shared/data/genomes with at least 500 kb of sequence is a class (the two
E. coli files are one class). Windows of 1,024 and 16,384 bases are drawn from each genome's training
region; validation and test come from the held-out ends of every contig (`genomix train --genome`).

Synthetic "same ends": the first and last 3/8 of a random sequence of N bases are each drawn GC-rich or
AT-rich (GC content 0.5 ± CONTRAST), the middle quarter neutral (GC 0.5); the label says whether the two
ends are alike. K-mer frequencies, and the mean of any feature computed from a window shorter than N/4 (a
CNN's pooled features), are sums of a part that depends on the first end and a part that depends on the
last, and the label is their XOR: a linear read-out of such sums gets at most 3 of the 4 kinds right (e.g.
"same" only when both ends are GC-rich), so 0.75 accuracy is the ceiling of models without long-range
links. Only a model that links positions at least N/4 apart can go beyond it.

Results are merged into docs/long_range.json (the benchmark can run in pieces) and docs/LONG_RANGE.md is
rewritten from them.

    python bench/long_range.py --task synthetic --lengths 16384 --models paramixer-cdil cnn kmer
    python bench/long_range.py --task species --lengths 1024 16384
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genomix.applying.evaluating import evaluate
from genomix.console import console, resolve_device, reuse_large_allocations
from genomix.fitting.training import TrainSettings, fit
from genomix.io.genomes import GenomeSet
from genomix.io.reading import Record
from genomix.io.sources import RecordSource
from genomix.models.modelfile import save_model

from provenance import code_version

REPO = Path(__file__).resolve().parents[1]
GENOMES = REPO.parent / "shared" / "data" / "genomes"
RESULTS_JSON = REPO / "docs" / "long_range.json"
REPORT = REPO / "docs" / "LONG_RANGE.md"
MODELS = ("paramixer-chord", "paramixer-cdil", "transformer", "cnn", "kmer")
MIN_SPECIES_BASES = 500_000
CONTRAST = 0.3


def species_specs(folder: Path) -> list[str]:
    """CLASS=path for every genome of a species with at least MIN_SPECIES_BASES (a class = genus_species)."""
    sizes: dict[str, int] = {}
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.fna")):
        species = "_".join(path.name.split("_")[:2])
        with open(path) as handle:
            bases = sum(len(line) - 1 for line in handle if not line.startswith(">"))
        sizes[species] = sizes.get(species, 0) + bases
        files.setdefault(species, []).append(path)
    return [f"{s}={p}" for s in sorted(files) if sizes[s] >= MIN_SPECIES_BASES for p in files[s]]


def decompress_genomes(target: Path) -> Path:
    """The genomes as plain FASTA (the shared copies are ordinary gzip, which cannot be read by position)."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(GENOMES.glob("*.fna.gz")):
        plain = target / source.name.removesuffix(".gz")
        if not plain.exists():
            with gzip.open(source, "rb") as src, open(plain, "wb") as out:
                shutil.copyfileobj(src, out)
    return target


def synthetic_records(count: int, length: int, seed: int) -> list[Record]:
    """Balanced "same ends" records (see the module docstring), reproducible from the seed."""
    rng = np.random.default_rng(seed)
    end = 3 * length // 8
    records = []
    for i in range(count):
        same = i % 2 == 0
        first_gc = bool(rng.integers(2))
        parts = [(0.5 + CONTRAST if first_gc else 0.5 - CONTRAST, end), (0.5, length - 2 * end),
                 (0.5 + CONTRAST if first_gc == same else 0.5 - CONTRAST, end)]
        seq = np.concatenate([rng.choice(list("ACGT"), size=size, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
                              for gc, size in parts])
        records.append(Record(f"synthetic_{seed}_{i}", "".join(seq), "same" if same else "different"))
    return records


def train_and_test(train, val, test_inputs: list[str], test_genomes: list[str], settings: TrainSettings,
                   folder: Path) -> tuple[dict, float, int]:
    """Fit, save, evaluate on the test inputs (or the genomes' test regions): (metrics, seconds, epochs).

    The metrics include the k-mer term's weight in the blend, when the model has one."""
    started = time.perf_counter()
    trained = fit(train, settings, val)
    seconds = time.perf_counter() - started
    path = folder / "model.gmx"
    save_model(trained, path)
    result, _ = evaluate(path, RecordSource(test_inputs, genomes=test_genomes), device=settings.device)
    result["composition_weight"] = trained.card.training.composition_weight
    return result, seconds, trained.card.training.epochs_run


def model_settings(variant: str, composition: bool) -> tuple[dict, str]:
    """TrainSettings fields and CLI flags of a MODELS entry, with or without the k-mer composition term."""
    without = not composition and variant != "kmer"
    fields = {"arch": variant, "options": {"composition": False} if without else {}}
    return fields, f"--arch {variant}" + (" --no-composition" if without else "")


def run_species(length: int, model: str, args, folder: Path) -> dict:
    specs = species_specs(decompress_genomes(args.work_dir / "genomes"))
    fields, flags = model_settings(model, args.composition)
    settings = TrainSettings(**fields, genome_window=length, max_len=length, epochs=args.epochs, rc_augment=True,
                             windows_per_epoch=max(64, args.bases_per_epoch // length), seed=args.seed,
                             batch_size=max(1, min(32, args.bases_per_batch // length)), device=args.device)
    data = GenomeSet.open(specs, length, settings.holdout_fraction)
    result, seconds, epochs = train_and_test(data, None, [], specs, settings, folder)
    command = (f"python bench/long_range.py --task species --lengths {length} --models {model} --epochs {args.epochs} "
               f"--bases-per-epoch {args.bases_per_epoch}{'' if args.composition else ' --no-composition'}"
               f"  # = genomix train --genome CLASS=genome.fna ... {flags} "
               f"--genome-window {length} --rc-augment --windows-per-epoch {settings.windows_per_epoch} "
               f"--batch-size {settings.batch_size}")
    return {"classes": len({s.split('=')[0] for s in specs}), "command": command, "train_seconds": seconds,
            "epochs": epochs, **result}


def run_synthetic(length: int, model: str, args, folder: Path) -> dict:
    fields, _ = model_settings(model, args.composition)
    settings = TrainSettings(**fields, max_len=length, epochs=args.epochs, seed=args.seed, patience=args.epochs,
                             batch_size=max(1, min(32, args.bases_per_batch // length)), device=args.device)
    train = synthetic_records(args.records, length, seed=1)
    val = synthetic_records(max(64, args.records // 5), length, seed=2)
    test_file = folder / "test.fa"
    test_file.write_text("".join(f">{r.id} label={r.label}\n{r.seq}\n"
                                 for r in synthetic_records(max(200, args.records // 5), length, seed=3)))
    result, seconds, epochs = train_and_test(train, val, [str(test_file)], [], settings, folder)
    command = (f"python bench/long_range.py --task synthetic --lengths {length} --models {model} "
               f"--records {args.records} --epochs {args.epochs}" + ("" if args.composition else " --no-composition"))
    return {"classes": 2, "command": command, "train_seconds": seconds, "epochs": epochs, **result}


def label(row: dict) -> str:
    """The model, and whether it blends in the k-mer composition term (rows from before it existed do not)."""
    return row["model"] + (" + k-mer term" if row.get("composition") and row["model"] != "kmer" else "")


def name(row: dict) -> str:
    """The label, with the weight of the k-mer term that validation chose."""
    return label(row) + (f" ({row['composition_weight']:.2f})" if label(row) != row["model"] else "")


def key(row: dict) -> tuple:
    return row["task"], row["length"], label(row)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each with the measured figures and whether it is met."""
    found = {key(r): r for r in rows}
    mixers = [n for n in dict.fromkeys(label(r) for r in rows) if n.startswith("paramixer")]
    lines = ["## Targets", "", "| target | measured | met? |", "|---|---|---|"]
    for task in ("species", "synthetic"):
        at_long = {label(r): r["accuracy"] for r in sorted(rows, key=lambda r: MODELS.index(r["model"]))
                   if (r["task"], r["length"]) == (task, 16384)}
        if any(n in at_long for n in mixers) and len(at_long) > 1:
            top = max(at_long.values())
            leaders = [n for n, a in at_long.items() if a == top]
            figures = ", ".join(f"{n} {a:.4f}" for n, a in at_long.items())
            verdict = "no (" + ", ".join(leaders) + ")"
            if all(n in mixers for n in leaders):
                verdict = "yes"
            elif any(n in mixers for n in leaders):
                verdict = "tied (" + ", ".join(leaders) + ")"
            lines.append(f"| {task} at 16,384: paramixer most accurate | {figures} | {verdict} |")
    for variant in mixers:
        short, long = found.get(("species", 1024, variant)), found.get(("species", 16384, variant))
        if short and long:
            lines.append(f"| species: {variant} at 16,384 beats itself at 1,024 | {long['accuracy']:.4f} vs "
                         f"{short['accuracy']:.4f} | {'yes' if long['accuracy'] > short['accuracy'] else 'no'} |")
    for length in sorted({r["length"] for r in rows if r["task"] == "synthetic"}):
        mine = max((found[("synthetic", length, m)] for m in mixers if ("synthetic", length, m) in found),
                   key=lambda r: r["accuracy"], default=None)
        local = [found[("synthetic", length, m)] for m in ("kmer", "cnn") if ("synthetic", length, m) in found]
        if mine and local:
            figures = ", ".join(f"{name(r)} {r['accuracy']:.4f}" for r in [mine, *local])
            met = mine["accuracy"] >= 0.9 and all(r["accuracy"] < 0.8 for r in local)
            lines.append(f"| synthetic at {length:,}: paramixer ≥ 0.9 while kmer and cnn stay near their 0.75 "
                         f"ceiling (< 0.8) | {figures} | {'yes' if met else 'no'} |")
    return lines + ["", "Where a target reads `no` or `tied`, `docs/GENOMES.md` (\"Targets not met\") says by how "
                    "much, what was tried and what is left.", ""]


def write_report(rows: list[dict]) -> None:
    lines = ["# What long context buys", "", (__doc__ or "").split("\n\n")[1].replace("\n", " "), "",
             (__doc__ or "").split("\n\n")[2].replace("\n", " "), "",
             f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}. Produced by `python bench/long_range.py`; each row's command is listed below. "
             "Training times were taken while other jobs shared the 2 cores: read them as upper bounds. "
             "What the figures mean: `docs/GENOMES.md`.", "",
             "Rows are merged from runs made at different times; the `code` column names the commit each was "
             "measured with (k-mer embeddings and factor_norm arrived in 985717b, the choice of strands from the "
             "data in 888f2b4).", "",
             *targets(rows)]
    for task in ("species", "synthetic"):
        task_rows = sorted((r for r in rows if r["task"] == task),
                           key=lambda r: (r["length"], MODELS.index(r["model"]), bool(r.get("composition"))))
        if not task_rows:
            continue
        lines += [f"## {task}", "",
                  "| window | model | test windows | accuracy | MCC | AUROC | epochs | train time (s) | code |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['length']:,} | {name(r)} | {r['n']} | {r['accuracy']:.4f} | {r['mcc']:.4f} | "
                  f"{r['auroc']:.4f} | {r['epochs'] or '—'} | {r['train_seconds']:.0f} | {r['code']} |"
                  for r in task_rows]
        lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in task_rows] + [""]
    REPORT.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("species", "synthetic"), required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 16384])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--bases-per-epoch", type=int, default=2_000_000, help="species: training bases per epoch")
    parser.add_argument("--bases-per-batch", type=int, default=32 * 1024, help="batch size = this / length")
    parser.add_argument("--records", type=int, default=2000, help="synthetic: training records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-composition", dest="composition", action="store_false",
                        help="neural models without their k-mer term")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "genomix-long-range")
    parser.add_argument("--report-only", action="store_true", help="rewrite LONG_RANGE.md from the results file")
    args = parser.parse_args()
    reuse_large_allocations()
    code = code_version()  # taken before the runs: the code they start with
    rows = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else []
    if not args.report_only:
        if args.task == "species" and not GENOMES.is_dir():
            raise SystemExit(f"no genomes at {GENOMES}: the species task needs the shared data")
        for length in args.lengths:
            for model in args.models:
                console.rule(f"{args.task} · {length} · {model}")
                with tempfile.TemporaryDirectory() as tmp:
                    run = run_species if args.task == "species" else run_synthetic
                    row = {"task": args.task, "length": length, "model": model} | run(length, model, args, Path(tmp))
                console.log(f"{args.task} {length} {model}: accuracy {row['accuracy']:.4f}, MCC {row['mcc']:.4f}, "
                            f"{row['train_seconds']:.0f} s")
                keep = {k: row[k] for k in ("task", "length", "model", "classes", "n", "accuracy", "mcc", "auroc",
                                            "epochs", "train_seconds", "command", "composition_weight")}
                keep |= {"code": code, "device": str(resolve_device(args.device)), "composition": args.composition}
                rows = [r for r in rows if key(r) != key(keep)] + [keep]
                RESULTS_JSON.write_text(json.dumps(rows, indent=1))
                write_report(rows)
    write_report(rows)


if __name__ == "__main__":
    main()
