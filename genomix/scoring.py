"""The one scoring path: token arrays → windows → length-bucketed batches → log-probabilities → decisions.

A sequence longer than the model's max_len is never truncated: it is tiled by windows of max_len (the last
one flush with its end), and the windows' log-probabilities are averaged and renormalised; a model scored
on both strands averages each window with its reverse complement too. `predict`, `evaluate`, `scan` and
training's validation all score through `log_probs`, and call classes through `decide`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from genomix.batching import bucket_batches, pad, window_starts
from genomix.calibration import calibrate
from genomix.console import autocast, resolve_device
from genomix.errors import GenomixError
from genomix.modelfile import TrainedModel
from genomix.models.base import Model
from genomix.reading import Record
from genomix.tokens import encode, reverse_complement

BATCH_SIZE = 64  # sequences (or windows) per batch when scoring
CHUNK_BATCHES = 32  # windows read ahead per batch size: enough for good length buckets, bounded memory
UNCLASSIFIED = "unclassified"  # the label of a record that gets no class (an empty read)


@dataclass(frozen=True)
class Prediction:
    """Log-probabilities of one record in the model's class order (NaN for an empty record), the number of
    windows they average, and the record scored (whose own label `evaluate` checks against)."""

    id: str
    length: int
    log_probs: np.ndarray
    windows: int
    record: Record | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str | None:
        return self.record.label if self.record is not None else None

    @cached_property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)


@torch.no_grad()
def window_means(network: Model, fn: Callable[[Tensor, Tensor], Tensor], width: int, token_arrays: Sequence[np.ndarray],
                 batch_size: int, device: torch.device, rc: bool = False) -> np.ndarray:
    """(n, width): the mean over each array's windows (and both strands with `rc`) of `fn(tokens, lengths)`'s rows;
    NaN rows for empty arrays."""
    pieces: list[np.ndarray] = []
    owners: list[int] = []
    for owner, tokens in enumerate(token_arrays):
        if len(tokens) == 0:
            continue
        for start in window_starts(len(tokens), network.max_len):
            window = tokens[start : start + network.max_len]
            pieces += [window, reverse_complement(window)] if rc else [window]
            owners += [owner] * (2 if rc else 1)
    rows = np.empty((len(pieces), width))
    for batch in bucket_batches(np.array([len(p) for p in pieces]), batch_size):
        tokens, batch_lengths = pad([pieces[i] for i in batch])
        with autocast(device):
            rows[batch] = fn(tokens.to(device), batch_lengths.to(device)).float().cpu().numpy()
    sums = np.zeros((len(token_arrays), width))
    owners = np.array(owners, dtype=np.int64)
    np.add.at(sums, owners, rows)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty arrays: 0 / 0 windows, NaN as documented
        return sums / np.bincount(owners, minlength=len(token_arrays))[:, None]


def log_probs(network: Model, token_arrays: Sequence[np.ndarray], batch_size: int, device: torch.device,
              rc: bool = False) -> np.ndarray:
    """(n, classes) log-probabilities, averaged over windows (and both strands with `rc`) and renormalised."""
    def scores(tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.log_softmax(network(tokens, lengths).float(), -1)

    mean = window_means(network, scores, network.num_classes, token_arrays, batch_size, device, rc)
    return torch.log_softmax(torch.from_numpy(mean), 1).numpy()


def embeddings(model: TrainedModel, records: Iterable[Record], batch_size: int = BATCH_SIZE, device: str = "auto",
               rc: bool | None = None) -> Iterator[tuple[Record, np.ndarray]]:
    """Each record with its pooled features (`Model.embed`), averaged over windows (and strands) as `predict`
    averages scores; the k-mer composition term is not part of them. Streamed a chunk at a time."""
    network, torch_device, rc = _on_device(model, device, rc)
    for chunk, tokens in _encoded(records, batch_size, model.max_len):
        yield from zip(chunk, window_means(network, network.embed, network.embed_dim, tokens, batch_size,
                                           torch_device, rc))


def predict_records(model: TrainedModel, records: Iterable[Record], batch_size: int = BATCH_SIZE,
                    device: str = "auto", rc: bool | None = None, calibrated: bool = True) -> Iterator[Prediction]:
    """Stream predictions for records, in input order, a chunk of records at a time.

    Log-probabilities are temperature-calibrated when `calibrated` is set (a model without a temperature is
    left as it is); `rc` averages both strands, None leaves it to the model card.
    """
    network, torch_device, rc = _on_device(model, device, rc)
    temperature = model.temperature if calibrated else 1.0
    for chunk, tokens in _encoded(records, batch_size, model.max_len):
        scores = calibrate(log_probs(network, tokens, batch_size, torch_device, rc), temperature)
        for record, t, s in zip(chunk, tokens, scores):
            windows = len(window_starts(len(t), model.max_len)) if len(t) else 0
            yield Prediction(record.id, len(t), s, windows, record)


def mean_pair(first: Prediction, second: Prediction, pair_id: str) -> Prediction:
    """One prediction for a read pair: the mates' log-probabilities averaged and renormalised (an empty mate
    leaves the other's)."""
    mates = [p.log_probs for p in (first, second) if p.length]
    scores = np.mean(mates, 0) if mates else first.log_probs
    scores = scores - np.logaddexp.reduce(scores) if mates else scores
    return Prediction(pair_id, first.length + second.length, scores, first.windows + second.windows, first.record)


def _on_device(model: TrainedModel, device: str, rc: bool | None) -> tuple[Model, torch.device, bool]:
    """The network on its device in evaluation mode, the device, and whether both strands are scored."""
    torch_device = resolve_device(device)
    return model.network.to(torch_device).eval(), torch_device, model.scores_both_strands(rc)


def _encoded(records: Iterable[Record], batch_size: int, max_len: int) -> Iterator[tuple[list[Record],
                                                                                       list[np.ndarray]]]:
    """The records a chunk at a time (`_chunks`), with their tokens."""
    for chunk in _chunks(records, batch_size * CHUNK_BATCHES * max_len):
        yield chunk, [encode(r.seq) for r in chunk]


def _chunks(records: Iterable[Record], max_bases: int) -> Iterator[list[Record]]:
    """Consecutive groups of records holding about `max_bases` bases (at least one record each), so that
    memory stays bounded whether the input holds short reads or whole chromosomes."""
    chunk: list[Record] = []
    bases = 0
    for record in records:
        chunk.append(record)
        bases += len(record.seq)
        if bases >= max_bases:
            yield chunk
            chunk, bases = [], 0
    if chunk:
        yield chunk


def check_threshold(threshold: float | None, model: TrainedModel, target: int | None = None) -> None:
    """A threshold is a probability in (0, 1) of one class: the positive class, or `target` where given."""
    if threshold is None:
        return
    if not 0 < threshold < 1:
        raise GenomixError(f"--threshold must be between 0 and 1, got {threshold}")
    if target is None and model.positive_class is None:
        raise GenomixError(f"--threshold needs a binary model; this one has {len(model.classes)} classes")


@dataclass(frozen=True)
class Caller:
    """The call for one record: its label and that label's probability. `decide` picks the class; a record whose
    top probability is below `min_score`, or that is empty, is `unclassified`."""

    classes: Sequence[str]
    threshold: float | None = None
    positive: int | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0 < self.min_score <= 1:
            raise GenomixError(f"--min-score must be in (0, 1], got {self.min_score}")

    def __call__(self, probs: np.ndarray) -> tuple[str, float]:
        if math.isnan(probs[0]):  # an empty record: a row of NaN
            return UNCLASSIFIED, math.nan
        best = decide(probs, self.threshold, self.positive)
        if self.min_score is not None and probs.max() < self.min_score:
            return UNCLASSIFIED, float(probs[best])
        return self.classes[best], float(probs[best])


def decide(probs: np.ndarray, threshold: float | None, positive: int | None = 1) -> np.ndarray | int:
    """The called class of each row of probabilities (or of one row): the most probable, or, with a threshold,
    `positive` exactly when its probability reaches the threshold and the most probable other class otherwise."""
    probs = np.asarray(probs)
    if threshold is None or positive is None:
        calls = probs.argmax(-1)
    else:
        others = probs.copy()
        others[..., positive] = -np.inf
        calls = np.where(probs[..., positive] >= threshold, positive, others.argmax(-1))
    return int(calls) if calls.ndim == 0 else calls
