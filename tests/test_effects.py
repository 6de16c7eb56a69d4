"""The shared core of `explain --method ism` and `variants`: an edited record scores as `predict` scores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genomix.applying.effects import BASES, substitution_effects, substitution_log_probs
from genomix.applying.scoring import Scorer, log_odds, predict_records
from genomix.io.reading import Record, read_records
from genomix.models.modelfile import load_model
from genomix.sequences.tokens import encode

FIXTURE = Path(__file__).parent / "fixtures" / "v0_paramixer.gmx"


def test_log_odds_matches_the_definition() -> None:
    probs = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    assert np.allclose(log_odds(np.log(probs), 1), np.log(probs[:, 1] / (1 - probs[:, 1])))


def test_substitutions_of_a_tiled_record_equal_predict_on_the_mutated_record(test_fa: Path) -> None:
    model = load_model(FIXTURE)
    seq = next(iter(read_records(test_fa))).seq[: int(model.max_len * 2.5)]  # three windows, two overlapping
    scorer = Scorer.of(model, device="cpu")
    own, table = substitution_log_probs(scorer, encode(seq), 10, 150)
    assert np.allclose(own, next(predict_records(model, [Record("r", seq)], device="cpu")).log_probs, atol=1e-6)
    for position in (12, 70, 100, 140):  # one window; the last window only; two overlapping windows
        mutants = [Record(b, seq[:position] + b + seq[position + 1 :]) for b in BASES]
        expected = np.stack([p.log_probs for p in predict_records(model, mutants, device="cpu")])
        assert np.allclose(table[position - 10], expected, atol=1e-5)
    effects = substitution_effects(scorer, encode(seq), 1, 10, 150)
    own_base = np.array([BASES.index(b) for b in seq[10:150]])
    assert np.all(effects[np.arange(140), own_base] == 0)
    assert np.abs(effects).max() > 0
