"""Open-set benchmark: leave one species out, train on the training regions of the others, then score the
held-out (test) regions of the trained species (known) and windows of the left-out species (unknown) with every
novelty method (`genomix.applying.novelty`). Rotates over the species; writes docs/open_set.json.
With --kraken2, genomix trains nothing: Kraken2 gets, per fold, a database of the trained species' training
regions and calls the same known and unknown windows; its figures go under the `kraken2` key of --output.

    PYTHONPATH=. python bench/open_set.py --windows 150 1000 --epochs 3
    PYTHONPATH=. python bench/open_set.py --kraken2 --unknown 200 --known-per-class 60
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import kraken2_side
import numpy as np

from genomix.applying.novelty import METHODS, Inputs, novelty_of, open_set_metrics
from genomix.applying.scoring import Scorer
from genomix.fitting.training import TrainSettings, fit
from genomix.io.genomes import Genome, GenomeSet
from genomix.sequences.tokens import encode

ROOT = Path(__file__).resolve().parents[1]
GENOMES = ROOT.parent / "shared" / "data" / "genomes"
SAME_SPECIES = {"escherichia_coli_MIIJ01000039_contig": "escherichia_coli"}  # both E. coli files: one class


def species(cache: Path) -> dict[str, list[Path]]:
    """Class → its genome files, decompressed into `cache` (plain gzip cannot be read by position), the two
    E. coli files together."""
    classes: dict[str, list[Path]] = {}
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(GENOMES.glob("*.fna.gz")):
        stem = path.name.removesuffix(".fna.gz")
        plain = cache / f"{stem}.fna"
        if not plain.exists():
            plain.write_bytes(gzip.decompress(path.read_bytes()))
        label = SAME_SPECIES.get(stem, "_".join(stem.split("_")[:2]))
        classes.setdefault(label, []).append(plain)
    return classes


def genome_set(classes: dict[str, list[Path]], window: int) -> GenomeSet:
    return GenomeSet(tuple((label, Genome(p)) for label, paths in classes.items() for p in paths), window)


def scored(model, records) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every method's novelty score of the records, and the called class index of each."""
    scorer = Scorer.of(model, "cpu")
    tokens = [encode(r.seq) for r in records]
    log_probs, _, features = scorer.records_with_features(tokens)
    inputs = Inputs(log_probs.numpy(), features.numpy(), tokens, scorer.rc)
    return novelty_of(model).scores(model.network, inputs), inputs.log_probs.argmax(1)


def fold(classes: dict[str, list[Path]], left_out: str, window: int, args: argparse.Namespace) -> dict:
    known_classes = {c: p for c, p in classes.items() if c != left_out}
    settings = TrainSettings(arch=args.arch, genome_window=window, windows_per_epoch=args.windows_per_epoch,
                             epochs=args.epochs, lr=3e-3, batch_size=32, device="cpu", seed=1,
                             options={"dim": 32, "hidden": 32, "layers": 2, "composition": args.composition}
                             if args.arch != "kmer" else {})
    started = time.perf_counter()
    model = fit(genome_set(known_classes, window), settings)
    seconds = time.perf_counter() - started
    known = genome_set(known_classes, window).tiles("test", args.known_per_class)
    unknown = unknown_tiles(genome_set({left_out: classes[left_out]}, window), args)
    known_scores, calls = scored(model, known)
    unknown_scores, _ = scored(model, unknown)
    correct = calls == np.array([model.classes.index(r.label) for r in known])
    thresholds = model.card.novelty["thresholds"]
    if args.scores:  # every record's scores (validation: the records the thresholds were set on, as `fit` tiles
        # them), for choosing and trying combinations of methods without training again
        Path(args.scores).mkdir(parents=True, exist_ok=True)
        val = genome_set(known_classes, window).tiles("val", max(8, args.windows_per_epoch // len(known_classes) // 4))
        np.savez(Path(args.scores) / f"{left_out}_{window}.npz", correct=correct,
                 **{f"val_{m}": s for m, s in scored(model, val)[0].items()},
                 **{f"known_{m}": s for m, s in known_scores.items()},
                 **{f"unknown_{m}": s for m, s in unknown_scores.items()})
    return {"left_out": left_out, "window": window, "train_seconds": round(seconds, 1), "known": len(known),
            "unknown": len(unknown), "methods": {
                m: open_set_metrics(known_scores[m], unknown_scores[m], thresholds[m], correct)
                for m in METHODS if m in known_scores}}


def unknown_tiles(genomes: GenomeSet, args: argparse.Namespace) -> list:
    """Up to --unknown tiles of the left-out species, evenly thinned: from its test region, or with
    `--unknown-from all` from its whole genome (what long windows need: a phage's test region holds one)."""
    if args.unknown_from == "test":
        return genomes.tiles("test", args.unknown)
    tiles = [t for split in ("train", "val", "test") for t in genomes.tiles(split)]
    picks = np.linspace(0, len(tiles) - 1, min(args.unknown, len(tiles))).round().astype(int)
    return [tiles[i] for i in np.unique(picks)]


def kraken2_fold(classes: dict[str, list[Path]], left_out: str, args: argparse.Namespace) -> list[dict] | None:
    """Kraken2 on one left-out species, every window: the share of known and unknown windows it leaves
    unclassified, calls only to the root, or calls to a species (right or wrong for the known ones)."""
    known_classes = {c: p for c, p in classes.items() if c != left_out}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        db = kraken2_side.build_database(known_classes, Path(tmp) / "db", GenomeSet.holdout_fraction)
        if db is None:
            return None
        seconds = time.perf_counter() - started
        results = []
        for window in args.windows:
            sets = {"known": genome_set(known_classes, window).tiles("test", args.known_per_class),
                    "unknown": genome_set({left_out: classes[left_out]}, window).tiles("test", args.unknown)}
            result = {"left_out": left_out, "window": window, "build_seconds": round(seconds, 1)}
            for name, records in sets.items():
                fasta = Path(tmp) / f"{name}.fa"
                fasta.write_text("".join(f">r{i}\n{r.seq}\n" for i, r in enumerate(records)))
                calls = kraken2_side.classify(db, fasta)["calls"]
                called = [calls[f"r{i}"] for i in range(len(records))]
                result[name] = {"records": len(records), "unclassified": share(c is None for c in called),
                                "root_only": share(c == "root" for c in called),
                                "species": share(c not in (None, "root") for c in called),
                                "correct": share(c == r.label for c, r in zip(called, records))}
            results.append(result)
    return results


def share(flags) -> float:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4)


def kraken2_table(folds: list[dict]) -> str:
    """Markdown: per window, the mean over left-out species of Kraken2's shares on known and unknown windows."""
    lines = ["| window | folds | unknown: unclassified | unknown: root only | unknown: called a known species | "
             "known: unclassified | known: correct species |", "|---" * 7 + "|"]
    for window in sorted({f["window"] for f in folds}):
        mine = [f for f in folds if f["window"] == window]
        means = [np.mean([f[s][n] for f in mine]) for s, n in (("unknown", "unclassified"), ("unknown", "root_only"),
                                                                ("unknown", "species"), ("known", "unclassified"),
                                                                ("known", "correct"))]
        lines.append(f"| {window} | {len(mine)} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines)


def run_kraken2(classes: dict[str, list[Path]], args: argparse.Namespace) -> None:
    """Every fold's Kraken2 figures under the `kraken2` key of --output, kept beside genomix's folds."""
    output = Path(args.output)
    report = json.loads(output.read_text()) if output.exists() else {}
    folds = []
    for left_out in args.only or classes:
        results = kraken2_fold(classes, left_out, args)
        if results is None:
            return
        folds += results
        print(json.dumps(results), flush=True)
        report["kraken2"] = {"settings": {k: v for k, v in vars(args).items() if k in KRAKEN2_SETTINGS},
                             "folds": folds}
        output.write_text(json.dumps(report, indent=1) + "\n")
    print(kraken2_table(folds))


KRAKEN2_SETTINGS = ("windows", "known_per_class", "unknown", "only")


def table(folds: list[dict]) -> str:
    """Markdown: per window and method, the mean over left-out species of each open-set figure."""
    names = ["auroc", "fpr_at_95", "unknown_called_known", "known_kept", "known_accuracy", "known_accuracy_kept"]
    lines = ["| window | method | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for window in sorted({f["window"] for f in folds}):
        mine = [f for f in folds if f["window"] == window]
        for method in METHODS:
            if all(method in f["methods"] for f in mine):
                means = [np.mean([f["methods"][method][n] for f in mine]) for n in names]
                lines.append(f"| {window} | {method} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines)


def summarise(paths: list[str], output: str) -> None:
    """Merge the folds of several runs into `output` and print the table."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    folds = [f for run in runs for f in run["folds"]]
    Path(output).write_text(json.dumps({"settings": [r["settings"] for r in runs], "folds": folds}, indent=1) + "\n")
    print(table(folds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, nargs="+", default=[150, 1000])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--composition", action=argparse.BooleanOptionalAction, default=True,
                        help="blend in the k-mer term (the default model's)")
    parser.add_argument("--windows-per-epoch", type=int, default=2000)
    parser.add_argument("--known-per-class", type=int, default=100)
    parser.add_argument("--unknown", type=int, default=500)
    parser.add_argument("--unknown-from", choices=("test", "all"), default="test",
                        help="draw the left-out species' windows from its test region or from its whole genome")
    parser.add_argument("--only", nargs="*", help="left-out species to run (default: every one)")
    parser.add_argument("--scores", help="folder for every record's scores (one .npz per fold)")
    parser.add_argument("--cache", default="/tmp/genomix_open_set", help="folder for the decompressed genomes")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "open_set.json"))
    parser.add_argument("--kraken2", action="store_true",
                        help="Kraken2 side by side only (no genomix training): its figures under `kraken2` in --output")
    parser.add_argument("--summarise", nargs="+", metavar="RUN.json", help="merge runs into --output; print a table")
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.summarise, args.output)
    classes = species(Path(args.cache))
    if args.kraken2:
        return run_kraken2(classes, args)
    results = []
    for window in args.windows:
        for left_out in args.only or classes:
            results.append(fold(classes, left_out, window, args))
            print(json.dumps(results[-1]), flush=True)
            Path(args.output).write_text(json.dumps({"settings": vars(args), "folds": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
