"""Hardening of the input side: corpora of bad and of valid-but-odd inputs, stale genome indexes, unreadable
streams, and property tests (any bytes parse or fail cleanly; Biopython round trips; layout-independent tokens).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from Bio import SeqIO, bgzf
from Bio.Seq import Seq
from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqRecord import SeqRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from genomix.errors import GenomixError
from genomix.io.files import open_output
from genomix.io.genomes import Genome, read_regions
from genomix.io.reading import BOM, Record, read_inputs, read_label_table, read_records
from genomix.sequences.tokens import encode

CHR1 = "ACGTTGCAAC" * 20  # 200 bases
GENOME = f">chr1 first\n{CHR1[:60]}\n{CHR1[60:120]}\n{CHR1[120:180]}\n{CHR1[180:]}\n>chr2\nGGGGCCCC\n".encode()
FASTA = b">r1 label=a\nACGT\n>r2\nGG\n"


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def reads(name: str) -> Callable[[Callable[[str], str]], object]:
    return lambda f: list(read_inputs([f(name)]))


def labels(name: str) -> Callable[[Callable[[str], str]], object]:
    return lambda f: read_label_table(f(name))


def regions(bed: str, reference: str | None = "g.fa") -> Callable[[Callable[[str], str]], object]:
    return lambda f: list(read_regions([f(bed)], f(reference) if reference else None))


def genome(name: str) -> Callable[[Callable[[str], str]], object]:
    return lambda f: Genome(f(name)).contigs


def output(name: str, *inputs: str) -> Callable[[Callable[[str], str]], object]:
    def write(f: Callable[[str], str]) -> None:
        with open_output(f(name), [f(i) for i in inputs]) as out:
            out.write("x" * 100000)

    return write


def case(id_: str, files: dict[str, bytes], call: Callable, fragment: str, needs: str | None = None):
    """One bad input: the files to write, the library call that reads them, the fragment its error must have."""
    marks = pytest.mark.skipif(needs is not None and not Path(needs).exists(), reason=f"no {needs} here")
    return pytest.param(files, call, fragment, id=id_, marks=marks)


BAD = [
    # sequence files
    case("empty-file", {"e.fa": b""}, reads("e.fa"), "e.fa: is empty"),
    case("blank-lines-only", {"e.fa": b"\n \r\n\t\n"}, reads("e.fa"), "e.fa: is empty"),
    case("bom-only", {"e.fa": BOM + b"\n"}, reads("e.fa"), "e.fa: is empty"),
    case("gzip-of-nothing", {"e.fa.gz": gzip.compress(b"")}, reads("e.fa.gz"), "e.fa.gz: is empty"),
    case("prose", {"n.fa": b"hello world\nACGT\n"}, reads("n.fa"), "n.fa: not a FASTA, FASTQ or CSV/TSV file"),
    case("bare-bases", {"n.fa": b"ACGTACGT\n"}, reads("n.fa"), "n.fa: not a FASTA, FASTQ or CSV/TSV file"),
    case("binary", {"n.fa": bytes(range(3, 200))}, reads("n.fa"), "n.fa: not a FASTA, FASTQ or CSV/TSV file"),
    case("table-without-sequence-column", {"t.csv": b"id,label\nx,y\n"}, reads("t.csv"), "t.csv: not a FASTA"),
    case("corrupt-gzip", {"c.gz": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4}, reads("c.gz"),
         "c.gz: cannot decompress"),
    case("truncated-gzip", {"c.gz": cut(gzip.compress(FASTA * 500))}, reads("c.gz"), "c.gz: cannot decompress"),
    case("corrupt-bzip2", {"c.bz2": b"BZh9" + bytes(range(256)) * 4}, reads("c.bz2"), "c.bz2: cannot decompress"),
    case("truncated-bzip2", {"c.bz2": cut(bz2.compress(FASTA * 500))}, reads("c.bz2"), "c.bz2: cannot decompress"),
    case("missing-file", {}, reads("gone.fa"), "gone.fa: no such file"),
    case("directory", {"d/x": b""}, reads("d"), "d: is a directory"),
    case("fasta-bad-character", {"b.fa": b">r1\nACXT\n"}, reads("b.fa"),
         "b.fa: record 'r1': invalid character 'X' at position 3"),
    case("fasta-non-ascii", {"b.fa": ">r1\nACé\n".encode()}, reads("b.fa"), "invalid character 'é' at position 3"),
    case("fasta-digit-after-wrap", {"b.fa": b">r1\nACGT\nAC1\n"}, reads("b.fa"), "'1' at position 7"),
    case("fasta-empty-header", {"h.fa": b">r1\nAC\n>\nGT\n"}, reads("h.fa"), "h.fa: record 2 has an empty header"),
    case("fasta-blank-header", {"h.fa": b">  \nGT\n"}, reads("h.fa"), "h.fa: record 1 has an empty header"),
    case("fastq-short-quality", {"q.fq": b"@q1\nACGT\n+\nIIII\n@q2\nACGT\n+\nII\n"}, reads("q.fq"),
         "q.fq: record 2 'q2' at line 5: Lengths of sequence and quality values differ"),
    case("fastq-long-quality", {"q.fq": b"@q1\nAC\n+\nIIIIII\n"}, reads("q.fq"),
         "q.fq: record 1 'q1' at line 1: Lengths of sequence and quality values differ"),
    case("fastq-no-quality", {"q.fq": b"@q1\nACGT\n+\nIIII\n\n@q2\nACGT\n"}, reads("q.fq"),
         "q.fq: record 2 'q2' at line 6: End of file without quality information"),
    case("fastq-cut-after-header", {"q.fq": b"@q1\n"}, reads("q.fq"), "q.fq: record 1 'q1' at line 1: Unexpected end"),
    case("fastq-captions-differ", {"q.fq": b"@q1\nAC\n+q9\nII\n"}, reads("q.fq"),
         "q.fq: record 1 'q1' at line 1: Sequence and quality captions differ"),
    case("fastq-space-in-sequence", {"q.fq": b"\n@q1\nA C\n+\nIII\n"}, reads("q.fq"),
         "q.fq: record 1 'q1' at line 2: Whitespace is not allowed"),
    case("fastq-bad-character", {"q.fq": b"@q1\nACGT\n+\nIIII\n@q2\nAZ\n+\nII\n"}, reads("q.fq"),
         "q.fq: record 'q2': invalid character 'Z' at position 2"),
    case("fastq-empty-header", {"q.fq": b"@\nAC\n+\nII\n"}, reads("q.fq"), "q.fq: record 1 has an empty header"),
    case("fastq-gzip-short-quality", {"q.fq.gz": gzip.compress(b"@q1\nACGT\n+\nII\n")}, reads("q.fq.gz"),
         "q.fq.gz: record 1 'q1' at line 1: Lengths"),
    case("csv-short-row", {"t.csv": b"id,sequence,label\ns1,AC,x\ns2,GT\n"}, reads("t.csv"),
         "t.csv: row 2 has 2 columns, the header has 3"),
    case("csv-long-row", {"t.csv": b"id,sequence\ns1,AC,x\n"}, reads("t.csv"), "t.csv: row 1 has 3 columns"),
    case("csv-tab-in-label", {"t.csv": b'id,sequence,label\ns1,AC,"a\tb"\n'}, reads("t.csv"),
         "t.csv: row 1: label 'a\\tb' contains a tab or line break"),
    case("csv-newline-in-label", {"t.csv": b'"id","sequence","label"\r\n"s1","AC","a\r\nb"\r\n'}, reads("t.csv"),
         "t.csv: row 1: label 'a\\r\\nb' contains a tab or line break"),
    case("tsv-tab-in-id", {"t.tsv": b'id\tsequence\n"s\t1"\tAC\n'}, reads("t.tsv"),
         "t.tsv: row 1: id 's\\t1' contains a tab or line break"),
    case("csv-empty-id", {"t.csv": b"id,sequence\ns1,AC\n ,GT\n"}, reads("t.csv"), "t.csv: row 2 has an empty id"),
    case("fasta-nul-in-header", {"a.fa": b">r1\nACGT\n>r\x002 label=x\nACGT\n"}, reads("a.fa"),
         "a.fa: record 2: header 'r\\x002 label=x' contains a tab or line break (or another control character)"),
    case("csv-bad-character", {"t.tsv": b"id\tsequence\ns1\tACQT\n"}, reads("t.tsv"),
         "t.tsv: record 's1': invalid character 'Q' at position 3"),
    case("class-name-with-tab", {"a.fa": FASTA}, lambda f: list(read_inputs([f"a\tb={f('a.fa')}"])),
         "class 'a\\tb' contains a tab or line break"),
    case("class-name-with-newline", {"a.fa": FASTA}, lambda f: list(read_inputs([f"a\nb={f('a.fa')}"])),
         "a.fa: class 'a\\nb' contains a tab or line break"),
    # --labels tables
    case("labels-three-columns", {"l.tsv": b"r1 a\nr2 b extra\n"}, labels("l.tsv"),
         "l.tsv: line 2: expected two columns (id, label), got 3"),
    case("labels-one-column", {"l.tsv": b"r1\n"}, labels("l.tsv"), "l.tsv: line 1: expected two columns"),
    case("labels-header-only", {"l.tsv": b"id\tlabel\n"}, labels("l.tsv"), "l.tsv: no labels in the table"),
    case("labels-empty-file", {"l.tsv": b""}, labels("l.tsv"), "l.tsv: no labels in the table"),
    case("labels-two-labels-for-one-id", {"l.tsv": b"r1\ta\nr2\tb\nr1\tc\n"}, labels("l.tsv"),
         "l.tsv: line 3: id 'r1' has label 'c', but line 1 gave it 'a'"),
    case("labels-corrupt-gzip", {"l.gz": b"\x1f\x8b\x08\x00" + bytes(range(256))}, labels("l.gz"),
         "l.gz: cannot decompress"),
    case("labels-missing", {}, labels("l.tsv"), "l.tsv: no such file"),
    case("labels-unmatched-id", {"a.fa": FASTA, "l.tsv": b"r1 a\nghost b\n"},
         lambda f: list(read_inputs([f("a.fa")], f("l.tsv"))), "l.tsv: 1 id(s) match no input record, e.g. 'ghost'"),
    # BED regions and reference genomes
    case("bed-unknown-contig", {"g.fa": GENOME, "r.bed": b"chrX\t1\t5\n"}, regions("r.bed"),
         "r.bed: line 1: contig 'chrX' is not in"),
    case("bed-past-the-end", {"g.fa": GENOME, "r.bed": b"chr2\t0\t9\n"}, regions("r.bed"),
         "r.bed: line 1: region 0-9 is empty or outside chr2 (length 8)"),
    case("bed-empty-region", {"g.fa": GENOME, "r.bed": b"# c\nchr1\t5\t5\n"}, regions("r.bed"),
         "r.bed: line 2: region 5-5 is empty"),
    case("bed-not-integers", {"g.fa": GENOME, "r.bed": b"chr1 1.5 9\n"}, regions("r.bed"),
         "r.bed: line 1: start and end must be integers"),
    case("bed-too-few-columns", {"g.fa": GENOME, "r.bed": BOM + b"chr1\t5\r\n"}, regions("r.bed"),
         "r.bed: line 1: a BED line needs at least chrom, start and end"),
    case("bed-bad-strand", {"g.fa": GENOME, "r.bed": b"chr1\t1\t5\tx\t0\t*\n"}, regions("r.bed"),
         "r.bed: line 1: strand must be +, - or ., got '*'"),
    case("bed-without-reference", {"r.bed": b"chr1\t1\t5\n"}, regions("r.bed", None), "--bed needs --reference"),
    case("reference-without-bed", {"g.fa": GENOME}, lambda f: list(read_regions([], f("g.fa"))),
         "--reference is used with --bed only"),
    case("bed-missing", {"g.fa": GENOME}, regions("gone.bed"), "gone.bed: no such file"),
    case("genome-missing", {}, genome("gone.fa"), "gone.fa: no such genome file"),
    case("genome-plain-gzip", {"g.fa.gz": gzip.compress(GENOME)}, genome("g.fa.gz"), "g.fa.gz: gzip but not bgzip"),
    case("genome-empty", {"g.fa": b""}, genome("g.fa"), "g.fa: cannot index this genome"),
    case("genome-ragged-lines", {"g.fa": b">a\nACGTACGT\nACG\nACGTACGT\n"}, genome("g.fa"),
         "g.fa: cannot index this genome (Line length of fasta file is not consistent"),
    case("genome-not-fasta", {"g.fa": b"hello\n"}, genome("g.fa"), "g.fa: cannot index this genome"),
    case("genome-duplicate-contig", {"g.fa": b">a\nAC\n>a\nGT\n"}, genome("g.fa"), "g.fa: cannot index this genome"),
    case("genome-with-bom", {"g.fa": BOM + GENOME}, genome("g.fa"), "g.fa: starts with a UTF-8 byte-order mark"),
    # outputs
    case("output-is-the-input", {"a.fa": FASTA}, output("a.fa", "a.fa"), "a.fa: is also an input ("),
    case("output-in-missing-folder", {}, output("no/o.tsv"), "o.tsv: folder"),
    case("output-is-a-directory", {"d/x": b""}, output("d"), "d: is a directory"),
    case("output-where-nothing-can-be-created", {}, lambda f: output("/proc/genomix.tsv")(str),
         "/proc/genomix.tsv: cannot create a file in /proc", needs="/proc/self"),
    case("output-on-a-full-device", {}, lambda f: output("/dev/full")(str), "/dev/full: cannot write (No space left",
         needs="/dev/full"),
]


def materialise(folder: Path, files: dict[str, bytes]) -> Callable[[str], str]:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return lambda name: str(folder / name)


def test_the_bad_input_corpus_is_large_enough():
    assert len(BAD) >= 40


@pytest.mark.parametrize(("files", "call", "fragment"), BAD)
def test_bad_input_gives_one_line_naming_the_problem(tmp_path, files, call, fragment):
    with pytest.raises(GenomixError) as err:
        call(materialise(tmp_path, files))
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message and "\r" not in message


# --- valid but odd inputs ---------------------------------------------------------------------------------


def valid(id_: str, files: dict[str, bytes], call: Callable, expected: object):
    return pytest.param(files, call, expected, id=id_)


R = Record
ODD = [
    valid("fasta-bom", {"a.fa": BOM + FASTA}, reads("a.fa"), [R("r1", "ACGT", "a"), R("r2", "GG")]),
    valid("fasta-bom-gzip", {"a.gz": gzip.compress(BOM + FASTA)}, reads("a.gz"), [R("r1", "ACGT", "a"), R("r2", "GG")]),
    valid("fasta-crlf-wrapped-ragged", {"a.fa": b">r1 label=a\r\nAC\r\nGTA\r\nC\r\n>r2\r\nGG"}, reads("a.fa"),
          [R("r1", "ACGTAC", "a"), R("r2", "GG")]),
    valid("fasta-cr-only", {"a.fa": b">r1\rACGT\r>r2\rGG\r"}, reads("a.fa"), [R("r1", "ACGT"), R("r2", "GG")]),
    valid("fasta-soft-masked-rna-iupac", {"a.fa": b">r1\nacgtNNrY\nuu\n"}, reads("a.fa"), [R("r1", "ACGTNNNNTT")]),
    valid("fasta-trailing-whitespace", {"a.fa": b">r1 label=a \t\nAC  \nGT\t\n\n\n"}, reads("a.fa"),
          [R("r1", "ACGT", "a")]),
    valid("fasta-empty-records", {"a.fa": b">r1\n>r2\nAC\n>r3\n"}, reads("a.fa"),
          [R("r1", ""), R("r2", "AC"), R("r3", "")]),
    valid("fasta-gaps-only-record", {"a.fa": b">r1\n--..\n"}, reads("a.fa"), [R("r1", "")]),
    valid("fastq-bom-crlf", {"q.fq": BOM + b"@q1\r\nACGT\r\n+\r\nIIII\r\n"}, reads("q.fq"), [R("q1", "ACGT")]),
    valid("fastq-zero-length-reads", {"q.fq": b"@q1\n\n+\n\n@q2\nAC\n+\nII\n@q3\n\n+q3\n\n"}, reads("q.fq"),
          [R("q1", ""), R("q2", "AC"), R("q3", "")]),
    valid("fastq-leading-blank-lines", {"q.fq": b"\n\r\n@q1\nAC\n+\nII\n"}, reads("q.fq"), [R("q1", "AC")]),
    valid("fastq-wrapped-quality-starting-with-at", {"q.fq": b"@q1 label=x\nACG\nT\n+\n@@\nII\n@q2\nA\n+\n@\n"},
          reads("q.fq"), [R("q1", "ACGT", "x"), R("q2", "A")]),
    valid("fastq-lower-case", {"q.fq": b"@q1\nacgn\n+\nIIII\n"}, reads("q.fq"), [R("q1", "ACGN")]),
    valid("csv-all-quoted-crlf", {"t.csv": b'"id","sequence","label"\r\n"s1","ACGT","x"\r\n"s2","gg",""\r\n'},
          reads("t.csv"), [R("s1", "ACGT", "x"), R("s2", "GG")]),
    valid("csv-bom-quoted", {"t.csv": BOM + b'"ID","Sequence"\n"s1","AC"\n'}, reads("t.csv"), [R("s1", "AC")]),
    valid("tsv-quoted-with-extra-columns", {"t.tsv": b'"id"\t"score"\t"seq"\n"s1"\t"0.5"\t"ac gt"\n'},
          reads("t.tsv"), [R("s1", "ACGT")]),
    valid("csv-spaces-trailing-and-in-labels", {"t.csv": b"id , sequence , label \n s1 , ACGT , big cell \n"},
          reads("t.csv"), [R("s1", "ACGT", "big cell")]),
    valid("csv-quoted-sequence-over-lines", {"t.csv": b'id,sequence\ns1,"AC\nGT"\n'}, reads("t.csv"),
          [R("s1", "ACGT")]),
    valid("csv-empty-sequence", {"t.csv": b"id,sequence\ns1,\n"}, reads("t.csv"), [R("s1", "")]),
    valid("labels-bom-crlf-header", {"l.tsv": BOM + b"id\tlabel\r\nr1\ta\r\n"}, labels("l.tsv"), {"r1": "a"}),
    valid("labels-same-id-same-label-twice", {"l.tsv": b"r1 a\nr2\tb\nr1  a\n"}, labels("l.tsv"),
          {"r1": "a", "r2": "b"}),
    valid("labels-bom-bzip2", {"l.bz2": bz2.compress(BOM + b"r1 a\n")}, labels("l.bz2"), {"r1": "a"}),
    valid("bed-bom-crlf", {"g.fa": GENOME, "r.bed": BOM + b"chr1\t0\t4\tp\t0\t-\r\nchr2\t2\t6\r\n"},
          regions("r.bed"), [R("chr1:0-4(-)", "ACGT", "p"), R("chr2:2-6(.)", "GGCC")]),
    valid("bed-spaces-and-trailing-whitespace", {"g.fa": GENOME, "r.bed": b"track x\nchr1 10 14 \n\nbrowser y\n"},
          regions("r.bed"), [R("chr1:10-14(.)", "ACGT")]),
    valid("genome-crlf", {"g.fa": b">a\r\nACGT\r\nAC\r\n>b x\r\nGG\r\n"}, genome("g.fa"), {"a": 6, "b": 2}),
    valid("genome-without-final-newline", {"g.fa": b">a\nACGT\nAC"}, genome("g.fa"), {"a": 6}),
]


@pytest.mark.parametrize(("files", "call", "expected"), ODD)
def test_valid_but_odd_input_is_read(tmp_path, files, call, expected):
    assert call(materialise(tmp_path, files)) == expected


def test_genome_with_windows_line_ends_is_fetched_right(tmp_path):
    (tmp_path / "g.fa").write_bytes(b">a\r\nACGT\r\nTTGC\r\n")
    assert Genome(tmp_path / "g.fa").fetch("a", 2, 7) == "GTTTG"


# --- unreadable streams -----------------------------------------------------------------------------------


class FailingRaw(io.RawIOBase):
    """A device that gives `data` and then fails with EIO, as a dying disk or a dropped network mount does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.data:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(len(buffer), len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


def set_stdin(monkeypatch, buffer) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=buffer))


def test_closed_stdin(monkeypatch):
    buffer = io.BufferedReader(io.BytesIO(FASTA))
    buffer.close()
    set_stdin(monkeypatch, buffer)
    with pytest.raises(GenomixError, match=r"^-: cannot read \(peek of closed file\)$"):
        list(read_records("-"))


@pytest.mark.parametrize("prefix", [b"", FASTA * 20000, gzip.compress(FASTA * 20000)], ids=["at-once", "later", "gzip"])
def test_input_output_error_while_reading(monkeypatch, prefix):
    set_stdin(monkeypatch, io.BufferedReader(FailingRaw(prefix)))
    with pytest.raises(GenomixError, match=r"^-: cannot (read|decompress) \(Input/output error\)$"):
        list(read_records("-"))


def test_input_output_error_in_labels_and_bed(monkeypatch, tmp_path):
    set_stdin(monkeypatch, io.BufferedReader(FailingRaw(b"r1 a\n" * 30000)))
    with pytest.raises(GenomixError, match=r"^-: cannot read \(Input/output error\)$"):
        read_label_table("-")
    (tmp_path / "g.fa").write_bytes(GENOME)
    set_stdin(monkeypatch, io.BufferedReader(FailingRaw(b"chr1\t0\t5\n" * 10000)))
    with pytest.raises(GenomixError, match=r"^-: cannot read \(Input/output error\)$"):
        list(read_regions(["-"], str(tmp_path / "g.fa")))


# --- stale genome indexes ---------------------------------------------------------------------------------


def replace(path: Path, data: bytes, mtime: float | None = None) -> None:
    """Put other content under the same name, as `mv new.fa genome.fa` (or `cp -p`, keeping an old time) does."""
    new = path.with_name("incoming")
    new.write_bytes(data)
    if mtime is not None:
        os.utime(new, (mtime, mtime))
    os.replace(new, path)


def test_index_of_a_replaced_newer_genome_is_rebuilt(tmp_path, capsys):
    path = tmp_path / "g.fa"
    path.write_bytes(GENOME)
    assert Genome(path).contigs == {"chr1": 200, "chr2": 8}
    fai = path.with_name("g.fa.fai")
    os.utime(fai, (1e9, 1e9))  # as if indexed long ago
    replace(path, b">x\nTTTTAAAA\nCC\n")
    genome_now = Genome(path)
    assert genome_now.contigs == {"x": 10} and genome_now.fetch("x", 6, 10) == "AACC"
    logged = " ".join(capsys.readouterr().err.split())
    assert "is older than" in logged and "rebuilding it" in logged  # rich may wrap the long path anywhere


@pytest.mark.parametrize("new", [b">x\nTTTTAAAA\nCC\n", b">chr1 first\n" + b"T" * 60 + b"\n>chr2\nGGGGCCCCAA\n",
                                 GENOME.replace(b"chr2", b"chrZ"), GENOME[:-3] + b"\n"])
def test_index_of_a_replacement_with_an_older_time_stamp_is_rebuilt(tmp_path, new):
    path = tmp_path / "g.fa"
    path.write_bytes(GENOME)
    Genome(path)
    replace(path, new, mtime=1e9)
    expected = {name: len(seq) for name, seq in _parse(new).items()}
    genome_now = Genome(path)
    assert genome_now.contigs == expected
    assert all(genome_now.fetch(name, 0, len(seq)) == seq for name, seq in _parse(new).items())


def _parse(data: bytes) -> dict[str, str]:
    return {title.split()[0]: seq for title, seq in SimpleFastaParser(io.StringIO(data.decode()))}


def test_current_index_is_kept(tmp_path):
    long_header = GENOME + b">last " + b"d" * 5000 + b"\nACGT\n"
    for data in (GENOME, GENOME.rstrip(b"\n"), b">a\nACGTACGT\nACGTACGT\n", b">a\nAC\n>b\n\n", GENOME + b"\n",
                 long_header):
        path = tmp_path / "g.fa"
        path.write_bytes(data)
        for index in tmp_path.glob("g.fa.*"):
            index.unlink()
        Genome(path)
        fai = path.with_name("g.fa.fai")
        os.utime(fai, (2e9, 2e9))
        Genome(path)
        assert fai.stat().st_mtime == 2e9, data


def test_stale_index_in_a_read_only_folder_is_rebuilt_in_the_cache(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "g.fa"
    path.write_bytes(GENOME)
    Genome(path)
    stale = path.with_name("g.fa.fai").read_bytes()
    replace(path, b">x\nTTTTAAAA\nCC\n", mtime=1e9)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    assert Genome(path).fetch("x", 0, 10) == "TTTTAAAACC"
    assert path.with_name("g.fa.fai").read_bytes() == stale  # left alone
    assert len(list((tmp_path / "cache" / "genomix" / "index").glob("g.fa.*.fai"))) == 1
    assert "cannot be replaced: indexing the genome in" in " ".join(capsys.readouterr().err.split())


def test_bgzip_genome_replaced_gets_new_indexes(tmp_path):
    path = tmp_path / "g.fa.gz"
    with bgzf.BgzfWriter(str(path), "wb") as out:
        out.write(GENOME)
    assert Genome(path).contigs == {"chr1": 200, "chr2": 8}
    assert {p.name for p in tmp_path.iterdir()} == {"g.fa.gz", "g.fa.gz.fai", "g.fa.gz.gzi"}
    with bgzf.BgzfWriter(str(path), "wb") as out:
        out.write(b">y\nCCCCGGGGAA\n")
    os.utime(path, (2e9, 2e9))
    assert Genome(path).contigs == {"y": 10}
    assert Genome(path).fetch("y", 6, 10) == "GGAA"


# --- properties -------------------------------------------------------------------------------------------

PIECES = [b">", b"@", b"+", b"\n", b"\r\n", b"\r", b"A", b"c", b"N", b"u", b"-", b" ", b"\t", b",", b'"', BOM,
          b"\x00", b"\xff", "é".encode(), b"label=", b"id,sequence,label\n", b"seq\tlabel\n", b"r1", b"I",
          b"\x1f\x8b", b"BZh", b"#"]
LIKELY_INPUT = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.one_of(st.binary(max_size=200), LIKELY_INPUT), packing=st.sampled_from(["plain", "gzip", "cut-gzip"]))
def test_any_bytes_parse_or_raise_genomix_error(scratch, data, packing):
    if packing != "plain":
        data = gzip.compress(data)
        data = data[: len(data) // 2] if packing == "cut-gzip" else data
    path = scratch / "any.dat"
    path.write_bytes(data)
    for read in (lambda: list(read_records(str(path))), lambda: read_label_table(str(path))):
        try:
            read()
        except GenomixError as err:
            assert "\n" not in str(err)


IDS = st.text(alphabet="ABCXYZabcxyz0123456789_.:|-", min_size=1, max_size=12)
BIO_RECORDS = st.lists(st.tuples(IDS, st.text(alphabet="ACGTN", max_size=150)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, database=None)
@given(entries=BIO_RECORDS, fmt=st.sampled_from(["fasta", "fastq", "fasta-2line"]), packed=st.booleans())
def test_biopython_written_files_round_trip(scratch, entries, fmt, packed):
    records = [SeqRecord(Seq(seq), id=name, description="from biopython") for name, seq in entries]
    for record in records:
        record.letter_annotations["phred_quality"] = [30] * len(record)
    text = io.StringIO()
    SeqIO.write(records, text, fmt)
    path = scratch / "bio.dat"
    path.write_bytes(gzip.compress(text.getvalue().encode()) if packed else text.getvalue().encode())
    assert [(r.id, r.seq) for r in read_records(str(path))] == entries


@settings(max_examples=80, deadline=None, database=None)
@given(seq=st.text(alphabet="ACGTN", max_size=200), width=st.integers(1, 90), crlf=st.booleans(), bom=st.booleans(),
       casing=st.sampled_from([str.upper, str.lower, str.swapcase]), fmt=st.sampled_from(["fasta", "fastq", "csv"]),
       packing=st.sampled_from([None, gzip.compress, bz2.compress]))
def test_layout_does_not_change_the_tokens(scratch, seq, width, crlf, bom, casing, fmt, packing):
    shown = casing("".join(c.lower() if i % 3 == 0 else c for i, c in enumerate(seq)))
    lines = [shown[i : i + width] for i in range(0, len(shown), width)]
    if fmt == "fasta":
        text = ">r1 label=x\n" + "\n".join(lines) + "\n"
    elif fmt == "fastq":
        text = "@r1 label=x\n" + "\n".join(lines) + "\n+\n" + "\n".join("I" * len(line) for line in lines) + "\n"
    else:
        text = 'id,sequence,label\n"r1","' + "\n".join(lines) + '",x\n'
    data = (BOM if bom else b"") + (text.replace("\n", "\r\n") if crlf else text).encode()
    path = scratch / "layout.dat"
    path.write_bytes(packing(data) if packing else data)
    (record,) = read_records(str(path))
    assert (record.id, record.label) == ("r1", "x")
    assert encode(record.seq).tobytes() == encode(seq).tobytes()
