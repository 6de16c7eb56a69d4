"""Open-set calls: novelty scores fitted at training flag records unlike the training data, the stored threshold
keeps the chosen share of validation records known, and `predict`, `scan` and `evaluate` use them; model files
from before the novelty statistics predict as they did."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TEST_FA, motif_records

from genomix.applying.novelty import (
    COMBINED,
    LEGACY_COMBINED,
    MARKOV_K,
    METHODS,
    VERSION,
    Gaussian,
    Inputs,
    Novelty,
    kmer_profiles,
    novelty_of,
    open_set_metrics,
)
from genomix.applying.scoring import Scorer, predict_records
from genomix.errors import GenomixError
from genomix.fitting.finishing import novelty_inputs
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import Record, read_records
from genomix.models.modelfile import load_model
from genomix.sequences.tokens import encode, reverse_complement

FIXTURES = ROOT / "tests" / "fixtures"


def shifted(n: int, seed: int, length: int = 64, gc: float = 0.9) -> list[Record]:
    """Random DNA of another composition than `motif_records` (GC-rich instead of uniform)."""
    rng = np.random.default_rng(seed)
    weights = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return [Record(f"x{i}", "".join(rng.choice(list("ACGT"), length, p=weights))) for i in range(n)]


def novelty(model, records) -> np.ndarray:
    return np.array([p.novelty for p in predict_records(model, records, device="cpu")])


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    return open_set_metrics(known, unknown, np.inf, np.ones(len(known), bool))["auroc"]


@pytest.mark.parametrize("fixture", ["motif_paramixer", "motif_kmer"])
def test_records_of_a_shifted_composition_score_as_novel(fixture, request):
    model = request.getfixturevalue(fixture)
    known, unknown = novelty(model, motif_records(200, seed=7)), novelty(model, shifted(200, seed=7))
    assert auroc(known, unknown) > 0.9
    limit = novelty_of(model).threshold
    assert (unknown > limit).mean() > 0.9 and (known > limit).mean() < 0.1
    batch = novelty_inputs(Scorer.of(model, "cpu"), [encode(r.seq) for r in motif_records(200, seed=7)
                                                     + shifted(200, seed=7)])
    composition = novelty_of(model).scores(model.network, batch)["kmer"]  # the part of `combined` that sees it
    assert auroc(composition[:200], composition[200:]) > 0.97


def test_every_method_scores_and_the_card_block_round_trips(motif_paramixer):
    stored = novelty_of(motif_paramixer)
    again = Novelty.from_card(json.loads(json.dumps(stored.as_card())))
    assert set(stored.thresholds) == set(METHODS)
    assert again.threshold == pytest.approx(stored.threshold, rel=1e-5)
    with pytest.raises(GenomixError, match="corrupt novelty block"):
        Novelty.from_card(stored.as_card() | {"markov": [[0.0, 1.0]]})


def test_per_class_gaussians_give_the_mahalanobis_distance_under_each_classes_own_covariance():
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (50, 3)), rng.normal(5, [0.2, 1, 3], (60, 3))]
    y = np.r_[np.zeros(50, int), np.ones(60, int)]
    queries = rng.normal(2, 2, (7, 3))
    dense = [[(q - x[y == c].mean(0)) @ np.linalg.inv(ledoit_wolf(x[y == c])[0]) @ (q - x[y == c].mean(0))
              for c in (0, 1)] for q in queries]
    fitted = Gaussian.fit_per_class(x, y, 2)
    np.testing.assert_allclose(fitted.distance(queries), np.min(dense, 1) / 3, rtol=1e-8)
    again = Gaussian.from_card(json.loads(json.dumps(fitted.as_card())))  # kept to 6 digits in the card
    np.testing.assert_allclose(again.distance(queries), fitted.distance(queries), rtol=1e-4)


def test_markov_is_what_the_own_composition_explains_beyond_the_best_chain():
    """Under chains that give every base 1/4, a uniform record gains nothing over its own composition (score 0)
    and a record of G and C only loses log 2 a base to it: its own composition gives each base 1/2."""
    uniform = np.full((2, 4 ** MARKOV_K[VERSION]), np.log(0.25))
    novelty = Novelty("combined", 0.99, Gaussian(np.eye(64), np.zeros((1, 64))), uniform, None)
    records = [encode("ACGT" * 50), encode("GC" * 100)]
    scores = novelty._distances(Inputs(np.zeros((2, 2)), np.zeros((2, 4)), records))
    np.testing.assert_allclose(scores["markov"], [0.0, np.log(2)], atol=1e-12)


def test_a_record_without_composition_is_judged_by_the_scores_it_has(motif_paramixer):
    """All N, or shorter than the chains' k-mers: no `markov` (nor `kmer` for all N), and `combined` is the mean of
    the standardised scores that are defined; an empty record has none."""
    stored = novelty_of(motif_paramixer)
    tokens = [encode("N" * 50), encode("ACGT"), encode("")]
    scores = stored.scores(motif_paramixer.network, novelty_inputs(Scorer.of(motif_paramixer, "cpu"), tokens))
    assert np.isnan(scores["markov"]).all() and np.isnan(scores["kmer"][[0, 2]]).all()
    assert np.isfinite(scores["kmer"][1])
    defined = [[(scores[n][i] - stored.spread[n][0]) / stored.spread[n][1] for n in COMBINED
                if np.isfinite(scores[n][i])] for i in (0, 1)]
    np.testing.assert_allclose(scores["combined"][:2], [np.mean(d) for d in defined])
    assert np.isnan(scores["combined"][2])


def test_combined_averages_the_standardised_scores_its_card_names_and_an_old_card_scores_as_it_did(motif_paramixer):
    stored = novelty_of(motif_paramixer)
    batch = novelty_inputs(Scorer.of(motif_paramixer, "cpu"),
                           [encode(r.seq) for r in motif_records(40, seed=5) + shifted(40, seed=5)])
    old_card = {k: v for k, v in stored.as_card().items() if k != "combined"}  # as written before it was kept
    old_card["spread"] = {k: v for k, v in old_card["spread"].items() if k in LEGACY_COMBINED}
    old = Novelty.from_card(old_card)
    for novelty, members in [(stored, COMBINED), (old, LEGACY_COMBINED)]:
        scores = novelty.scores(motif_paramixer.network, batch)
        spread = novelty.spread
        by_hand = np.mean([(scores[m] - spread[m][0]) / spread[m][1] for m in members], 0)
        np.testing.assert_allclose(scores["combined"], by_hand)
    assert old.combined == LEGACY_COMBINED != COMBINED
    assert not np.allclose(old.scores(motif_paramixer.network, batch)["combined"],
                           stored.scores(motif_paramixer.network, batch)["combined"])
    with pytest.raises(GenomixError, match="corrupt novelty block"):
        Novelty.from_card(stored.as_card() | {"combined": ["msp", "nearest-neighbour"]})


@pytest.mark.parametrize("known_recall", [0.8, 0.95])
def test_the_stored_threshold_keeps_the_chosen_share_of_validation_records_known(known_recall):
    val = motif_records(200, seed=3)
    model = fit(motif_records(300, seed=2), TrainSettings(arch="kmer", seed=1, device="cpu",
                                                           known_recall=known_recall), val_records=val)
    kept = (novelty(model, val) <= novelty_of(model).threshold).mean()
    assert model.card.novelty["known_recall"] == known_recall
    assert abs(kept - known_recall) <= 0.01


def test_known_recall_outside_zero_to_one_is_a_user_error():
    with pytest.raises(GenomixError, match="--known-recall"):
        TrainSettings(known_recall=1.0)


@pytest.fixture
def odd_fa(tmp_path: Path) -> Path:
    path = tmp_path / "odd.fa"
    path.write_text("".join(f">{r.id}\n{r.seq * 3}\n" for r in shifted(30, seed=1, gc=0.95)))
    return path


def test_reads_much_shorter_than_the_validation_records_get_a_notice_with_unknown(genomix_main, trained_model,
                                                                                  tmp_path):
    length = load_model(trained_model).card.novelty["length"]
    short = tmp_path / "short.fa"
    short.write_text("".join(f">r{i}\n{r.seq[: int(length) // 3]}\n" for i, r in enumerate(read_records(str(TEST_FA)))))
    notice = "the novelty threshold was set on records of about"
    assert notice in genomix_main("predict", trained_model, short, "--unknown", "--device", "cpu").stderr.decode()
    assert notice not in genomix_main("predict", trained_model, TEST_FA, "--unknown", "--device", "cpu").stderr.decode()
    assert notice not in genomix_main("predict", trained_model, short, "--device", "cpu").stderr.decode()


def test_predict_unknown_calls_labels_reports_and_splits_unknown_records(genomix_main, trained_model, odd_fa,
                                                                         tmp_path):
    out, report = tmp_path / "p.tsv", tmp_path / "report.tsv"
    result = genomix_main("predict", trained_model, TEST_FA, odd_fa, "-o", out, "--report", report, "--unknown",
                          "--classified-out", tmp_path / "by_#.fa", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert header[-1] == "novelty" and all(r[-1] for r in rows)
    odd = [r for r in rows if r[0].startswith("x")]
    known = [r for r in rows if not r[0].startswith("x")]
    assert sum(r[2] == "unknown" for r in odd) >= 0.9 * len(odd)
    assert sum(r[2] == "unknown" for r in known) <= 0.2 * len(known)
    counts = {line.split("\t")[0]: int(line.split("\t")[1]) for line in report.read_text().splitlines()[1:]}
    assert counts["unknown"] == sum(r[2] == "unknown" for r in rows) and "unclassified" in counts
    assert (tmp_path / "by_unknown.fa").read_text().count(">") == counts["unknown"]


def test_without_unknown_labels_stay_classes_and_info_shows_the_threshold(genomix_main, trained_model, odd_fa):
    result = genomix_main("predict", trained_model, odd_fa, "--device", "cpu")
    assert "unknown" not in {line.split("\t")[2] for line in result.stdout.decode().splitlines()[1:]}
    info = genomix_main("info", trained_model).stdout.decode() + genomix_main("info", trained_model).stderr.decode()
    assert "novelty    combined score, threshold" in info


def test_evaluate_unknown_gives_open_set_metrics(genomix_main, trained_model, odd_fa, tmp_path):
    out = tmp_path / "m.json"
    result = genomix_main("evaluate", trained_model, TEST_FA, "--unknown", odd_fa, "-o", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    open_set = json.loads(out.read_text())["open_set"]
    assert open_set["unknown_records"] == 30 and open_set["auroc"] > 0.9
    assert {"fpr_at_95", "unknown_called_known", "known_accuracy_kept"} <= set(open_set)


@pytest.mark.parametrize("name", ["paramixer", "kmer"])
def test_an_old_model_file_predicts_with_an_empty_novelty_column_and_a_notice(name, genomix_main, tmp_path):
    out = tmp_path / "p.tsv"
    result = genomix_main("predict", FIXTURES / f"v0_{name}.gmx", TEST_FA, "-o", out, "--device", "cpu")
    assert result.returncode == 0
    assert "no novelty statistics" in " ".join(result.stderr.decode().split())
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0][-1] == "novelty" and {r[-1] for r in rows[1:]} == {""}
    refused = genomix_main("predict", FIXTURES / f"v0_{name}.gmx", TEST_FA, "--unknown", "--device", "cpu")
    assert refused.returncode == 2 and "novelty statistics" in refused.stderr.decode()


def test_scan_unknown_counts_unknown_windows_and_calls_none_of_them(genomix_main, trained_model, tmp_path):
    known = "".join(r.seq for r in motif_records(40, seed=4))  # uniform composition, like the species sample
    odd = "".join(r.seq for r in shifted(40, seed=4, gc=0.97))
    genome = tmp_path / "g.fa"
    genome.write_text(f">known\n{known}\n>odd\n{odd}\n")
    report, bed = tmp_path / "r.tsv", tmp_path / "calls.bed"
    result = genomix_main("scan", trained_model, "--reference", genome, "-o", tmp_path / "t.bedgraph", "--step",
                          "64", "--report", report, "--bed-out", bed, "--unknown", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    counts = {line.split("\t")[0]: int(line.split("\t")[1]) for line in report.read_text().splitlines()[1:]}
    assert counts["unknown"] >= 36  # of the 40 windows of `odd`
    assert sum(counts.values()) == len((tmp_path / "t.bedgraph").read_text().splitlines()[1:])  # every window
    assert not [line for line in bed.read_text().splitlines() if line.startswith("odd")]



def test_the_profile_of_a_chromosome_is_counted_in_blocks_as_a_whole_array_would_be():
    """A 4 Mb array's k-mer profile, both strands, allocates no chromosome-long int64 codes (32 MB here, 8 bytes a
    base) nor a reverse-complement copy, and counts every k-mer once, across the blocks' seams too."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 6, 4_000_000).astype(np.uint8)
    tracemalloc.start()
    try:
        profile = kmer_profiles([tokens], 3, both_strands=True)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(tokens)

    def whole(t: np.ndarray) -> np.ndarray:
        bases, n = t.astype(np.int64) - 1, len(t) - 2
        codes = sum(bases[i : i + n].clip(max=3) * 4 ** (2 - i) for i in range(3))
        counts = np.bincount(codes[np.all([bases[i : i + n] < 4 for i in range(3)], 0)], minlength=64)
        return counts / counts.sum()

    np.testing.assert_allclose(profile, (whole(tokens) + whole(reverse_complement(tokens))) / 2, rtol=1e-12)
