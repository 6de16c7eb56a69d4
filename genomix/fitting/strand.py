"""Whether a labelled set has a strand: can its sequences be told from their reverse complements?

A promoter reads 5'→3' on its transcribed strand and a gene fragment carries codon bias, so a linear
model on 1- to 3-mer frequencies tells such sequences from their reverse complements. Windows taken from
either strand of a genome, and enhancers, cannot be told apart: their label does not depend on the
strand, so training shows the model both strands and scoring averages over them. The accuracies measured
on both kinds of set, and the threshold between them: docs/TUNING.md, third round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genomix.models import create_model
from genomix.sequences.batching import random_crop
from genomix.sequences.tokens import reverse_complement

STRANDED = 0.56  # accuracy from which a set counts as stranded (strand-free sets measured ≤ 0.53)
SAMPLE = 4000  # sequences tested: the score then varies by about ±0.01 between random draws
CROP = 1000  # bases read per sequence
MIN_SEQUENCES = 50  # fewer cannot be tested: such a set is treated as stranded (the cautious default)


def strand_signal(tokens: Sequence[np.ndarray], seed: int = 0) -> float | None:
    """Cross-validated accuracy of telling which of a sequence and its reverse complement is the given one.

    0.5 means no strand; None, too few sequences to tell. The model sees the difference of the two 1- to
    3-mer profiles, d or -d, and a pair never spans folds, so the score measures the strand, not the memory
    of a sequence.
    """
    from sklearn.linear_model import LogisticRegression  # imported here: loading sklearn costs ~1 s
    from sklearn.model_selection import GroupKFold, cross_val_score

    if len(tokens) < MIN_SEQUENCES:
        return None
    rng = np.random.default_rng(seed)
    pieces = [random_crop(tokens[i], CROP, rng) for i in rng.permutation(len(tokens))[:SAMPLE]]
    profiles = create_model("kmer", 2, CROP, k_max=3)
    d = profiles.feature_matrix(pieces) - profiles.feature_matrix([reverse_complement(p) for p in pieces])
    d /= d.std(0) + 1e-9
    given = np.repeat([1, 0], len(d))
    pair = np.tile(np.arange(len(d)), 2)
    model = LogisticRegression(C=0.01, fit_intercept=False, max_iter=2000)
    return float(cross_val_score(model, np.vstack([d, -d]), given, groups=pair, cv=GroupKFold(5)).mean())


def is_stranded(signal: float | None) -> bool:
    """The verdict on a `strand_signal` score: keep the given strand (True) or train and score on both."""
    return signal is None or signal >= STRANDED
