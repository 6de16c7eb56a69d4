"""`genomix explain`: attributions that find a planted motif, ISM that equals predict on the mutated record, a
one-hot path that equals the token path, every output format read back, and bad inputs refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PLANTED, check_user_error
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

import genomix.sequences.tokens
from genomix.applying import motifs
from genomix.applying.effects import BASES
from genomix.applying.explaining import BaseGradients, attribute, read_npz
from genomix.applying.scoring import Scorer, log_odds, predict_records
from genomix.errors import GenomixError
from genomix.io.reading import Record, read_records
from genomix.models import create_model, list_models
from genomix.models.modelfile import load_model
from genomix.sequences.tokens import encode, one_hot

RC = {"A": "T", "C": "G", "G": "C", "T": "A"}


def motif_auroc(explanations, inside: np.ndarray) -> float:
    scores = np.abs(np.stack([e.scores for e in explanations]))
    return roc_auc_score(inside[: len(explanations)].ravel(), scores.ravel())


def test_ism_and_gradient_pick_out_the_planted_motif(planted_model):
    model, positives, inside = planted_model
    assert model.scores_both_strands(None)
    ism = attribute(model, positives[:40], "ism", device="cpu")
    gradient = attribute(model, positives, "gradient", device="cpu")
    assert motif_auroc(ism, inside) >= 0.95
    assert motif_auroc(gradient, inside) >= 0.9
    agreement = np.median([spearmanr(a.scores, b.scores)[0] for a, b in zip(ism, gradient)])
    assert agreement > 0.5
    assert np.allclose([e.log_odds for e in ism], [e.log_odds for e in gradient[:40]], atol=1e-5)


def test_integrated_gradients_pick_out_the_planted_motif(planted_model):
    model, positives, inside = planted_model
    assert motif_auroc(attribute(model, positives[:8], "ig", device="cpu"), inside) >= 0.9


@pytest.mark.parametrize("name", list_models())
def test_the_one_hot_path_equals_the_token_path(name):
    """Logits of one-hot input equal those of token ids (N and padding included, the k-mer embedding and the
    composition term blended in), and the look-up gradient at one-hot input equals the multilinear one."""
    torch.manual_seed(0)
    tokens = torch.randint(1, 6, (4, 40))
    lengths = torch.tensor([40, 31, 12, 40])
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    model = create_model(name, 3, 40, **({} if name == "kmer" else {"dim": 8, "hidden": 8, "layers": 1})).eval()
    kmer = model if name == "kmer" else model.composition
    torch.nn.init.normal_(kmer.head.weight)
    kmer.mean.normal_()
    kmer.scale.uniform_(0.5, 2)
    if name != "kmer":
        model.set_composition_weight(0.4)
    with torch.no_grad():
        expected = model(tokens, lengths)
    grads = []
    for lookup in (True, False):
        x = one_hot(tokens).requires_grad_(True)
        with pytest.MonkeyPatch.context() as patch:
            if not lookup:  # the k-mer weights of every k-mer, as between one-hot points
                patch.setattr(genomix.sequences.tokens, "_is_one_hot", lambda bases: False)
            logits = model(x, lengths)
        assert torch.allclose(logits, expected, atol=1e-5)
        logits[:, 1].sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5) and grads[0].abs().max() > 0


def test_ism_equals_predict_on_the_mutated_record(trained_model, test_fa):
    """Every substitution's effect is the log-odds change `predict` gives for the mutated record (a record of
    three windows; a two-strand model), and the scores are minus the mean of the three effects."""
    model = load_model(trained_model)
    seq = next(iter(read_records(test_fa))).seq[: int(model.max_len * 2.5)]
    (explained,) = attribute(model, [Record("r", seq)], "ism", start=60, end=72, device="cpu")
    assert explained.start == 60 and explained.seq == seq[60:72]

    def odds(seqs: list[str]) -> np.ndarray:
        rows = np.stack([p.log_probs for p in predict_records(model, [Record(str(i), s) for i, s in
                                                                      enumerate(seqs)], device="cpu")])
        return log_odds(rows, model.positive_index)

    own = odds([seq])[0]
    assert explained.log_odds == pytest.approx(own, abs=1e-6)
    for position in (60, 64, 71):  # 64: the first window and the flush last one overlap there
        mutants = [seq[:position] + b + seq[position + 1 :] for b in BASES]
        assert np.allclose(explained.substitutions[position - 60], odds(mutants) - own, atol=1e-5)
    others = explained.substitutions.sum(1) / 3
    assert np.allclose(explained.scores, -others, atol=1e-5)


def test_gradients_of_long_records_equal_those_of_short_batches(trained_model, test_fa):
    """A record of more windows than a batch takes the two-pass route; the gradients are the same, and the
    log-odds equal `predict`'s."""
    model = load_model(trained_model)
    seqs = [r.seq[:300] for r in list(read_records(test_fa))[:3]]
    bases = [one_hot(torch.from_numpy(encode(s))).numpy() for s in seqs]
    scorer = Scorer.of(model, "cpu")
    batched, odds = BaseGradients(scorer)(bases, np.ones(3, dtype=np.int64))
    split, _ = BaseGradients(replace(scorer, batch_size=3))(bases, np.ones(3, dtype=np.int64))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(batched, split))
    assert np.allclose(odds, log_odds(scorer.log_probs([encode(s) for s in seqs]), 1), atol=1e-5)


def test_explain_writes_every_format(invoke, trained_model, test_fa, tmp_path):
    npz, tsv = tmp_path / "a.npz", tmp_path / "a.tsv"
    for out in (npz, tsv):
        result = invoke("explain", trained_model, test_fa, "-o", out, "--method", "ism", "--start", "3", "--end",
                        "9", "--device", "cpu")
        assert result.exit_code == 0, (result.stderr, result.exception)
    explanations, classes = read_npz(npz)
    records = list(read_records(test_fa))
    assert [e.id for e in explanations] == [r.id for r in records] and classes == load_model(trained_model).classes
    assert all(e.seq == r.seq[3:9] and e.substitutions.shape == (6, 4) for e, r in zip(explanations, records))
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    assert len(rows) == 6 * len(records) and rows[0][:4] == [records[0].id, classes[1], "3", records[0].seq[3]]
    assert np.allclose([float(r[4]) for r in rows], np.concatenate([e.scores for e in explanations]), atol=1e-4)
    result = invoke("explain", trained_model, test_fa, "-o", tmp_path / "b.npz", "--plots", tmp_path / "logos",
                    "--top", "2", "--device", "cpu")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(list((tmp_path / "logos").glob("*.png"))) == 2


def test_explain_format_names_the_output_format_whatever_the_suffix(genomix_main, trained_model, test_fa, tmp_path):
    records = list(read_records(test_fa))[:2]
    (tmp_path / "few.fa").write_text("".join(f">{r.id}\n{r.seq[:60]}\n" for r in records))
    done = genomix_main("explain", trained_model, tmp_path / "few.fa", "-o", tmp_path / "e.out", "--format", "npz",
                        "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert [e.id for e in read_npz(tmp_path / "e.out")[0]] == [r.id for r in records]


def test_explain_tracks_map_bed_regions_to_the_genome(invoke, trained_model, test_fa, tmp_path):
    """A plus- and a minus-strand region: the bigWig's value at each genome base is that base's score in its
    record (the minus-strand record read backwards), and the bedGraph holds the same numbers."""
    import pyBigWig

    genome = tmp_path / "genome.fa"
    seq = next(iter(read_records(test_fa))).seq[:200]
    genome.write_text(f">chr1\n{seq}\n")
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t10\t70\ta\t0\t+\nchr1\t100\t180\tb\t0\t-\n")
    common = ["--bed", bed, "--reference", genome, "--device", "cpu"]
    for name in ("t.npz", "t.bw", "t.bedgraph"):
        result = invoke("explain", trained_model, "-o", tmp_path / name, *common)
        assert result.exit_code == 0, (result.stderr, result.exception)
    (plus, minus), _ = read_npz(tmp_path / "t.npz")
    track = pyBigWig.open(str(tmp_path / "t.bw"))
    assert np.allclose(track.values("chr1", 10, 70), plus.scores, atol=1e-6)
    assert np.allclose(track.values("chr1", 100, 180), minus.scores[::-1], atol=1e-6)
    lines = [line.split("\t") for line in (tmp_path / "t.bedgraph").read_text().splitlines()[1:]]
    assert [int(line[1]) for line in lines] == [*range(10, 70), *range(100, 180)]
    assert np.allclose([float(line[3]) for line in lines], np.concatenate([plus.scores, minus.scores[::-1]]),
                       atol=1e-5)


BAD = {  # arguments after `explain {model} {test}`, and the fragment the one error line holds
    "class_unknown": (["-o", "{out}/e.npz", "--class", "plasmid"], "--class plasmid: not a class of this model"),
    "end_outside": (["-o", "{out}/e.npz", "--start", "5", "--end", "100000"], "outside record"),
    "start_after_end": (["-o", "{out}/e.npz", "--start", "9", "--end", "4"], "outside record"),
    "ism_over_the_cap": (["-o", "{out}/e.npz", "--method", "ism", "--max-passes", "1000"], "would need"),
    "method_unknown": (["-o", "{out}/e.npz", "--method", "shap"], "'shap' is not one of 'ism', 'gradient', 'ig'"),
    "format_unknown": (["-o", "{out}/e.xlsx"],
                       "unknown output format '.xlsx'; choose .npz, .tsv, .bedgraph, .bg, .bw, .bigwig, or '-'"),
    "track_without_bed": (["-o", "{out}/e.bw"], "needs genome coordinates"),
    "known_without_motifs": (["-o", "{out}/e.npz", "--known", "{out}/in.tsv"], "give --motifs too"),
    "known_unreadable": (["-o", "{out}/e.npz", "--motifs", "{out}/m", "--known", "{out}/none.meme"], "--known"),
    "ids_unknown": (["-o", "{out}/e.npz", "--plots", "{out}/p", "--ids", "nope"], "--ids: no record nope"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_explain_is_one_line_with_exit_code_2(command_line, case):
    call, out = command_line
    args, fragment = BAD[case]
    code, lines = call(["explain", "{model}", "{test}", *args, "--device", "cpu"])
    errors = [line for line in lines if line.startswith("genomix: error: ")]
    assert code == 2 and len(errors) == 1 and fragment in errors[0], lines
    assert sorted(p.name for p in Path(out).iterdir()) == ["in.tsv"]


def test_an_ism_request_over_the_cap_says_how_many_passes_it_needs(trained_model):
    """100 bases in windows of 64 at 0 and 36: 128 covered positions × 3 substitutions + 2 own windows, on two
    strands."""
    model = load_model(trained_model)
    with pytest.raises(GenomixError, match="would need 772 forward passes, more than --max-passes 771"):
        attribute(model, [Record("r", "ACGT" * 25)], "ism", max_passes=771, device="cpu")
    assert len(attribute(model, [Record("r", "ACGT" * 25)], "ism", max_passes=772, device="cpu")) == 1


@pytest.mark.parametrize("flag", ["--plots", "--motifs"])
def test_an_extra_folder_that_cannot_be_made_stops_before_any_output(genomix_main, trained_model, test_fa, tmp_path,
                                                                     flag):
    """A folder under a regular file cannot be made: one line before any work, and no -o left behind (the
    attributions were written, then a traceback)."""
    (tmp_path / "file").write_text("")
    done = genomix_main("explain", trained_model, test_fa, "-o", tmp_path / "out.tsv", flag, tmp_path / "file" / "d",
                        "--device", "cpu")
    check_user_error(done, f"{flag} {tmp_path / 'file' / 'd'}: {tmp_path / 'file'} is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("flag", ["plots", "motifs"])
def test_a_failure_while_an_extra_is_written_leaves_no_output(monkeypatch, trained_model, test_fa, tmp_path, flag):
    """The second logo fails: neither -o nor any file of the folder appears (the first logo, motifs.meme and
    motifs.tsv were written), an -o that was there is kept as it was, and so are the folder's other files; the
    same request that succeeds then adds its files beside them."""
    from genomix.applying.explaining import Extras, explain
    from genomix.io.sources import RecordSource

    records = list(read_records(test_fa))[:3]
    (tmp_path / "few.fa").write_text("".join(f">{r.id}\n{r.seq[:60]}\n" for r in records))
    out, folder = tmp_path / "out.tsv", tmp_path / "extra"
    out.write_text("before\n")
    folder.mkdir()
    (folder / "mine.txt").write_text("kept\n")
    fake = [motifs.Motif(f"pos_{i}", np.full((5, 4), 0.25), np.zeros((5, 4)), 20) for i in (1, 2)]
    monkeypatch.setattr(motifs, "find_motifs", lambda explanations: fake)
    drawn = []

    def draw_logo(matrix, title, path, inputs=()):
        if len(drawn) == 1:
            raise RuntimeError("drawing failed")
        drawn.append(path)
        path.write_bytes(b"png")

    monkeypatch.setattr(motifs, "draw_logo", draw_logo)
    extras = Extras(**{flag: folder}, top=3)
    with pytest.raises(RuntimeError, match="drawing failed"):
        explain(trained_model, RecordSource([str(tmp_path / "few.fa")]), out, extras=extras, device="cpu")
    assert out.read_text() == "before\n" and drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra", "few.fa", "out.tsv"]
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    drawn.append(None)  # the next logos are drawn
    explain(trained_model, RecordSource([str(tmp_path / "few.fa")]), out, extras=extras, device="cpu")
    expected = [f"{r.id}.png" for r in records] if flag == "plots" else \
        ["motifs.meme", "motifs.tsv", "pos_1.png", "pos_2.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["mine.txt", *expected])
    assert out.read_text().startswith("id\tclass")


def test_ids_that_differ_only_by_unsafe_characters_get_a_logo_each(genomix_main, trained_model, test_fa, tmp_path):
    """'r/1', 'r:1' and 'r_1' would all be r_1.png: each gets its own file, and the log counts them."""
    seq = next(iter(read_records(test_fa))).seq[:60]
    (tmp_path / "ids.fa").write_text("".join(f">{name}\n{seq}\n" for name in ("r/1", "r:1", "r_1")))
    done = genomix_main("explain", trained_model, tmp_path / "ids.fa", "-o", tmp_path / "e.npz", "--plots",
                        tmp_path / "logos", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "logos").iterdir())
    assert len(names) == 3 and "r_1.png" in names, names
    assert "drew 3 logos" in done.stderr.decode()


def test_motifs_of_the_attributions_are_the_planted_one(planted_model, tmp_path):
    """TF-MoDISco-lite on the gradient attributions of the positives: the top motif is the planted one, and
    TOMTOM picks it out of a MEME file of known motifs. Last in this file: TF-MoDISco-lite compiles its numba
    kernels in forked children, once per machine, and they take the CPU for a while the first time."""
    model, positives, _ = planted_model
    found = motifs.find_motifs(attribute(model, positives, "gradient", device="cpu"))
    assert found and found[0].name == "pos_1"
    reverse = "".join(RC[b] for b in reversed(PLANTED))
    consensus = found[0].consensus  # trimmed to the bases the model leans on: at least 6 of the 8 planted
    assert len(consensus) >= 6 and (consensus in PLANTED or consensus in reverse), consensus
    known = tmp_path / "known.meme"
    decoys = {"decoy_1": "GGGGCCCC", "decoy_2": "ATATATAT", "planted": PLANTED}
    rows = {name: "\n".join(" ".join("0.97" if b == c else "0.01" for c in BASES) for b in seq)
            for name, seq in decoys.items()}
    known.write_text("MEME version 4\n\nALPHABET= ACGT\n\n" + "".join(
        f"MOTIF {name}\nletter-probability matrix: alength= 4 w= {len(decoys[name])}\n{text}\n\n"
        for name, text in rows.items()))
    matched = motifs.match_known(found[:1], motifs.read_known(known))
    assert matched[0].match == "planted"  # (its p-value against three targets means little: TOMTOM says so)
    motifs.write_motifs(matched, tmp_path / "found")
    written = motifs.read_known(tmp_path / "found" / "motifs.meme")
    assert np.allclose(written["pos_1"], found[0].ppm, atol=1e-6)
    assert (tmp_path / "found" / "pos_1.png").stat().st_size > 0
    assert f"pos_1\t{found[0].seqlets}\t" in (tmp_path / "found" / "motifs.tsv").read_text()


def test_a_missing_extra_is_named_before_any_work(monkeypatch, genomix_main, trained_model, test_fa, tmp_path):
    """explain's logos, motifs and ig references come with `pip install 'genomix[explain]'`; without them the
    request stops in one line that names the extra, and nothing is written."""
    import genomix.errors

    real = genomix.errors.find_spec
    monkeypatch.setattr(genomix.errors, "find_spec", lambda name: None if name == "modiscolite" else real(name))
    done = genomix_main("explain", trained_model, test_fa, "-o", tmp_path / "a.npz", "--motifs", tmp_path / "m",
                        "--device", "cpu")
    message = check_user_error(done, "--motifs needs modiscolite", "pip install 'genomix[explain]'")
    assert message and list(tmp_path.iterdir()) == []
