"""The strand test, and training that follows it: both strands for strand-free sets, one for stranded ones."""

import numpy as np
import pytest

from genomix.applying.scoring import predict_records
from genomix.fitting.strand import STRANDED, is_stranded, strand_signal
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import Record
from genomix.sequences.tokens import ALPHABET, reverse_complement


def skewed(n: int, length: int, probs: list[float], seed: int) -> list[np.ndarray]:
    """Token arrays with base frequencies `probs` (A, C, G, T) on the given strand."""
    rng = np.random.default_rng(seed)
    return [(rng.choice(4, length, p=probs) + 1).astype(np.uint8) for _ in range(n)]


def either_strand(tokens: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [reverse_complement(t) if rng.random() < 0.5 else t for t in tokens]


def test_strand_signal_tells_a_stranded_set_from_a_strand_free_one():
    stranded = skewed(2000, 200, [0.35, 0.2, 0.3, 0.15], seed=0)  # A > T: the reverse complement has T > A
    free = either_strand(stranded, seed=1)
    assert strand_signal(stranded) > 0.9
    assert abs(strand_signal(free) - 0.5) < (STRANDED - 0.5) / 2
    assert is_stranded(strand_signal(stranded)) and not is_stranded(strand_signal(free))


def test_too_few_sequences_count_as_stranded():
    assert strand_signal(skewed(10, 200, [0.25] * 4, seed=0)) is None
    assert is_stranded(None)


def records(tokens: list[np.ndarray], label: str) -> list[Record]:
    return [Record(f"{label}{i}", "".join(ALPHABET[b - 1] for b in t), label) for i, t in enumerate(tokens)]


@pytest.mark.parametrize("on_either_strand", [True, False])
def test_training_chooses_strands_from_the_data_and_scoring_follows(on_either_strand):
    gc_rich = skewed(150, 120, [0.2, 0.3, 0.35, 0.15], seed=2)
    at_rich = skewed(150, 120, [0.35, 0.15, 0.2, 0.3], seed=3)
    if on_either_strand:
        gc_rich, at_rich = either_strand(gc_rich, seed=4), either_strand(at_rich, seed=5)
    data = records(gc_rich, "gc") + records(at_rich, "at")
    # A small Paramixer without its k-mer term: unlike a regression on k-mer profiles fitted on both strands,
    # it scores a sequence and its reverse complement differently.
    tiny = dict(dim=16, hidden=16, layers=1, composition=False)
    model = fit(data, TrainSettings(options=tiny, epochs=1, device="cpu"))
    assert model.card.training.settings["rc_augment"] is on_either_strand
    assert model.both_strands is on_either_strand
    assert (model.card.training.strand_signal < STRANDED) is on_either_strand

    test = data[::10]
    default, one, both = ([p.probs for p in predict_records(model, test, device="cpu", rc=rc)]
                          for rc in (None, False, True))
    np.testing.assert_array_equal(default, both if on_either_strand else one)
    assert not np.allclose(one, both)  # the two ways differ, so the check above can fail


def test_an_explicit_choice_skips_the_strand_test():
    data = records(skewed(60, 80, [0.25] * 4, seed=6), "a") + records(skewed(60, 80, [0.25] * 4, seed=7), "b")
    model = fit(data, TrainSettings(arch="kmer", rc_augment=False, device="cpu"))
    assert model.card.training.strand_signal is None and not model.both_strands
