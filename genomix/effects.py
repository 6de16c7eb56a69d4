"""How a change to a sequence changes a prediction: the core that `explain --method ism` and `variants` share.

Both score edited token arrays exactly as `predict` scores a record (tiled windows, the model's strands, the
temperature) and report a class's log-odds change. In-silico mutagenesis rescores only the windows that
cover the edited base: a record's score is the renormalised mean of its windows' log-probabilities, so the
other windows' rows are reused and the result equals `predict` on the mutated record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genomix.batching import window_starts
from genomix.calibration import calibrate
from genomix.modelfile import TrainedModel
from genomix.scoring import BATCH_SIZE, _on_device, window_means
from genomix.tokens import BASE_TOKENS

BASES = "ACGT"


def log_odds(log_probs: np.ndarray, target: int) -> np.ndarray:
    """log(p / (1 - p)) of class `target` in each row of log-probabilities, computed without cancellation."""
    others = np.delete(log_probs, target, axis=-1)
    with np.errstate(divide="ignore"):
        return log_probs[..., target] - np.logaddexp.reduce(others, axis=-1)


class SequenceScorer:
    """Calibrated log-probabilities of token arrays, as `predict` gives them: the model's windows and strands,
    in batches on one device."""

    def __init__(self, model: TrainedModel, device: str = "auto", batch_size: int = BATCH_SIZE,
                 rc: bool | None = None) -> None:
        self.model = model
        self.network, self.device, self.rc = _on_device(model, device, rc)
        self.batch_size = batch_size
        self.max_len = model.max_len

    def window_rows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, classes): each window's log-softmax, averaged over the strands the model is scored on."""
        def scores(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.network(tokens, lengths).float(), -1)

        return window_means(self.network, scores, self.network.num_classes, windows, self.batch_size,
                            self.device, self.rc)

    def combine(self, window_sums: np.ndarray, windows: int) -> np.ndarray:
        """Calibrated log-probabilities of records from the sums of their windows' rows."""
        mean = torch.log_softmax(torch.from_numpy(window_sums / windows), -1).numpy()
        return calibrate(mean.reshape(-1, mean.shape[-1]), self.model.temperature).reshape(mean.shape)

    def __call__(self, token_arrays: Sequence[np.ndarray]) -> np.ndarray:
        """(n, classes) calibrated log-probabilities of whole token arrays (each tiled by windows)."""
        pieces, owners = [], []
        for owner, tokens in enumerate(token_arrays):
            for start in window_starts(len(tokens), self.max_len):
                pieces.append(tokens[start : start + self.max_len])
                owners.append(owner)
        sums = np.zeros((len(token_arrays), self.network.num_classes))
        np.add.at(sums, np.array(owners, dtype=np.int64), self.window_rows(pieces))
        counts = np.bincount(np.array(owners, dtype=np.int64), minlength=len(token_arrays))
        return self.combine(sums, counts[:, None])


def substitution_log_probs(scorer: SequenceScorer, tokens: np.ndarray, start: int = 0,
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
    sums = np.broadcast_to(total, (end - start, 4, len(total))).copy()
    if mutants:
        rows = scorer.window_rows(mutants)
        index = np.array(where)
        np.add.at(sums, (index[:, 0], index[:, 1]), rows - reference[index[:, 2]])
    return scorer.combine(total, len(windows)), scorer.combine(sums, len(windows))


def substitution_effects(scorer: SequenceScorer, tokens: np.ndarray, target: int, start: int = 0,
                         end: int | None = None) -> np.ndarray:
    """(end - start, 4): the change in class `target`'s log-odds when base p is set to A, C, G or T (0 for
    a position's own base)."""
    own, table = substitution_log_probs(scorer, tokens, start, end)
    return log_odds(table, target) - log_odds(own, target)
