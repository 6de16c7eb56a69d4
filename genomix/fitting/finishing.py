"""After the weights are fitted: the closed-form k-mer fit, the k-mer term's blend weight, the validation
report and the temperature, each from validation scores computed once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from genomix.applying.calibration import apply_temperature, expected_calibration_error, fit_temperature
from genomix.applying.metrics import classification_metrics
from genomix.applying.scoring import Scorer
from genomix.console import console
from genomix.fitting import distributed
from genomix.models.base import Model
from genomix.sequences.batching import random_crop
from genomix.sequences.dataset import LabelledSet
from genomix.sequences.tokens import reverse_complement

COMPOSITION_WEIGHTS = np.linspace(0, 1, 21)  # blend weights a of the k-mer term tried on validation


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


def finish(network: Model, train: LabelledSet, val: LabelledSet | None, max_len: int, seed: int, scorer: Scorer,
           best_metrics: dict | None) -> Finish:
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
    return done


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
