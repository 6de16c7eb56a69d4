"""Reading sequences and labels: formats, compression, stdin, alphabet rules, errors, label precedence."""

from __future__ import annotations

import bz2
import gzip
import tracemalloc
from pathlib import Path

import pytest

from genomix.errors import GenomixError
from genomix.io.reading import BOM, Record, normalise, read_inputs, read_label_table, read_records, split_input

FASTA = b">r1 label=alpha src=x:1-9\nACGTA\nCCGGT\nAA\n>r2 some description\nTTTT\n\n>r3 label=beta\nG\n"
FASTA_RECORDS = [Record("r1", "ACGTACCGGTAA", "alpha"), Record("r2", "TTTT", None), Record("r3", "G", "beta")]


def write(folder: Path, name: str, data: bytes | str) -> str:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def records(path: str) -> list[Record]:
    return list(read_records(path))


# --- formats ---------------------------------------------------------------------------------------


def test_fasta_multiline_records(tmp_path):
    assert records(write(tmp_path, "a.fa", FASTA)) == FASTA_RECORDS


def test_fasta_crlf_and_leading_blank_lines(tmp_path):
    data = b"\r\n\r\n>r1 label=alpha\r\nAC\r\nGT\r\n>r2\r\nNN\r\n"
    assert records(write(tmp_path, "a.fa", data)) == [Record("r1", "ACGT", "alpha"), Record("r2", "NN", None)]


def test_fastq(tmp_path):
    # the second record's quality line starts with '@', which must not be taken for a header
    data = b"@q1 label=gamma\nACGTN\n+\nIIIII\n@q2\nggc\n+q2\n@II\n"
    assert records(write(tmp_path, "a.fq", data)) == [Record("q1", "ACGTN", "gamma"), Record("q2", "GGC", None)]


def test_truncated_fastq_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "cut.fq", b"@q1\nACGT\n+\nII\n")
    with pytest.raises(GenomixError, match="cut.fq"):
        records(path)


@pytest.mark.parametrize(
    ("name", "compress"),
    [("gz_named_fa.fa", gzip.compress), ("bz2_named_fa.fa", bz2.compress), ("plain.fa.gz", lambda b: b),
     ("plain.fa.bz2", lambda b: b), ("gz.fasta.gz", gzip.compress)],
)
def test_compression_told_from_bytes_not_name(tmp_path, name, compress):
    assert records(write(tmp_path, name, compress(FASTA))) == FASTA_RECORDS


def test_compressed_fastq_and_table(tmp_path):
    fq = write(tmp_path, "x.txt", bz2.compress(b"@q1\nACGT\n+\nIIII\n"))
    table = write(tmp_path, "y.dat", gzip.compress(b"id,sequence,label\ns1,AC,x\n"))
    assert records(fq) == [Record("q1", "ACGT")]
    assert records(table) == [Record("s1", "AC", "x")]


def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "bad.fa.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(GenomixError, match=r"bad\.fa\.gz"):
        records(path)


def test_corrupt_bzip2_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "bad.fa.bz2", b"BZh9" + bytes(range(256)) * 4)
    with pytest.raises(GenomixError, match=r"bad\.fa\.bz2: cannot decompress"):
        records(path)


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    data = gzip.compress(FASTA * 200)
    path = write(tmp_path, "cut.fa.gz", data[: len(data) // 2])
    with pytest.raises(GenomixError, match=r"cut\.fa\.gz"):
        records(path)


def test_stdin_plain(fake_stdin):
    fake_stdin(FASTA)
    assert records("-") == FASTA_RECORDS


def test_stdin_gzip_and_bzip2(fake_stdin):
    fake_stdin(gzip.compress(FASTA))
    assert records("-") == FASTA_RECORDS
    fake_stdin(bz2.compress(b"@q1\nACGT\n+\nIIII\n"))
    assert records("-") == [Record("q1", "ACGT")]


def test_stdin_through_read_inputs_with_class_label(fake_stdin):
    fake_stdin(FASTA)
    assert [r.label for r in read_inputs(["delta=-"])] == ["delta"] * 3


def test_csv_columns_by_name(tmp_path):
    data = "label,sequence,id\nalpha,acgt,s1\n,GG-C,s2\nbeta,U,s3\n"
    assert records(write(tmp_path, "t.csv", data)) == [
        Record("s1", "ACGT", "alpha"), Record("s2", "GGC", None), Record("s3", "T", "beta"),
    ]


def test_tsv_columns_by_name(tmp_path):
    data = "id\tsequence\tlabel\ns1\tACGT\talpha\ns2\tCCRY\tbeta\n"
    assert records(write(tmp_path, "t.tsv", data)) == [Record("s1", "ACGT", "alpha"), Record("s2", "CCNN", "beta")]


def test_table_without_id_column_numbers_rows_after_the_file_stem(tmp_path):
    data = "seq\tlabel\nAC\tx\nGT\ty\n"
    assert records(write(tmp_path, "set1.tsv.gz", gzip.compress(data.encode()))) == [
        Record("set1_1", "AC", "x"), Record("set1_2", "GT", "y"),
    ]


def test_table_row_with_wrong_column_count(tmp_path):
    path = write(tmp_path, "t.csv", "id,sequence,label\ns1,AC,x\ns2,GT\n")
    with pytest.raises(GenomixError, match=r"t\.csv: row 2 has 2 columns, the header has 3"):
        records(path)


def test_table_with_leading_blank_line(tmp_path):
    path = write(tmp_path, "t.csv", "\nid,sequence,label\ns1,AC,x\n")
    assert records(path) == [Record("s1", "AC", "x")]


def test_table_with_utf8_bom_keeps_its_id_column(tmp_path):
    path = write(tmp_path, "t.csv", "\ufeffid,sequence,label\ns1,AC,x\n".encode())
    assert records(path) == [Record("s1", "AC", "x")]


# --- alphabet ----------------------------------------------------------------------------------------


def test_normalise_known_answer():
    raw = "acgtnACGTN uU-.\tRYKMSWBDHV\nrykmswbdhv\r"
    assert normalise(raw, "f", "r") == "ACGTNACGTNTT" + "N" * 20


@pytest.mark.parametrize("code", list("RYKMSWBDHVNrykmswbdhvn"))
def test_iupac_codes_become_n(code):
    assert normalise(f"A{code}C", "f", "r") == "ANC"


def test_alphabet_rules_applied_when_reading_fasta(tmp_path):
    path = write(tmp_path, "a.fa", ">r1\nac-gu\n..tt RY\n>r2\nUUuu\n")
    assert records(path) == [Record("r1", "ACGTTTNN"), Record("r2", "TTTT")]


@pytest.mark.parametrize(
    ("body", "char", "position"),
    [("ACGTE", "E", 5), ("AC-GZ", "Z", 5), ("ACGT\nAXGT", "X", 6), ("ACG1", "1", 4), ("AC*", "*", 3),
     ("ACGé", "é", 4), ("acgtj", "j", 5)],
)
def test_invalid_character_names_file_record_and_position(tmp_path, body, char, position):
    path = write(tmp_path, "bad.fa", f">ok\nACGT\n>rec2 label=x\n{body}\n")
    with pytest.raises(GenomixError) as err:
        records(path)
    message = str(err.value)
    assert "bad.fa" in message
    assert "'rec2'" in message
    assert repr(char) in message
    assert f"position {position}" in message
    assert "\n" not in message


def test_a_chromosome_long_fasta_record_is_read_in_about_two_bytes_a_base(tmp_path):
    """Its lines (49 bytes each beyond their 80 bases) are not all held beside raw and normalised copies of it (five
    bytes a base and more at the peak), and a bad character past the first parts is placed in the whole record."""
    bases = 4_000_000
    seq = "acgtACGTNN" * (bases // 10)  # soft-masked: the normalised text is a new string
    lines = "".join(seq[i : i + 80] + "\n" for i in range(0, bases, 80))
    path = write(tmp_path, "chr.fa", f">chr1\n{lines}")
    tracemalloc.start()
    try:
        [record] = records(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert record == Record("chr1", seq.upper()) and peak < 2.5 * bases
    bad = write(tmp_path, "bad.fa", f">chr1\n{lines[:3_037_500]}Q{lines[3_037_500:]}")  # after 3,000,000 bases
    with pytest.raises(GenomixError, match="record 'chr1': invalid character 'Q' at position 3000001"):
        records(bad)


def test_invalid_character_in_table_names_record(tmp_path):
    path = write(tmp_path, "t.tsv", "id\tsequence\ns1\tACGT\ns2\tACQT\n")
    with pytest.raises(GenomixError, match=r"t\.tsv: record 's2': invalid character 'Q' at position 3"):
        records(path)


@pytest.mark.parametrize("body", ["", "---\n", " . \n"])
def test_empty_record_is_data_not_an_error(tmp_path, body):
    # a record without bases is yielded with seq "": scoring reports it, training skips it
    path = write(tmp_path, "e.fa", f">full\nACGT\n>hollow\n{body}>after\nGG\n")
    assert records(path) == [Record("full", "ACGT"), Record("hollow", ""), Record("after", "GG")]


def test_empty_header_is_an_error(tmp_path):
    path = write(tmp_path, "h.fa", ">r1\nAC\n>\nGT\n")
    with pytest.raises(GenomixError, match=r"h\.fa: record 2 has an empty header"):
        records(path)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", gzip.compress(b""), bz2.compress(b"\n")])
def test_empty_file_is_an_error(tmp_path, data):
    path = write(tmp_path, "empty.fa", data)
    with pytest.raises(GenomixError, match=r"empty\.fa: is empty"):
        records(path)


@pytest.mark.parametrize("data", [b"hello world\nACGT\n", b"ACGTACGT\n", b"id,label\nx,y\n", bytes(range(3, 200))])
def test_not_a_sequence_file_is_an_error(tmp_path, data):
    path = write(tmp_path, "notes.fa", data)
    with pytest.raises(GenomixError, match=r"notes\.fa: not a FASTA, FASTQ or CSV/TSV file"):
        records(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(GenomixError, match=r"nope\.fa: no such file"):
        records(str(tmp_path / "nope.fa"))
    with pytest.raises(GenomixError, match="is a directory"):
        records(str(tmp_path))


# --- labels --------------------------------------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path):
    """A FASTA with header labels (r1, r3) and one without (r2), and a CSV with a label column."""
    fasta = write(tmp_path, "h.fa", FASTA)
    table = write(tmp_path, "c.csv", "id,sequence,label\nc1,AC,csvlab\nc2,GT,\n")
    return fasta, table


def labels_of(inputs, labels=None) -> dict[str, str | None]:
    return {r.id: r.label for r in read_inputs(inputs, labels)}


def test_header_label_when_nothing_overrides(labelled):
    fasta, table = labelled
    assert labels_of([fasta, table]) == {"r1": "alpha", "r2": None, "r3": "beta", "c1": "csvlab", "c2": None}


def test_labels_table_overrides_header_and_csv_column(labelled, tmp_path):
    fasta, table = labelled
    ids = write(tmp_path, "ids.tsv", "id\tlabel\n# comment\nr1\tfromtable\nr2 tabled2\nc1\ttablec1\n")
    assert labels_of([fasta, table], ids) == {
        "r1": "fromtable", "r2": "tabled2", "r3": "beta", "c1": "tablec1", "c2": None,
    }


def test_class_argument_overrides_table_header_and_csv_column(labelled, tmp_path):
    fasta, table = labelled
    ids = write(tmp_path, "ids.tsv", "r1 fromtable\nc1 tablec1\n")
    assert labels_of([f"whole={fasta}", table], ids) == {
        "r1": "whole", "r2": "whole", "r3": "whole", "c1": "tablec1", "c2": None,
    }
    assert labels_of([fasta, f"file2={table}"], ids) == {
        "r1": "fromtable", "r2": None, "r3": "beta", "c1": "file2", "c2": "file2",
    }


def test_class_argument_overrides_header_without_table(labelled):
    fasta, _ = labelled
    assert labels_of([f"k={fasta}"]) == {"r1": "k", "r2": "k", "r3": "k"}


def test_labels_table_id_matching_no_record_is_an_error(labelled, tmp_path):
    fasta, _ = labelled
    ids = write(tmp_path, "ids.tsv", "r1 a\nghost_7 b\n")
    with pytest.raises(GenomixError, match=r"ids\.tsv: 1 id\(s\) match no input record, e\.g\. 'ghost_7'"):
        list(read_inputs([fasta], ids))


def test_labels_table_format_errors(tmp_path):
    three = write(tmp_path, "three.tsv", "r1 a\nr2 b extra\n")
    with pytest.raises(GenomixError, match=r"three\.tsv: line 2: expected two columns"):
        read_label_table(three)
    header_only = write(tmp_path, "header.tsv", "id\tlabel\n")
    with pytest.raises(GenomixError, match=r"header\.tsv: no labels"):
        read_label_table(header_only)


def test_labels_table_may_be_compressed(tmp_path):
    path = write(tmp_path, "ids.txt", gzip.compress(b"id label\nr1 a\nr2 b\n"))
    assert read_label_table(path) == {"r1": "a", "r2": "b"}


# --- CLASS=path arguments ------------------------------------------------------------------------------


def test_split_input_plain_and_class(tmp_path):
    assert split_input("promoter=some/where.fa") == ("promoter", "some/where.fa")
    assert split_input("a=b=c.fa") == ("a", "b=c.fa")
    assert split_input("plain.fa") == (None, "plain.fa")
    assert split_input("=x.fa") == (None, "=x.fa")
    assert split_input("cls=") == (None, "cls=")
    assert split_input("-") == (None, "-")


def test_split_input_existing_file_with_equals_in_its_name(tmp_path):
    path = write(tmp_path, "run=3.fa", FASTA)
    assert split_input(path) == (None, path)
    assert list(read_inputs([path])) == FASTA_RECORDS
    assert labels_of([f"cls={path}"]) == {"r1": "cls", "r2": "cls", "r3": "cls"}


def test_split_input_relative_name_with_equals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "k=v.fa", FASTA)
    assert split_input("k=v.fa") == (None, "k=v.fa")
    assert labels_of(["k=v.fa"]) == {"r1": "alpha", "r2": None, "r3": "beta"}


def test_class_argument_with_missing_file_names_the_path(tmp_path):
    missing = str(tmp_path / "gone.fa")
    with pytest.raises(GenomixError, match=r"gone\.fa: no such file"):
        list(read_inputs([f"cls={missing}"]))


def test_inputs_are_streamed_in_order(tmp_path):
    a = write(tmp_path, "a.fa", ">a1\nA\n>a2\nC\n")
    b = write(tmp_path, "b.fq", "@b1\nG\n+\nI\n")
    assert [r.id for r in read_inputs([b, a, b])] == ["b1", "a1", "a2", "b1"]


# --- FASTQ in blocks (dnaio), Biopython from the first block dnaio rejects ---------------------------------


def fastq(names: range, wrap: bool = False) -> bytes:
    """Four-line FASTQ records (or, with `wrap`, records whose sequence and quality take two lines each)."""
    if wrap:
        return b"".join(f"@q{i}\nAC\nGT\n+\nII\nII\n".encode() for i in names)
    return b"".join(f"@q{i} label=x\nACGT\n+\nIIII\n".encode() for i in names)


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_fastq_blocks_then_wrapped_records_read_alike(tmp_path, monkeypatch, fake_stdin, from_stdin):
    monkeypatch.setattr("genomix.io.reading.FASTQ_BLOCK", 64)  # several blocks before the wrapped records
    data = BOM + b"\r\n\n" + fastq(range(20)) + fastq(range(20, 23), wrap=True) + fastq(range(23, 30))
    if from_stdin:
        fake_stdin(gzip.compress(data))
    path = "-" if from_stdin else write(tmp_path, "w.fq", data)
    assert [(r.id, r.seq, r.label) for r in records(path)] == \
        [(f"q{i}", "ACGT", None if 20 <= i < 23 else "x") for i in range(30)]


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_fastq_error_after_many_blocks_names_its_record_and_line(tmp_path, monkeypatch, fake_stdin, from_stdin):
    monkeypatch.setattr("genomix.io.reading.FASTQ_BLOCK", 64)
    data = b"\n" + fastq(range(30)) + b"@q30\nACGT\n+\nII\n" + fastq(range(31, 40))
    if from_stdin:
        fake_stdin(data)
    path = "-" if from_stdin else write(tmp_path, "cut.fq", data)
    with pytest.raises(GenomixError) as err:
        records(path)
    # Biopython's message, as when it read the whole file: the next record's header was taken for more quality
    assert str(err.value) == f"{path}: record 31 'q30' at line 122: Lengths of sequence and quality values differs " \
        "for q30 (4 and 23)."
