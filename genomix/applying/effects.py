"""How a change to a sequence changes a prediction: the in-silico mutagenesis core of `explain --method ism`.

Edited token arrays are scored exactly as `predict` scores a record (`genomix.applying.scoring.Scorer`: tiled windows,
the model's strands, the temperature). Only the windows that cover the edited base are rescored: a record's
score is the renormalised mean of its windows' log-probabilities, so the other windows' rows are reused and the
result equals `predict` on the mutated record.
"""

from __future__ import annotations

import numpy as np
import torch

from genomix.applying.scoring import Scorer, log_odds
from genomix.sequences.batching import window_starts
from genomix.sequences.tokens import BASE_TOKENS

BASES = "ACGT"


def substitution_log_probs(scorer: Scorer, tokens: np.ndarray, start: int = 0,
                           end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The record's own calibrated log-probabilities (classes,), and those of the record with base p set to
    A, C, G or T for p in [start, end), (end - start, 4, classes); a position's own base gives the own row."""
    end = len(tokens) if end is None else end
    starts = window_starts(len(tokens), scorer.max_len)
    windows = [tokens[s : s + scorer.max_len] for s in starts]
    reference = scorer.window_rows(windows)
    total = reference.sum(0)
    mutants: list[np.ndarray] = []
    where: list[tuple[int, int, int]] = []  # (position - start, base, window) of each mutant window
    for p in range(start, end):
        covering = [w for w, s in enumerate(starts) if s <= p < s + len(windows[w])]
        for b, token in enumerate(BASE_TOKENS):
            if tokens[p] == token:
                continue
            for w in covering:
                mutant = windows[w].copy()
                mutant[p - starts[w]] = token
                mutants.append(mutant)
                where.append((p - start, b, w))
    sums = total.expand(end - start, 4, len(total)).clone()
    if mutants:
        rows = scorer.window_rows(mutants)
        index = torch.tensor(where)
        sums.index_put_((index[:, 0], index[:, 1]), rows - reference[index[:, 2]], accumulate=True)
    return scorer.combine(total, len(windows)).numpy(), scorer.combine(sums, len(windows)).numpy()


def substitution_effects(scorer: Scorer, tokens: np.ndarray, target: int, start: int = 0,
                         end: int | None = None) -> np.ndarray:
    """(end - start, 4): the change in class `target`'s log-odds when base p is set to A, C, G or T (0 for
    a position's own base)."""
    own, table = substitution_log_probs(scorer, tokens, start, end)
    return log_odds(table, target) - log_odds(own, target)
