"""`genomix scan`: windows that tile every contig, probabilities equal to predict's, merged BED regions,
streaming in blocks, and one-line user errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSES

from genomix.applying import scanning
from genomix.applying.scoring import predict_records
from genomix.errors import GenomixError
from genomix.io.genomes import Genome
from genomix.io.reading import Record
from genomix.models import create_model
from genomix.models.modelfile import TrainedModel, load_model, save_model

WINDOW = 64
N_RUN = (400, 600)  # chrA[400:600] is all N: the windows inside it are skipped
LENGTHS = {"chrA": 1003, "chrB": 40}  # chrB is shorter than a window


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(7)
    seqs = {name: "".join(rng.choice(list("ACGT"), length)) for name, length in LENGTHS.items()}
    seqs["chrA"] = seqs["chrA"][: N_RUN[0]] + "N" * (N_RUN[1] - N_RUN[0]) + seqs["chrA"][N_RUN[1] :]
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text("".join(f">{name} test\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
                            for name, seq in seqs.items()))
    return path, seqs


def expected_windows(seqs: dict[str, str], window: int, step: int) -> list[tuple[str, int, int, int, int, bool]]:
    """(contig, start, end, lo, hi, scored) of every window, computed directly from the definition."""
    rows = []
    for name, seq in seqs.items():
        width = min(window, len(seq))
        starts = list(range(0, len(seq) - width, step)) + [len(seq) - width]
        centres = [s + width / 2 for s in starts]
        for i, s in enumerate(starts):
            lo = 0 if i == 0 else int((centres[i - 1] + centres[i]) // 2)
            hi = len(seq) if i == len(starts) - 1 else int((centres[i] + centres[i + 1]) // 2)
            rows.append((name, s, s + width, lo, hi, seq[s : s + width].count("N") <= width / 2))
    return rows


def reference_probs(model_path: Path, seqs: dict[str, str], rows, rc: bool | None = None) -> np.ndarray:
    """p(class) of the scored windows as `genomix predict` computes them."""
    records = [Record(f"{c}:{s}-{e}", seqs[c][s:e]) for c, s, e, *_, scored in rows if scored]
    return np.array([p.probs for p in predict_records(load_model(model_path), records, device="cpu", rc=rc)])


def read_bedgraph(path: Path) -> tuple[str, list[tuple[str, int, int, float]]]:
    header, *lines = path.read_text().splitlines()
    return header, [(c, int(lo), int(hi), float(v)) for c, lo, hi, v in (line.split("\t") for line in lines)]


def test_model_fixture_is_binary_with_max_len_64(trained_model):
    model = load_model(trained_model)
    assert model.classes == CLASSES and model.max_len == WINDOW and model.positive_class == CLASSES[1]


@pytest.mark.parametrize(("step", "rc"), [(24, False), (64, True)])
def test_track_tiles_every_contig_with_predict_probabilities(trained_model, genome, tmp_path, step, rc):
    path, seqs = genome
    out = tmp_path / "out.bedgraph"
    summary = scanning.scan(trained_model, path, out, step=step, device="cpu", rc=rc)
    header, track = read_bedgraph(out)
    assert header.startswith(f'track type=bedGraph name="genomix p({CLASSES[1]})" description="')

    rows = expected_windows(seqs, WINDOW, step)
    assert any(not scored for *_, scored in rows) and rows[-1][1:5] == (0, 40, 0, 40)
    assert [(c, lo, hi) for c, s, e, lo, hi, scored in rows if scored] == [row[:3] for row in track]
    probs = reference_probs(trained_model, seqs, rows, rc)[:, 1]
    np.testing.assert_allclose([row[3] for row in track], probs, atol=1.5e-6)
    assert summary["bases"] == sum(LENGTHS.values()) and summary["windows"] == len(track)

    for name, length in LENGTHS.items():  # tiles: from 0 to the end, no overlap, a gap only at the N run
        intervals = [(lo, hi) for c, lo, hi, _ in track if c == name]
        assert intervals[0][0] == 0 and intervals[-1][1] == length
        gaps = [(hi, lo) for (_, hi), (lo, _) in zip(intervals, intervals[1:]) if hi != lo]
        assert all(hi < lo for hi, lo in gaps)
        assert len(gaps) == (name == "chrA") and all(N_RUN[0] - WINDOW < hi < lo < N_RUN[1] + WINDOW for hi, lo in gaps)


def test_all_classes_sum_to_one_and_match_the_single_track(trained_model, genome, tmp_path):
    path = genome[0]
    scanning.scan(trained_model, path, tmp_path / "one.bedgraph", device="cpu")
    scanning.scan(trained_model, path, tmp_path / "all.bedgraph", all_classes=True, device="cpu")
    tracks = [read_bedgraph(tmp_path / f"all.{name}.bedgraph")[1] for name in CLASSES]
    assert [row[:3] for row in tracks[0]] == [row[:3] for row in tracks[1]]
    np.testing.assert_allclose([a[3] + b[3] for a, b in zip(*tracks)], 1.0, atol=2e-6)
    assert (tmp_path / f"all.{CLASSES[1]}.bedgraph").read_text() == (tmp_path / "one.bedgraph").read_text()


@pytest.mark.parametrize("step", [24, 64])  # windows that overlap, windows that touch
def test_bed_regions_are_the_merged_windows_above_threshold(trained_model, genome, tmp_path, step):
    path, seqs = genome
    rows = [row for row in expected_windows(seqs, WINDOW, step) if row[5]]
    probs = reference_probs(trained_model, seqs, rows)[:, 1]
    levels = np.unique(probs)
    threshold = float(levels[len(levels) // 3] + levels[len(levels) // 3 + 1]) / 2  # a third of windows below
    expected: list[list] = []
    for (contig, start, end, *_), p in zip(rows, probs):
        if p < threshold:
            continue
        if expected and expected[-1][0] == contig and start <= expected[-1][2]:
            expected[-1][2], expected[-1][3] = end, max(expected[-1][3], p)
        else:
            expected.append([contig, start, end, p])
    assert any(e - s > WINDOW for _, s, e, _ in expected)  # some windows were merged

    bed = tmp_path / "regions.bed"
    summary = scanning.scan(trained_model, path, tmp_path / "t.bedgraph", step=step, bed_out=bed,
                            threshold=threshold, device="cpu")
    got = [line.split("\t") for line in bed.read_text().splitlines()]
    assert [(c, int(s), int(e), name, strand) for c, s, e, name, _, strand in got] == \
        [(c, s, e, CLASSES[1], ".") for c, s, e, _ in expected]
    assert all(abs(int(row[4]) - int(1000 * p)) <= 1 for row, (*_, p) in zip(got, expected))
    assert summary["regions"] == len(expected)


def test_small_blocks_stream_the_same_track(trained_model, genome, tmp_path, monkeypatch):
    path = genome[0]
    scanning.scan(trained_model, path, tmp_path / "big.bedgraph", step=24, device="cpu")
    fetched: list[int] = []
    fetch = Genome.fetch

    def recording_fetch(self, contig, start, end):
        fetched.append(end - start)
        return fetch(self, contig, start, end)

    monkeypatch.setattr(Genome, "fetch", recording_fetch)
    monkeypatch.setattr(scanning, "BLOCK_BASES", 100)  # blocks of one batch: 4 windows, 3 steps and a window
    scanning.scan(trained_model, path, tmp_path / "small.bedgraph", step=24, batch_size=4, device="cpu")
    assert max(fetched) == 3 * 24 + WINDOW and len(fetched) > 10
    big, small = (read_bedgraph(tmp_path / f"{n}.bedgraph")[1] for n in ("big", "small"))
    assert [row[:3] for row in big] == [row[:3] for row in small]
    np.testing.assert_allclose([r[3] for r in big], [r[3] for r in small], atol=1.5e-6)


def test_stdout_output(trained_model, genome, tmp_path, invoke):
    result = invoke("scan", trained_model, "--reference", genome[0], "-o", "-", "--step", "24", "--device", "cpu")
    assert result.exit_code == 0, (result.stderr, result.exception)
    scanning.scan(trained_model, genome[0], tmp_path / "f.bedgraph", step=24, device="cpu")
    assert result.stdout == (tmp_path / "f.bedgraph").read_text()


@pytest.mark.parametrize(("options", "message"), [
    ({"window": 4}, "--window must be at least 8"),
    ({"step": 65}, "--step must be between 1 and the window (64)"),
    ({"step": 0}, "--step must be between 1"),
    ({"threshold": 1.0}, "--threshold must be between 0 and 1"),
    ({"class_name": "yeast"}, "--class yeast: not a class"),
    ({"all_classes": True, "output": "-"}, "--all-classes writes one file per class"),
])
def test_option_mistakes_are_user_errors(trained_model, genome, tmp_path, options, message):
    arguments = {"output": tmp_path / "x.bedgraph", **options}
    with pytest.raises(GenomixError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scanning.scan(trained_model, genome[0], device="cpu", **arguments)
    assert not (tmp_path / "x.bedgraph").exists()


def test_plain_gzip_genome_is_a_one_line_user_error(trained_model, genome, tmp_path, genomix_main, user_error):
    gz = tmp_path / "g.fa.gz"
    gz.write_bytes(gzip.compress(genome[0].read_bytes()))
    proc = genomix_main("scan", trained_model, "--reference", gz, "-o", tmp_path / "x.bedgraph")
    user_error(proc, "bgzip", "g.fa.gz")
    assert not (tmp_path / "x.bedgraph").exists()


def test_multiclass_model_without_class_is_a_one_line_user_error(genome, tmp_path, genomix_main, user_error):
    torch.manual_seed(0)
    network = create_model("paramixer-cdil", 3, max_len=WINDOW, dim=8, hidden=8, layers=1)
    save_model(TrainedModel.of(network, ["coding", "intergenic", "rna"]), tmp_path / "three.gmx")
    proc = genomix_main("scan", tmp_path / "three.gmx", "--reference", genome[0], "-o", tmp_path / "x.bedgraph",
                        "--device", "cpu")
    user_error(proc, "3 classes (coding, intergenic, rna)", "--class", "--all-classes")


def test_a_bigwig_into_a_pipe_is_refused_in_one_line(genomix_main, trained_model, genome, tmp_path):
    """bigWig is written by going back in the file: a FIFO named .bw gets one line and exit 2, not pyBigWig's
    traceback."""
    import os

    from helpers import check_user_error

    os.mkfifo(tmp_path / "t.bw")
    done = genomix_main("scan", trained_model, "--reference", genome[0], "-o", tmp_path / "t.bw", "--device", "cpu")
    check_user_error(done, "bigwig is written by going back in the file")


def test_format_bigwig_writes_a_bigwig_whatever_the_name(genomix_main, trained_model, genome, tmp_path):
    """-o track --format bigwig is a bigWig holding the bedGraph's values; into stdout it is refused in one line."""
    import pyBigWig
    from helpers import check_user_error

    common = ["scan", trained_model, "--reference", genome[0], "--device", "cpu"]
    for name, chosen in (("t.bedgraph", []), ("track", ["--format", "bigwig"])):
        done = genomix_main(*common, "-o", tmp_path / name, *chosen)
        assert done.returncode == 0, done.stderr
    track = pyBigWig.open(str(tmp_path / "track"))
    for contig, lo, hi, value in read_bedgraph(tmp_path / "t.bedgraph")[1]:
        assert track.values(contig, lo, hi) == pytest.approx([value] * (hi - lo), abs=1e-6)
    check_user_error(genomix_main(*common, "-o", "-", "--format", "bigwig"), "bigwig is written by going back")
