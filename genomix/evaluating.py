"""Measuring a model on labelled sequences: predictions joined with the true labels, then metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genomix.errors import GenomixError
from genomix.metrics import classification_metrics
from genomix.modelfile import load_model
from genomix.predicting import predict_records
from genomix.reading import Record, read_inputs


def evaluate(
    model_path: str | Path,
    inputs: Sequence[str],
    labels: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    rc: bool = False,
) -> tuple[dict, list[str]]:
    """`genomix evaluate`: metrics of the model on labelled inputs, and the model's class names."""
    model = load_model(model_path)
    index = {c: i for i, c in enumerate(model.classes)}
    truth: list[int] = []

    def checked(records) -> Record:
        for record in records:
            if record.label is None:
                raise GenomixError(f"record '{record.id}' has no label to evaluate against")
            if record.label not in index:
                raise GenomixError(f"record '{record.id}' has label '{record.label}', which the model does not "
                                   f"know ({', '.join(model.classes)})")
            truth.append(index[record.label])
            yield record

    probs = [p.probs for p in predict_records(model, checked(read_inputs(inputs, labels)), batch_size, device, rc)]
    if not probs:
        raise GenomixError("no records to evaluate")
    return classification_metrics(np.array(truth), np.stack(probs), len(model.classes)), model.classes
