"""Training, calibration and baselines: checked against known answers and held-out data."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import accuracy, motif_records
from safetensors.torch import save_file

import genomix.fitting.loop as loop
from genomix.applying.calibration import apply_temperature, expected_calibration_error, fit_temperature
from genomix.applying.scoring import predict_records
from genomix.errors import GenomixError
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import Record
from genomix.models import create_model
from genomix.models.kmer import num_features
from genomix.models.modelfile import METADATA_KEY, TOKENIZER, TrainedModel, describe, load_model, read_card, save_model
from genomix.sequences.batching import pad
from genomix.sequences.tokens import encode, kmer_codes

TINY = dict(batch_size=16, device="cpu", options=dict(dim=16, hidden=32, layers=1))


@pytest.mark.parametrize("model", ["motif_paramixer", "motif_kmer"])
def test_trained_model_beats_chance_on_held_out_data(model, request):
    # Paramixer without its k-mer term: the network itself must learn the motif.
    trained = request.getfixturevalue(model)
    # Chance is 0.5; on 200 held-out sequences its standard deviation is 0.035, so 0.7 is far beyond luck.
    assert accuracy(trained, motif_records(200, seed=99)) > 0.7


def test_kmer_features_are_known_frequencies():
    model = create_model("kmer", 2, max_len=16, k_max=2)
    tokens = torch.from_numpy(encode("ACGTN").astype(np.int64))[None]
    features = model.features(tokens, torch.tensor([5]))[0]
    np.testing.assert_allclose(features[:4], [0.25] * 4)  # A C G T once each; N skipped
    pairs = features[4:].reshape(4, 4)  # row: first base, column: second base
    assert pairs[0, 1] == pairs[1, 2] == pairs[2, 3] == pytest.approx(1 / 3)  # AC, CG, GT; TN is skipped
    assert float(pairs.sum()) == pytest.approx(1.0)


def test_kmer_regression_keeps_the_validation_choice_and_zero_weights_beyond_its_k():
    from sklearn.linear_model import LogisticRegression

    (train_tokens, train_y), (val_tokens, val_y) = [
        ([encode(r.seq) for r in records], np.array([int(r.label == "rich") for r in records]))
        for records in (gc_records(120, seed=3), gc_records(60, seed=4))]
    model = create_model("kmer", 2, max_len=64)
    chosen = model.fit_direct((train_tokens, train_y), (val_tokens, val_y), seed=0)
    assert chosen["k"] == 4  # the signal is GC content: longer k-mers only add features to overfit
    used = num_features(chosen["k"])
    assert not model.head.weight[:, used:].any()  # k-mers longer than the chosen k carry no weight
    # The stored head reproduces scikit-learn's regression on the same standardised features.
    mean, scale = model.mean.numpy(), model.scale.numpy()
    reference = LogisticRegression(C=chosen["C"], max_iter=2000, random_state=0)
    reference.fit(((model.feature_matrix(train_tokens) - mean) / scale)[:, :used], train_y)
    ours = torch.softmax(model(*pad(val_tokens)), -1).detach().numpy()
    val_features = (model.feature_matrix(val_tokens) - mean) / scale
    np.testing.assert_allclose(ours, reference.predict_proba(val_features[:, :used]), atol=1e-4)


def gc_records(n: int, seed: int, length: int = 64) -> list[Record]:
    """Class 'rich' draws G and C with probability 0.65, class 'poor' with 0.35: composition is the signal."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        gc = 0.65 if i % 2 else 0.35
        seq = "".join(rng.choice(list("ACGT"), length, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]))
        records.append(Record(f"g{i}", seq, "rich" if i % 2 else "poor"))
    return records


def test_composition_blend_is_the_weighted_sum_of_log_probabilities():
    torch.manual_seed(0)
    model = create_model("paramixer-cdil", 2, max_len=32, dim=16, hidden=16, layers=1, composition=True).eval()
    tokens, lengths = pad([encode("ACGTACGTTTGACA"), encode("GGGCCCAT")])
    network_only = model(tokens, lengths)  # weight 0: the network's own logits, the k-mer term unused
    torch.nn.init.normal_(model.composition.head.weight)
    model.set_composition_weight(0.3)
    expected = 0.7 * network_only.log_softmax(-1) + 0.3 * model.composition(tokens, lengths).log_softmax(-1)
    torch.testing.assert_close(model(tokens, lengths), expected)


def test_composition_weight_is_chosen_on_validation_and_lifts_a_weak_network(tmp_path):
    """On a GC-content task one epoch leaves a tiny network weak while the k-mer regression is near perfect:
    the weight must lean to the regression, and the blend must carry its accuracy to held-out data."""
    settings = TrainSettings(epochs=1, seed=2, **TINY)
    records, held_out = gc_records(300, seed=6), gc_records(200, seed=7)
    alone = fit(records, replace(settings, options=settings.options | {"composition": False}))
    blended = fit(records, settings)
    assert alone.card.training.composition_weight is None and alone.network.composition is None
    assert blended.card.training.composition_weight >= 0.5
    assert accuracy(blended, held_out) > max(0.9, accuracy(alone, held_out))
    save_model(blended, tmp_path / "m.gmx")
    assert float(load_model(tmp_path / "m.gmx").network.composition_weight) == \
        blended.card.training.composition_weight


def test_kmer_codes_known_answers_and_embedding_rows():
    tokens = torch.from_numpy(encode("ACGTNAC").astype(np.int64))[None].repeat(2, 1)
    lengths = torch.tensor([7, 3])
    codes, valid = kmer_codes(tokens, lengths, 2)
    assert codes[0, :3].tolist() == [1, 6, 11]  # AC = 0*4+1, CG = 1*4+2, GT = 2*4+3
    assert valid.tolist() == [[True, True, True, False, False, True], [True, True, False, False, False, False]]
    # Each position of a model with kmer=2 adds the embedding row of the 2-mer starting there, none past N or
    # the end: zeroing every other input shows exactly those rows.
    model = create_model("paramixer-cdil", 2, max_len=16, dim=4, hidden=8, kmer_embedding=2, stem_kernel=0,
                         pos_embedding=False).eval()
    model.token_embed.weight.data.zero_()
    x = model.embed_tokens(tokens[:1], lengths[:1], torch.ones(1, 7, dtype=torch.bool))[0]
    table = model.kmer_embed.weight
    torch.testing.assert_close(x, torch.stack([table[1], table[6], table[11], 0 * table[0], 0 * table[0], table[1],
                                               0 * table[0]]))


def test_temperature_recovers_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (20000, 3))
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true_probs])
    overconfident = torch.log_softmax(torch.from_numpy(3 * logits), 1).numpy()
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.08)
    calibrated = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(y, calibrated) < 0.5 * expected_calibration_error(y, np.exp(overconfident))


def test_expected_calibration_error_known_answers():
    probs = np.tile([0.2, 0.8], (10, 1))
    assert expected_calibration_error(np.array([1] * 8 + [0] * 2), probs) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1] * 5 + [0] * 5), probs) == pytest.approx(0.3)


def test_single_class_and_unlabelled_records_are_user_errors():
    with pytest.raises(GenomixError, match="at least two classes"):
        fit([Record("a", "ACGT", "x"), Record("b", "ACGA", "x")], TrainSettings(**TINY))
    with pytest.raises(GenomixError, match="record 'b' has no label"):
        fit([Record("a", "ACGT", "x"), Record("b", "ACGA", None)], TrainSettings(**TINY))
    with pytest.raises(GenomixError, match="model transformer has no option protocol"):
        TrainSettings(arch="transformer", options={"protocol": "chord"})


def test_resume_after_interruption_gives_the_same_model(tmp_path, monkeypatch):
    records = motif_records(120, seed=3)
    settings = TrainSettings(epochs=3, seed=5, **TINY)
    uninterrupted = fit(records, settings)

    checkpoint = tmp_path / "m.gmx.ckpt"
    real_save = loop.save_checkpoint

    def save_then_crash(*args):
        real_save(*args)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C right after epoch 1

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(records, settings, checkpoint=checkpoint)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = fit(records, settings, checkpoint=checkpoint, resume=True)

    assert resumed.card.training.epochs_run == 3
    for name, weight in uninterrupted.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], weight, msg=name)
    with pytest.raises(GenomixError, match="other settings"):
        fit(records, TrainSettings(epochs=4, seed=5, **TINY), checkpoint=checkpoint, resume=True)
    moved = fit(records, replace(settings, device="auto"), checkpoint=checkpoint, resume=True)
    assert moved.card.training.epochs_run == 3  # where a run runs is not what it computes: it resumes anywhere


def test_the_card_records_the_settings_as_the_run_used_them(tmp_path):
    """Options given as text (`--set dim=16`) are kept as parsed, and max_len and the strands as resolved."""
    settings = TrainSettings(epochs=1, batch_size=16, device="cpu", options={"dim": "16", "hidden": "32",
                                                                            "layers": "1", "composition": "no"})
    assert settings.options == {"dim": 16, "hidden": 32, "layers": 1, "composition": False}
    trained = fit(motif_records(60, seed=8, length=48), settings)
    recorded = trained.card.training.settings
    assert recorded["options"] == settings.options and recorded["max_len"] == 48 == trained.max_len
    assert recorded["rc_augment"] is trained.card.both_strands
    assert settings.max_len is None and settings.rc_augment is None  # the settings stay as given
    save_model(trained, tmp_path / "m.gmx")
    card = read_card(tmp_path / "m.gmx")
    assert card.training.settings == recorded and "trained on 54 sequences" in describe(card)


def write_format_1(model: TrainedModel, path, dropped: tuple[str, ...]) -> None:
    """The model file as genomix wrote it before the typed header: model `paramixer` with a `protocol` option,
    the k-mer embedding's k as `kmer`, the token embedding as `embed`, and without the options in `dropped`."""
    config = model.network.config | {"protocol": "cdil", "kmer": model.network.config["kmer_embedding"]}
    config = {k: v for k, v in config.items() if k not in (*dropped, "kmer_embedding")}
    header = {"format": "genomix-model", "format_version": 1, "genomix_version": "0.1.0", "tokenizer": TOKENIZER,
              "model": "paramixer", "config": config, "classes": model.classes, "positive_class": model.classes[1],
              "temperature": None, "training": None, "validation": None}
    tensors = {("embed.weight" if k == "token_embed.weight" else k): v.contiguous()
               for k, v in model.network.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(header)})


def test_model_file_from_before_kmer_factor_norm_and_factor_mlp_still_loads(tmp_path):
    """A file written before those options existed has none of their keys; it must rebuild the model it was."""
    records = motif_records(40, seed=5)
    added = ("kmer", "factor_norm", "factor_mlp")
    network = create_model("paramixer-cdil", 2, max_len=64, dim=16, hidden=32, layers=1, kmer_embedding=0,
                           factor_norm=False, factor_mlp="factor", composition=False)
    old = TrainedModel.of(network.eval(), ["motif", "plain"])
    write_format_1(old, tmp_path / "old.gmx", dropped=added)
    loaded = load_model(tmp_path / "old.gmx")
    assert loaded.network.kmer_embed is None and loaded.network.blocks[0].out_norm is None
    assert len(loaded.network.blocks[0].f) == 6  # one MLP per factor (M = 6 at 64 bases)
    before = [p.probs for p in predict_records(old, records[:5], device="cpu")]
    np.testing.assert_allclose([p.probs for p in predict_records(loaded, records[:5], device="cpu")], before, atol=1e-6)


def test_model_file_round_trip_keeps_predictions_and_temperature(tmp_path):
    records = motif_records(80, seed=4)
    trained = fit(records, TrainSettings(epochs=1, **TINY))
    save_model(trained, tmp_path / "m.gmx")
    loaded = load_model(tmp_path / "m.gmx")
    assert loaded.classes == trained.classes and loaded.temperature == trained.temperature
    before = [p.probs for p in predict_records(trained, records[:10], device="cpu")]
    after = [p.probs for p in predict_records(loaded, records[:10], device="cpu")]
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_a_training_step_whose_compilation_fails_runs_eager(monkeypatch):
    """On CUDA the step runs compiled as CUDA graphs; where that fails, the step (and the run) go on eager."""
    from genomix.fitting.loop import Step

    class Objective:
        def loss(self, model, batch):
            return model(batch), len(batch)

    def broken(batch):
        raise RuntimeError("the compiler says no")

    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    step = Step(torch.nn.Identity(), torch.device("cpu"))
    assert step.captured is None  # on the CPU the step is eager from the start
    step.captured = broken
    with pytest.warns(UserWarning, match="training continues eager: the compiler says no"):
        loss, count = step.loss(Objective(), torch.ones(3))
    assert loss.tolist() == [1.0, 1.0, 1.0] and count == 3 and step.captured is None
