"""`genomix predict`: every record of a source scored and written, one row per record, in input order, with
an optional summary report and the records split by their called class.

Records stream through `genomix.applying.scoring` a chunk at a time, so memory stays constant on any input size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from typing import IO, Any

import numpy as np

from genomix.applying.novelty import novelty_of, shorter_records_notice
from genomix.applying.scoring import (
    BATCH_SIZE,
    Caller,
    Prediction,
    Scored,
    check_threshold,
    mean_pair,
    predict_chunks,
    predict_records,
)
from genomix.console import console, precision_name
from genomix.errors import GenomixError
from genomix.io.files import STDOUT, check_outputs
from genomix.io.formats import format_of
from genomix.io.kraken import Taxonomy
from genomix.io.multiqc import write_summary
from genomix.io.reading import Record, read_records
from genomix.io.sources import RecordSource
from genomix.io.writers import UNKNOWN, KrakenWriter, RecordsByClass, Report, Rows, is_stdout, output_stream, writer_for
from genomix.models.modelfile import TrainedModel, load_model

PAIRS_PER_CHUNK = 4096  # read pairs written at a time


def parse_shard(shard: str) -> tuple[int, int]:
    """`I/N` (1-based, as `split -n l/I/N`) → (I - 1, N)."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise GenomixError(f"--shard {shard}: expected I/N, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise GenomixError(f"--shard {shard}: I must be between 1 and N")
    return index - 1, count


@dataclass(frozen=True)
class Outputs:
    """Where `predict` writes: the predictions (in `format`, else by suffix), and optionally a report and records
    by class."""

    predictions: str | Path | None = None
    report: str | Path | None = None
    classified_out: str | None = None
    report_format: str | None = None  # tsv or kraken (`genomix.io.kraken`); None: kraken for .kreport, else tsv
    taxonomy: str | Path | None = None  # the class → taxid table of the Kraken-format outputs
    format: str | None = None  # the predictions' format (`genomix.io.writers.WRITERS`) whatever the suffix


def pair_id(record_id: str) -> str:
    """A mate's id without its /1 or /2 suffix, as read pairs are named."""
    return record_id[:-2] if record_id[-2:] in ("/1", "/2") else record_id


def read_pairs(first: str, second: str) -> Iterator[Record]:
    """The mates of two files, alternating, checked pair by pair to have the same id."""
    for number, (one, two) in enumerate(zip_longest(read_records(first), read_records(second)), 1):
        if one is None or two is None:
            raise GenomixError(f"--paired: {first} and {second} hold different numbers of reads (first unpaired: "
                               f"'{(one or two).id}', pair {number})")
        if pair_id(one.id) != pair_id(two.id):
            raise GenomixError(f"--paired: pair {number} has ids '{one.id}' in {first} and '{two.id}' in {second}")
        yield one
        yield two


def _paired(predictions: Iterable[Prediction]) -> Iterator[Prediction]:
    mates = iter(predictions)
    for first in mates:
        yield mean_pair(first, next(mates), pair_id(first.id))


def predict(
    model_path: str | Path,
    source: RecordSource,
    output: str | Path | Outputs | None = None,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    rc: bool | None = None,
    threshold: float | None = None,
    shard: str | None = None,
    min_score: float | None = None,
    paired: tuple[str, str] | None = None,
    unknown: bool = False,
    precision: str = "auto",
) -> Report:
    """Score every record of `source` (or every read pair of `paired`, its mates' log-probabilities averaged)
    into `output` ('-' or None: stdout as TSV; else in `Outputs.format` or by suffix, see `genomix.io.writers`);
    return the report.

    With `threshold` (binary models), a record is called positive when p_positive ≥ threshold; with `min_score`,
    a record whose top probability is below it is `unclassified`. With `shard` "I/N", only records (pairs)
    I, I+N, I+2N... are scored, so N jobs together score every record once. Every record gets a novelty score
    (`genomix.applying.novelty`) where the model file keeps the statistics; with `unknown`, a record past the
    model's threshold is called `unknown`. `precision` is the arithmetic of the network (`console.compute_dtype`).
    """
    outputs = output if isinstance(output, Outputs) else Outputs(output)
    if paired is None:
        source.require("score", genomes=False)
    elif not source.empty:
        raise GenomixError("--paired reads its two files only: give no other inputs")
    first, step = parse_shard(shard) if shard else (0, 1)
    writer_class, kraken_report = writer_for(outputs.predictions, outputs.format), report_format(outputs) == "kraken"
    inputs = [*source.files, *(paired or ()), str(model_path)]
    check_outputs([("-o", outputs.predictions or STDOUT), ("--report", outputs.report)], inputs)
    model = load_model(model_path)
    check_threshold(threshold, model)
    taxonomy = Taxonomy.read(outputs.taxonomy, model.classes)
    if writer_class is KrakenWriter:
        writer_class = KrakenWriter.of(taxonomy)
    caller = Caller(model.classes, threshold, model.positive_index, min_score, unknown_threshold(model, unknown))
    console.log(f"model {model.network.name} ({', '.join(model.classes)}); sequences longer than "
                f"{model.max_len} bp are scored as windows of {model.max_len} bp with log-probabilities averaged; "
                f"precision {precision_name(device, precision)}")
    scoring = {"batch_size": batch_size, "device": device, "rc": rc, "precision": precision}
    predictions = _predictions(model, source, paired, first, step, scoring)
    report = _write(predictions, model, caller, outputs, writer_class, inputs, taxonomy if kraken_report else None)
    _log_summary(report, model, outputs, unknown)
    return report


def _log_summary(report: Report, model: TrainedModel, outputs: Outputs, unknown: bool) -> None:
    """The report's summary line; with `unknown`, whether short records make `unknown` calls likelier; where the
    predictions went."""
    console.log(report.summary())
    if unknown and (notice := shorter_records_notice(novelty_of(model), sum(report.bases.values()),
                                                     sum(report.records.values()))):
        console.log(notice)
    if not is_stdout(outputs.predictions):
        console.log(f"wrote {sum(report.records.values())} predictions to {outputs.predictions}")


def report_format(outputs: Outputs) -> str:
    """The report's format: as asked, else Kraken2's for a .kreport file, else the TSV."""
    if outputs.report_format not in (None, "tsv", "kraken"):
        raise GenomixError(f"--report-format {outputs.report_format}: choose tsv or kraken")
    return outputs.report_format or ("kraken" if format_of(outputs.report) == "kreport" else "tsv")


def unknown_threshold(model: TrainedModel, unknown: bool) -> float | None:
    """The novelty threshold past which `--unknown` calls a record unknown (None without `unknown`); a model file
    without novelty statistics gets a notice (its novelty column stays empty), or an error with `unknown`."""
    novelty = novelty_of(model)
    if novelty is None:
        if unknown:
            raise GenomixError("--unknown needs a model file with novelty statistics; this one has none (written "
                               "by an older genomix, or trained without validation data): train it again")
        console.log("this model file has no novelty statistics (written by an older genomix, or trained without "
                    "validation data): the novelty column stays empty")
        return None
    if unknown and UNKNOWN in model.classes:
        raise GenomixError(f"--unknown: the model has a class named '{UNKNOWN}'")
    return novelty.threshold if unknown else None


def _predictions(model: TrainedModel, source: RecordSource, paired: tuple[str, str] | None, first: int, step: int,
                 scoring: dict[str, Any]) -> Iterator[Scored]:
    """The chunks of scored records (or pairs) of this shard; `scoring`: `predict_chunks`' keyword arguments."""
    if paired is None:
        return predict_chunks(model, islice(source.records(), first, None, step), **scoring)
    mates = predict_records(model, read_pairs(*paired), **scoring)
    pairs = islice(_paired(mates), first, None, step)
    return (Scored.of(chunk) for chunk in iter(lambda: list(islice(pairs, PAIRS_PER_CHUNK)), []))


def _write(predictions: Iterable[Scored], model: TrainedModel, caller: Caller, outputs: Outputs,
           writer_class: type, inputs: list[str], taxonomy: Taxonomy | None) -> Report:
    """Stream the predictions into the writer, the report and the class files, a chunk of records at a time;
    all or nothing is written: the files commit together when every one of them is complete."""
    report = Report(model.classes, unknown=caller.novelty_threshold is not None)
    labels = np.array(caller.labels, dtype=object)
    with ExitStack() as stack:
        out = stack.enter_context(output_stream(outputs.predictions, inputs, binary=writer_class.binary))
        writer = writer_class(out, model.classes)
        by_class = RecordsByClass(outputs.classified_out, model.classes, inputs, stack) \
            if outputs.classified_out else None
        writer.begin()
        for chunk in predictions:
            calls, scores = caller.calls(chunk.probs, chunk.novelty)
            called = labels[calls].tolist()
            writer.write(Rows(chunk.ids, chunk.lengths, chunk.windows, called, scores, chunk.probs, chunk.novelty))
            report.add_all(calls, scores, chunk.lengths)
            if by_class is not None:
                for record, mate, label in zip(chunk.records, chunk.mates or [None] * len(called), called):
                    by_class.write(record, label, mate)
        writer.end()
        if outputs.report is not None:
            _write_report(report, outputs.report, taxonomy, stack.enter_context(output_stream(outputs.report, inputs)))
    return report


def _write_report(report: Report, path: str | Path, taxonomy: Taxonomy | None, out: IO) -> None:
    """The summary report: Kraken2's format with a taxonomy (`--report-format kraken`), else genomix's TSV (or
    MultiQC's by its name)."""
    if taxonomy is not None:
        taxonomy.write_report(report.records, out)
    else:
        write_summary(report, path, out, "predict")
