"""After the weights are fitted: the closed-form k-mer fit, the k-mer term's blend weight, the validation
report and the temperature, each from validation scores computed once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from genomix.applying.calibration import apply_temperature, expected_calibration_error, fit_temperature
from genomix.applying.metrics import classification_metrics
from genomix.applying.novelty import DEFAULT_KNOWN_RECALL, Inputs, Novelty
from genomix.applying.scoring import Scorer
from genomix.console import console
from genomix.fitting import distributed
from genomix.models.base import Model
from genomix.sequences.batching import random_crop
from genomix.sequences.dataset import LabelledSet
from genomix.sequences.tokens import reverse_complement

COMPOSITION_WEIGHTS = np.linspace(0, 1, 21)  # blend weights a of the k-mer term tried on validation
NOVELTY_RECORDS = 20_000  # training records (at most) the novelty statistics are fitted on


def every_rank(scorer: Scorer, tokens: list[np.ndarray]) -> np.ndarray:
    """Log-probabilities of every sequence, scored as the model will be applied; under torchrun each rank scores
    its share and all gather."""
    mine = scorer.log_probs(tokens[distributed.rank() :: distributed.world_size()]).numpy()
    return distributed.gather_rows(mine, len(tokens))


def metrics(scores: np.ndarray, y: np.ndarray, num_classes: int) -> dict:
    """Classification metrics and the mean negative log-likelihood of log-probabilities `scores`."""
    result = classification_metrics(y, np.exp(scores), num_classes)
    result["loss"] = float(-scores[np.arange(len(y)), y].mean())
    return result


def fit_direct(network: Model, train: LabelledSet, val: LabelledSet | None, max_len: int, seed: int,
               rc: bool) -> None:
    """Closed-form fit (the k-mer regression) on one crop of every sequence, and its reverse complement too
    where the model will score both strands."""
    rng = np.random.default_rng(seed)
    crops, labels = [random_crop(t, max_len, rng) for t in train.tokens], train.y
    if rc:
        crops, labels = crops + [reverse_complement(t) for t in crops], np.concatenate([train.y, train.y])
    chosen = network.fit_direct((crops, labels), (val.tokens, val.y) if val else None, seed)
    how = " (chosen on validation)" if val else ""
    console.log(f"k-mer regression: k up to {chosen['k']}, C {chosen['C']:g}{how}")


@dataclass
class Finish:
    composition_weight: float | None = None
    temperature: float | None = None
    validation: dict | None = None
    novelty: dict | None = None


def finish(network: Model, train: LabelledSet, val: LabelledSet | None, max_len: int, seed: int, scorer: Scorer,
           best_metrics: dict | None, known_recall: float = DEFAULT_KNOWN_RECALL) -> Finish:
    """Blend in the k-mer term (where the model has one), then report on validation and fit the temperature."""
    done = Finish()
    if network.composition is not None:
        if val:
            done.composition_weight = _add_composition(network, train, val, max_len, seed, scorer)
        else:
            console.log("no validation data to weigh the k-mer composition term: it is left out")
    if not val:
        return done
    scores = every_rank(scorer, val.tokens)
    done.validation = metrics(scores, val.y, len(val.classes))  # the final model's: k-mer term and all
    if done.composition_weight is not None and best_metrics is not None:
        console.log(f"k-mer composition term: weight {done.composition_weight:.2f} (validation likelihood); "
                    f"validation MCC {best_metrics['mcc']:.4f} without it, {done.validation['mcc']:.4f} with it")
    done.temperature = fit_temperature(scores, val.y)
    done.validation |= {"ece_uncalibrated": expected_calibration_error(val.y, np.exp(scores)),
                        "ece": expected_calibration_error(val.y, apply_temperature(scores, done.temperature))}
    console.log(f"temperature {done.temperature:.3f} fitted on validation: expected calibration error "
                f"{done.validation['ece_uncalibrated']:.4f} → {done.validation['ece']:.4f}")
    done.novelty = fit_novelty(replace(scorer, temperature=done.temperature), train, val, seed, known_recall)
    return done


def novelty_inputs(scorer: Scorer, tokens: list[np.ndarray]) -> Inputs:
    """What the novelty scores of sequences are computed from, scored as the model will be applied."""
    log_probs, _, features = scorer.records_with_features(tokens)
    return Inputs(log_probs.numpy(), features.numpy(), tokens, scorer.rc)


def fit_novelty(scorer: Scorer, train: LabelledSet, val: LabelledSet, seed: int, known_recall: float) -> dict:
    """The novelty statistics of (up to `NOVELTY_RECORDS` of) the training records, with thresholds that keep
    `known_recall` of the validation records known: the card's `novelty` block."""
    rows = np.random.default_rng(seed).permutation(len(train))[:NOVELTY_RECORDS]
    fitted = Novelty.fit(scorer.network, novelty_inputs(scorer, [train.tokens[i] for i in rows]), train.y[rows])
    novelty = fitted.calibrate(scorer.network, novelty_inputs(scorer, val.tokens), known_recall)
    console.log(f"novelty: {novelty.method} score, threshold {novelty.threshold:.4g} keeps {known_recall:.1%} of "
                "validation records known")
    return novelty.as_card()


def _add_composition(network: Model, train: LabelledSet, val: LabelledSet, max_len: int, seed: int,
                     scorer: Scorer) -> float:
    """Fit the network's k-mer term, and set and return the blend weight a (`SequenceClassifier`) with the
    highest validation likelihood."""
    fit_direct(network.composition, train, val, max_len, seed, scorer.rc)
    neural = every_rank(scorer, val.tokens)  # a = 0 so far
    kmer = every_rank(replace(scorer, network=network.composition), val.tokens)
    rows = np.arange(len(val))

    def nll(a: float) -> float:
        blend = torch.from_numpy((1 - a) * neural + a * kmer).log_softmax(1).numpy()
        return float(-blend[rows, val.y].mean())

    weight = float(min(COMPOSITION_WEIGHTS, key=nll))
    network.set_composition_weight(weight)
    return weight
