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
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from genomix.errors import GenomixError
from genomix.io.files import open_output, safe_name
from genomix.io.formats import is_stdout, output_format
from genomix.io.kraken import Taxonomy
from genomix.io.reading import Record

if TYPE_CHECKING:  # the writers read a prediction's fields; they need none of the scoring code
    from genomix.applying.scoring import Prediction

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


class PredictionWriter:
    """Writes one row per record: the prediction, its called label and that label's probability."""

    format: ClassVar[str]  # its name in `genomix.io.formats.FORMATS`
    binary: ClassVar[bool] = False

    def __init__(self, out: IO, classes: Sequence[str]) -> None:
        self.out, self.classes, self.rows = out, list(classes), 0

    def begin(self) -> None:
        """Anything that precedes the rows (a header line)."""

    def write(self, prediction: Prediction, label: str, score: float) -> None:
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

    def write(self, prediction: Prediction, label: str, score: float) -> None:
        fields = [prediction.id, str(prediction.length), label, f"{score:.6f}", *(f"{x:.6f}" for x in prediction.probs),
                  "" if math.isnan(prediction.novelty) else f"{prediction.novelty:.6f}"]
        self.out.write("\t".join(fields) + "\n")
        self.rows += 1


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class JsonLinesWriter(PredictionWriter):
    """One JSON object per line: id, length, windows, label, score and probs (class → probability)."""

    format = "jsonl"

    def write(self, prediction: Prediction, label: str, score: float) -> None:
        row = {"id": prediction.id, "length": prediction.length, "windows": prediction.windows, "label": label,
               "score": _number(score), "probs": {c: _number(p) for c, p in zip(self.classes, prediction.probs)},
               "novelty": _number(prediction.novelty)}
        self.out.write(json.dumps(row) + "\n")
        self.rows += 1


class ParquetRows:
    """Rows streamed into a parquet file (through pyarrow) in row groups of PARQUET_ROWS, so memory stays bounded.
    `fields` are (column name, pyarrow type name) pairs."""

    def __init__(self, out: IO, fields: Sequence[tuple[str, str]]) -> None:
        import pyarrow as pa  # imported here: only parquet outputs need it
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in fields])
        self.file = pq.ParquetWriter(out, self.schema)
        self.buffer: list[tuple] = []
        self.groups = 0

    def add(self, row: tuple) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        columns = list(zip(*self.buffer)) if self.buffer else [[] for _ in self.schema]
        self.file.write_table(self.pa.Table.from_arrays([self.pa.array(c, f.type) for c, f in
                                                         zip(columns, self.schema)], schema=self.schema))
        self.buffer, self.groups = [], self.groups + 1

    def close(self) -> None:
        """Write what is buffered (an empty row group for a file of no rows, so it still reads as a table)."""
        if self.buffer or not self.groups:
            self._flush()
        self.file.close()


class ParquetWriter(PredictionWriter):
    """The TSV's columns (p_<class> as float64) and the window count, through `ParquetRows`."""

    format = "parquet"
    binary = True

    def begin(self) -> None:
        fields = [("id", "string"), ("length", "int64"), ("windows", "int64"), ("label", "string"),
                  ("score", "float64"), *((f"p_{c}", "float64") for c in self.classes), ("novelty", "float64")]
        self.table = ParquetRows(self.out, fields)

    def write(self, prediction: Prediction, label: str, score: float) -> None:
        self.table.add((prediction.id, prediction.length, prediction.windows, label, score, *prediction.probs,
                        _number(prediction.novelty)))
        self.rows += 1

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

    def write(self, prediction: Prediction, label: str, score: float) -> None:
        taxid = self.taxid(label)
        hits = " ".join(f"{i}:{p:.6f}" for i, p in zip(self.ids, prediction.probs))
        self.out.write(f"{'C' if taxid else 'U'}\t{prediction.id}\t{taxid}\t{prediction.length}\t{hits}\n")
        self.rows += 1


WRITERS: dict[str, type[PredictionWriter]] = {
    w.format: w for w in (TsvWriter, JsonLinesWriter, ParquetWriter, KrakenWriter)}


def writer_for(path: str | Path | None) -> type[PredictionWriter]:
    """The writer for an output path, by its suffix; stdout gets TSV."""
    return WRITERS[output_format(path, list(WRITERS), TsvWriter.format)]


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
    records (with qualities) are written as FASTQ, others as FASTA; `.gz` compresses."""

    def __init__(self, pattern: str, classes: Sequence[str], inputs: Sequence[str | Path], stack: ExitStack) -> None:
        if "#" not in pattern:
            raise GenomixError(f"--classified-out {pattern}: put '#' where the class name goes, e.g. 'out_#.fa.gz'")
        self.pattern, self.inputs, self.stack = pattern, inputs, stack
        self.files: dict[str, IO] = {}
        names = [self.path(c) for c in [*classes, UNCLASSIFIED]]
        if len(set(names)) < len(names):
            raise GenomixError(f"--classified-out {pattern}: two classes give the same file name")

    def path(self, label: str) -> str:
        return self.pattern.replace("#", safe_name(label))

    def write(self, record: Record, label: str) -> None:
        if label not in self.files:
            path = self.path(label)
            raw = self.stack.enter_context(open_output(path, self.inputs, "wb"))
            self.files[label] = self.stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb")) \
                if path.endswith(".gz") else raw
        title = record.title or record.id
        text = f"@{title}\n{record.seq}\n+\n{record.quality}\n" if record.quality is not None \
            else f">{title}\n{record.seq}\n"
        self.files[label].write(text.encode())

