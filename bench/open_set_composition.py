"""Other composition detectors for the open-set benchmark, tried against the shipped `kmer` and `combined` scores:
each fold's trained species give their statistics (from `--per-class` random training windows), and the same
known, unknown and validation windows `bench/open_set.py` scored are scored again, alone and averaged with the
saved `msp` score (both standardised on validation, as `combined` is). Reads the `--scores DIR` of a run of
`bench/open_set.py` with the same window and tile counts; trains nothing.

    PYTHONPATH=. python bench/open_set_composition.py /tmp/scores --window 1000 --known-per-class 60 --unknown 200

Detectors (higher: more unusual), on both strands' k-mer frequencies (`novelty.kmer_profiles`):
- `markov{k}`: minus the best class's per-base log-likelihood under its order-(k-1) Markov chain;
- `markov{k}-own`: the same, less the record's likelihood under its own base composition (removes GC);
- `markov{k}-pooled`: the same, less the likelihood under one chain of every trained species (a background);
- `gauss{k}` (k ≤ 4): squared Mahalanobis distance to the nearest class under that class's own (Ledoit-Wolf) covariance;
- `knn{k}` (k ≤ 4): distance to the 5th nearest training window after whitening by the shared covariance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import open_set
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from genomix.applying.novelty import kmer_profiles
from genomix.sequences.tokens import encode

MAX_COVARIANCE_K = 4  # `gauss` and `knn` stop here: a covariance of 4^5 k-mers per class takes minutes a fold


def chains(profiles: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """(classes + 1, 4^k) log chance of each k-mer's last base given the others: one chain per class, then
    the chain of every class pooled."""
    sums = [profiles[y == c].sum(0) for c in range(y.max() + 1)] + [profiles.sum(0)]
    counts = np.stack(sums).reshape(len(sums), -1, 4) + 1e-3
    return np.log(counts / counts.sum(2, keepdims=True)).reshape(len(sums), -1)


def markov(train: np.ndarray, y: np.ndarray, sets: list[np.ndarray], tokens: list[list], k: int) -> dict:
    logp = chains(train, y, k)
    result = {}
    for name in ("", "-own", "-pooled"):
        scores = []
        for profiles, toks in zip(sets, tokens):
            likelihood = profiles @ logp.T
            best = likelihood[:, :-1].max(1)
            if name == "-own":
                composition = kmer_profiles(toks, 1, both_strands=True)
                best = best - (composition * np.log(np.maximum(composition, 1e-9))).sum(1)
            elif name == "-pooled":
                best = best - likelihood[:, -1]
            scores.append(-best)
        result[f"markov{k}{name}"] = scores
    return result


def gaussians(train: np.ndarray, y: np.ndarray, sets: list[np.ndarray], k: int) -> dict:
    distances = [[] for _ in sets]
    for c in range(y.max() + 1):
        mine = train[y == c]
        values, vectors = np.linalg.eigh(LedoitWolf().fit(mine).covariance_)
        whiten = vectors / np.sqrt(np.maximum(values, 1e-12))
        for out, x in zip(distances, sets):
            out.append((((x - mine.mean(0)) @ whiten) ** 2).sum(1))
    return {f"gauss{k}": [np.min(d, 0) for d in distances]}


def neighbours(train: np.ndarray, y: np.ndarray, sets: list[np.ndarray], k: int) -> dict:
    centred = train - np.stack([train[y == c].mean(0) for c in range(y.max() + 1)])[y]
    covariance = centred.T @ centred / len(centred)
    values, vectors = np.linalg.eigh(covariance + 0.01 * np.trace(covariance) / len(covariance) * np.eye(len(train.T)))
    whiten = vectors / np.sqrt(values)
    index = NearestNeighbors(n_neighbors=5).fit(train @ whiten)
    return {f"knn{k}": [index.kneighbors(x @ whiten)[0][:, -1] for x in sets]}


def fold(classes: dict, left_out: str, saved: dict, args: argparse.Namespace) -> dict[str, float]:
    """AUROC of every detector, alone and with `msp`, on one left-out species."""
    known_classes = {c: p for c, p in classes.items() if c != left_out}
    genomes = open_set.genome_set(known_classes, args.window)
    train = genomes.sample(args.per_class, np.random.default_rng(1))
    y = np.array([genomes.classes.index(r.label) for r in train])
    records = [genomes.tiles("val", max(8, args.windows_per_epoch // len(known_classes) // 4)),
               genomes.tiles("test", args.known_per_class),
               open_set.unknown_tiles(open_set.genome_set({left_out: classes[left_out]}, args.window), args)]
    tokens = [[encode(r.seq) for r in split] for split in records]
    if [len(t) for t in tokens] != [len(saved[f"{s}_msp"]) for s in ("val", "known", "unknown")]:
        raise SystemExit(f"{left_out}: the windows differ from the saved scores' (other tile counts?)")
    train_tokens = [encode(r.seq) for r in train]
    detectors = {}
    for k in args.k:
        train_profiles = kmer_profiles(train_tokens, k, both_strands=True)
        sets = [kmer_profiles(t, k, both_strands=True) for t in tokens]
        detectors |= markov(train_profiles, y, sets, tokens, k)
        if k <= MAX_COVARIANCE_K:
            detectors |= gaussians(train_profiles, y, sets, k) | neighbours(train_profiles, y, sets, k)
    detectors |= {name: [saved[f"{s}_{name}"] for s in ("val", "known", "unknown")] for name in ("kmer", "msp")}
    if args.save:  # the saved arrays and every detector's, for bench/open_set_combine.py --bases
        args.save.mkdir(parents=True, exist_ok=True)
        np.savez(args.save / f"{left_out}_{args.window}.npz", **(saved | {
            f"{split}_{name}": s for name, scores in detectors.items()
            for split, s in zip(("val", "known", "unknown"), scores)}))
    result = {}
    for name, (val, known, unknown) in detectors.items():
        result[name] = auroc(known, unknown)
        if name != "msp":
            standard = [(s - val.mean()) / val.std() + (saved[f"{split}_msp"] - saved["val_msp"].mean())
                        / saved["val_msp"].std() for s, split in ((known, "known"), (unknown, "unknown"))]
            result[f"{name}+msp"] = auroc(*standard)
    return result


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the --scores folder of bench/open_set.py")
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--per-class", type=int, default=330, help="training windows per class for the statistics")
    parser.add_argument("--windows-per-epoch", type=int, default=1100, help="as the run had (sets its validation)")
    parser.add_argument("--known-per-class", type=int, default=60)
    parser.add_argument("--unknown", type=int, default=200)
    parser.add_argument("--unknown-from", choices=("test", "all"), default="test")
    parser.add_argument("--cache", default="/tmp/genomix_open_set")
    parser.add_argument("--save", type=Path, help="folder for every record's scores, the saved ones included")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    classes = open_set.species(Path(args.cache))
    folds = {}
    for path in sorted(args.folder.glob(f"*_{args.window}.npz")):
        left_out = path.name.removesuffix(f"_{args.window}.npz")
        folds[left_out] = fold(classes, left_out, dict(np.load(path)), args)
        print(left_out, json.dumps({k: round(v, 3) for k, v in folds[left_out].items()}), flush=True)
    means = {name: float(np.mean([f[name] for f in folds.values()])) for name in next(iter(folds.values()))}
    for name, value in sorted(means.items(), key=lambda kv: -kv[1]):
        print(f"{value:.3f}  {name}")
    if args.output:
        args.output.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "mean_auroc": means,
                                           "folds": folds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
