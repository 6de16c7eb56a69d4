"""Prediction rows a chunk at a time: the same bytes as one row per record, calls and reports of whole chunks,
parquet row groups, and an input error in a later chunk still one line with nothing written."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import check_user_error

from genomix.applying.scoring import Caller
from genomix.io.writers import UNCLASSIFIED, UNKNOWN, JsonLinesWriter, ParquetRows, Report, Rows, TsvWriter
from genomix.models import create_model
from genomix.models.modelfile import TrainedModel, save_model

CLASSES = ["a", "b", "c"]


@pytest.fixture
def rows() -> Rows:
    """Rows of random probabilities, one of them an empty record (NaN), with calls from a Caller."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 50)
    probs[7] = np.nan
    calls, scores = Caller(CLASSES, min_score=0.5).calls(probs)
    labels = [[*CLASSES, UNCLASSIFIED][c] for c in calls]
    ids = [f"r{i}" if i % 5 else f'odd "id" é{i}' for i in range(50)]
    novelty = rng.normal(size=50)
    novelty[::9] = np.nan  # records of a model without novelty statistics
    return Rows(ids, rng.integers(0, 1000, 50), rng.integers(0, 9, 50), labels, scores, probs, novelty)


def per_record_tsv(rows: Rows) -> str:
    """The rows as they were written one record at a time."""
    return "".join("\t".join([i, str(n), label, f"{s:.6f}", *(f"{x:.6f}" for x in p),
                              "" if np.isnan(u) else f"{u:.6f}"]) + "\n"
                   for i, n, label, s, p, u in zip(rows.ids, rows.lengths, rows.labels, rows.scores, rows.probs,
                                                   rows.novelty))


def per_record_jsonl(rows: Rows) -> str:
    def number(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return "".join(json.dumps({"id": i, "length": int(n), "windows": int(w), "label": label, "score": number(s),
                               "probs": {c: number(x) for c, x in zip(CLASSES, p)}, "novelty": number(u)}) + "\n"
                   for i, n, w, label, s, p, u in zip(rows.ids, rows.lengths, rows.windows, rows.labels, rows.scores,
                                                      rows.probs, rows.novelty))


@pytest.mark.parametrize(("writer", "expected"), [(TsvWriter, per_record_tsv), (JsonLinesWriter, per_record_jsonl)])
def test_chunked_rows_are_the_per_record_rows(rows, writer, expected):
    out = io.StringIO()
    w = writer(out, CLASSES)
    w.write(rows)
    w.write(Rows([], np.zeros(0, int), np.zeros(0, int), [], np.zeros(0), np.zeros((0, 3)), np.zeros(0)))
    assert out.getvalue() == expected(rows)
    assert "nan" in out.getvalue() or "null" in out.getvalue()  # the empty record is among them
    assert w.rows == len(rows)


def test_caller_calls_a_chunk_as_it_calls_each_row():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [np.nan, np.nan], [0.45, 0.55], [0.7, 0.3]])
    calls, scores = Caller(["x", "y"], threshold=0.5, positive=1, min_score=0.56).calls(probs)
    assert calls.tolist() == [1, 0, 2, 2, 0]
    np.testing.assert_array_equal(scores, [0.8, 0.6, np.nan, 0.55, 0.7])
    caller = Caller(["x", "y"], threshold=0.5, positive=1, min_score=0.56)
    assert [caller(p)[0] for p in probs] == ["y", "x", UNCLASSIFIED, UNCLASSIFIED, "x"]
    novel = Caller(["x", "y"], min_score=0.56, novelty_threshold=1.0)  # unknown past it; unclassified wins
    novelty = np.array([2.0, 0.5, 2.0, 2.0, np.nan])
    assert novel.labels == ["x", "y", UNKNOWN, UNCLASSIFIED]
    assert novel.calls(probs, novelty)[0].tolist() == [2, 0, 3, 3, 0]
    assert [novel(p, u)[0] for p, u in zip(probs, novelty)] == [UNKNOWN, "x", UNCLASSIFIED, UNCLASSIFIED, "x"]


def test_report_of_chunks_is_the_report_of_records_to_the_bit(rows):
    one_at_a_time, chunked = Report(CLASSES), Report(CLASSES)
    for label, score, n in zip(rows.labels, rows.scores, rows.lengths):
        one_at_a_time.add(label, score, int(n))
    calls = np.array([one_at_a_time.labels.index(label) for label in rows.labels])
    for part in np.array_split(np.arange(len(calls)), 4):
        chunked.add_all(calls[part], rows.scores[part], rows.lengths[part])
    assert (chunked.records, chunked.bases, chunked.scores) == \
        (one_at_a_time.records, one_at_a_time.bases, one_at_a_time.scores)


def test_parquet_rows_one_at_a_time_and_as_columns_keep_order_and_group_size(tmp_path, monkeypatch):
    monkeypatch.setattr("genomix.io.writers.PARQUET_ROWS", 4)
    path = tmp_path / "t.parquet"
    with open(path, "wb") as out:
        table = ParquetRows(out, [("id", "string"), ("n", "int64")])
        for i in range(3):
            table.add((f"r{i}", i))
        table.extend([[f"r{i}" for i in range(3, 9)], np.arange(3, 9)])
        table.add(("r9", 9))
        table.close()
    file = pq.ParquetFile(path)
    assert [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)] == [4, 4, 2]
    assert file.read().to_pydict() == {"id": [f"r{i}" for i in range(10)], "n": list(range(10))}


def test_bad_record_in_a_later_chunk_is_a_one_line_error(tmp_path, genomix_main):
    torch.manual_seed(0)
    save_model(TrainedModel.of(create_model("kmer", 2, max_len=64), ["a", "b"]), tmp_path / "m.gmx")
    good = "".join(f">r{i}\n{'ACGT' * 16}\n" for i in range(2000))  # chunks of 8 x 32 x 64 bases: 256 records
    (tmp_path / "in.fa").write_text(good + ">bad\nACXT\n")
    proc = genomix_main("predict", tmp_path / "m.gmx", tmp_path / "in.fa", "-o", tmp_path / "p.tsv",
                        "--batch-size", "8", "--device", "cpu")
    message = check_user_error(proc, "in.fa: record 'bad': invalid character 'X' at position 3", one_line=False)
    assert message.endswith("position 3")  # the last stderr line, after predict's log line: no traceback
    assert not (tmp_path / "p.tsv").exists()
