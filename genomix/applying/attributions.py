"""One record's attributions: what `genomix.applying.explaining` computes and writes, and what
`genomix.applying.motifs` draws and clusters (a module of its own so that neither of the two imports the other
for it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genomix.sequences.tokens import encode, one_hot


@dataclass(frozen=True)
class Explanation:
    """The attributions of one record's bases [start, end) to its log-odds of class `target`."""

    id: str
    seq: str  # the explained bases
    start: int
    target: int
    log_odds: float  # the record's (calibrated) log-odds of the class
    scores: np.ndarray  # (L,) per-base scores, log-odds
    hypothetical: np.ndarray  # (L, 4) hypothetical contributions; the observed base's entry is its score
    substitutions: np.ndarray | None = None  # ism: (L, 4) log-odds change when the base is set to A, C, G, T

    @property
    def one_hot(self) -> np.ndarray:
        return one_hot(torch.from_numpy(encode(self.seq))).numpy()
