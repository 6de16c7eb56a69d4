"""Applying a model: records → windows → length-bucketed batches → probabilities → TSV rows.

A sequence longer than the model's max_len is never truncated: it is tiled by windows of max_len (the
last one flush with its end), and the windows' log-probabilities are averaged and renormalised. Records
are processed in chunks and written in input order, so memory stays constant on any input size.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from genomix.batching import bucket_batches, pad, window_starts
from genomix.calibration import apply_temperature
from genomix.console import autocast, console, resolve_device
from genomix.errors import GenomixError
from genomix.files import atomic_path, check_writable
from genomix.genomes import read_regions
from genomix.modelfile import TrainedModel, load_model
from genomix.reading import Record, read_inputs
from genomix.tokens import encode, reverse_complement

CHUNK_BATCHES = 32  # windows read ahead per batch size: enough for good length buckets, bounded memory


@dataclass(frozen=True)
class Prediction:
    """Class probabilities of one record, in the model's class order."""

    id: str
    length: int
    probs: np.ndarray


@torch.no_grad()
def log_probs(
    network: torch.nn.Module,
    token_arrays: Sequence[np.ndarray],
    batch_size: int,
    device: torch.device,
    rc: bool = False,
) -> np.ndarray:
    """(n, classes) log-probabilities, averaged over windows (and both strands with `rc`)."""
    pieces: list[np.ndarray] = []
    owners: list[int] = []
    for owner, tokens in enumerate(token_arrays):
        for start in window_starts(len(tokens), network.max_len):
            window = tokens[start : start + network.max_len]
            pieces += [window, reverse_complement(window)] if rc else [window]
            owners += [owner] * (2 if rc else 1)
    lengths = np.array([len(p) for p in pieces])
    scores = np.empty((len(pieces), network.head.out_features))
    for batch in bucket_batches(lengths, batch_size):
        tokens, batch_lengths = pad([pieces[i] for i in batch])
        with autocast(device):
            logits = network(tokens.to(device), batch_lengths.to(device))
        scores[batch] = torch.log_softmax(logits.float(), -1).cpu().numpy()
    sums = np.zeros((len(token_arrays), scores.shape[1]))
    np.add.at(sums, owners, scores)
    mean = sums / np.bincount(owners, minlength=len(token_arrays))[:, None]
    return torch.log_softmax(torch.from_numpy(mean), 1).numpy()


def predict_records(
    model: TrainedModel,
    records: Iterable[Record],
    batch_size: int = 64,
    device: str = "auto",
    rc: bool | None = None,
    calibrated: bool = True,
) -> Iterator[Prediction]:
    """Stream predictions for records, in input order, a chunk of records at a time.

    Probabilities are temperature-calibrated when the model has a temperature and `calibrated` is set.
    `rc` averages both strands; None leaves it to the model (`TrainedModel.both_strands`).
    """
    torch_device = resolve_device(device)
    rc = model.scores_both_strands(rc)
    temperature = model.temperature if calibrated else 1.0
    network = model.network.to(torch_device).eval()
    for chunk in _chunks(records, batch_size * CHUNK_BATCHES * model.max_len):
        tokens = [encode(r.seq) for r in chunk]
        probs = apply_temperature(log_probs(network, tokens, batch_size, torch_device, rc), temperature)
        for record, p in zip(chunk, probs):
            yield Prediction(record.id, len(record.seq), p)


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


def decide(probs: np.ndarray, threshold: float | None) -> int:
    """The predicted class: the most probable, or for a binary model with a threshold, the positive
    class (index 1) exactly when its probability reaches the threshold."""
    if threshold is None:
        return int(probs.argmax())
    return int(probs[1] >= threshold)


def write_predictions(predictions: Iterable[Prediction], classes: Sequence[str], out: TextIO,
                      threshold: float | None = None) -> int:
    """Write the prediction TSV (id, length, label, score, p_<class>...) and return the row count."""
    out.write("\t".join(["id", "length", "label", "score", *(f"p_{c}" for c in classes)]) + "\n")
    rows = 0
    for p in predictions:
        best = decide(p.probs, threshold)
        fields = [p.id, str(p.length), classes[best], f"{p.probs[best]:.6f}", *(f"{x:.6f}" for x in p.probs)]
        out.write("\t".join(fields) + "\n")
        rows += 1
    return rows


def parse_shard(shard: str) -> tuple[int, int]:
    """`I/N` (1-based, as `split -n l/I/N`) → (I - 1, N)."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise GenomixError(f"--shard {shard}: expected I/N, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise GenomixError(f"--shard {shard}: I must be between 1 and N")
    return index - 1, count


def predict(
    model_path: str | Path,
    inputs: Sequence[str],
    output: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    rc: bool | None = None,
    threshold: float | None = None,
    bed: Sequence[str] = (),
    reference: str | None = None,
    shard: str | None = None,
) -> int:
    """`genomix predict`: score every record of the inputs and BED regions into a TSV at `output` ('-' or
    None: stdout).

    With `threshold` (binary models only), a record is called positive when p_positive ≥ threshold.
    With `shard` "I/N", only records I, I+N, I+2N... are scored, so N jobs together score every record once.
    """
    if not (inputs or bed):
        raise GenomixError("nothing to score: give sequence files or --bed regions with --reference")
    first, step = parse_shard(shard) if shard else (0, 1)
    if output is not None and str(output) != "-":
        check_writable(output)
    model = load_model(model_path)
    if threshold is not None:
        if model.positive_class is None:
            raise GenomixError(f"--threshold needs a binary model; this one has {len(model.classes)} classes")
        if not 0 < threshold < 1:
            raise GenomixError("--threshold must be between 0 and 1")
    console.log(f"model {model.network.name} ({', '.join(model.classes)}); sequences longer than "
                f"{model.max_len} bp are scored as windows of {model.max_len} bp with log-probabilities averaged")
    records = islice(chain(read_inputs(inputs), read_regions(bed, reference)), first, None, step)
    predictions = predict_records(model, records, batch_size, device, rc)
    if output is None or str(output) == "-":
        return write_predictions(predictions, model.classes, sys.stdout, threshold)
    with atomic_path(output) as tmp, open(tmp, "w") as out:
        rows = write_predictions(predictions, model.classes, out, threshold)
    console.log(f"wrote {rows} predictions to {output}")
    return rows
