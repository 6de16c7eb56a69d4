"""`genomix.Classifier` in scikit-learn's machinery: cross-validation, grid search, pipelines, cloning, the model
file shared with the command line, and the estimator checks that apply to sequences.

The models are tiny (dim 8-16, one epoch, the network alone) and the data a fixed 150-record share of the species
sample, so every fit takes about a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import CLASSES, TEST_FA, TRAIN_FA
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks

import genomix
from genomix.errors import GenomixError
from genomix.io.reading import read_records

TINY = dict(dim=16, hidden=16, layers=1, epochs=1, max_len=64, composition=False, device="cpu", val_fraction=0.0)


def sample(path, n: int) -> tuple[list[str], np.ndarray]:
    """`n` records of a sample file, taken evenly over it (it holds one class, then the other)."""
    records = list(read_records(path))
    chosen = records[:: len(records) // n][:n]
    return [r.seq for r in chosen], np.array([r.label for r in chosen])


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray]:
    return sample(TRAIN_FA, 150)


@pytest.fixture(scope="module")
def fitted(data) -> genomix.Classifier:
    return genomix.Classifier(**TINY).fit(*data)


def test_cross_val_score_over_three_folds(data):
    scores = cross_val_score(genomix.Classifier(**TINY), *data, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    roc = cross_val_score(genomix.Classifier(**TINY), *data, cv=3, scoring="roc_auc")  # reads decision_function
    assert roc.shape == (3,) and np.all((roc >= 0) & (roc <= 1))


def test_grid_search_over_one_option_refits_the_best(data):
    search = GridSearchCV(genomix.Classifier(**{**TINY, "dim": 8}), {"dim": [8, 16]}, cv=2).fit(*data)
    assert search.best_params_["dim"] in (8, 16)
    assert search.best_estimator_.model_.network.config["dim"] == search.best_params_["dim"]


def test_pipeline_and_clone(data, fitted):
    pipeline = Pipeline([("model", genomix.Classifier(**TINY))]).fit(*data)
    assert set(pipeline.predict(data[0][:5])) <= set(CLASSES)
    stacked = Pipeline([("embed", genomix.Classifier(**TINY)), ("head", LogisticRegression())]).fit(*data)
    assert stacked.named_steps["head"].coef_.shape == (1, 16)  # trained on the 16-wide embeddings
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")
    copy.set_params(dim=8)
    assert copy.dim == 8 and fitted.dim == 16


def test_predictions_are_the_command_lines(fitted, tmp_path, genomix_main):
    """The estimator and `genomix predict` score with the same library code, so a saved model gives the same
    probabilities both ways; `load` gives back a fitted estimator."""
    path = tmp_path / "m.gmx"
    fitted.save(path)
    test_seqs, test_labels = sample(TEST_FA, 20)
    proba = fitted.predict_proba(test_seqs)
    assert proba.shape == (20, 2) and np.allclose(proba.sum(1), 1)
    assert list(fitted.classes_) == CLASSES
    (tmp_path / "t.fa").write_text("".join(f">seq{i}\n{s}\n" for i, s in enumerate(test_seqs)))
    assert genomix_main("predict", path, tmp_path / "t.fa", "-o", tmp_path / "p.tsv").returncode == 0
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert np.allclose(table[[f"p_{c}" for c in CLASSES]].to_numpy(), proba, atol=1e-5)
    loaded = genomix.Classifier.load(path, device="cpu")
    assert np.allclose(loaded.predict_proba(test_seqs), proba)
    assert list(loaded.predict(test_seqs)) == list(table["label"])
    assert fitted.score(test_seqs, test_labels) == np.mean(fitted.predict(test_seqs) == test_labels)
    odds = fitted.decision_function(test_seqs)
    assert np.allclose(odds, np.log(proba[:, 1] / proba[:, 0]))


def test_inputs_of_every_kind_give_the_same_scores(fitted):
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    seqs = ["ACGTACGTTTGACAAC" * 3, "gggcccatn" * 5]
    expected = fitted.predict_proba(seqs)
    for X in (np.array(seqs), np.array(seqs)[:, None], pd.Series(seqs), pd.DataFrame({"seq": seqs}),
              [SeqRecord(Seq(s), id=f"r{i}") for i, s in enumerate(seqs)]):
        assert np.allclose(fitted.predict_proba(X), expected)
    assert fitted.transform(seqs).shape == (2, fitted.model_.network.embed_dim)
    with pytest.raises(GenomixError, match="2 columns"):
        fitted.predict(pd.DataFrame({"a": seqs, "b": seqs}))
    with pytest.raises(GenomixError, match="invalid character"):
        fitted.predict(["ACGZ"])


def test_labels_keep_their_type(data):
    seqs, labels = data
    numbers = (labels == CLASSES[1]).astype(int)
    model = genomix.Classifier(**TINY).fit(seqs, numbers)
    assert list(model.classes_) == [0, 1] and set(model.predict(seqs[:10])) <= {0, 1}
    with pytest.raises(GenomixError, match="dim given both"):
        genomix.Classifier(**TINY, options={"dim": 8}).fit(seqs, labels)


# scikit-learn's checks that do not need numeric X. The others fit on random float matrices (make_blobs),
# which are not sequences: this estimator refuses them with a GenomixError, as it should, so those checks
# (check_classifiers_train, check_fit2d_*, check_estimators_dtypes, check_n_features_in, sample weights, NaN/inf,
# sparse input, pandas column names...) do not apply.
SEQUENCE_CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
                   "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
                   "check_estimator_repr", "check_estimators_unfitted",
                   "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
                   "check_valid_tag_types", "check_estimator_tags_renamed"]


@pytest.mark.parametrize("name", SEQUENCE_CHECKS)
def test_scikit_learn_checks_that_apply(name):
    check = getattr(estimator_checks, name, None)
    if check is None:
        pytest.skip(f"this scikit-learn has no {name}")
    check(name, genomix.Classifier(**TINY))


def test_estimator_checks_refuse_numbers_with_a_user_error(fitted):
    with pytest.raises(GenomixError, match="expected a string or a SeqRecord, got float"):
        fitted.predict(np.zeros((3, 1)))
