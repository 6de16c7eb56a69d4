"""Where results go: an output stream per path, and the prediction writers, chosen by the output's suffix.

A new prediction format is one `PredictionWriter` subclass added to `WRITERS`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TextIO

import numpy as np

from genomix.errors import GenomixError
from genomix.files import open_output
from genomix.scoring import UNCLASSIFIED, Prediction

STDOUT = "-"


def is_stdout(path: str | Path | None) -> bool:
    return path is None or str(path) == STDOUT


@contextmanager
def output_stream(path: str | Path | None, inputs: Sequence[str | Path] = ()) -> Iterator[TextIO]:
    """stdout for None or '-', else `genomix.files.open_output`: never over one of `inputs`, atomic for a regular
    file (replaced only when the whole command succeeds), direct for a pipe or a device."""
    if is_stdout(path):
        yield sys.stdout
        return
    with open_output(path, inputs) as out:
        yield out


class PredictionWriter:
    """Writes one prediction per record; `decide` maps a row of probabilities to the called class index."""

    suffix: ClassVar[str]

    def __init__(self, out: TextIO, classes: Sequence[str], decide: Callable[[np.ndarray], int]) -> None:
        self.out, self.classes, self.decide, self.rows = out, list(classes), decide, 0

    def begin(self) -> None:
        """Anything that precedes the rows (a header line)."""

    def write(self, prediction: Prediction) -> None:
        raise NotImplementedError

    def call(self, prediction: Prediction) -> tuple[str, float]:
        """The called label and its probability; an empty record is unclassified."""
        probs = prediction.probs
        if np.isnan(probs).any():
            return UNCLASSIFIED, math.nan
        best = self.decide(probs)
        return self.classes[best], float(probs[best])


class TsvWriter(PredictionWriter):
    """id, length, label, score (the called class's probability), p_<class>... to 6 decimals."""

    suffix = ".tsv"

    def begin(self) -> None:
        self.out.write("\t".join(["id", "length", "label", "score", *(f"p_{c}" for c in self.classes)]) + "\n")

    def write(self, prediction: Prediction) -> None:
        label, score = self.call(prediction)
        fields = [prediction.id, str(prediction.length), label, f"{score:.6f}", *(f"{x:.6f}" for x in prediction.probs)]
        self.out.write("\t".join(fields) + "\n")
        self.rows += 1


class JsonLinesWriter(PredictionWriter):
    """One JSON object per line: id, length, windows, label, score and probs (class → probability)."""

    suffix = ".jsonl"

    def write(self, prediction: Prediction) -> None:
        label, score = self.call(prediction)
        probs = {c: (None if math.isnan(p) else float(p)) for c, p in zip(self.classes, prediction.probs)}
        row = {"id": prediction.id, "length": prediction.length, "windows": prediction.windows, "label": label,
               "score": None if math.isnan(score) else score, "probs": probs}
        self.out.write(json.dumps(row) + "\n")
        self.rows += 1


WRITERS: dict[str, type[PredictionWriter]] = {w.suffix: w for w in (TsvWriter, JsonLinesWriter)}


def writer_for(path: str | Path | None) -> type[PredictionWriter]:
    """The writer for an output path, by its suffix; stdout gets TSV."""
    if is_stdout(path):
        return TsvWriter
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise GenomixError(f"{path}: unknown output format {suffix or '(no suffix)'!r}; "
                           f"choose a suffix from {', '.join(WRITERS)}")
    return WRITERS[suffix]
