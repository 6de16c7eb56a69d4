"""The one scoring path: token arrays → windows → length-bucketed batches → log-probabilities → decisions.

A sequence longer than the model's max_len is never truncated: it is tiled by windows of max_len (the last
one flush with its end), and the windows' log-probabilities are averaged and renormalised; a model scored
on both strands averages each window with its reverse complement too. Every command that applies a model
scores through `Scorer`, and calls classes through `decide`; the differentiable path of `explain` tiles and
combines with the same `tiles`, `calibrated` and `log_odds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from genomix.applying.calibration import calibrated
from genomix.applying.novelty import Inputs, novelty_of
from genomix.console import autocast, compute_dtype, resolve_device
from genomix.errors import GenomixError
from genomix.io.reading import Record
from genomix.io.writers import UNCLASSIFIED, UNKNOWN
from genomix.models.base import Model
from genomix.models.modelfile import TrainedModel
from genomix.sequences.batching import bucket_batches, pad, window_starts
from genomix.sequences.tokens import encode_all, reverse_complement

BATCH_SIZE = 64  # sequences (or windows) per batch when scoring
CHUNK_BATCHES = 32  # windows read ahead per batch size: enough for good length buckets, bounded memory
T = TypeVar("T", np.ndarray, Tensor)


@dataclass(frozen=True)
class Scored:
    """A chunk of records scored: their lengths, (n, classes) log-probabilities (NaN rows for empty records) and
    window counts, as arrays, so that calls and output rows are made a chunk at a time."""

    ids: list[str]
    records: list[Record]
    lengths: np.ndarray
    log_probs: np.ndarray
    windows: np.ndarray
    novelty: np.ndarray  # the records' novelty scores (`genomix.applying.novelty`; NaN where the model has none)
    mates: list[Record | None] | None = None  # read pairs: each pair's second read (`records` holds the first)

    @classmethod
    def of(cls, predictions: Sequence[Prediction]) -> Scored:
        return cls([p.id for p in predictions], [p.record for p in predictions],
                   np.array([p.length for p in predictions], np.int64), np.array([p.log_probs for p in predictions]),
                   np.array([p.windows for p in predictions]), np.array([p.novelty for p in predictions]),
                   [p.mate for p in predictions])

    @cached_property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)

    def predictions(self) -> Iterator[Prediction]:
        mates = self.mates or [None] * len(self.ids)
        for i, record, n, s, w, u, mate in zip(self.ids, self.records, self.lengths.tolist(), self.log_probs,
                                               self.windows.tolist(), self.novelty.tolist(), mates):
            yield Prediction(i, n, s, w, record, u, mate)


@dataclass(frozen=True)
class Prediction:
    """Log-probabilities of one record in the model's class order (NaN for an empty record), the number of
    windows they average, and the record scored (whose own label `evaluate` checks against)."""

    id: str
    length: int
    log_probs: np.ndarray
    windows: int
    record: Record | None = field(default=None, repr=False, compare=False)
    novelty: float = math.nan  # how unlike the training data the record is (`genomix.applying.novelty`)
    mate: Record | None = field(default=None, repr=False, compare=False)  # a read pair's second read

    @property
    def label(self) -> str | None:
        return self.record.label if self.record is not None else None

    @cached_property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)


def tiles(x: T, max_len: int, rc: bool, reverse_complement: Callable[[T], T]) -> list[T]:
    """The pieces a record is scored as: its windows (`window_starts`), each followed by its reverse complement
    where both strands are scored. Token arrays and (differentiable) base weights are tiled alike."""
    windows = [x[s : s + max_len] for s in window_starts(len(x), max_len)]
    return [p for w in windows for p in ((w, reverse_complement(w)) if rc else (w,))]


def owner_means(rows: Tensor, owners: Tensor, n: int) -> Tensor:
    """(n, width): the mean of each owner's rows (NaN for an owner without rows). Differentiable."""
    sums = rows.new_zeros(n, rows.shape[1]).index_add(0, owners, rows)
    return sums / torch.bincount(owners, minlength=n)[:, None]


def log_odds(log_probs: Tensor | np.ndarray, target: int | Tensor | np.ndarray) -> Tensor | np.ndarray:
    """log(p / (1 - p)) of class `target` (one for all rows, or one per row) in rows of log-probabilities,
    computed without cancellation; differentiable, and numpy in gives numpy out."""
    if isinstance(log_probs, np.ndarray):
        return log_odds(torch.from_numpy(log_probs), torch.as_tensor(target)).numpy()
    index = torch.as_tensor(target, device=log_probs.device).expand(log_probs.shape[:-1])[..., None]
    own = log_probs.gather(-1, index)[..., 0]
    return own - log_probs.scatter(-1, index, -torch.inf).logsumexp(-1)


@dataclass(frozen=True)
class Scorer:
    """The one way to score token arrays, as `predict` does: a network in evaluation mode on one device, the
    strands and the temperature of its model file, length-bucketed batches. `predict`, `evaluate`, `scan`,
    `embed`, `variants`, `explain` and validation during training all score through it. Results stay tensors
    (float64, on the CPU) until they are written."""

    network: Model
    device: torch.device
    rc: bool = False
    temperature: float = 1.0
    batch_size: int = BATCH_SIZE
    precision: str | None = None  # auto, fp32 or bf16 (`console.compute_dtype`); None: as in training

    @classmethod
    def of(cls, model: TrainedModel, device: str | torch.device = "auto", batch_size: int = BATCH_SIZE,
           rc: bool | None = None, calibrated: bool = True, precision: str = "auto") -> Scorer:
        """The scorer of a model file: `rc` None scores the strands the card says; `calibrated` False leaves the
        temperature out; `precision` is `auto`, `fp32` or `bf16` (`console.compute_dtype`)."""
        torch_device = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(model.network.to(torch_device).eval(), torch_device, model.scores_both_strands(rc),
                   model.temperature if calibrated else 1.0, batch_size, precision)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network's matrix products run in."""
        return compute_dtype(self.precision, self.device)

    @property
    def max_len(self) -> int:
        return self.network.max_len

    @property
    def pieces_per_window(self) -> int:
        return 2 if self.rc else 1

    def log_probs(self, token_arrays: Sequence[np.ndarray]) -> Tensor:
        """(n, classes) calibrated log-probabilities of whole token arrays, each tiled by windows; NaN rows for
        empty arrays."""
        return self.records(token_arrays)[0]

    def records(self, token_arrays: Sequence[np.ndarray]) -> tuple[Tensor, np.ndarray]:
        """`log_probs`, and the number of windows each array was scored as (0 for an empty one)."""
        means, pieces = self._means(self._log_softmax, self.network.num_classes, token_arrays)
        return calibrated(means, self.temperature), pieces // self.pieces_per_window

    def window_rows(self, windows: Sequence[np.ndarray]) -> Tensor:
        """(n, classes) each window's log-softmax, averaged over the strands scored: the rows `combine` sums."""
        return self._means(self._log_softmax, self.network.num_classes, windows)[0]

    def combine(self, window_sums: Tensor, windows: int | Tensor) -> Tensor:
        """Calibrated log-probabilities of records from the sums of their windows' rows (`window_rows`)."""
        return calibrated(window_sums / windows, self.temperature)

    def records_with_features(self, token_arrays: Sequence[np.ndarray]) -> tuple[Tensor, np.ndarray, Tensor]:
        """`records`, and each array's pooled features (what the head reads, `features`) from the same pass."""
        classes = self.network.num_classes
        means, pieces = self._means(self._log_softmax_and_features, classes + self.network.embed_dim, token_arrays)
        return calibrated(means[:, :classes], self.temperature), pieces // self.pieces_per_window, means[:, classes:]

    def features(self, token_arrays: Sequence[np.ndarray]) -> Tensor:
        """(n, F) pooled features (`Model.embed`), averaged over windows and strands as scores are."""
        return self._means(self.network.embed, self.network.embed_dim, token_arrays)[0]

    def _log_softmax(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.log_softmax(self.network(tokens, lengths).float(), -1)

    def _log_softmax_and_features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """`_log_softmax` beside the head's input, caught on its way in (every model ends in `head(embed(...))`)."""
        seen: list[Tensor] = []
        hook = self.network.head.register_forward_hook(lambda _, inputs, __: seen.append(inputs[0]))
        try:
            log_probs = self._log_softmax(tokens, lengths)
        finally:
            hook.remove()
        return torch.cat([log_probs, seen[0].float()], 1)

    @torch.no_grad()
    def _means(self, fn: Callable[[Tensor, Tensor], Tensor], width: int,
               token_arrays: Sequence[np.ndarray]) -> tuple[Tensor, np.ndarray]:
        """(n, width): the mean of `fn`'s rows over each array's pieces (`tiles`), NaN rows for empty arrays; and
        the number of pieces of each array. Pieces are cut a batch at a time and their rows summed as they come, so
        a genome-scale array costs one batch of windows and one row, not all its windows and a row for each."""
        owners, starts, lengths = self._layout(token_arrays)
        sums = torch.zeros(len(token_arrays), width, dtype=torch.float64)
        for batch in bucket_batches(lengths, self.batch_size):
            tokens, batch_lengths = pad(self._cut(token_arrays, batch, owners, starts, lengths))
            with autocast(self.device, self.precision):
                rows = fn(tokens.to(self.device), batch_lengths.to(self.device)).double().cpu()
            sums.index_add_(0, torch.from_numpy(owners[batch]), rows)  # an array's rows in `tiles`' order
        counts = np.bincount(owners, minlength=len(token_arrays))
        return sums / torch.from_numpy(counts)[:, None], counts

    def _layout(self, token_arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the arrays' pieces (`tiles`, in their order) lie: each piece's array, start and length. An
        array's pieces all have one length, so length buckets keep them in this order."""
        starts = [np.asarray(window_starts(len(t), self.max_len) if len(t) else [], np.int64) for t in token_arrays]
        owners = np.repeat(np.arange(len(token_arrays)), [len(s) * self.pieces_per_window for s in starts])
        starts = np.repeat(np.concatenate([np.zeros(0, np.int64), *starts]), self.pieces_per_window)
        sizes = np.fromiter(map(len, token_arrays), np.int64, len(token_arrays))
        return owners, starts, np.minimum(sizes[owners], self.max_len)

    def _cut(self, token_arrays: Sequence[np.ndarray], batch: np.ndarray, owners: np.ndarray, starts: np.ndarray,
             lengths: np.ndarray) -> list[np.ndarray]:
        """The pieces `batch` indexes in `_layout`: a window, or (odd pieces where both strands are scored) its
        reverse complement."""
        pieces = []
        for i, owner, start, n in zip(batch.tolist(), owners[batch].tolist(), starts[batch].tolist(),
                                      lengths[batch].tolist()):
            window = token_arrays[owner][start : start + n]
            pieces.append(reverse_complement(window) if i % self.pieces_per_window else window)
        return pieces


def embeddings(model: TrainedModel, records: Iterable[Record], batch_size: int = BATCH_SIZE, device: str = "auto",
               rc: bool | None = None, precision: str = "auto") -> Iterator[tuple[Record, np.ndarray]]:
    """Each record with its pooled features (`Scorer.features`); the k-mer composition term is not part of them.
    Streamed a chunk at a time."""
    scorer = Scorer.of(model, device, batch_size, rc, precision=precision)
    for chunk, tokens in _encoded(records, scorer):
        yield from zip(chunk, scorer.features(tokens).numpy())


def predict_records(model: TrainedModel, records: Iterable[Record], batch_size: int = BATCH_SIZE,
                    device: str = "auto", rc: bool | None = None, calibrated: bool = True,
                    precision: str = "auto") -> Iterator[Prediction]:
    """Stream predictions for records, in input order, a chunk of records at a time (`predict_chunks`)."""
    for chunk in predict_chunks(model, records, batch_size, device, rc, calibrated, precision):
        yield from chunk.predictions()


def predict_chunks(model: TrainedModel, records: Iterable[Record], batch_size: int = BATCH_SIZE,
                   device: str = "auto", rc: bool | None = None, calibrated: bool = True,
                   precision: str = "auto") -> Iterator[Scored]:
    """Stream the records' scores, in input order, a chunk of records at a time: what writers turn into rows a
    chunk at a time.

    Log-probabilities are temperature-calibrated when `calibrated` is set (a model without a temperature is
    left as it is); `rc` averages both strands, None leaves it to the model card.
    """
    scorer = Scorer.of(model, device, batch_size, rc, calibrated, precision)
    novelty = novelty_of(model)
    for chunk, tokens in _encoded(records, scorer):
        if novelty is None:
            scores, windows = scorer.records(tokens)
            unusual = np.full(len(tokens), math.nan)
        else:
            scores, windows, features = scorer.records_with_features(tokens)
            unusual = novelty.score(scorer.network, Inputs(scores.numpy(), features.numpy(), tokens, scorer.rc))
        yield Scored([r.id for r in chunk], chunk, np.fromiter(map(len, tokens), np.int64, len(tokens)),
                     scores.numpy(), windows, np.asarray(unusual, dtype=np.float64))


def mean_pair(first: Prediction, second: Prediction, pair_id: str) -> Prediction:
    """One prediction for a read pair: the mates' log-probabilities averaged and renormalised, and their novelty
    scores averaged (an empty mate leaves the other's)."""
    mates = [p for p in (first, second) if p.length]
    scores = np.mean([p.log_probs for p in mates], 0) if mates else first.log_probs
    scores = scores - np.logaddexp.reduce(scores) if mates else scores
    novelty = float(np.mean([p.novelty for p in mates])) if mates else math.nan
    return Prediction(pair_id, first.length + second.length, scores, first.windows + second.windows, first.record,
                      novelty, second.record)


def _encoded(records: Iterable[Record], scorer: Scorer) -> Iterator[tuple[list[Record], list[np.ndarray]]]:
    """The records a chunk at a time (`_chunks`), with their tokens."""
    for chunk in _chunks(records, scorer.batch_size * CHUNK_BATCHES * scorer.max_len):
        yield chunk, encode_all([r.seq for r in chunk])


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
    top probability is below `min_score`, or that is empty, is `unclassified`; one whose novelty score is past
    `novelty_threshold` is `unknown`."""

    classes: Sequence[str]
    threshold: float | None = None
    positive: int | None = None
    min_score: float | None = None
    novelty_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0 < self.min_score <= 1:
            raise GenomixError(f"--min-score must be in (0, 1], got {self.min_score}")

    @property
    def labels(self) -> list[str]:
        """What a record may be called, in the order of `Report.labels`: the classes, `unknown` where novel records
        are called so, and `unclassified`."""
        return [*self.classes, *[UNKNOWN] * (self.novelty_threshold is not None), UNCLASSIFIED]

    def __call__(self, probs: np.ndarray, novelty: float = math.nan) -> tuple[str, float]:
        codes, scores = self.calls(np.asarray(probs)[None], np.array([novelty]))
        return self.labels[codes[0]], float(scores[0])

    def calls(self, probs: np.ndarray, novelty: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For rows of probabilities (and the records' novelty scores): the index of each row's call in
        `labels`, and its score. Empty records (rows of NaN) and records below `min_score` are unclassified, which
        takes precedence over unknown."""
        best = decide(probs, self.threshold, self.positive)
        scores = probs[np.arange(len(probs)), best]
        if self.novelty_threshold is not None and novelty is not None:
            with np.errstate(invalid="ignore"):
                best = np.where(novelty > self.novelty_threshold, len(self.classes), best)
        unclassified = np.isnan(probs[:, 0])
        if self.min_score is not None:
            with np.errstate(invalid="ignore"):
                unclassified |= probs.max(1) < self.min_score
        return np.where(unclassified, len(self.labels) - 1, best), scores


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
