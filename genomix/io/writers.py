"""Where results go: an output stream per path, the prediction writers (chosen by the output's suffix), the
summary report, and records written out by their called class.

A new prediction format is one `PredictionWriter` subclass added to `WRITERS`.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import numpy as np

from genomix.errors import GenomixError
from genomix.io.files import open_output, safe_name
from genomix.io.formats import is_stdout, output_format
from genomix.io.kraken import Taxonomy
from genomix.io.reading import Record

UNCLASSIFIED = "unclassified"  # the label of a record that gets no class (an empty read, or below --min-score)
UNKNOWN = "unknown"  # `predict --unknown`: a record unlike the training data (novelty past the model's threshold)
PARQUET_ROWS = 65536  # rows per parquet row group: bounded memory, few groups


@contextmanager
def output_stream(path: str | Path | None, inputs: Sequence[str | Path] = (), binary: bool = False) -> Iterator[IO]:
    """stdout for None or '-', else `genomix.io.files.open_output`: never over one of `inputs`, atomic for a regular
    file (replaced only when the whole command succeeds), direct for a pipe or a device."""
    if is_stdout(path):
        yield sys.stdout.buffer if binary else sys.stdout
        return
    with open_output(path, inputs, "wb" if binary else "w") as out:
        yield out


@dataclass(frozen=True)
class Rows:
    """Prediction rows as columns, a chunk of records at a time: ids, lengths, window counts, called labels,
    their probabilities (the scores) and (n, classes) probabilities. Writers format a chunk at once."""

    ids: list[str]
    lengths: np.ndarray
    windows: np.ndarray
    labels: list[str]
    scores: np.ndarray
    probs: np.ndarray
    novelty: np.ndarray  # NaN where the model has no novelty statistics

    def __len__(self) -> int:
        return len(self.ids)

    def table(self, *columns: Sequence, after: Sequence[Sequence] = ()) -> np.ndarray:
        """(n, columns + classes + after) Python objects: the columns given, the probabilities, then the columns
        `after`, for formatting every row of the chunk with one `%`."""
        width = self.probs.shape[1]
        table = np.empty((len(self), len(columns) + width + len(after)), dtype=object)
        for i, column in enumerate(columns):
            table[:, i] = column
        table[:, len(columns) : len(columns) + width] = self.probs
        for i, column in enumerate(after, len(columns) + width):
            table[:, i] = column
        return table


class PredictionWriter:
    """Writes one row per record: the prediction, its called label and that label's probability."""

    format: ClassVar[str]  # its name in `genomix.io.formats.FORMATS`
    binary: ClassVar[bool] = False

    def __init__(self, out: IO, classes: Sequence[str]) -> None:
        self.out, self.classes, self.rows = out, list(classes), 0

    def begin(self) -> None:
        """Anything that precedes the rows (a header line)."""

    def write(self, rows: Rows) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """Anything that follows the rows."""


class TsvWriter(PredictionWriter):
    """id, length, label, score (the called class's probability), p_<class>... to 6 decimals, and novelty (empty
    for a model file without novelty statistics)."""

    format = "tsv"

    def begin(self) -> None:
        self.out.write("\t".join(["id", "length", "label", "score", *(f"p_{c}" for c in self.classes), "novelty"])
                       + "\n")

    def write(self, rows: Rows) -> None:
        line = "\t".join(["%s", "%d", "%s", *["%.6f"] * (1 + len(self.classes)), "%s"]) + "\n"
        novelty = ["" if math.isnan(x) else f"{x:.6f}" for x in rows.novelty.tolist()]
        table = rows.table(rows.ids, rows.lengths, rows.labels, rows.scores, after=[novelty])
        self.out.write(line * len(rows) % tuple(table.flat))
        self.rows += len(rows)


def _number(x: float) -> str:
    """A probability as JSON writes it: null for NaN."""
    return "null" if math.isnan(x) else repr(float(x))


class JsonLinesWriter(PredictionWriter):
    """One JSON object per line: id, length, windows, label, score and probs (class → probability)."""

    format = "jsonl"

    def write(self, rows: Rows) -> None:
        probs = ", ".join(f"{json.dumps(c)}: %s" for c in self.classes)
        line = f'{{"id": %s, "length": %d, "windows": %d, "label": %s, "score": %s, "probs": {{{probs}}}, ' \
               '"novelty": %s}\n'
        table = rows.table(list(map(json.dumps, rows.ids)), rows.lengths, rows.windows,
                           list(map(json.dumps, rows.labels)), rows.scores, after=[rows.novelty])
        table[:, 4:] = np.vectorize(_number, otypes=[object])(table[:, 4:])
        self.out.write(line * len(rows) % tuple(table.flat))
        self.rows += len(rows)


class ParquetRows:
    """Rows streamed into a parquet file (through pyarrow) in row groups of PARQUET_ROWS, so memory stays bounded.
    `fields` are (column name, pyarrow type name) pairs; rows come one at a time (`add`) or as columns (`extend`)."""

    def __init__(self, out: IO, fields: Sequence[tuple[str, str]]) -> None:
        import pyarrow as pa  # imported here: only parquet outputs need it
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in fields])
        self.file = pq.ParquetWriter(out, self.schema)
        self.buffer: list[tuple] = []
        self.batches: list = []  # pyarrow record batches not yet written
        self.buffered = 0  # their rows
        self.groups = 0

    def add(self, row: tuple) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= PARQUET_ROWS:
            self._batch_rows()

    def extend(self, columns: Sequence[Sequence]) -> None:
        """Rows given as columns, in the schema's order."""
        self._batch_rows()
        batch = self.pa.record_batch([self.pa.array(c, f.type) for c, f in zip(columns, self.schema)], self.schema)
        self.batches.append(batch)
        self.buffered += batch.num_rows
        while self.buffered >= PARQUET_ROWS:
            self._flush(PARQUET_ROWS)

    def _batch_rows(self) -> None:
        """The rows added one at a time, as one batch."""
        if self.buffer:
            rows, self.buffer = self.buffer, []
            self.extend(list(zip(*rows)))

    def _flush(self, rows: int) -> None:
        """Write the first `rows` buffered rows as one row group."""
        table = self.pa.Table.from_batches(self.batches, self.schema)
        self.file.write_table(table.slice(0, rows), row_group_size=max(1, rows))
        rest = table.slice(rows)
        self.batches, self.buffered, self.groups = rest.to_batches(), rest.num_rows, self.groups + 1

    def close(self) -> None:
        """Write what is buffered (an empty row group for a file of no rows, so it still reads as a table)."""
        self._batch_rows()
        if self.buffered or not self.groups:
            self._flush(self.buffered)
        self.file.close()


class ParquetWriter(PredictionWriter):
    """The TSV's columns (p_<class> as float64) and the window count, through `ParquetRows`."""

    format = "parquet"
    binary = True

    def begin(self) -> None:
        fields = [("id", "string"), ("length", "int64"), ("windows", "int64"), ("label", "string"),
                  ("score", "float64"), *((f"p_{c}", "float64") for c in self.classes), ("novelty", "float64")]
        self.table = ParquetRows(self.out, fields)

    def write(self, rows: Rows) -> None:
        self.table.extend([rows.ids, rows.lengths, rows.windows, rows.labels, rows.scores, *rows.probs.T,
                           rows.novelty])
        self.rows += len(rows)

    def end(self) -> None:
        self.table.close()


class KrakenWriter(PredictionWriter):
    """Kraken2's per-read lines: C or U, id, taxid (0: unclassified), length, and in Kraken2's last column
    (its k-mer hits there) every class's `taxid:probability`, in the model's class order."""

    format = "kraken"
    taxonomy: ClassVar[Taxonomy | None] = None  # None: `Taxonomy.default` of the classes

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> type[KrakenWriter]:
        """This writer with the taxids of `taxonomy` (`--taxonomy`)."""
        return type(cls.__name__, (cls,), {"taxonomy": taxonomy})

    def begin(self) -> None:
        taxonomy = self.taxonomy or Taxonomy.default(self.classes)
        self.ids = [taxonomy.taxid(c) for c in self.classes]
        self.taxid = taxonomy.taxid

    def write(self, rows: Rows) -> None:
        for record_id, length, label, probs in zip(rows.ids, rows.lengths.tolist(), rows.labels, rows.probs):
            taxid = self.taxid(label)
            hits = " ".join(f"{i}:{p:.6f}" for i, p in zip(self.ids, probs))
            self.out.write(f"{'C' if taxid else 'U'}\t{record_id}\t{taxid}\t{length}\t{hits}\n")
        self.rows += len(rows)


WRITERS: dict[str, type[PredictionWriter]] = {
    w.format: w for w in (TsvWriter, JsonLinesWriter, ParquetWriter, KrakenWriter)}


def writer_for(path: str | Path | None, chosen: str | None = None) -> type[PredictionWriter]:
    """The writer for an output path: of the `chosen` format (--format), else by its suffix; stdout gets TSV."""
    return WRITERS[output_format(path, list(WRITERS), TsvWriter.format, chosen=chosen)]


class Report:
    """Per called class (and `unclassified`, and `unknown` where records may be called so): records and bases,
    their shares, and the mean score, as Kraken2's report gives them, so a person and MultiQC-style tools can read
    a run at a glance. `unit` names what is counted (records, or a scan's windows) in the summary line; the
    table's columns stay the same."""

    def __init__(self, classes: Sequence[str], unit: str = "records", unknown: bool = False) -> None:
        self.labels, self.unit = [*classes, *[UNKNOWN] * unknown, UNCLASSIFIED], unit
        self.records = dict.fromkeys(self.labels, 0)
        self.bases = dict.fromkeys(self.labels, 0)
        self.scores = dict.fromkeys(self.labels, 0.0)

    def add(self, label: str, score: float, bases: int) -> None:
        self.records[label] += 1
        self.bases[label] += bases
        self.scores[label] += 0.0 if math.isnan(score) else score

    def add_all(self, calls: np.ndarray, scores: np.ndarray, bases: np.ndarray) -> None:
        """`add` for a chunk of records: `calls` index the labels (the classes, then unclassified). Each label's
        scores are summed in order, as `add` one at a time would, so the means come out the same to the bit."""
        width = len(self.labels)
        records = np.bincount(calls, minlength=width)
        totals = np.array([self.scores[label] for label in self.labels])
        np.add.at(totals, calls, np.nan_to_num(scores, nan=0.0))
        bases_by_label = np.bincount(calls, weights=bases, minlength=width)
        for i, label in enumerate(self.labels):
            self.records[label] += int(records[i])
            self.bases[label] += int(bases_by_label[i])
            self.scores[label] = float(totals[i])

    def write(self, out: IO) -> None:
        records, bases = max(1, sum(self.records.values())), max(1, sum(self.bases.values()))
        out.write("class\trecords\trecords_share\tbases\tbases_share\tmean_score\n")
        for label in self.labels:
            n = self.records[label]
            mean = f"{self.scores[label] / n:.6f}" if n else "nan"
            shares = f"{n / records:.6f}\t{self.bases[label]}\t{self.bases[label] / bases:.6f}"
            out.write(f"{label}\t{n}\t{shares}\t{mean}\n")

    def summary(self) -> str:
        total, unclassified = sum(self.records.values()), self.records[UNCLASSIFIED]
        unknown = self.records.get(UNKNOWN, 0)
        called = ", ".join(f"{label} {self.records[label]:,}" for label in self.labels if label not in
                           (UNKNOWN, UNCLASSIFIED))
        share = 100 * (total - unclassified - unknown) / max(1, total)
        return (f"{total - unclassified - unknown:,} of {total:,} {self.unit} classified ({share:.1f}%): {called}; "
                + f"{UNKNOWN} {unknown:,}; " * (UNKNOWN in self.records) + f"{UNCLASSIFIED} {unclassified:,}")


class RecordsByClass:
    """Records written to the file of their called class: `#` in the pattern becomes the class name. FASTQ
    records (with qualities) are written as FASTQ, others as FASTA; `.gz` compresses. A read pair's mates go to
    two files, `_1` and `_2` before the name's extensions (`out_#.fq.gz` → `out_CLASS_1.fq.gz`, `out_CLASS_2.fq.gz`),
    as Kraken2 splits a pair's classified reads."""

    def __init__(self, pattern: str, classes: Sequence[str], inputs: Sequence[str | Path], stack: ExitStack) -> None:
        if "#" not in pattern:
            raise GenomixError(f"--classified-out {pattern}: put '#' where the class name goes, e.g. 'out_#.fa.gz'")
        self.pattern, self.inputs, self.stack = pattern, inputs, stack
        self.files: dict[tuple[str, int | None], IO] = {}
        names = [self.path(c) for c in [*classes, UNCLASSIFIED]]
        if len(set(names)) < len(names):
            raise GenomixError(f"--classified-out {pattern}: two classes give the same file name")

    def path(self, label: str, mate: int | None = None) -> str:
        path = Path(self.pattern.replace("#", safe_name(label)))
        if mate is None:
            return str(path)
        stem = path.name.split(".")[0]
        return str(path.with_name(f"{stem}_{mate}{path.name[len(stem):]}"))

    def write(self, record: Record, label: str, mate: Record | None = None) -> None:
        """The record to its class's file; with `mate`, the pair's two reads to its two files."""
        for number, read in ((None, record),) if mate is None else ((1, record), (2, mate)):
            key = (label, number)
            if key not in self.files:
                path = self.path(label, number)
                raw = self.stack.enter_context(open_output(path, self.inputs, "wb"))
                self.files[key] = self.stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb")) \
                    if path.endswith(".gz") else raw
            title = read.title or read.id
            text = f"@{title}\n{read.seq}\n+\n{read.quality}\n" if read.quality is not None \
                else f">{title}\n{read.seq}\n"
            self.files[key].write(text.encode())

