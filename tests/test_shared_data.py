"""Real DNA from ../shared/data (skipped where it is absent): every set reads, and models learn real signal."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from genomix.applying.scoring import predict_records
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import read_inputs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = sorted(d.name for d in DATA.glob("*") if (d / "train.fa.gz").is_file()) if DATA.is_dir() else []
needs_data = pytest.mark.skipif(not SETS, reason="../shared/data is not available")
ROOT = Path(__file__).resolve().parents[1]


def held_out_mcc(model, records) -> float:
    records = list(records)
    predicted = [model.classes[p.probs.argmax()] for p in predict_records(model, records, device="cpu")]
    return float(matthews_corrcoef(np.array([r.label for r in records]), np.array(predicted)))


@needs_data
@pytest.mark.parametrize("name", SETS)
def test_every_labelled_set_reads_with_two_or_more_classes(name):
    records = list(read_inputs([str(DATA / name / "test.fa.gz")]))
    assert records and all(r.label for r in records)
    assert len({r.label for r in records}) >= 2
    assert all(set(r.seq) <= set("ACGTN") for r in records)


@needs_data
@pytest.mark.parametrize(("model", "options", "floor"),
                         [("kmer", {}, 0.6), ("paramixer-cdil", {"epochs": 4, "options": {"composition": False}}, 0.5)])
def test_models_learn_bsubtilis_promoters(model, options, floor):
    """MCC on the held-out test split: the published CNN reached about 0.86, chance is 0."""
    folder = DATA / "bsubtilis_promoters"
    trained = fit(read_inputs([str(folder / "train.fa.gz")]), TrainSettings(arch=model, device="cpu", **options))
    assert held_out_mcc(trained, read_inputs([str(folder / "test.fa.gz")])) > floor


@pytest.mark.skipif(not (DATA / "genomes").is_dir() or not (DATA / "mouse_tata_promoters").is_dir(),
                    reason="the sources of data_samples are not in ../shared/data")
def test_the_data_samples_are_what_their_script_cuts_from_the_shared_data(tmp_path):
    """The README demo's files are reproducible from their sources; the promoter sample is balanced."""
    subprocess.run([sys.executable, str(ROOT / "scripts/make_data_samples.py"), "--out", str(tmp_path), "--seed", "7"],
                   check=True, capture_output=True)
    for name in ("mouse_tata_train.fa", "mouse_tata_test.fa", "species_train.fa", "species_test.fa"):
        assert (tmp_path / name).read_bytes() == (ROOT / "data_samples" / name).read_bytes(), name
    labels = Counter(r.label for r in read_inputs([str(ROOT / "data_samples/mouse_tata_train.fa")]))
    assert labels == {"promoter": 600, "non_promoter": 600}
