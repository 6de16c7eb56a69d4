"""k-mer baseline: frequencies of every k-mer (k = 1 … K), standardised, then logistic regression.

A fast and strong floor that any neural model must beat. Features are computed in torch from the same
token batches as every other model (k-mers touching N or padding are skipped), and the regression is
fitted by scikit-learn, then stored as an ordinary linear head: the model file, prediction and evaluation
are the same as for the neural models.

The longest k used and the regularisation are chosen together on validation: with 4^6 six-mer features
and a few thousand sequences, the best of both differs from one task to another (docs/TUNING.md, seventh
round). Shorter k is stored as zero weights on the longer k-mers' features, so every fitted model has the
same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from genomix.models.base import Model, ModelOptions, at_least
from genomix.models.registry import register
from genomix.sequences.batching import pad
from genomix.sequences.tokens import kmer_codes, kmer_counts, padding_mask

REGULARISATION = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)  # inverse strengths C tried on validation
LONGEST_K = (4, 5, 6)  # the longest k tried on validation (up to the model's k_max)


def num_features(k_max: int) -> int:
    """How many frequencies describe k-mers of length 1 to k_max; they are laid out in order of k."""
    return sum(4**k for k in range(1, k_max + 1))


@dataclass(frozen=True)
class KmerOptions(ModelOptions):
    k_max: int = 6  # the longest k-mers counted (validation may choose to use only shorter ones)

    def check(self, model: str) -> None:
        at_least(model, k_max=(self.k_max, 1))


@register("kmer")
class Kmer(Model):
    """Logistic regression on k-mer frequency profiles."""

    Options = KmerOptions
    fits_directly = True

    def __init__(self, num_classes: int, max_len: int, options: KmerOptions) -> None:
        super().__init__(num_classes, max_len, options)
        self.k_max = options.k_max
        n_features = num_features(self.k_max)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.head = nn.Linear(n_features, num_classes)

    def features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(B, features): for each k, the frequency of each of the 4^k k-mers among the valid ones. Token ids
        (B, N) are counted; base weights (B, N, 4) sum their k-mers' weights (`kmer_counts`), the same counts
        at one-hot input and differentiable between (a frequency's denominator included)."""
        if tokens.is_floating_point():
            bases = tokens * padding_mask(lengths, tokens.shape[1])[..., None]
            counts = kmer_counts(bases, self.k_max)
        else:
            counts = []
            for k in range(1, min(self.k_max, tokens.shape[1]) + 1):
                codes, ok = kmer_codes(tokens, lengths, k)
                counts.append(torch.zeros(len(tokens), 4**k, device=tokens.device).scatter_add_(1, codes, ok.float()))
        counts += [tokens.new_zeros(len(tokens), 4**k, dtype=torch.float32) for k in range(len(counts) + 1,
                                                                                           self.k_max + 1)]
        return torch.cat([c / c.sum(1, keepdim=True).clamp(min=1) for c in counts], 1)

    @property
    def embed_dim(self) -> int:
        return num_features(self.k_max)

    def embed(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The standardised k-mer frequencies that the regression reads."""
        return (self.features(tokens, lengths) - self.mean) / self.scale

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.embed(tokens, lengths))

    @torch.no_grad()
    def feature_matrix(self, token_arrays: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        parts = [self.features(*pad(token_arrays[i : i + batch_size])) for i in range(0, len(token_arrays), batch_size)]
        return torch.cat(parts).numpy()

    def fit_direct(self, train: tuple[list[np.ndarray], np.ndarray], val: tuple[list[np.ndarray], np.ndarray] | None,
                   seed: int) -> dict:
        """Fit the standardisation and the regression; return the longest k and C, chosen on validation (by
        accuracy, then log-likelihood) when there is one."""
        from sklearn.linear_model import LogisticRegression  # imported here: loading sklearn costs ~1 s
        from sklearn.metrics import log_loss

        features, y = self.feature_matrix(train[0]), train[1]
        mean, scale = features.mean(0), features.std(0) + 1e-6
        standardised = (features - mean) / scale
        if val is None:
            grid = [(self.k_max, 0.1)]
        else:
            val_features = (self.feature_matrix(val[0]) - mean) / scale
            grid = [(k, c) for k in sorted({min(k, self.k_max) for k in LONGEST_K}) for c in REGULARISATION]

        def fit_one(k: int, c: float):
            used = num_features(k)
            fitted = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(standardised[:, :used], y)
            if val is None:
                return (), fitted
            probabilities = fitted.predict_proba(val_features[:, :used])
            accuracy = float(np.mean(fitted.classes_[probabilities.argmax(1)] == val[1]))
            return (accuracy, -log_loss(val[1], probabilities, labels=fitted.classes_)), fitted

        fits = {(k, c): fit_one(k, c) for k, c in grid}
        k, c = max(fits, key=lambda choice: fits[choice][0])  # accuracy; ties: likelihood
        fitted = fits[k, c][1]
        coef = np.zeros((fitted.coef_.shape[0], features.shape[1]))
        coef[:, : fitted.coef_.shape[1]] = fitted.coef_
        intercept = fitted.intercept_
        if coef.shape[0] == 1:  # binary: softmax over (0, z) is sigmoid(z)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        self.mean.copy_(torch.from_numpy(mean))
        self.scale.copy_(torch.from_numpy(scale))
        self.head.weight.data.copy_(torch.from_numpy(coef))
        self.head.bias.data.copy_(torch.from_numpy(intercept))
        return {"k": k, "C": c}
