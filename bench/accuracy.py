"""Accuracy of every model on every labelled set: train on train.fa.gz, report on test.fa.gz.

Each (set, model) pair is trained with genomix's defaults (what a user gets without tuning) and
evaluated on the held-out test split; results are merged into docs/results.json (so the benchmark can
run in pieces) and docs/RESULTS.md is rewritten from all results so far. The command line printed for
each row reproduces it with the genomix CLI.

    python bench/accuracy.py                                  # everything (about an hour on 2 cores)
    python bench/accuracy.py --datasets ecoli_sigma70_promoters --models paramixer kmer
    python bench/accuracy.py --seeds 1 2                      # more seeds, merged with those already run

With several seeds per (set, model), RESULTS.md shows their mean (± the standard deviation) and the
targets are judged on the mean: one seed moves test MCC by a few hundredths on these sets.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genomix.applying.evaluating import evaluate
from genomix.console import console, reuse_large_allocations
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import read_inputs
from genomix.io.sources import RecordSource
from genomix.models import DEFAULT_MODEL
from genomix.models.modelfile import save_model

from provenance import code_version

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODELS = ("paramixer-cdil", "paramixer-chord", "transformer", "cnn", "kmer")
# Published figures on the same source data (different, larger splits: compare loosely).
PUBLISHED = {
    "human_nontata_promoters": "CNN 0.846 accuracy (Genomic Benchmarks, 27k training sequences)",
    "human_enhancers_cohn": "CNN 0.695 accuracy (Genomic Benchmarks, 21k training sequences)",
    "ecoli_sigma70_promoters": "CNN MCC 0.84 (Umarov & Solovyev 2017, cross-validation)",
}
MISSED_TARGETS = REPO / "docs" / "MISSED_TARGETS.md"  # hand-written: what was tried for each missed target


def labelled_sets() -> list[str]:
    return sorted(d.name for d in DATA.iterdir() if (d / "train.fa.gz").is_file() and (d / "test.fa.gz").is_file())


def run_one(dataset: str, model: str, seed: int, composition: bool = True) -> dict:
    """Train with defaults (but the k-mer composition term, if told), evaluate on test; return one result row."""
    train_file, test_file = DATA / dataset / "train.fa.gz", DATA / dataset / "test.fa.gz"
    started = time.perf_counter()
    options = {} if composition or model == "kmer" else {"composition": False}
    settings = TrainSettings(arch=model, options=options, seed=seed, device="cpu")
    trained = fit(read_inputs([str(train_file)]), settings)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        save_model(trained, Path(tmp) / "model.gmx")
        result, _ = evaluate(Path(tmp) / "model.gmx", RecordSource([str(test_file)]), device="cpu")
    with_term = trained.network.config.get("composition", False)
    flags = f"--arch {model}" + ("" if with_term or model == "kmer" else " --no-composition")
    command = (f"genomix train ../shared/data/{dataset}/train.fa.gz -o {dataset}.gmx {flags} --seed {seed} "
               f"--device cpu && genomix evaluate {dataset}.gmx ../shared/data/{dataset}/test.fa.gz")
    return {"dataset": dataset, "model": model, "seed": seed, "train_seconds": round(seconds, 1),
            "epochs": trained.card.training.epochs_run, "command": command,
            "strands": "both" if trained.both_strands else "given",
            "strand_signal": trained.card.training.strand_signal,
            "composition": with_term, "composition_weight": trained.card.training.composition_weight,
            **{k: result[k] for k in ("n", "accuracy", "balanced_accuracy", "mcc", "auroc", "auprc", "ece")}}


# Issue targets for the default Paramixer on the test splits: (set, metric, at least).
TARGETS = [("human_nontata_promoters", "accuracy", 0.88), ("human_enhancers_cohn", "accuracy", 0.75),
           ("ecoli_sigma70_promoters", "mcc", 0.84)]
TIME_LIMIT_S = 15 * 60


METRICS = ("accuracy", "balanced_accuracy", "mcc", "auroc", "auprc", "ece")


def summarise(rows: list[dict]) -> list[dict]:
    """One row per (set, model): metrics averaged over its seeds, the spread of accuracy and MCC, the slowest
    training (the time target holds for every run), and every seed's command."""
    summary = []
    for key in dict.fromkeys(variant(r) for r in rows):
        runs = sorted((r for r in rows if variant(r) == key), key=lambda r: r["seed"])
        row = runs[-1] | {m: float(np.mean([r[m] for r in runs])) for m in METRICS}
        row |= {f"{m}_std": float(np.std([r[m] for r in runs])) for m in ("accuracy", "mcc")}
        row |= {"seeds": [r["seed"] for r in runs], "train_seconds": max(r["train_seconds"] for r in runs),
                "epochs": max(r["epochs"] or 0 for r in runs) or None, "commands": [r["command"] for r in runs],
                "code": ", ".join(dict.fromkeys(r.get("code", "—") for r in runs))}
        if row.get("composition"):
            row["composition_weight"] = float(np.mean([r["composition_weight"] for r in runs]))
        summary.append(row)
    return summary


def variant(row: dict) -> tuple[str, str, bool]:
    """(set, model, with the k-mer composition term): rows from before the term existed have none."""
    return row["dataset"], row["model"], bool(row.get("composition"))


def display_name(row: dict) -> str:
    name = row["model"]
    if row.get("composition"):
        return f"{name} + k-mer term (weight {row['composition_weight']:.2f})"
    return name + (", no k-mer term" if row["model"] != "kmer" else "")


def default_rows(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(set, model) → its row as a user gets it by default: with the k-mer term where one was measured."""
    found: dict[tuple[str, str], dict] = {}
    for r in sorted(rows, key=lambda r: bool(r.get("composition"))):
        found[r["dataset"], r["model"]] = r
    return found


def spread(row: dict, metric: str) -> str:
    """The mean, and ± its standard deviation over seeds when there are several."""
    return f"{row[metric]:.4f}" + (f" ± {row[metric + '_std']:.4f}" if len(row["seeds"]) > 1 else "")


def target_lines(rows: list[dict]) -> list[str]:
    """Each target with the measured figure (mean over seeds), met or missed by how much."""
    found = default_rows(rows)
    lines = ["## Targets (default Paramixer, test split)", "", "| target | measured | met? |", "|---|---|---|"]
    for dataset, metric, floor in TARGETS:
        if (row := found.get((dataset, DEFAULT_MODEL))) is not None:
            gap = row[metric] - floor
            lines.append(f"| {dataset} {metric} ≥ {floor} | {spread(row, metric)} | "
                         f"{'yes' if gap >= 0 else f'no, by {-gap:.4f}'} |")
    for dataset in sorted({r["dataset"] for r in rows}):
        mine, kmer = found.get((dataset, DEFAULT_MODEL)), found.get((dataset, "kmer"))
        if mine and kmer:
            beats = mine["accuracy"] > kmer["accuracy"] and mine["mcc"] > kmer["mcc"]
            lines.append(f"| {dataset}: beats kmer in accuracy and MCC | {mine['accuracy']:.4f} / {mine['mcc']:.4f} "
                         f"vs {kmer['accuracy']:.4f} / {kmer['mcc']:.4f} | {'yes' if beats else 'no'} |")
        if mine:
            lines.append(f"| {dataset}: trains in under 15 min | {mine['train_seconds']:.0f} s (slowest seed) | "
                         f"{'yes' if mine['train_seconds'] < TIME_LIMIT_S else 'no'} |")
    return lines + ["", "What was tried to choose the defaults, on validation splits only: `docs/TUNING.md`.", ""]


def write_markdown(runs: list[dict], path: Path) -> None:
    rows = summarise(runs)
    lines = [
        "# Accuracy on real DNA",
        "",
        "Each model trained with genomix's defaults on `train.fa.gz` (10% of it held out, stratified, for early "
        "stopping and calibration) and measured on the untouched `test.fa.gz` of each set in `../shared/data`. "
        f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}. Produced by `python bench/accuracy.py`; each row's own command is listed below. "
        "Training times are wall-clock on a 2-core machine that was at times shared with other jobs: read them "
        "as upper bounds. "
        "Paramixer rows name their protocol (`paramixer-cdil` is the default; `docs/TUNING.md`). "
        "`+ k-mer term (weight a)` marks models that blend in a k-mer regression, the default since 09a4d1c "
        "(`docs/MODEL.md`); a is the weight chosen on validation, averaged over seeds. Rows without it are the "
        "network alone, as measured before that commit (or with `--no-composition`). Strands: `both` where "
        "training found that the set has no strand (its sequences cannot be told from their reverse complements) "
        "and so trained on both strands and scores their average; `given` otherwise (`genomix/fitting/strand.py`). "
        "Rows are merged from runs made at different times; `code` names the commit each was measured with. "
        "Where a row has several seeds, its figures are their mean (accuracy and MCC ± the standard deviation), "
        "its training time is the slowest seed's, and the targets are judged on the mean.",
        "",
        *target_lines(rows),
        *([MISSED_TARGETS.read_text(), ""] if MISSED_TARGETS.is_file() else []),
        "Long sequences (species from whole genomes at 1,024 and 16,384 bases, and a synthetic task that needs "
        "distant positions): `docs/LONG_RANGE.md`, from `bench/long_range.py`.",
        "",
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        lines += [f"## {dataset}", ""]
        if dataset in PUBLISHED:
            lines += [f"Published: {PUBLISHED[dataset]}.", ""]
        lines += ["| model | seeds | accuracy | balanced acc. | MCC | AUROC | AUPRC | ECE | strands | epochs "
                  "| train time (s) | code |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        best = max((r for r in rows if r["dataset"] == dataset), key=lambda r: r["mcc"])
        for r in sorted((r for r in rows if r["dataset"] == dataset),
                        key=lambda r: (MODELS.index(r["model"]), not r.get("composition"))):
            mark = " **best**" if r is best else ""
            lines.append(f"| {display_name(r)}{mark} | {', '.join(map(str, r['seeds']))} | {spread(r, 'accuracy')} "
                         f"| {r['balanced_accuracy']:.4f} | {spread(r, 'mcc')} "
                         f"| {r['auroc']:.4f} | {r['auprc']:.4f} | {r['ece']:.4f} | {r.get('strands', '—')} "
                         f"| {r['epochs'] or '—'} "
                         f"| {r['train_seconds']:.0f} | {r.get('code', '—')} |")
        lines += ["", "Commands:", ""] + [f"- `{c}`" for r in rows if r["dataset"] == dataset for c in r["commands"]]
        lines += [""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", help="set names under ../shared/data (default: all labelled sets)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed (default: 0)")
    parser.add_argument("--no-composition", action="store_true", help="neural models without their k-mer term")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from the results file")
    args = parser.parse_args()
    if args.report_only:
        write_markdown(json.loads(args.results.read_text()), args.results.with_name("RESULTS.md"))
        return
    if not DATA.is_dir():
        raise SystemExit(f"no data at {DATA}: this benchmark needs the shared DNA sets")
    reuse_large_allocations()  # as the genomix CLI does, so training times are what a user gets
    code = code_version()  # taken before the runs: the code they start with
    rows = json.loads(args.results.read_text()) if args.results.is_file() else []
    for seed in args.seeds:
        for dataset in args.datasets or labelled_sets():
            for model in args.models:
                console.rule(f"{dataset} · {model} · seed {seed}")
                row = run_one(dataset, model, seed, not args.no_composition) | {"code": code}
                console.log(f"{dataset} {model} seed {seed}: accuracy {row['accuracy']:.4f}, MCC {row['mcc']:.4f}, "
                            f"AUROC {row['auroc']:.4f}, {row['train_seconds']:.0f} s")
                rows = [r for r in rows if (variant(r), r["seed"]) != (variant(row), seed)] + [row]
                args.results.write_text(json.dumps(rows, indent=1))
                write_markdown(rows, args.results.with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
