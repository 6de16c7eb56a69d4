"""`genomix.Classifier`: a scikit-learn estimator over DNA sequences, for users who work in scikit-learn
(`cross_val_score`, `GridSearchCV`, `Pipeline`).

It is a thin face over the library the command line calls: `fit` is `genomix.fitting.training.fit`, the
probabilities are `genomix.applying.scoring.predict_records`, the embeddings `genomix.applying.scoring.embeddings`,
and `save`/`load` write and read the same model file as `genomix train` and `genomix predict`.

X is a sequence of DNA strings, of Biopython `SeqRecord`s, or a one-column numpy array or pandas Series or
DataFrame of strings. Labels may be strings or numbers; the model file stores them as text, and `classes_` gives
them back as they were given, in the model's class order (the columns of `predict_proba`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from genomix.applying.scoring import BATCH_SIZE, decide, embeddings, log_odds, predict_records
from genomix.errors import GenomixError
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import Record, normalise
from genomix.models.modelfile import TrainedModel, load_model, save_model

DEFAULTS = TrainSettings()
SHORTHANDS = ("dim", "hidden", "layers", "dropout", "composition")  # model options that are parameters of their own


class Classifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A genomix sequence classifier. The parameters are `genomix train`'s options of the same names; the model
    options that have no parameter of their own go in `options` (e.g. {"heads": 8})."""

    def __init__(self, arch: str | None = None, dim: int | None = None, hidden: int | None = None,
                 layers: int | None = None, dropout: float | None = None, composition: bool | None = None,
                 options: dict[str, Any] | None = None, max_len: int | None = None, epochs: int = DEFAULTS.epochs,
                 batch_size: int = DEFAULTS.batch_size, lr: float = DEFAULTS.lr,
                 weight_decay: float = DEFAULTS.weight_decay, val_fraction: float = DEFAULTS.val_fraction,
                 patience: int = DEFAULTS.patience, rc_augment: bool | None = None,
                 positive_class: str | None = None, seed: int = DEFAULTS.seed, device: str = DEFAULTS.device,
                 scoring_batch_size: int = BATCH_SIZE) -> None:
        self.arch, self.dim, self.hidden, self.layers, self.dropout = arch, dim, hidden, layers, dropout
        self.composition, self.options, self.max_len, self.epochs = composition, options, max_len, epochs
        self.batch_size, self.lr, self.weight_decay, self.val_fraction = batch_size, lr, weight_decay, val_fraction
        self.patience, self.rc_augment, self.positive_class = patience, rc_augment, positive_class
        self.seed, self.device, self.scoring_batch_size = seed, device, scoring_batch_size

    def settings(self) -> TrainSettings:
        """The training settings of these parameters, checked as the command line checks them."""
        shorthands = {name: getattr(self, name) for name in SHORTHANDS if getattr(self, name) is not None}
        both = sorted(set(shorthands) & set(self.options or {}))
        if both:
            raise GenomixError(f"{both[0]} given both as a parameter and in options: give one")
        return TrainSettings(
            arch=self.arch, options={**(self.options or {}), **shorthands}, max_len=self.max_len, epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay, val_fraction=self.val_fraction,
            patience=self.patience, rc_augment=self.rc_augment, positive_class=self.positive_class, seed=self.seed,
            device=self.device)

    def fit(self, X: Any, y: Any) -> Classifier:
        labels = list(np.asarray(y).ravel()) if y is not None else []
        if len(labels) != _length(X):
            raise GenomixError(f"{_length(X)} sequences but {len(labels)} labels")
        by_name = {str(label): label for label in labels}
        records = [Record(r.id, r.seq, str(label)) for r, label in zip(_records(X), labels)]
        return self._fitted(fit(records, self.settings()), by_name)

    def _fitted(self, model: TrainedModel, by_name: dict[str, Any] | None = None) -> Classifier:
        self.model_ = model
        originals = [(by_name or {}).get(name, name) for name in model.classes]
        self.classes_ = np.array(originals, dtype=object if any(isinstance(c, str) for c in originals) else None)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Per sequence, the calibrated probability of each class in `classes_` order (NaN for an empty one)."""
        check_is_fitted(self)
        rows = [p.probs for p in predict_records(self.model_, _records(X), self.scoring_batch_size, self.device)]
        return np.array(rows).reshape(len(rows), len(self.classes_))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sequence."""
        check_is_fitted(self)
        return self.classes_[np.atleast_1d(decide(self.predict_proba(X), None))]

    def decision_function(self, X: Any) -> np.ndarray:
        """Binary models: the log-odds of `classes_[1]`, as scikit-learn's scorers (roc_auc) read a decision."""
        check_is_fitted(self)
        if len(self.classes_) != 2:
            raise AttributeError("decision_function is for binary models; use predict_proba")
        return np.asarray(log_odds(np.log(self.predict_proba(X)), 1))

    def transform(self, X: Any) -> np.ndarray:
        """The pooled features of each sequence (`genomix embed`): one row of the network's width per sequence."""
        check_is_fitted(self)
        return np.array([f for _, f in embeddings(self.model_, _records(X), self.scoring_batch_size, self.device)])

    def save(self, path: str | Path) -> None:
        """Write the model file that `genomix predict` and `genomix info` read."""
        check_is_fitted(self)
        save_model(self.model_, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Classifier:
        """A fitted classifier of a model file written by `save` or `genomix train` (its classes as text)."""
        model = load_model(path)
        return cls(arch=model.card.model, device=device)._fitted(model)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = self.device != "cpu"
        return tags


def _length(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _records(X: Any) -> Iterable[Record]:
    """Records of the sequences of X, named seq0, seq1... unless they are SeqRecords with ids of their own."""
    column = _column(X)
    for i, item in enumerate(column):
        record_id = getattr(item, "id", None) or f"seq{i}"
        text = str(getattr(item, "seq", item))
        if not isinstance(item, str) and not hasattr(item, "seq"):
            raise GenomixError(f"sequence {i}: expected a string or a SeqRecord, got {type(item).__name__}")
        yield Record(record_id, normalise(text, "X", record_id))


def _column(X: Any) -> Sequence[Any]:
    """One column of X: a DataFrame or 2-D array must have exactly one."""
    if isinstance(X, str):
        raise GenomixError("X is one string: give a list of sequences")
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # a pandas DataFrame
        if X.shape[1] != 1:
            raise GenomixError(f"X has {X.shape[1]} columns: give one column of sequences")
        return list(X.iloc[:, 0])
    if hasattr(X, "iloc"):  # a pandas Series
        return list(X)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            return list(X[:, 0])
        if X.ndim != 1:
            raise GenomixError(f"X has shape {X.shape}: give one column of sequences")
        return list(X)
    return X
