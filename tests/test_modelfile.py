"""Model files: files written before the typed header load and predict as they did, and a header is checked
for type before any of it is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, TEST_FA
from safetensors import safe_open
from safetensors.torch import save_file

from genomix.applying.predicting import predict
from genomix.errors import GenomixError
from genomix.io.sources import RecordSource
from genomix.models.modelfile import METADATA_KEY, load_model, read_card, read_header, save_model

FIXTURES = ROOT / "tests" / "fixtures"


def tsv_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", ["paramixer", "kmer"])
def test_a_model_file_from_before_the_typed_header_predicts_as_it_did(name, tmp_path):
    path = FIXTURES / f"v0_{name}.gmx"
    assert read_header(path)["format_version"] == 1
    out = tmp_path / "p.tsv"
    predict(path, RecordSource([str(TEST_FA)]), out, device="cpu")
    expected, got = tsv_rows(FIXTURES / f"v0_{name}.predictions.tsv"), tsv_rows(out)
    assert [r[:3] for r in got] == [r[:3] for r in expected]  # ids, lengths, labels
    assert got[0][-1] == "novelty" and {r[-1] for r in got[1:]} == {""}  # no novelty statistics: an empty column
    got = [r[:-1] for r in got]
    np.testing.assert_allclose(np.array([r[3:] for r in got[1:]], float),
                               np.array([r[3:] for r in expected[1:]], float), atol=2e-6)


def test_a_model_file_with_the_first_novelty_block_scores_and_calls_as_it_did(tmp_path):
    """Its `kmer` (one shared covariance) and `markov` (typicality under third-order chains) are not today's."""
    path = FIXTURES / "v1_novelty.gmx"
    assert "version" not in load_model(path).card.novelty
    out = tmp_path / "p.tsv"
    predict(path, RecordSource([str(TEST_FA)]), out, device="cpu", unknown=True)
    expected, got = tsv_rows(FIXTURES / "v1_novelty.predictions.tsv"), tsv_rows(out)
    assert [r[:3] for r in got] == [r[:3] for r in expected]  # ids, lengths, labels (unknown included)
    np.testing.assert_allclose(np.array([r[3:] for r in got[1:]], float),
                               np.array([r[3:] for r in expected[1:]], float), atol=2e-6)


def test_an_old_file_is_read_into_todays_card_and_written_back_in_todays_format(tmp_path):
    old = load_model(FIXTURES / "v0_paramixer.gmx")
    assert old.network.name == "paramixer-cdil"  # was `paramixer` with the option protocol=cdil
    assert old.both_strands  # format 1 had to infer it from the training setting rc_augment
    assert old.positive_class == "escherichia_coli" and old.positive_index == 1
    assert old.card.training.records == 540 and old.card.training.inputs == ["data_samples/species_train.fa"]
    assert "kmer_embedding" in old.network.config and "protocol" not in old.network.config
    save_model(old, tmp_path / "new.gmx")
    header = read_header(tmp_path / "new.gmx")
    assert header["format_version"] == 2 and header["model"] == "paramixer-cdil" and header["both_strands"] is True
    again = load_model(tmp_path / "new.gmx")
    for key, tensor in old.network.state_dict().items():
        torch.testing.assert_close(again.network.state_dict()[key], tensor, msg=key)


def rewritten(tmp_path: Path, change: dict) -> Path:
    """The paramixer fixture with its header changed (None values delete the key)."""
    source = FIXTURES / "v0_paramixer.gmx"
    header = read_header(source) | change
    header = {k: v for k, v in header.items() if v is not None or k not in change}
    with safe_open(str(source), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    path = tmp_path / "changed.gmx"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(header)})
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"classes": "ab"}, "classes is str"),
    ({"classes": ["only"]}, "two or more"),
    ({"temperature": "hot"}, "temperature is str"),
    ({"training": [1, 2]}, "training is list"),
    ({"model": None}, "no model"),
    ({"config": None}, "no config"),
    ({"format_version": "2"}, "format_version '2'"),
    ({"model": "bert"}, "unknown model 'bert'"),
    ({"config": {"max_len": 64, "dim": "wide"}}, "option dim expects int"),
    ({"positive_class": "plasmid"}, "positive class 'plasmid'"),
])
def test_a_header_of_the_wrong_type_or_content_is_a_one_line_error(tmp_path, change, message):
    with pytest.raises(GenomixError, match=message) as caught:
        load_model(rewritten(tmp_path, change))
    assert "\n" not in str(caught.value)


def test_read_card_needs_no_weights_and_keeps_the_validation_report():
    card = read_card(FIXTURES / "v0_kmer.gmx")
    assert card.model == "kmer" and card.config == {"max_len": 64, "k_max": 6}
    assert card.validation["n"] == 60 and card.training.composition_weight is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t["head.bias"].fill_(float("nan")), "tensor head.bias holds NaN or infinite values"),
    (lambda t: t.__setitem__("head.bias", t["head.bias"].double()), "tensor head.bias is torch.float64"),
    (lambda t: t.__setitem__("head.bias", torch.zeros(10**6)), "tensor head.bias has shape \\[1000000\\], the config"),
    (lambda t: t.pop("head.bias"), "tensors missing: \\['head.bias'\\]"),
])
def test_tensors_are_checked_for_shape_dtype_and_finite_values(tmp_path, change, message):
    source = FIXTURES / "v0_paramixer.gmx"
    with safe_open(str(source), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    change(tensors)
    path = tmp_path / "bad.gmx"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(read_header(source))})
    with pytest.raises(GenomixError, match=message):
        load_model(path)


def test_the_positive_class_follows_the_names_where_they_say_which_is_negative():
    from genomix.sequences.dataset import positive_class

    assert positive_class(["enhancer", "non_enhancer"]) == "enhancer"
    assert positive_class(["background", "promoter"]) == "promoter"
    assert positive_class(["bsub", "ecoli"]) == "ecoli"  # no hint in the names: the second in sorted order
    assert positive_class(["a", "b", "c"]) is None
    assert positive_class(["enhancer", "non_enhancer"], "non_enhancer") == "non_enhancer"
    with pytest.raises(GenomixError, match="--positive-class x: not a class"):
        positive_class(["a", "b"], "x")


def test_class_names_of_a_model_file_are_checked_as_input_names_are(tmp_path):
    """A tab or newline in a class name would break every TSV row that names the class."""
    import torch

    from genomix.errors import GenomixError
    from genomix.models import create_model
    from genomix.models.modelfile import TrainedModel, load_model, save_model

    torch.manual_seed(0)
    save_model(TrainedModel.of(create_model("kmer", 2, 32), ["good", "bad\tname"]), tmp_path / "m.gmx")
    with pytest.raises(GenomixError, match="corrupt model file: class 'bad\\\\tname' contains a tab or line break"):
        load_model(tmp_path / "m.gmx")
