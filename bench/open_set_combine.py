"""Choose the `combined` novelty score from the records' scores that `bench/open_set.py --scores DIR` saved, without
training again. Candidates: the mean or the maximum of two or more scores, each standardised by its mean and spread
on the fold's validation records (as `Novelty.calibrate` does), thresholded at the validation quantile.

Selection is leave-one-fold-out: for each left-out species, the candidate with the best mean AUROC over the *other*
folds is chosen and its figures on the held-out fold are reported, so no reported figure comes from the data it was
chosen on. The default to ship is then the candidate chosen on all folds.

    PYTHONPATH=. python bench/open_set_combine.py DIR --window 1000
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genomix.applying.novelty import open_set_metrics

BASES = ("msp", "energy", "features", "kmer", "markov")
AGGREGATES = {"mean": np.mean, "max": np.max}
KNOWN_RECALL = 0.99
FIGURES = ("auroc", "fpr_at_95", "unknown_called_known", "known_kept", "known_accuracy", "known_accuracy_kept")


def load(folder: Path, window: int) -> dict[str, dict[str, np.ndarray]]:
    """Left-out species → its fold's saved arrays."""
    return {p.name.removesuffix(f"_{window}.npz"): dict(np.load(p)) for p in sorted(folder.glob(f"*_{window}.npz"))}


def candidates(bases: Sequence[str] = BASES) -> list[tuple[str, tuple[str, ...]]]:
    singles = [("mean", (b,)) for b in bases]
    return singles + [(a, m) for a in AGGREGATES for r in range(2, len(bases) + 1)
                      for m in itertools.combinations(bases, r)]


def name(candidate: tuple[str, tuple[str, ...]]) -> str:
    aggregate, members = candidate
    return members[0] if len(members) == 1 else f"{aggregate}({'+'.join(members)})"


def figures(fold: dict[str, np.ndarray], candidate: tuple[str, tuple[str, ...]]) -> dict[str, float]:
    """The candidate's open-set figures on one fold: standardised on validation, thresholded at its quantile."""
    aggregate, members = candidate

    def combined(split: str) -> np.ndarray:
        standard = [(fold[f"{split}_{m}"] - fold[f"val_{m}"].mean()) / (fold[f"val_{m}"].std() or 1.0)
                    for m in members]
        return AGGREGATES[aggregate](standard, 0)

    val = combined("val")
    threshold = float(np.quantile(val[np.isfinite(val)], KNOWN_RECALL))
    return open_set_metrics(combined("known"), combined("unknown"), threshold, fold["correct"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--bases", nargs="+", default=list(BASES),
                        help="the scores combined (bench/open_set_composition.py --save adds more)")
    parser.add_argument("-o", "--output", type=Path, help="JSON of every candidate's per-fold figures and the choice")
    args = parser.parse_args()
    folds = load(args.folder, args.window)
    table = {name(c): {s: figures(f, c) for s, f in folds.items()} for c in candidates(args.bases)}
    auroc = {c: {s: v["auroc"] for s, v in per.items()} for c, per in table.items()}
    chosen = {held: max(auroc, key=lambda c: np.mean([v for s, v in auroc[c].items() if s != held]))
              for held in folds}
    held_out = {held: table[c][held] for held, c in chosen.items()}
    result = {"window": args.window, "chosen_per_fold": chosen,
              "held_out_mean": {k: float(np.mean([v[k] for v in held_out.values()])) for k in FIGURES},
              "chosen_on_all": max(auroc, key=lambda c: np.mean(list(auroc[c].values()))),
              "mean_auroc": {c: float(np.mean(list(v.values()))) for c, v in auroc.items()}, "folds": table}
    for c, v in sorted(result["mean_auroc"].items(), key=lambda x: -x[1])[:15]:
        print(f"{v:.3f}  {c}")
    print(json.dumps({k: result[k] for k in ("chosen_per_fold", "held_out_mean", "chosen_on_all")}, indent=1))
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
