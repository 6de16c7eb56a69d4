"""Measuring a model on labelled sequences: predictions joined with the true labels, then metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path

import numpy as np

from genomix.calibration import apply_temperature, expected_calibration_error
from genomix.errors import GenomixError
from genomix.genomes import GenomeSet, read_regions
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
    rc: bool | None = None,
    plots: str | Path | None = None,
    bed: Sequence[str] = (),
    reference: str | None = None,
    genomes: Sequence[str] = (),
) -> tuple[dict, list[str]]:
    """`genomix evaluate`: metrics of the model on labelled inputs, and the model's class names.

    The inputs are sequence files and BED regions, or `CLASS=genome.fa` genomes, whose test regions (held
    out at training, with the training window and holdout fraction) are tiled into windows.
    The metrics use the calibrated probabilities; `ece_uncalibrated` and `ece` give the expected
    calibration error before and after the model's temperature. `plots` names a folder for PNG figures.
    """
    if genomes and (inputs or bed):
        raise GenomixError("--genome evaluates on held-out genome windows: give it without sequence files or --bed")
    if not (genomes or inputs or bed):
        raise GenomixError("nothing to evaluate: give sequence files, --bed regions or --genome CLASS=genome.fa")
    model = load_model(model_path)
    index = {c: i for i, c in enumerate(model.classes)}
    truth: list[int] = []

    def checked(records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if record.label is None:
                raise GenomixError(f"record '{record.id}' has no label to evaluate against")
            if record.label not in index:
                raise GenomixError(f"record '{record.id}' has label '{record.label}', which the model does not "
                                   f"know ({', '.join(model.classes)})")
            truth.append(index[record.label])
            yield record

    if genomes:
        settings = model.metadata.get("training", {}).get("settings", {})
        holdout = settings.get("holdout_fraction") if settings.get("window") else None
        if holdout is None:
            raise GenomixError(f"{model_path}: --genome needs a model trained with --genome (it knows the held-out "
                               "regions)")
        records: Iterable[Record] = GenomeSet.open(genomes, settings["window"], holdout).tiles("test")
    else:
        records = chain(read_inputs(inputs, labels), read_regions(bed, reference))
    predictions = predict_records(model, checked(records), batch_size, device, rc, calibrated=False)
    raw = [p.probs for p in predictions]
    if not raw:
        raise GenomixError("no records to evaluate")
    y, raw_probs = np.array(truth), np.stack(raw)
    probs = apply_temperature(np.log(np.maximum(raw_probs, 1e-300)), model.temperature)
    result = classification_metrics(y, probs, len(model.classes))
    result["ece_uncalibrated"] = expected_calibration_error(y, raw_probs)
    result["ece"] = expected_calibration_error(y, probs)
    if plots is not None:
        from genomix.plots import write_plots  # matplotlib loads only when figures are asked for

        result["plots"] = [str(p) for p in write_plots(y, probs, model.classes, plots)]
    return result, model.classes
