"""Pipeline outputs: the report, abstention, records split by class, parquet, read pairs, embeddings, bigWig."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from helpers import CLASSES

from genomix.applying.embedding import embed
from genomix.applying.predicting import Outputs, predict
from genomix.applying.scanning import scan
from genomix.errors import GenomixError
from genomix.io.reading import read_records
from genomix.io.sources import RecordSource
from genomix.models.modelfile import load_model
from genomix.sequences.batching import pad
from genomix.sequences.tokens import encode


def tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def write_fastq(path, reads: list[tuple[str, str]]) -> None:
    qualities = "!#%')+-/13579;=?ACEGIK"
    path.write_text("".join(f"@{name} extra words\n{seq}\n+\n{(qualities * 20)[i : i + len(seq)]}\n"
                            for i, (name, seq) in enumerate(reads)))


@pytest.fixture(scope="module")
def reads(test_fa) -> list[tuple[str, str]]:
    return [(r.id, r.seq[:150]) for r in list(read_records(str(test_fa)))[:40]]


def test_report_and_min_score_count_what_the_rows_say(trained_model, test_fa, tmp_path):
    outputs = Outputs(tmp_path / "p.tsv", tmp_path / "r.tsv")
    report = predict(trained_model, RecordSource([str(test_fa)]), outputs, device="cpu", min_score=0.7)
    rows = tsv(tmp_path / "p.tsv")
    top = np.array([[float(x) for x in r[4:-1]] for r in rows]).max(1)
    assert sum(r[2] == "unclassified" for r in rows) == int((top < 0.7).sum()) > 0
    table = {r[0]: r for r in tsv(tmp_path / "r.tsv")}
    assert list(table) == [*CLASSES, "unclassified"]
    for label, row in table.items():
        mine = [r for r in rows if r[2] == label]
        assert int(row[1]) == len(mine) and int(row[3]) == sum(int(r[1]) for r in mine)
        assert float(row[2]) == pytest.approx(len(mine) / len(rows), abs=1e-6)
    assert report.summary().startswith(f"{len(rows) - len([r for r in rows if r[2] == 'unclassified'])} of 200")
    with pytest.raises(GenomixError, match="--min-score must be in"):
        predict(trained_model, RecordSource([str(test_fa)]), tmp_path / "q.tsv", device="cpu", min_score=1.5)
    assert not (tmp_path / "q.tsv").exists()


def test_classified_out_keeps_fastq_records_as_they_came(trained_model, reads, tmp_path):
    fastq = tmp_path / "reads.fq"
    write_fastq(fastq, reads)
    predict(trained_model, RecordSource([str(fastq)]), Outputs(tmp_path / "p.tsv", None, str(tmp_path / "by_#.fq.gz")),
            device="cpu")
    called = {r[0]: r[2] for r in tsv(tmp_path / "p.tsv")}
    original = fastq.read_text().splitlines()
    records = {original[i].split()[0][1:]: original[i : i + 4] for i in range(0, len(original), 4)}
    seen = 0
    for label in set(called.values()):
        lines = gzip.decompress((tmp_path / f"by_{label}.fq.gz").read_bytes()).decode().splitlines()
        for i in range(0, len(lines), 4):
            name = lines[i].split()[0][1:]
            assert called[name] == label and lines[i : i + 4] == records[name]  # header, bases, qualities unchanged
            seen += 1
    assert seen == len(reads)
    with pytest.raises(GenomixError, match="put '#' where the class name goes"):
        predict(trained_model, RecordSource([str(fastq)]), Outputs(None, None, str(tmp_path / "all.fq")), device="cpu")


def test_parquet_predictions_read_back_to_the_tsv_numbers(trained_model, test_fa, tmp_path):
    import pyarrow.parquet as pq

    source = RecordSource([str(test_fa)])
    predict(trained_model, source, tmp_path / "p.tsv", device="cpu")
    predict(trained_model, source, tmp_path / "p.parquet", device="cpu")
    table = pq.read_table(tmp_path / "p.parquet").to_pydict()
    rows = tsv(tmp_path / "p.tsv")
    assert table["id"] == [r[0] for r in rows] and table["label"] == [r[2] for r in rows]
    np.testing.assert_allclose(np.array([table[f"p_{c}"] for c in CLASSES]).T,
                               np.array([r[4:-1] for r in rows], float), atol=1e-6)
    np.testing.assert_allclose(table["novelty"], np.array([r[-1] for r in rows], float), atol=1e-6)


def test_a_read_pair_is_scored_as_the_mean_of_its_mates(trained_model, reads, tmp_path):
    write_fastq(tmp_path / "R1.fq", [(f"{n}/1", s[:80]) for n, s in reads[:6]])
    write_fastq(tmp_path / "R2.fq", [(f"{n}/2", s[80:]) for n, s in reads[:6]])
    predict(trained_model, RecordSource(), tmp_path / "pairs.tsv", device="cpu",
            paired=(str(tmp_path / "R1.fq"), str(tmp_path / "R2.fq")))
    predict(trained_model, RecordSource([str(tmp_path / "R1.fq"), str(tmp_path / "R2.fq")]), tmp_path / "mates.tsv",
            device="cpu")
    pairs, mates = tsv(tmp_path / "pairs.tsv"), tsv(tmp_path / "mates.tsv")
    assert [r[0] for r in pairs] == [n for n, _ in reads[:6]]
    one, two = (np.log(np.array([r[4:-1] for r in part], float)) for part in (mates[:6], mates[6:]))
    mean = (one + two) / 2
    expected = np.exp(mean - np.logaddexp.reduce(mean, axis=1, keepdims=True))
    np.testing.assert_allclose(np.array([r[4:-1] for r in pairs], float), expected, atol=2e-5)
    halves = np.array([r[-1] for r in mates], float)
    np.testing.assert_allclose(np.array([r[-1] for r in pairs], float), (halves[:6] + halves[6:]) / 2, atol=2e-6)
    write_fastq(tmp_path / "R3.fq", [(f"{n}/2", s) for n, s in reads[1:6]])
    with pytest.raises(GenomixError, match="pair 1 has ids"):
        predict(trained_model, RecordSource(), tmp_path / "x.tsv", paired=(str(tmp_path / "R1.fq"),
                                                                         str(tmp_path / "R3.fq")), device="cpu")
    write_fastq(tmp_path / "R4.fq", [(f"{n}/2", s) for n, s in reads[:5]])
    with pytest.raises(GenomixError, match="different numbers of reads"):
        predict(trained_model, RecordSource(), tmp_path / "x.tsv", paired=(str(tmp_path / "R1.fq"),
                                                                         str(tmp_path / "R4.fq")), device="cpu")
    assert not (tmp_path / "x.tsv").exists()


def test_embeddings_are_the_models_pooled_features_in_input_order(trained_model, reads, tmp_path):
    import pyarrow.parquet as pq

    fasta = tmp_path / "short.fa"
    fasta.write_text("".join(f">{n}\n{s[:60]}\n" for n, s in reads[:5]))  # one window each (max_len 64)
    embed(trained_model, RecordSource([str(fasta)]), tmp_path / "e.npy", device="cpu", rc=False)
    matrix = np.load(tmp_path / "e.npy")
    assert (tmp_path / "e.npy.ids").read_text().split() == [n for n, _ in reads[:5]]
    network = load_model(trained_model).network
    with torch.no_grad():
        expected = network.embed(*pad([encode(s[:60]) for _, s in reads[:5]])).numpy()
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    embed(trained_model, RecordSource([str(fasta)]), tmp_path / "e.parquet", device="cpu", rc=False)
    table = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert table["id"] == [n for n, _ in reads[:5]]
    np.testing.assert_allclose(np.array([table[f"e{i}"] for i in range(matrix.shape[1])]).T, matrix, atol=1e-6)


def test_bigwig_track_holds_the_bedgraph_values(trained_model, test_fa, tmp_path):
    import pyBigWig

    scan(trained_model, test_fa, tmp_path / "t.bedgraph", device="cpu")
    scan(trained_model, test_fa, tmp_path / "t.bw", device="cpu")
    bigwig = pyBigWig.open(str(tmp_path / "t.bw"))
    lines = [line.split("\t") for line in (tmp_path / "t.bedgraph").read_text().splitlines()[1:]]
    for contig, lo, hi, value in lines[:50]:
        (start, end, got), = bigwig.intervals(contig, int(lo), int(hi))
        assert (start, end) == (int(lo), int(hi)) and got == pytest.approx(float(value), abs=1e-6)


def test_scan_report_counts_the_windows_of_the_track(trained_model, test_fa, tmp_path):
    summary = scan(trained_model, test_fa, tmp_path / "t.bedgraph", device="cpu", report=tmp_path / "r.tsv")
    lines = [line.split("\t") for line in (tmp_path / "t.bedgraph").read_text().splitlines()[1:]]
    table = {r[0]: r for r in tsv(tmp_path / "r.tsv")}
    positive = sum(float(v) >= 0.5 for *_, v in lines)
    assert int(table[CLASSES[1]][1]) == positive and int(table[CLASSES[0]][1]) == len(lines) - positive
    assert sum(int(r[1]) for r in table.values()) == summary["windows"] + summary["skipped"]
    assert sum(int(r[3]) for r in table.values()) == summary["bases"]


def test_classified_out_keeps_both_mates_of_a_pair(trained_model, reads, tmp_path):
    """Each pair's two reads go to its class's two files, `_1` and `_2`, in order; none is lost."""
    write_fastq(tmp_path / "R1.fq", [(f"{n}/1", s[:80]) for n, s in reads[:8]])
    write_fastq(tmp_path / "R2.fq", [(f"{n}/2", s[80:]) for n, s in reads[:8]])
    predict(trained_model, RecordSource(), Outputs(tmp_path / "pairs.tsv", classified_out=str(tmp_path / "c_#.fq")),
            device="cpu", paired=(str(tmp_path / "R1.fq"), str(tmp_path / "R2.fq")))
    calls = {r[0]: r[2] for r in tsv(tmp_path / "pairs.tsv")}
    for label in set(calls.values()):
        first = [r.id for r in read_records(str(tmp_path / f"c_{label}_1.fq"))]
        second = [r.id for r in read_records(str(tmp_path / f"c_{label}_2.fq"))]
        expected = [n for n, c in calls.items() if c == label]
        assert first == [f"{n}/1" for n in expected] and second == [f"{n}/2" for n in expected]
    assert sorted(p.name for p in tmp_path.glob("c_*")) == sorted(f"c_{c}_{m}.fq" for c in set(calls.values())
                                                                    for m in (1, 2))


def test_embed_npy_and_its_ids_commit_together(trained_model, test_fa, tmp_path, monkeypatch):
    """A failure while the matrix is written (a full disk, say) leaves neither x.npy nor x.npy.ids behind."""
    import genomix.applying.embedding

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(genomix.applying.embedding.np, "save", full_disk)
    with pytest.raises(GenomixError, match="x.npy: cannot write \\(No space left on device\\)"):
        embed(trained_model, RecordSource([str(test_fa)]), tmp_path / "x.npy", device="cpu")
    assert list(tmp_path.iterdir()) == []
