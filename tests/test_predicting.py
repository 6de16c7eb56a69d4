"""Prediction beyond the model's length, thresholds, evaluation figures and output formats."""

import json
import tracemalloc

import numpy as np
import pytest
import torch
from helpers import check_user_error

from genomix.applying.predicting import predict
from genomix.applying.scoring import Scorer, decide, predict_chunks
from genomix.errors import GenomixError
from genomix.io.reading import Record, read_records
from genomix.io.sources import RecordSource
from genomix.models import create_model
from genomix.models.modelfile import TrainedModel, save_model
from genomix.sequences.tokens import encode


def test_long_sequence_is_the_mean_of_its_window_log_probabilities():
    torch.manual_seed(0)
    network = create_model("paramixer-cdil", 2, max_len=32, dim=8, hidden=8, layers=1).eval()
    rng = np.random.default_rng(0)
    tokens = encode("".join(rng.choice(list("ACGT"), 80)))  # windows start at 0, 32 and 48 (flush with the end)
    windows = [tokens[0:32], tokens[32:64], tokens[48:80]]
    scorer = Scorer(network, torch.device("cpu"), batch_size=8)
    each = scorer.log_probs(windows)
    expected = torch.log_softmax(each.mean(0), 0)
    torch.testing.assert_close(scorer.log_probs([tokens])[0], expected, atol=1e-6, rtol=0)


def test_decide_uses_the_threshold_on_the_positive_class():
    probs = np.array([0.7, 0.3])
    assert decide(probs, None) == 0
    assert decide(probs, 0.25) == 1
    assert decide(probs, 0.35) == 0


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory):
    torch.manual_seed(1)
    network = create_model("paramixer-cdil", 2, max_len=64, dim=8, hidden=8, layers=1).eval()
    path = tmp_path_factory.mktemp("m") / "m.gmx"
    save_model(TrainedModel.of(network, ["background", "promoter"]), path)
    return path


def rows_of(tsv) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in tsv.read_text().splitlines()[1:]]


def test_predict_threshold_calls_positive_exactly_at_or_above_it(binary_model, tmp_path):
    fasta = tmp_path / "x.fa"
    rng = np.random.default_rng(2)
    fasta.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 50))}\n" for i in range(30)))
    out = tmp_path / "p.tsv"
    predict(binary_model, RecordSource([str(fasta)]), out, device="cpu")
    threshold = float(np.median([float(r[5]) for r in rows_of(out)]))
    predict(binary_model, RecordSource([str(fasta)]), out, device="cpu", threshold=threshold)
    calls = [(row[2] == "promoter", float(row[5]) >= threshold) for row in rows_of(out)]
    assert all(called == expected for called, expected in calls) and 0 < sum(c for c, _ in calls) < len(calls)
    with pytest.raises(GenomixError, match="between 0 and 1"):
        predict(binary_model, RecordSource([str(fasta)]), out, device="cpu", threshold=1.5)


def test_evaluate_plots_writes_three_pngs(binary_model, tmp_path):
    from genomix.applying.evaluating import evaluate

    fasta = tmp_path / "y.fa"
    rng = np.random.default_rng(3)
    labels = ["background", "promoter"] * 10
    fasta.write_text("".join(f">s{i} label={c}\n{''.join(rng.choice(list('ACGT'), 40))}\n"
                             for i, c in enumerate(labels)))
    result, classes = evaluate(binary_model, RecordSource([str(fasta)]), device="cpu", plots=tmp_path / "figures")
    assert classes == ["background", "promoter"] and result["n"] == 20
    for name in ("roc.png", "pr.png", "confusion.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_plots_that_fail_leave_no_output(monkeypatch, binary_model, tmp_path):
    """A folder that cannot be made stops evaluate before any work; a figure that fails to draw leaves no metrics,
    no report and no figure (the first figure was drawn), and the folder's other files as they were."""
    import genomix.applying.plots
    from genomix.applying.evaluating import evaluate

    fasta = tmp_path / "y.fa"
    rng = np.random.default_rng(3)
    fasta.write_text("".join(f">s{i} label={c}\n{''.join(rng.choice(list('ACGT'), 40))}\n"
                             for i, c in enumerate(["background", "promoter"] * 10)))
    (tmp_path / "file").write_text("")
    outputs = {"output": tmp_path / "m.json", "report": tmp_path / "r.tsv"}
    with pytest.raises(GenomixError, match="--plots .*file/d: .*file is not a folder"):
        evaluate(binary_model, RecordSource([str(fasta)]), device="cpu", plots=tmp_path / "file" / "d", **outputs)
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "mine.txt").write_text("kept\n")
    save = genomix.applying.plots._save
    saved = []

    def failing(fig, path):
        if saved:
            raise RuntimeError("drawing failed")
        saved.append(save(fig, path))
        return saved[-1]

    monkeypatch.setattr(genomix.applying.plots, "_save", failing)
    with pytest.raises(RuntimeError, match="drawing failed"):
        evaluate(binary_model, RecordSource([str(fasta)]), device="cpu", plots=folder, **outputs)
    assert saved and sorted(p.name for p in tmp_path.iterdir()) == ["figures", "file", "y.fa"]
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_prediction_chunks_are_bounded_by_bases_and_keep_every_record_in_order():
    from genomix.applying.scoring import _chunks
    from genomix.io.reading import Record

    records = [Record(f"r{i}", "A" * length) for i, length in enumerate([5, 50, 3, 3, 3, 40, 1])]
    chunks = list(_chunks(records, max_bases=10))
    assert [r.id for chunk in chunks for r in chunk] == [r.id for r in records]
    assert [[r.id for r in chunk] for chunk in chunks] == [["r0", "r1"], ["r2", "r3", "r4", "r5"], ["r6"]]


def test_format_names_the_output_format_whatever_the_suffix(genomix_main, trained_model, test_fa, tmp_path):
    """--format jsonl into out.txt writes JSON lines (the suffix was refused); parquet cannot go to stdout, and
    a format the command does not write is refused by the parser; embed and explain read --format the same way."""
    done = genomix_main("predict", trained_model, test_fa, "-o", tmp_path / "out.txt", "--format", "jsonl",
                        "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert [row["id"] for row in rows] == [r.id for r in read_records(test_fa)]
    check_user_error(genomix_main("predict", trained_model, test_fa, "-o", "-", "--format", "parquet", "--device",
                                  "cpu"), "-o -: parquet is written by going back in the file")
    check_user_error(genomix_main("predict", trained_model, test_fa, "--format", "npz"), "--format")
    done = genomix_main("embed", trained_model, test_fa, "-o", tmp_path / "e.bin", "--format", "npy", "--device",
                        "cpu")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "e.bin").shape[0] == len(rows) == len((tmp_path / "e.bin.ids").read_text().split())


def traced_peak(run, *args) -> int:
    """The peak of Python and numpy allocations (tracemalloc) while `run(*args)` runs."""
    tracemalloc.start()
    try:
        run(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_genome_scale_record_costs_its_tokens_not_all_its_windows():
    """Between a 1 Mb and a 3 Mb record, what scoring allocates grows by the record's tokens (a byte a base): its
    windows and their reverse complements are cut a batch at a time (they were all held, with a copy of the
    record for the look-up: two bytes a base and more)."""
    torch.manual_seed(0)
    model = TrainedModel.of(create_model("kmer", 2, max_len=4096, k_max=2).eval(), ["a", "b"])
    rng = np.random.default_rng(0)
    records = [Record("chr", np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].tobytes().decode())
               for n in (1_000_000, 3_000_000)]
    score = lambda record: list(predict_chunks(model, [record], device="cpu", rc=True))  # noqa: E731
    small, large = (traced_peak(score, record) for record in records)
    assert (large - small) / 2_000_000 < 1.5
    [scored] = score(records[1])
    assert scored.windows.tolist() == [733] and np.isfinite(scored.log_probs).all()
