"""Reading sequences and labels: FASTA, FASTQ and CSV/TSV, plain, gzip or bzip2, from files or stdin.

Everything streams: records are yielded one at a time, so a 10 GB FASTA needs constant memory.
The format and the compression are told from the bytes, never from the file name.

Labels, in order of precedence: a `CLASS=path` input (every record of the file), a `--labels` table
(id → label), a `label=CLASS` token in the FASTA/FASTQ header, the `label` column of a CSV/TSV.

Sequences are normalised as they are read: upper case (soft-masked lower case is the same base), U → T,
IUPAC ambiguity codes → N, gaps (`-`, `.`) and whitespace dropped; any other character is an error that
names the file, the record and the position.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from genomix.errors import GenomixError

STDIN = "-"
SEQUENCE_COLUMNS = ("sequence", "seq")
ID_COLUMNS = ("id", "name")
LABEL_COLUMN = "label"

_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as spreadsheet programs write it
_INVALID = ord("!")
_GAPS = b"-. \t\r\n\v\f"
_NORMALISE = bytearray([_INVALID]) * 256
for _base in b"ACGTN":
    _NORMALISE[_base] = _NORMALISE[_base + 32] = _base
for _code, _base in [(b"U", b"T")] + [(bytes([c]), b"N") for c in b"RYKMSWBDHV"]:
    _NORMALISE[_code[0]] = _NORMALISE[_code[0] + 32] = _base[0]
_NORMALISE = bytes(_NORMALISE)


@dataclass(frozen=True, slots=True)
class Record:
    """One input sequence: its id (first word of the header), normalised bases, and label if any."""

    id: str
    seq: str
    label: str | None = None


def normalise(seq: str, source: str, record_id: str) -> str:
    """The sequence as upper-case A, C, G, T, N; raise GenomixError on an empty record or a bad character."""
    raw = seq.encode("utf-8", errors="replace")
    clean = raw.translate(_NORMALISE, _GAPS)
    if _INVALID in clean:
        position, char = next((i, c) for i, c in enumerate(seq, 1) if _is_invalid(c))
        raise GenomixError(f"{source}: record '{record_id}': invalid character {char!r} at position {position}")
    if not clean:
        raise GenomixError(f"{source}: record '{record_id}' is empty")
    return clean.decode("ascii")


def _is_invalid(char: str) -> bool:
    code = ord(char)
    return code > 127 or (_NORMALISE[code] == _INVALID and code not in _GAPS)


def split_input(arg: str) -> tuple[str | None, str]:
    """`CLASS=path` → (CLASS, path); a plain path (or an existing file whose name has '=') → (None, path)."""
    if "=" in arg and not Path(arg).exists():
        label, path = arg.split("=", 1)
        if label and path:
            return label, path
    return None, arg


def open_binary(path: str) -> BinaryIO:
    """A buffered binary stream of the decompressed bytes; gzip and bzip2 are detected from magic bytes."""
    if path == STDIN:
        raw: BinaryIO = sys.stdin.buffer
    else:
        file = Path(path)
        if not file.exists():
            raise GenomixError(f"{path}: no such file")
        if file.is_dir():
            raise GenomixError(f"{path}: is a directory, not a sequence file")
        try:
            raw = open(file, "rb")  # noqa: SIM115 - closed by the caller through the returned stream
        except OSError as err:
            raise GenomixError(f"{path}: cannot open ({err.strerror})") from None
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw)
    magic = raw.peek(3)[:3]
    if magic[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw))
    if magic == b"BZh":
        return io.BufferedReader(bz2.BZ2File(raw))
    return raw


def _sniff(stream: BinaryIO, source: str) -> str:
    """'fasta', 'fastq' or 'table', from the first bytes of the decompressed stream."""
    try:
        head = stream.peek(65536)
    except (OSError, EOFError, zlib.error) as err:  # corrupt gzip/bzip2 data
        raise GenomixError(f"{source}: cannot decompress ({err})") from None
    start = head.removeprefix(_BOM).lstrip()
    if not start:
        raise GenomixError(f"{source}: is empty")
    if start[:1] == b">":
        return "fasta"
    if start[:1] == b"@":
        return "fastq"
    first_line = start.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    columns = {c.strip().lower() for c in first_line.replace("\t", ",").split(",")}
    if columns & set(SEQUENCE_COLUMNS):
        return "table"
    raise GenomixError(f"{source}: not a FASTA, FASTQ or CSV/TSV file (it starts with {first_line[:30]!r})")


def _header(title: str) -> tuple[str, str | None]:
    """(id, label) from a FASTA/FASTQ header line: id is the first word, label a `label=CLASS` token."""
    words = title.split()
    if not words:
        return "", None
    label = next((w[6:] for w in words[1:] if w.startswith("label=") and len(w) > 6), None)
    return words[0], label


def _parse_sequences(text: TextIO, fmt: str, source: str) -> Iterator[Record]:
    entries = SimpleFastaParser(text) if fmt == "fasta" else (e[:2] for e in FastqGeneralIterator(text))
    for number, (title, seq) in enumerate(entries, 1):
        record_id, label = _header(title)
        if not record_id:
            raise GenomixError(f"{source}: record {number} has an empty header")
        yield Record(record_id, normalise(seq, source, record_id), label)


def _parse_table(text: TextIO, source: str) -> Iterator[Record]:
    header_line = text.readline()
    while header_line and not header_line.strip():
        header_line = text.readline()
    delimiter = "\t" if "\t" in header_line else ","
    header = [c.strip().lower() for c in next(csv.reader([header_line], delimiter=delimiter))]
    seq_col = next((header.index(c) for c in SEQUENCE_COLUMNS if c in header), None)
    if seq_col is None:
        raise GenomixError(f"{source}: no sequence column (expected one named {' or '.join(SEQUENCE_COLUMNS)})")
    id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
    label_col = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
    stem = Path(source).name.split(".")[0] if source != STDIN else "stdin"
    for number, row in enumerate(csv.reader(text, delimiter=delimiter), 1):
        if not row:
            continue
        if len(row) != len(header):
            raise GenomixError(f"{source}: row {number} has {len(row)} columns, the header has {len(header)}")
        record_id = row[id_col].strip() if id_col is not None else f"{stem}_{number}"
        label = row[label_col].strip() or None if label_col is not None else None
        yield Record(record_id, normalise(row[seq_col], source, record_id), label)


def read_records(path: str) -> Iterator[Record]:
    """Stream the records of one file (or '-' for stdin), labels taken from the file itself."""
    stream = open_binary(path)
    try:
        fmt = _sniff(stream, path)
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        try:
            if fmt == "table":
                yield from _parse_table(text, path)
            else:
                yield from _parse_sequences(text, fmt, path)
        except (ValueError, EOFError, OSError, zlib.error) as err:  # malformed FASTQ, corrupt compressed data
            raise GenomixError(f"{path}: {err}") from None
    finally:
        if path != STDIN:
            stream.close()


def read_label_table(path: str) -> dict[str, str]:
    """A two-column table id → label (tab or space separated; a header line `id label` is skipped)."""
    table: dict[str, str] = {}
    for number, line in enumerate(_text_lines(path), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise GenomixError(f"{path}: line {number}: expected two columns (id, label), got {len(fields)}")
        if number == 1 and [f.lower() for f in fields] == ["id", "label"]:
            continue
        table[fields[0]] = fields[1]
    if not table:
        raise GenomixError(f"{path}: no labels in the table")
    return table


def _text_lines(path: str) -> Iterator[str]:
    stream = open_binary(path)
    try:
        yield from io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    finally:
        if path != STDIN:
            stream.close()


class LabelTable:
    """A `--labels` table that remembers which of its ids matched a record, across several inputs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.labels = read_label_table(path)
        self.unmatched = set(self.labels)

    def get(self, record_id: str) -> str | None:
        self.unmatched.discard(record_id)
        return self.labels.get(record_id)

    def check_all_matched(self) -> None:
        """An id that matches no record is most likely a typo or the wrong table: a user error."""
        if self.unmatched:
            example = sorted(self.unmatched)[0]
            raise GenomixError(f"{self.path}: {len(self.unmatched)} id(s) match no input record, e.g. '{example}'")


def read_inputs(inputs: Iterable[str], labels: str | LabelTable | None = None) -> Iterator[Record]:
    """Stream the records of every input in order, each labelled by the precedence rules above.

    Given a path, the `labels` table's ids must all match a record of these inputs (checked at the end);
    given a LabelTable, shared by several calls, the caller checks once everything has been read.
    """
    table = LabelTable(labels) if isinstance(labels, str) else labels
    for arg in inputs:
        file_label, path = split_input(arg)
        for record in read_records(path):
            label = record.label
            if table is not None and (listed := table.get(record.id)) is not None:
                label = listed
            if file_label is not None:
                label = file_label
            yield Record(record.id, record.seq, label) if label != record.label else record
    if isinstance(labels, str):
        table.check_all_matched()
