"""bench/kraken2_side.py: a Kraken2 database of genomix's classes with a hand-made taxonomy; skipped where
kraken2 is not installed (Debian package kraken2), but for the skip itself."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import kraken2_side  # noqa: E402


def test_without_kraken2_it_says_why_and_returns_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert kraken2_side.build_database({"a": [tmp_path / "a.fa"]}, tmp_path / "db") is None
    assert kraken2_side.classify(tmp_path / "db", tmp_path / "reads.fa") is None
    assert "kraken2, kraken2-build not installed" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


@pytest.mark.skipif(shutil.which("kraken2-build") is None, reason="kraken2 is not installed")
def test_database_of_training_regions_calls_them_and_not_the_held_out_ones(tmp_path):
    rng = np.random.default_rng(0)
    genomes = {}
    for label in ("alpha", "beta"):
        seq = "".join(rng.choice(list("ACGT"), 20_000))
        path = tmp_path / f"{label}.fa"
        path.write_text(f">{label}_chr some description\n{seq}\n")
        genomes[label] = (path, seq)
    db = kraken2_side.build_database({c: [p] for c, (p, _) in genomes.items()}, tmp_path / "db", 0.2, threads=1)
    reads = tmp_path / "reads.fa"
    # 0.2 held out: the last 4,000 bases of each 20,000 are val and test
    reads.write_text("".join(f">{c}_{where}\n{seq[at : at + 150]}\n" for c, (_, seq) in genomes.items()
                             for where, at in (("train", 1000), ("heldout", 18_000))))
    result = kraken2_side.classify(db, reads)
    assert result["calls"] == {"alpha_train": "alpha", "alpha_heldout": None, "beta_train": "beta",
                               "beta_heldout": None}
    assert result["reads_per_s"] > 0
