"""Reading sequences and labels: FASTA, FASTQ and CSV/TSV, plain, gzip or bzip2, from files or stdin.

Everything streams: records are yielded one at a time, so a 10 GB FASTA needs constant memory.
The format and the compression are told from the bytes, never from the file name.

Labels, in order of precedence: a `CLASS=path` input (every record of the file), a `--labels` table
(id → label), a `label=CLASS` token in the FASTA/FASTQ header, the `label` column of a CSV/TSV.

Sequences are normalised as they are read: upper case (soft-masked lower case is the same base), U → T,
IUPAC ambiguity codes → N, gaps (`-`, `.`) and whitespace dropped; any other character is an error that
names the file, the record and the position. A record with no bases (a zero-length read, a FASTA header
with nothing under it) is data, with seq "": what to do with it is up to the command.

Text is UTF-8; a byte-order mark at the start and Windows (CRLF) line ends are accepted everywhere. Ids,
labels and class names may not contain a tab or a line break, which would break the TSV outputs.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TextIO

import dnaio
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from genomix.errors import GenomixError

STDIN = "-"
SEQUENCE_COLUMNS = ("sequence", "seq")
ID_COLUMNS = ("id", "name")
LABEL_COLUMN = "label"

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as spreadsheet programs write it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a tab or line break breaks TSV rows; a NUL, any C string
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)  # I/O errors, corrupt compressed data, closed streams
_INVALID = ord("!")
_GAPS = b"-. \t\r\n\v\f"
FASTQ_BLOCK = 1 << 20  # bytes of FASTQ parsed at a time by dnaio
FASTA_LINES = 4096  # lines of a FASTA record normalised at a time
_NORMALISE = bytearray([_INVALID]) * 256
for _base in b"ACGTN":
    _NORMALISE[_base] = _NORMALISE[_base + 32] = _base
for _code, _base in [(b"U", b"T")] + [(bytes([c]), b"N") for c in b"RYKMSWBDHV"]:
    _NORMALISE[_code[0]] = _NORMALISE[_code[0] + 32] = _base[0]
_NORMALISE = bytes(_NORMALISE)


@dataclass(frozen=True, slots=True)
class Record:
    """One input sequence: its id (first word of the header), normalised bases, and label if any; records read
    from FASTA/FASTQ keep their header line and (FASTQ) qualities, so they can be written out as they came."""

    id: str
    seq: str
    label: str | None = None
    title: str | None = field(default=None, compare=False)
    quality: str | None = field(default=None, compare=False)


def normalise(seq: str, source: str, record_id: str, before: int = 0) -> str:
    """The sequence as upper-case A, C, G, T, N (possibly empty); raise GenomixError on a bad character, at its
    position in the record (`seq` being a part of it after `before` characters)."""
    raw = seq.encode("utf-8", errors="replace")
    clean = raw.translate(_NORMALISE, _GAPS)
    if _INVALID in clean:
        position, char = next((i, c) for i, c in enumerate(seq, before + 1) if _is_invalid(c))
        raise GenomixError(f"{source}: record '{record_id}': invalid character {char!r} at position {position}")
    return clean.decode("ascii")


def _is_invalid(char: str) -> bool:
    code = ord(char)
    return code > 127 or (_NORMALISE[code] == _INVALID and code not in _GAPS)


def check_name(value: str, what: str, where: str) -> str:
    """`value` (an id, label or class name) unchanged, or GenomixError if it holds a control character (a tab, a
    line break, a NUL): the same rule for every output format."""
    if _CONTROL.search(value):
        raise GenomixError(f"{where}: {what} {value!r} contains a tab or line break (or another control character), "
                           "which would break TSV output")
    return value


def split_input(arg: str) -> tuple[str | None, str]:
    """`CLASS=path` → (CLASS, path); a plain path (or an existing file whose name has '=') → (None, path)."""
    if "=" in arg and not Path(arg).exists():
        label, path = arg.split("=", 1)
        if label and path:
            return check_name(label, "class", path), path
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
    try:
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)
        magic = raw.peek(3)[:3]
    except (OSError, ValueError) as err:  # an unreadable device, a closed stdin
        raise GenomixError(f"{path}: cannot read ({_reason(err)})") from None
    if magic[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw))
    if magic == b"BZh":
        return io.BufferedReader(bz2.BZ2File(raw))
    return raw


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _read_error(stream: BinaryIO, source: str, err: BaseException) -> GenomixError:
    """The one-line error for a failed read of `stream` (from `open_binary`): decompression or I/O."""
    compressed = isinstance(getattr(stream, "raw", None), (gzip.GzipFile, bz2.BZ2File))
    return GenomixError(f"{source}: cannot {'decompress' if compressed else 'read'} ({_reason(err)})")


def text_lines(path: str) -> Iterator[str]:
    """Lines of a text file ('-': stdin): decompressed, UTF-8 without its byte-order mark, errors as GenomixError."""
    stream = open_binary(path)
    try:
        lines = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace")
        while True:
            try:
                line = lines.readline()
            except _READ_ERRORS as err:
                raise _read_error(stream, path, err) from None
            if not line:
                return
            yield line
    finally:
        if path != STDIN:
            stream.close()


def _columns(line: str) -> tuple[str, list[str]]:
    """(delimiter, lower-case column names) of a CSV/TSV header line, quoted or not."""
    delimiter = "\t" if "\t" in line else ","
    return delimiter, [c.strip().lower() for c in next(csv.reader([line], delimiter=delimiter), [])]


def _sniff(stream: BinaryIO, source: str) -> str:
    """'fasta', 'fastq' or 'table', from the first bytes of the decompressed stream."""
    try:
        head = stream.peek(65536)
    except _READ_ERRORS as err:
        raise _read_error(stream, source, err) from None
    start = head.removeprefix(BOM).lstrip()
    if not start:
        raise GenomixError(f"{source}: is empty")
    if start[:1] == b">":
        return "fasta"
    if start[:1] == b"@":
        return "fastq"
    first_line = start.splitlines()[0].decode("utf-8", errors="replace")
    if set(_columns(first_line)[1]) & set(SEQUENCE_COLUMNS):
        return "table"
    raise GenomixError(f"{source}: not a FASTA, FASTQ or CSV/TSV file (it starts with {first_line[:30]!r})")


def _header(title: str) -> tuple[str, str | None]:
    """(id, label) from a FASTA/FASTQ header line: id is the first word, label a `label=CLASS` token."""
    if "label=" not in title:  # most headers: only the id is needed
        words = title.split(None, 1)
        return (words[0], None) if words else ("", None)
    words = title.split()
    label = next((w[6:] for w in words[1:] if w.startswith("label=") and len(w) > 6), None)
    return words[0], label


class _CountedLines:
    """A text stream for Biopython's FASTQ parser that counts lines, so that errors can say where they are.

    Blank lines before the first record are skipped, which Biopython would take for a record without '@'.
    """

    def __init__(self, text: TextIO) -> None:
        self.text, self.number, self.last = text, 0, ""
        self.first: tuple[int, str] | None = None  # (number, text) of the first line that is not blank

    def read(self, size: int = -1) -> str:
        return self.text.read(size)

    def readline(self) -> str:
        self.last = self.text.readline()
        self.number += 1
        if self.first is None:
            if self.last.isspace():
                return self.readline()
            self.first = (self.number, self.last)
        return self.last

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _fastq_entries(stream: BinaryIO, source: str) -> Iterator[tuple[str, str, str]]:
    """(title, seq, quality) of each FASTQ record. dnaio parses blocks of four-line records (the usual layout, and
    most of the reading time); from the first block it rejects on (a malformed record, or a layout only Biopython
    reads: wrapped lines, blank lines, whitespace in a sequence), Biopython's parser reads the rest, and its errors
    name the record and the line."""
    blocks = _FastqBlocks(stream)
    done = 0
    for block in blocks:
        entries = _dnaio_entries(block)
        if entries is None:
            text = io.TextIOWrapper(blocks.rest_from(block), encoding="utf-8", errors="replace", newline="")
            yield from _biopython_fastq(text, source, done, blocks.lines)
            return
        yield from entries
        done += len(entries)
        blocks.lines += block.count(b"\n")


def _dnaio_entries(block: bytes) -> list[tuple[str, str, str]] | None:
    """The records of a block as dnaio reads them, or None where it (or Biopython) would not take them as they are."""
    try:
        with dnaio.open(io.BytesIO(block), fileformat="fastq") as reader:
            entries = [(r.name, r.sequence, r.qualities) for r in reader]
    except dnaio.FastqFormatError:
        return None
    return None if any(" " in seq or "\t" in seq for _, seq, _ in entries) else entries


class _FastqBlocks:
    """The bytes of a FASTQ stream in blocks of about FASTQ_BLOCK bytes that each end after a multiple of four
    lines, so that each starts a record while the layout is the usual one. A byte-order mark and blank lines at the
    start are skipped, and counted in `lines`: the lines before the current block, which the caller keeps."""

    def __init__(self, stream: BinaryIO) -> None:
        head = stream.peek(65536)
        skipped = stream.read(len(head) - len(head.removeprefix(BOM).lstrip()))
        self.stream, self.lines, self.rest = stream, skipped.count(b"\n"), b""

    def __iter__(self) -> Iterator[bytes]:
        while data := self.stream.read(FASTQ_BLOCK):
            block = self.rest + data
            cut = _after_lines(block, block.count(b"\n") // 4 * 4)
            block, self.rest = block[:cut], block[cut:]
            if block:
                yield block
        if self.rest:
            block, self.rest = self.rest, b""
            yield block

    def rest_from(self, block: bytes) -> BinaryIO:
        """The stream from the start of `block` (the one just yielded) on."""
        return io.BufferedReader(_Joined(block + self.rest, self.stream))


def _after_lines(data: bytes, lines: int) -> int:
    """The offset just after the first `lines` lines of `data` (which has at least that many line ends)."""
    if not lines:
        return 0
    cut = len(data)
    for _ in range(data.count(b"\n") - lines + 1):
        cut = data.rindex(b"\n", 0, cut)
    return cut + 1


class _Joined(io.RawIOBase):
    """Bytes already read, followed by the rest of the stream they came from."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.head:
            return self.stream.readinto(buffer)
        n = min(len(buffer), len(self.head))
        buffer[:n], self.head = self.head[:n], self.head[n:]
        return n


def _biopython_fastq(text: TextIO, source: str, before: int, lines_before: int) -> Iterator[tuple[str, str, str]]:
    """(title, seq, quality) of each FASTQ record through Biopython, which reads any layout; `before` records and
    `lines_before` lines came before `text`. A malformed record is an error naming its number, line and id."""
    lines = _CountedLines(text)
    lines.number = lines_before
    done, start = before, None
    try:
        for title, seq, quality in FastqGeneralIterator(lines):
            yield title, seq, quality
            done += 1
            start = (lines.number, lines.last)  # the parser has already read the next record's '@' line
    except ValueError as err:
        line_number, line = start or lines.first or (lines_before + 1, "")
        record_id = _header(line[1:])[0] if line.startswith("@") else ""
        named = f" '{record_id}'" if record_id else ""
        raise GenomixError(f"{source}: record {done + 1}{named} at line {line_number}: {err}") from None


def _parse_sequences(stream: BinaryIO, fmt: str, source: str) -> Iterator[Record]:
    if fmt == "fasta":
        yield from _fasta_records(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=""), source)
        return
    for number, (title, seq, quality) in enumerate(_fastq_entries(stream, source), 1):
        record_id, label = _identity(title, number, source)
        yield Record(record_id, normalise(seq, source, record_id), label, title, quality)


def _identity(title: str, number: int, source: str) -> tuple[str, str | None]:
    """(id, label) of the header line of record `number`, checked: an id, and no control character."""
    record_id, label = _header(title)
    if not record_id:
        raise GenomixError(f"{source}: record {number} has an empty header")
    if _CONTROL.search(title):
        check_name(title, "header", f"{source}: record {number}")
    return record_id, label


def _fasta_records(text: TextIO, source: str) -> Iterator[Record]:
    """The records of FASTA text, read as Biopython's SimpleFastaParser reads them (text before the first header
    skipped; line ends and spaces dropped), but normalised FASTA_LINES lines at a time (`_fasta_sequence`)."""
    lines = iter(text)
    header = next((line for line in lines if line[0] == ">"), None)
    number = 0
    while header is not None:
        number += 1
        title = header[1:].rstrip()
        record_id, label = _identity(title, number, source)
        seq, header = _fasta_sequence(lines, source, record_id)
        yield Record(record_id, seq, label, title)


def _fasta_sequence(lines: Iterator[str], source: str, record_id: str) -> tuple[str, str | None]:
    """A FASTA record's normalised sequence, from its lines up to the next header line (returned too; None at the
    end). Normalised a part at a time and joined once, a chromosome costs about two bytes a base at the peak: all
    its lines at once would cost 1.6 more (49 bytes each beyond their bases), and a raw copy beside the clean one."""
    parts: list[str] = []
    part: list[str] = []
    before, header = 0, None
    for line in lines:
        if line[0] == ">":
            header = line
            break
        part.append(line.rstrip())
        if len(part) == FASTA_LINES:
            before = _add_part(parts, part, source, record_id, before)
            part = []
    _add_part(parts, part, source, record_id, before)
    return "".join(parts), header


def _add_part(parts: list[str], lines: list[str], source: str, record_id: str, before: int) -> int:
    """Append the normalised `lines` to `parts`; return the record's characters read so far (`normalise`)."""
    seq = "".join(lines).replace(" ", "").replace("\r", "")
    parts.append(normalise(seq, source, record_id, before))
    return before + len(seq)


def _parse_table(text: TextIO, source: str) -> Iterator[Record]:
    header_line = text.readline()
    while header_line and not header_line.strip():
        header_line = text.readline()
    delimiter, header = _columns(header_line)
    seq_col = next((header.index(c) for c in SEQUENCE_COLUMNS if c in header), None)
    if seq_col is None:
        raise GenomixError(f"{source}: no sequence column (expected one named {' or '.join(SEQUENCE_COLUMNS)})")
    id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
    label_col = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
    stem = Path(source).name.split(".")[0] if source != STDIN else "stdin"
    for number, row in enumerate(csv.reader(text, delimiter=delimiter), 1):
        if not row:
            continue
        where = f"{source}: row {number}"
        if len(row) != len(header):
            raise GenomixError(f"{where} has {len(row)} columns, the header has {len(header)}")
        record_id = check_name(row[id_col].strip(), "id", where) if id_col is not None else f"{stem}_{number}"
        if not record_id:
            raise GenomixError(f"{where} has an empty id")
        label = check_name(row[label_col].strip(), "label", where) or None if label_col is not None else None
        yield Record(record_id, normalise(row[seq_col], source, record_id), label)


def read_records(path: str) -> Iterator[Record]:
    """Stream the records of one file (or '-' for stdin), labels taken from the file itself."""
    stream = open_binary(path)
    try:
        fmt = _sniff(stream, path)
        try:
            if fmt == "table":
                yield from _parse_table(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=""),
                                        path)
            else:
                yield from _parse_sequences(stream, fmt, path)
        except csv.Error as err:  # e.g. a NUL byte, an unterminated quote at the end of the file
            raise GenomixError(f"{path}: not a readable CSV/TSV table ({err})") from None
        except _READ_ERRORS as err:
            raise _read_error(stream, path, err) from None
    finally:
        if path != STDIN:
            stream.close()


def read_label_table(path: str) -> dict[str, str]:
    """A two-column table id → label (tab or space separated; a header line `id label` is skipped).

    An id listed twice must have the same label both times: two labels for one record are a mistake.
    """
    table: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text_lines(path), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise GenomixError(f"{path}: line {number}: expected two columns (id, label), got {len(fields)}")
        if number == 1 and [f.lower() for f in fields] == ["id", "label"]:
            continue
        record_id, label = fields
        if table.setdefault(record_id, label) != label:
            raise GenomixError(f"{path}: line {number}: id '{record_id}' has label '{label}', but line "
                               f"{lines[record_id]} gave it '{table[record_id]}'")
        lines.setdefault(record_id, number)
    if not table:
        raise GenomixError(f"{path}: no labels in the table")
    return table


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
            yield replace(record, label=label) if label != record.label else record
    if isinstance(labels, str):
        table.check_all_matched()
