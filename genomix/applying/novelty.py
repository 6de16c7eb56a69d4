"""Out-of-distribution ("novelty") scores: how unlike the training data a record is, so that a read of an
organism the model never saw can be called `unknown` instead of being forced into one of the known classes.

Every score is higher for a more unusual record, and needs only what the model file keeps (no training data):

- `msp`: one minus the top calibrated probability (the baseline: a confident wrong call scores low);
- `energy`: minus the log-sum-exp of the head's logits on the pooled features;
- `features`: the squared Mahalanobis distance of the pooled features (`Model.embed`, what the head reads) to the
  nearest class mean, under one covariance shared by the classes;
- `kmer`: the squared Mahalanobis distance of the record's 3-mer profile (both strands: a window of a genome
  comes from either) to the nearest class mean, under that class's own covariance;
- `markov`: how little better the best class's fourth-order Markov chain (the chance of each base given the four
  before it) explains the record than its own base composition does, per base: a record of a trained species
  gains much from its class's chain; one of another organism gains little from any, whatever its GC content,
  which the subtraction removes (NaN, like `kmer`, for a record without a k-mer of A, C, G and T to judge);
- `combined`: the mean of the `msp`, `kmer` and `markov` scores, each standardised by its validation mean and
  spread: the classifier's doubt and the two composition scores fail on different unknowns, so together they
  catch more than any one (chosen on the leave-one-species-out benchmark, docs/OPEN_SET.md).

A card of the first version (no `version` key) keeps the scores it was fitted with: `kmer` under one covariance
shared by the classes, `markov` as a two-sided typicality test of the likelihood under third-order chains, both
on the strands the model scores, and `combined` as the card names it (`msp` and `kmer`; a card that names none
averaged `features`, `kmer` and `markov`).

The class means and whitening matrices are fitted on the training records in the finishing step; the threshold
of each score keeps `known_recall` of the validation records known. All of it is the card's `novelty` block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from genomix.errors import GenomixError
from genomix.models.base import Model
from genomix.models.modelfile import TrainedModel
from genomix.sequences.tokens import kmer_codes, reverse_complement

METHODS = ("msp", "energy", "features", "kmer", "markov", "combined")
DEFAULT_METHOD = "combined"
COMBINED = ("msp", "kmer", "markov")  # what `combined` averages: chosen by bench/open_set_combine.py (docs/OPEN_SET.md)
LEGACY_COMBINED = ("features", "kmer", "markov")  # what it averaged in a card that does not say
VERSION = 2  # of the novelty block: 1 had a shared `kmer` covariance and `markov` as typicality (module docstring)
DEFAULT_KNOWN_RECALL = 0.99
PROFILE_K = 3  # 64 frequencies: stable on a 150-base read, and 4,096 numbers per class in the card
MARKOV_K = {1: 4, 2: 5}  # per version, the Markov chains' k-mers: a base and the k - 1 before it (4^k per class)
PSEUDOCOUNT = 0.01  # added to every k-mer frequency of a class's chain, so that an unseen k-mer is not impossible
MAX_FEATURE_DIM = 256  # wider pooled features (the k-mer model's 5,460) get no covariance: `kmer` stands in
SHRINKAGE = 0.01  # share of the mean variance added to the covariance's diagonal: keeps it invertible
DIGITS = 6  # significant digits of the numbers kept in the card
PROFILE_BLOCK = 1 << 16  # k-mer starts counted at a time (`_profiles`)


def kmer_profiles(token_arrays: Sequence[np.ndarray], k: int = PROFILE_K, both_strands: bool = False) -> np.ndarray:
    """(n, 4^k) frequencies of each array's k-mers of A, C, G and T (a row of zeros where it has none); with
    `both_strands`, averaged with its reverse complement's, so that a record and its reverse complement score alike
    where the model scores both strands."""
    if both_strands:
        return (kmer_profiles(token_arrays, k) + _profiles(token_arrays, k, reverse_complement)) / 2
    return _profiles(token_arrays, k, lambda block: block)


def _profiles(token_arrays: Sequence[np.ndarray], k: int, strand: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`kmer_profiles` of one strand (`strand` of the tokens). A long array is counted PROFILE_BLOCK k-mers at a
    time, each block on its own strand: the same k-mers, without the chromosome-long int64 codes or a copy."""
    rows = np.zeros((len(token_arrays), 4**k))
    for i, tokens in enumerate(token_arrays):
        if len(tokens) < k:
            continue
        counts = sum(_kmer_counts(strand(tokens[start : start + PROFILE_BLOCK + k - 1]), k)
                     for start in range(0, len(tokens) - k + 1, PROFILE_BLOCK))
        rows[i] = counts / max(1, counts.sum())
    return rows


def _kmer_counts(tokens: np.ndarray, k: int) -> np.ndarray:
    """(4^k,) how often each k-mer of A, C, G and T starts in `tokens` (at least k of them)."""
    codes, valid = kmer_codes(torch.from_numpy(tokens.astype(np.int64))[None], torch.tensor([len(tokens)]), k)
    return np.bincount(codes[valid].numpy(), minlength=4**k)


@dataclass(frozen=True)
class Gaussian:
    """Class-conditional Gaussians, kept whitened: distances are Euclidean after `whiten` (W with W Σ Wᵀ = I), and
    the class means are stored whitened. The covariance is shared by the classes (`fit`) or each class's own
    (`fit_per_class`)."""

    whiten: np.ndarray  # (d, d) shared, or (classes, d, d)
    means: np.ndarray  # (classes, d)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, num_classes: int) -> Gaussian:
        means = np.stack([x[y == c].mean(0) if (y == c).any() else np.full(x.shape[1], np.nan)
                          for c in range(num_classes)])
        centred = x - means[y]
        covariance = centred.T @ centred / max(1, len(x) - num_classes)
        covariance += (SHRINKAGE * np.trace(covariance) / len(covariance) + 1e-12) * np.eye(len(covariance))
        whiten = _whitening(covariance)
        return cls(whiten, means @ whiten.T)

    @classmethod
    def fit_per_class(cls, x: np.ndarray, y: np.ndarray, num_classes: int) -> Gaussian:
        """Each class's own covariance, shrunk towards a multiple of the identity by Ledoit and Wolf's rule (a
        class may have fewer records than dimensions); a class of fewer than two records is left out."""
        from sklearn.covariance import ledoit_wolf  # loads where a model is trained, not where one is applied

        whitens, means = [], []
        for c in range(num_classes):
            mine = x[y == c]
            whitens.append(_whitening(ledoit_wolf(mine)[0]) if len(mine) > 1 else np.eye(x.shape[1]))
            means.append(whitens[-1] @ mine.mean(0) if len(mine) > 1 else np.full(x.shape[1], np.nan))
        return cls(np.stack(whitens), np.stack(means))

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(n,) squared distance to the nearest class mean, per dimension (about 1 for a typical record)."""
        if self.whiten.ndim == 3:
            squared = np.stack([((x @ w.T - m) ** 2).sum(1) for w, m in zip(self.whiten, self.means)], 1)
        else:
            z = x @ self.whiten.T
            squared = (z**2).sum(1)[:, None] - 2 * z @ self.means.T + (self.means**2).sum(1)[None]
        return np.nanmin(squared, 1) / x.shape[1]

    def as_card(self) -> dict[str, list]:
        return {"whiten": _rounded(self.whiten), "means": _rounded(self.means)}

    @classmethod
    def from_card(cls, block: dict[str, Any]) -> Gaussian:
        whiten, means = np.asarray(block["whiten"], dtype=np.float64), np.asarray(block["means"], dtype=np.float64)
        per_class = whiten.ndim == 3 and len(whiten) == len(means)
        if whiten.ndim not in (2, 3) or not per_class and whiten.ndim == 3 or whiten.shape[-1] != whiten.shape[-2] \
                or means.ndim != 2 or means.shape[1] != whiten.shape[-1]:
            raise ValueError("a Gaussian needs square whitening matrices (one, or one per class) and means of their "
                             "width")
        return cls(whiten, means)


def _whitening(covariance: np.ndarray) -> np.ndarray:
    """W with W Σ Wᵀ = I."""
    values, vectors = np.linalg.eigh(covariance)
    return (vectors / np.sqrt(np.maximum(values, 1e-12))).T


@dataclass(frozen=True)
class Inputs:
    """What the scores of a batch of records are computed from: calibrated log-probabilities, pooled features
    (averaged over windows and strands as scores are), the token arrays and whether both strands are scored."""

    log_probs: np.ndarray
    features: np.ndarray
    tokens: Sequence[np.ndarray]
    both_strands: bool = False

    def profiles(self, k: int) -> np.ndarray:
        return kmer_profiles(self.tokens, k, self.both_strands)


@dataclass(frozen=True)
class Novelty:
    """The statistics of a model's training data that its novelty scores need, and the threshold of each."""

    method: str
    known_recall: float
    profile: Gaussian
    markov: np.ndarray  # (classes, 4^k): log chance of a k-mer's last base given the bases before it
    typical: np.ndarray | None  # version 1: (classes, 2), the mean and spread of its training records' likelihoods
    features: Gaussian | None = None
    spread: dict[str, list[float]] | None = None  # per score: validation mean and standard deviation
    thresholds: dict[str, float] | None = None  # per method: the score past which a record is unknown
    combined: tuple[str, ...] = COMBINED  # the scores `combined` averages (those the model has)
    version: int = VERSION
    length: float | None = None  # median length of the validation records the thresholds were set on

    @property
    def threshold(self) -> float:
        return self.thresholds[self.method]

    @classmethod
    def fit(cls, network: Model, train: Inputs, y: np.ndarray) -> Novelty:
        """The class statistics of the training records (no thresholds yet: `calibrate`)."""
        classes = network.num_classes
        profiles = kmer_profiles(train.tokens, MARKOV_K[VERSION], both_strands=True)
        frequencies = np.stack([profiles[y == c].sum(0) for c in range(classes)]).reshape(classes, -1, 4)
        frequencies = frequencies / np.maximum(1, np.bincount(y, minlength=classes))[:, None, None]
        frequencies += PSEUDOCOUNT / 4 ** MARKOV_K[VERSION]
        markov = np.log(frequencies / frequencies.sum(2, keepdims=True)).reshape(classes, -1)
        wide = train.features.shape[1] > MAX_FEATURE_DIM
        return cls(DEFAULT_METHOD, DEFAULT_KNOWN_RECALL,
                   Gaussian.fit_per_class(kmer_profiles(train.tokens, PROFILE_K, both_strands=True), y, classes),
                   markov, None, None if wide else Gaussian.fit(train.features, y, classes))

    def calibrate(self, network: Model, val: Inputs, known_recall: float, method: str = DEFAULT_METHOD) -> Novelty:
        """Thresholds that keep `known_recall` of the (in-distribution) validation records known."""
        check_known_recall(known_recall)
        spread = {name: [float(np.nanmean(d)), float(np.nanstd(d)) or 1.0]
                  for name, d in self._single(network, val).items()}
        scored = replace(self, method=method, known_recall=known_recall, spread=spread,
                         length=float(np.median([len(t) for t in val.tokens])))
        scores = scored.scores(network, val)
        if method not in scores:
            raise GenomixError(f"novelty method {method!r} is not available for this model ({', '.join(scores)} are)")
        thresholds = {name: float(np.quantile(s[np.isfinite(s)], known_recall)) for name, s in scores.items()}
        return replace(scored, thresholds=thresholds)

    def scores(self, network: Model, batch: Inputs) -> dict[str, np.ndarray]:
        """Every method's score of each record (NaN for an empty one)."""
        result = self._single(network, batch)
        standard = np.array([(result[n] - self.spread[n][0]) / self.spread[n][1] for n in self.combined if n in result])
        defined = np.isfinite(standard)  # a record without composition is judged by the scores it has
        with np.errstate(invalid="ignore"):
            result["combined"] = np.where(defined, standard, 0).sum(0) / defined.sum(0)
        empty = np.array([len(t) == 0 for t in batch.tokens], dtype=bool)
        return {name: np.where(empty, np.nan, s) for name, s in result.items()}

    def score(self, network: Model, batch: Inputs) -> np.ndarray:
        return self.scores(network, batch)[self.method]

    def _single(self, network: Model, batch: Inputs) -> dict[str, np.ndarray]:
        """Every method's score but `combined`."""
        with torch.no_grad():
            logits = network.head(torch.from_numpy(batch.features).to(network.head.weight)).double().cpu().numpy()
        with np.errstate(invalid="ignore"):  # an empty record's row of NaN stays NaN
            result = {"msp": 1 - np.exp(batch.log_probs).max(1), "energy": -np.logaddexp.reduce(logits, 1)}
        return result | self._distances(batch)

    def _distances(self, batch: Inputs) -> dict[str, np.ndarray]:
        strands = batch.both_strands or self.version > 1
        chains, profiles = (kmer_profiles(batch.tokens, k, strands) for k in (MARKOV_K[self.version], PROFILE_K))
        likelihoods, distances = chains @ self.markov.T, self.profile.distance(profiles)
        if self.version == 1:
            return {"kmer": distances, "markov": np.nanmin(np.abs(likelihoods - self.typical[:, 0])
                                                           / self.typical[:, 1], 1)} | self._features(batch)
        composition = kmer_profiles(batch.tokens, 1, both_strands=True)
        own = (composition * np.log(np.where(composition > 0, composition, 1))).sum(1)
        # a record without a k-mer of A, C, G and T (all N, or shorter than k) has no composition to judge
        return {"kmer": np.where(profiles.any(1), distances, np.nan),
                "markov": np.where(chains.any(1), own - likelihoods.max(1), np.nan)} | self._features(batch)

    def _features(self, batch: Inputs) -> dict[str, np.ndarray]:
        return {} if self.features is None else {"features": self.features.distance(np.nan_to_num(batch.features))}

    def as_card(self) -> dict[str, Any]:
        return {"method": self.method, "known_recall": self.known_recall, "combined": list(self.combined),
                "version": self.version, "profile_k": PROFILE_K, "markov_k": MARKOV_K[self.version],
                "thresholds": self.thresholds, "spread": self.spread, "profile": self.profile.as_card(),
                "markov": _rounded(self.markov),
                "markov_typical": None if self.typical is None else _rounded(self.typical), "length": self.length,
                "features": None if self.features is None else self.features.as_card()}

    @classmethod
    def from_card(cls, block: dict[str, Any]) -> Novelty:
        """The card's block, checked (a malformed one is a corrupt model file)."""
        try:
            version = block.get("version", 1)
            if version not in MARKOV_K or block["method"] not in METHODS or block["profile_k"] != PROFILE_K or \
                    block["markov_k"] != MARKOV_K[version]:
                raise ValueError(f"version {version!r}, method {block['method']!r}, k {block['profile_k']!r}, "
                                 f"{block['markov_k']!r}")
            features, markov = block["features"], np.asarray(block["markov"], dtype=np.float64)
            typical = np.asarray(block["markov_typical"], dtype=np.float64) if version == 1 else None
            combined = tuple(block.get("combined", LEGACY_COMBINED))
            needed = set(combined) - ({"features"} if features is None else set())
            if not set(combined) <= set(METHODS[:-1]) or not needed <= set(block["spread"]):
                raise ValueError(f"combined scores {combined}, spread of {sorted(block['spread'])}")
            if markov.ndim != 2 or markov.shape[1] != 4 ** MARKOV_K[version] or \
                    typical is not None and typical.shape != (len(markov), 2):
                raise ValueError(f"Markov chains of shape {markov.shape}")
            profile = Gaussian.from_card(block["profile"])
            if (profile.whiten.ndim == 3) != (version > 1):
                raise ValueError(f"a version {version} block with {profile.whiten.ndim - 1}-d k-mer whitening")
            return cls(block["method"], float(block["known_recall"]), profile, markov, typical,
                       None if features is None else Gaussian.from_card(features),
                       {k: [float(a), float(b)] for k, (a, b) in block["spread"].items()},
                       {k: float(v) for k, v in block["thresholds"].items()}, combined, version,
                       None if block.get("length") is None else float(block["length"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise GenomixError(f"corrupt novelty block in the model file ({err})") from None


def novelty_of(model: TrainedModel) -> Novelty | None:
    """The model's novelty statistics, or None for a model file written before genomix kept them."""
    return None if model.card.novelty is None else Novelty.from_card(model.card.novelty)


def shorter_records_notice(novelty: Novelty | None, bases: int, records: int) -> str | None:
    """A notice where the records scored average under half the length the thresholds were set on: a shorter
    record's profile and the classifier's doubt are noisier, so more known records pass the threshold."""
    if novelty is None or novelty.length is None or not records or bases / records >= novelty.length / 2:
        return None
    return (f"the novelty threshold was set on records of about {novelty.length:,.0f} bases and these average "
            f"{bases / records:,.0f}: shorter records score as more unusual, so expect more of them called unknown")


def check_known_recall(known_recall: float) -> None:
    if not 0 < known_recall < 1:
        raise GenomixError(f"--known-recall must be between 0 and 1, got {known_recall}")


def _rounded(array: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.{DIGITS}g}"))(array).tolist()


def open_set_metrics(known: np.ndarray, unknown: np.ndarray, threshold: float, known_correct: np.ndarray
                     ) -> dict[str, float]:
    """How well novelty scores of in-distribution (`known`) and out-of-distribution (`unknown`) records part
    them: AUROC; the share of unknown records kept at the threshold that keeps 95% of known ones (FPR@95); at
    `threshold`, the share of known records kept, of unknown ones called as a known class, and the accuracy
    on the known records kept (`known_correct`: whether each known record's call is right)."""
    from sklearn.metrics import roc_auc_score  # scikit-learn loads only where open-set metrics are asked for

    known, unknown = np.nan_to_num(known, nan=-np.inf), np.nan_to_num(unknown, nan=-np.inf)
    kept = known <= threshold
    return {
        "auroc": float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])),
        "fpr_at_95": float((unknown <= np.quantile(known, 0.95)).mean()),
        "known_kept": float(kept.mean()),
        "unknown_called_known": float((unknown <= threshold).mean()),
        "known_accuracy": float(known_correct.mean()),
        "known_accuracy_kept": float(known_correct[kept].mean()) if kept.any() else float("nan"),
    }
