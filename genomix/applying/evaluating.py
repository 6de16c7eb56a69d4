"""`genomix evaluate`: predictions of labelled records set against their labels, then metrics."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np

from genomix.applying.calibration import calibrate, expected_calibration_error
from genomix.applying.metrics import classification_metrics
from genomix.applying.novelty import novelty_of, open_set_metrics
from genomix.applying.predicting import unknown_threshold
from genomix.applying.scoring import BATCH_SIZE, Caller, Prediction, check_threshold, decide, predict_records
from genomix.errors import GenomixError
from genomix.io.files import check_outputs, output_folder
from genomix.io.multiqc import write_metrics, write_summary
from genomix.io.sources import RecordSource
from genomix.io.writers import Report, output_stream
from genomix.models.modelfile import TrainedModel, load_model
from genomix.sequences.dataset import class_index


def evaluate(
    model_path: str | Path,
    source: RecordSource,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    rc: bool | None = None,
    threshold: float | None = None,
    plots: str | Path | None = None,
    output: str | Path | None = None,
    report: str | Path | None = None,
    unknown: RecordSource | None = None,
    precision: str = "auto",
) -> tuple[dict, list[str]]:
    """Metrics of the model on the labelled records of `source`, and the model's class names.

    A source of `CLASS=genome.fa` genomes is read as the test regions held out at training (same window and
    holdout fraction), tiled into windows. Classes are called as `predict` calls them (`threshold`); the
    metrics use calibrated probabilities, and `ece_uncalibrated` and `ece` give the expected calibration error
    before and after the model's temperature. `plots` names a folder for PNG figures, `output` a JSON file of
    the metrics and `report` predict's summary TSV of the calls (`genomix.io.writers.Report`); '-' is stdout.
    With records of organisms the model was not trained on (`unknown`), `open_set` holds `novelty.open_set_metrics`.
    """
    source.require("evaluate")
    inputs = [*source.files, *(unknown.files if unknown else ()), str(model_path)]
    check_outputs([("-o", output), ("--report", report)], inputs, folders=[("--plots", plots)])
    model = load_model(model_path)
    check_threshold(threshold, model)
    if unknown is not None:
        unknown_threshold(model, True)  # a model file without novelty statistics cannot take --unknown
    scored = partial(predict_records, model, batch_size=batch_size, device=device, rc=rc, precision=precision)
    y, raw_scores, lengths, novelty = _scored(model, scored(_records(source, model, model_path), calibrated=False))
    probs = np.exp(calibrate(raw_scores, model.temperature))
    calls = decide(probs, threshold, model.positive_index)
    result = classification_metrics(y, probs, len(model.classes), calls, model.positive_index)
    result["ece_uncalibrated"] = expected_calibration_error(y, np.exp(raw_scores))
    result["ece"] = expected_calibration_error(y, probs)
    if unknown is not None:
        result["open_set"] = _open_set(model, scored(unknown.records()), novelty, calls == y)
    with ExitStack() as stack:  # all or nothing: the figures and the report, then the metrics, once all are written
        metrics = None if output is None else stack.enter_context(output_stream(output, inputs))
        if plots is not None:
            result["plots"] = _plots(y, probs, calls, model, plots, stack)
        if report is not None:
            summary = Report(model.classes)
            summary.add_all(*Caller(model.classes, threshold, model.positive_index).calls(probs), np.array(lengths))
            write_summary(summary, report, stack.enter_context(output_stream(report, inputs)), "evaluate")
        if metrics is not None:
            write_metrics(result | {"classes": model.classes}, output, metrics)
    return result, model.classes


def _plots(y: np.ndarray, probs: np.ndarray, calls: np.ndarray, model: TrainedModel, plots: str | Path,
           stack: ExitStack) -> list[str]:
    """The figures' paths in the folder `plots`, where they appear when `stack` closes."""
    from genomix.applying.plots import write_plots  # matplotlib loads only when figures are asked for

    drawn = write_plots(y, probs, calls, model.classes, model.positive_index,
                        stack.enter_context(output_folder(plots, "--plots")))
    return [str(Path(plots) / p.name) for p in drawn]


def _open_set(model: TrainedModel, unknown: Iterable[Prediction], known: np.ndarray, correct: np.ndarray) -> dict:
    """Open-set metrics of the novelty scores of the labelled records (`known`) and of the `unknown` records."""
    others = [p.novelty for p in unknown]
    if not others:
        raise GenomixError("--unknown: no records")
    novelty = novelty_of(model)
    return {"method": novelty.method, "unknown_records": len(others)} | open_set_metrics(
        known, np.array(others), novelty.threshold, correct)


def _scored(model: TrainedModel, predictions: Iterable[Prediction]) -> tuple[np.ndarray, np.ndarray, list[int],
                                                                             np.ndarray]:
    """The records' class indices, uncalibrated log-probabilities, lengths and novelty scores."""
    index = {c: i for i, c in enumerate(model.classes)}
    truth, raw, lengths, novelty = [], [], [], []
    for p in predictions:
        truth.append(class_index(p.id, p.label, index, "evaluation"))
        raw.append(p.log_probs)
        lengths.append(p.length)
        novelty.append(p.novelty)
    if not raw:
        raise GenomixError("no records to evaluate")
    return np.array(truth), np.stack(raw), lengths, np.array(novelty)


def _records(source: RecordSource, model: TrainedModel, model_path: str | Path):
    if not source.genomes:
        return source.records()
    training = model.card.training
    if training is None or training.genome_window is None:
        raise GenomixError(f"{model_path}: --genome needs a model trained with --genome (it knows the held-out "
                           "regions)")
    return source.genome_set(training.genome_window, training.holdout_fraction).tiles("test")
