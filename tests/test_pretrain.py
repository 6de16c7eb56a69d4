"""Masked-base pretraining (`genomix pretrain`) and fine-tuning from its backbone (`genomix train --init`)."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import BACKBONE

from genomix.errors import GenomixError
from genomix.fitting import loop, training
from genomix.fitting.pretraining import (
    IGNORED,
    MaskedBaseModel,
    PretrainSettings,
    fit_backbone,
    mask_bases,
    neural_models,
)
from genomix.fitting.training import TrainSettings, fit, initialise_from_backbone
from genomix.io.reading import Record, read_inputs
from genomix.models import create_model
from genomix.models.modelfile import load_model, read_card, read_header, save_model
from genomix.sequences.tokens import MASK_TOKEN, encode, kmer_codes

FINE_TUNE = ["--epochs", "1", "--device", "cpu", "--no-composition"]
SMALL = dict(options={"dim": 32, "hidden": 32, "layers": 1}, max_len=128, device="cpu")


def held_out_masked_loss(network: torch.nn.Module, records: list[Record], seed: int = 7) -> float:
    """Mean cross-entropy (nats) of the true base at 15% hidden positions of each record's first 128 bases."""
    rng = np.random.default_rng(seed)
    masked = [mask_bases(encode(r.seq[:128]), 0.15, rng, hide_all=True) for r in records]
    inputs = torch.from_numpy(np.stack([x for x, _ in masked]).astype(np.int64))
    targets = torch.from_numpy(np.stack([y for _, y in masked]))
    with torch.no_grad():
        logits = network(inputs, torch.full((len(records),), 128))
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORED))


def test_pretraining_lowers_the_held_out_masked_loss_below_a_uniform_guess(backbone, test_fa):
    """Recomputed from the written file on the held-out sequences, against the same network untrained."""
    records = list(read_inputs([str(test_fa)]))
    trained = MaskedBaseModel(load_model(backbone, kinds=("backbone",)).network).eval()
    torch.manual_seed(0)
    untrained = MaskedBaseModel(create_model("paramixer-cdil", 4, 128, dim=32, hidden=32, layers=1,
                                             composition=False)).eval()
    loss, before = held_out_masked_loss(trained, records), held_out_masked_loss(untrained, records)
    assert loss < 1.39 and loss < before - 0.01, (loss, before)
    card = read_card(backbone)
    assert card.kind == "backbone" and card.classes == ["A", "C", "G", "T"] and card.config["composition"] is False
    assert card.validation["masked_loss"] < card.validation["frequency_loss"] < math.log(4)  # more than composition
    assert card.training.history[-1]["val_masked_loss"] < card.training.history[0]["val_masked_loss"]
    assert read_header(backbone)["format_version"] == 3  # genomix from before backbones refuses the file


def test_a_masked_base_is_invisible_to_the_network():
    """The prediction at a hidden position is the same whatever the true base there (k-mer embedding and stem
    included); the same network does see a base it is shown, so the test would catch a leak."""
    rng = np.random.default_rng(3)
    tokens = encode("".join(rng.choice(list("ACGT"), 96)))
    torch.manual_seed(0)
    network = MaskedBaseModel(create_model("paramixer-cdil", 4, 128, dim=16, hidden=16, layers=1, dropout=0.0,
                                           composition=False)).eval()
    inputs, targets = mask_bases(tokens, 0.15, np.random.default_rng(1), hide_all=True)
    at = int(np.flatnonzero(targets != IGNORED)[len(targets) // 20])
    codes, valid = kmer_codes(torch.from_numpy(inputs.astype(np.int64))[None], torch.tensor([96]), 6)
    assert not valid[0, max(0, at - 5) : at + 1].any()  # no 6-mer that covers the hidden base is embedded

    def logits_at(true_base: int, hide: bool) -> torch.Tensor:
        variant = tokens.copy()
        variant[at] = true_base
        shown, _ = mask_bases(variant, 0.15, np.random.default_rng(1), hide_all=True)
        if not hide:
            shown[at] = true_base
        with torch.no_grad():
            return network(torch.from_numpy(shown.astype(np.int64))[None], torch.tensor([96]))[0, at]

    hidden = [logits_at(b, hide=True) for b in (1, 2, 3, 4)]
    shown = [logits_at(b, hide=False) for b in (1, 2, 3, 4)]
    assert all(torch.equal(hidden[0], h) for h in hidden[1:])
    assert not any(torch.allclose(shown[0], s) for s in shown[1:])


def test_masking_follows_bert_shares_and_never_targets_n():
    tokens = np.random.default_rng(5).integers(1, 6, 200_000).astype(np.uint8)  # A, C, G, T and N
    inputs, targets = mask_bases(tokens, 0.15, np.random.default_rng(0))
    bases = tokens != MASK_TOKEN
    chosen = targets != IGNORED
    assert not (chosen & ~bases).any() and (targets[chosen] == tokens[chosen] - 1).all()
    assert chosen.sum() / bases.sum() == pytest.approx(0.15, abs=0.005)
    hidden, kept = inputs[chosen] == MASK_TOKEN, inputs[chosen] == tokens[chosen]
    assert hidden.mean() == pytest.approx(0.8, abs=0.01)
    assert kept.mean() == pytest.approx(0.1 + 0.1 / 4, abs=0.01)  # left as it is, or drawn as itself at random
    assert (inputs[~chosen] == tokens[~chosen]).all()
    all_hidden, _ = mask_bases(tokens, 0.15, np.random.default_rng(0), hide_all=True)
    assert (all_hidden[chosen] == MASK_TOKEN).all()  # the same positions (same draws), every one hidden


def test_init_loads_every_backbone_weight_and_freezing_trains_only_the_head(backbone, invoke, train_fa, tmp_path,
                                                                           monkeypatch):
    monkeypatch.delattr(hashlib, "file_digest", raising=False)  # Python 3.10 has none: the digest must not need it
    weights = load_model(backbone, kinds=("backbone",)).network.state_dict()
    with pytest.raises(GenomixError, match="another architecture"):
        initialise_from_backbone(create_model("paramixer-cdil", 2, 128, dim=16, hidden=16, layers=1), backbone)
    network = create_model("paramixer-cdil", 2, 128, dim=32, hidden=32, layers=1)
    fresh_head = network.head.weight.clone()
    start = initialise_from_backbone(network, backbone)
    loaded = network.state_dict()
    for name, tensor in weights.items():  # all layers but the base-predicting head
        if not name.startswith("head."):
            assert torch.equal(loaded[name], tensor), name
    assert torch.equal(network.head.weight, fresh_head)
    assert start == {"file": "backbone.gmx", "sha256": hashlib.sha256(backbone.read_bytes()).hexdigest(),
                     "frozen": False}

    for freeze in (True, False):
        out = tmp_path / f"fine_{freeze}.gmx"
        result = invoke("train", train_fa, "-o", out, "--init", backbone, *FINE_TUNE, *["--freeze-backbone"] * freeze)
        assert result.exit_code == 0, (result.stderr, result.exception)
        tuned = load_model(out)
        assert tuned.card.training.initialised_from == start | {"frozen": freeze}
        assert read_header(out)["format_version"] == 3
        assert tuned.network.config | {"composition": True} == read_card(backbone).config | {"composition": True}
        same = [torch.equal(tuned.network.state_dict()[k], v) for k, v in weights.items() if not k.startswith("head.")]
        assert all(same) if freeze else not any(same)  # frozen: every backbone tensor kept; else all trained
    result = invoke("info", out)
    assert "initialised from the backbone backbone.gmx" in result.stdout


def test_classifiers_are_still_written_in_the_format_older_genomix_reads(trained_model):
    header = read_header(trained_model)
    assert header["format_version"] == 2 and header["kind"] == "classifier"
    assert "initialised_from" not in header["training"]


def test_info_shows_a_backbone_and_embed_reads_it(backbone, invoke, test_fa, tmp_path):
    result = invoke("info", backbone)
    assert result.exit_code == 0
    assert "kind       backbone" in result.stdout and "masked-base loss" in result.stdout
    result = invoke("embed", backbone, test_fa, "-o", tmp_path / "e.npy")
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "e.npy").shape == (200, 32)


def test_resume_after_interruption_continues_the_same_pretraining(tmp_path, monkeypatch, train_fa):
    records = list(read_inputs([str(train_fa)]))[:150]
    settings = PretrainSettings(epochs=3, seed=4, **SMALL)
    uninterrupted = fit_backbone(records, settings)
    checkpoint = tmp_path / "b.gmx.ckpt"
    real_save = loop.save_checkpoint

    def save_then_crash(*args):
        real_save(*args)
        raise KeyboardInterrupt  # as if the run were stopped right after epoch 1 (the checkpoint is atomic)

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit_backbone(records, settings, checkpoint=checkpoint)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = fit_backbone(records, settings, checkpoint=checkpoint, resume=True)
    assert resumed.card.training.epochs_run == 3
    assert [h["val_masked_loss"] for h in resumed.card.training.history] == \
        [h["val_masked_loss"] for h in uninterrupted.card.training.history]
    for name, weight in uninterrupted.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], weight, msg=name)


def test_genome_pretraining_draws_fresh_windows(tmp_path, invoke, train_fa):
    """Real DNA (the sample's records joined) as a two-contig genome; windows of 96 bases, new ones each epoch."""
    seqs = [r.seq for r in read_inputs([str(train_fa)])]
    genome = tmp_path / "g.fa"
    genome.write_text(f">one\n{''.join(seqs[:300])}\n>two\n{''.join(seqs[300:])}\n")
    out = tmp_path / "g.gmx"
    result = invoke("pretrain", "--genome", genome, "--genome-window", "96", "--windows-per-epoch", "64", "--epochs",
                    "2", "-o", out, *BACKBONE[:6], "--device", "cpu")
    assert result.exit_code == 0, (result.stderr, result.exception)
    card = read_card(out)
    assert card.config["max_len"] == 96 and card.training.genome_window == 96 and card.training.records == 64
    assert card.training.inputs == [str(genome)] and card.validation["masked_bases"] > 0


@pytest.fixture
def run(tmp_path, genomix_main, backbone, trained_model, train_fa):
    """`genomix ARGS` through main(): (exit code, stderr lines); nothing may be left in tmp_path/out."""
    (tmp_path / "out").mkdir()
    (tmp_path / "short.fa").write_text(">c\n" + "ACGT" * 50 + "\n")
    names = {"backbone": backbone, "model": trained_model, "train": train_fa, "out": tmp_path / "out",
             "short": tmp_path / "short.fa"}

    def call(args: list[str]) -> tuple[int, list[str]]:
        proc = genomix_main(*(a.format(**names) for a in args))
        assert not any((tmp_path / "out").iterdir())
        return proc.returncode, proc.stderr.decode().splitlines()

    return call


BAD = {
    "init_classifier": (["train", "{train}", "-o", "{out}/m.gmx", "--init", "{model}"], "a classifier, not a backbone"),
    "init_other_model": (["train", "{train}", "-o", "{out}/m.gmx", "--init", "{backbone}", "--arch", "cnn"],
                         "a paramixer-cdil backbone, not --arch cnn"),
    "init_other_dim": (["train", "{train}", "-o", "{out}/m.gmx", "--init", "{backbone}", "--dim", "64"],
                       "the backbone has dim 32; option dim 64 contradicts it"),
    "init_other_max_len": (["train", "{train}", "-o", "{out}/m.gmx", "--init", "{backbone}", "--max-len", "64"],
                           "the backbone has max_len 128; --max-len 64"),
    "freeze_without_init": (["train", "{train}", "-o", "{out}/m.gmx", "--freeze-backbone"], "needs --init"),
    "predict_backbone": (["predict", "{backbone}", "{train}"], "a backbone, not a classifier"),
    "pretrain_kmer": (["pretrain", "{train}", "-o", "{out}/b.gmx", "--arch", "kmer"], "'kmer' is not one of"),
    "pretrain_composition": (["pretrain", "{train}", "-o", "{out}/b.gmx", "--set", "composition=true"],
                             "no k-mer composition term"),
    "mask_fraction": (["pretrain", "{train}", "-o", "{out}/b.gmx", "--mask-fraction", "1"], "--mask-fraction"),
    "genome_too_short": (["pretrain", "--genome", "{short}", "--genome-window", "1024", "-o", "{out}/b.gmx"],
                         "no contig has 1,024 bases outside the held-out part"),
    "train_genome_too_short": (["train", "--genome", "a={short}", "--genome", "b={short}", "--genome-window", "1024",
                                "-o", "{out}/m.gmx"], "class 'a': no contig has 1024 bases outside the held-out part"),
    "genome_without_window": (["pretrain", "--genome", "{short}", "-o", "{out}/b.gmx"],
                              "--genome needs --genome-window"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_with_exit_code_2(run, case):
    args, fragment = BAD[case]
    code, lines = run(args)
    errors = [line for line in lines if line.startswith("genomix: error: ")]
    assert code == 2 and len(errors) == 1 and fragment in errors[0], lines
    assert not any("Traceback" in line for line in lines)


def test_two_processes_pretrain_one_backbone(tmp_path, train_fa, test_fa, backbone):
    """`torchrun --nproc-per-node 2` on the CPU (gloo): one file from rank 0; validation gathered from both ranks."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "genomix", "pretrain", train_fa, "--val", test_fa, "-o", tmp_path / "two.gmx",
                          *BACKBONE, "--epochs", "4", "--lr", "5e-3", "--device", "cpu"],
                         capture_output=True, env=env)
    assert ddp.returncode == 0, ddp.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.gmx"] and ddp.stderr.decode().count("wrote ") == 1
    card = read_card(tmp_path / "two.gmx")
    assert card.training.processes == 2 and card.validation["masked_loss"] < 1.39
    # The ranks validate disjoint halves of the same fixed masks, summed: as many bases as one process scores.
    assert card.validation["masked_bases"] == read_card(backbone).validation["masked_bases"]


@pytest.mark.parametrize("model", neural_models())
def test_every_neural_model_pretrains_and_fine_tunes(model, train_fa, tmp_path, monkeypatch):
    records = list(read_inputs([str(train_fa)]))[:64]
    settings = PretrainSettings(arch=model, epochs=1, options={"dim": 16, "hidden": 16, "layers": 1}, max_len=64,
                                device="cpu")
    backbone = fit_backbone(records, settings)
    assert backbone.card.kind == "backbone" and backbone.card.validation["masked_bases"] > 0
    save_model(backbone, tmp_path / "b.gmx")
    reads = []
    monkeypatch.setattr(training, "read_card", lambda path: reads.append(path) or read_card(path))
    settings = TrainSettings(epochs=1, init=str(tmp_path / "b.gmx"), device="cpu", options={"composition": False})
    tuned = fit(records, settings)
    assert tuned.network.name == model and tuned.card.training.initialised_from["file"] == "b.gmx"
    assert len(reads) == 1  # the backbone's architecture is read once, when the settings are made
    assert tuned.card.training.settings["max_len"] == 64 and settings.rc_augment is None
