"""The command line end to end (a tiny model), atomic outputs, and user errors: exit 2, one line, no output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSES, TINY, check_user_error
from safetensors.torch import save_file

from genomix import __version__
from genomix.errors import GenomixError
from genomix.io.files import atomic_path, check_writable
from genomix.io.reading import read_records
from genomix.models.modelfile import METADATA_KEY, read_header
from genomix.sequences.tokens import ALPHABET

HEADER = ["id", "length", "label", "score", *(f"p_{c}" for c in CLASSES), "novelty"]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parse_tsv(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


# --- atomic outputs ------------------------------------------------------------------------------------


def test_atomic_path_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "out.tsv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old", "the old file stays until the body succeeds"
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask()


def test_atomic_path_keeps_the_old_file_and_no_temp_when_the_body_raises(tmp_path):
    target = tmp_path / "out.tsv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_atomic_path_creates_nothing_when_the_body_raises_and_no_old_file(tmp_path):
    with pytest.raises(KeyError), atomic_path(tmp_path / "new.tsv") as tmp:
        tmp.write_text("x")
        raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_errors(tmp_path):
    with pytest.raises(GenomixError, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.tsv")
    with pytest.raises(GenomixError, match="is a directory"):
        check_writable(tmp_path)
    assert check_writable(tmp_path / "fine.tsv") == tmp_path / "fine.tsv"


# --- model file ------------------------------------------------------------------------------------------


def test_train_writes_a_self_describing_model_file(trained_model, train_fa):
    header = read_header(trained_model)
    assert header["format"] == "genomix-model"
    assert header["genomix_version"] == __version__
    assert header["model"] == "paramixer-cdil"
    assert header["classes"] == CLASSES
    assert header["positive_class"] == CLASSES[1]
    assert {k: header["config"][k] for k in ("max_len", "dim", "hidden", "layers")} == {
        "max_len": 64, "dim": 16, "hidden": 16, "layers": 1,
    }
    training = header["training"]
    assert training["records"] == 540  # 600 minus a 10% stratified validation split
    assert training["class_counts"] == {CLASSES[0]: 270, CLASSES[1]: 270}  # of the records trained on
    assert sum(training["class_counts"].values()) == training["records"]
    assert training["inputs"] == [str(train_fa)]
    assert training["epochs_run"] == 1 and training["best_epoch"] == 1
    assert training["settings"]["max_len"] == 64 and training["settings"]["seed"] == 0
    lengths = [len(r.seq) for r in read_records(str(train_fa))]
    assert min(lengths) <= training["length_range"][0] <= training["length_range"][1] <= max(lengths)
    assert header["validation"]["n"] == 60
    assert sum(map(sum, header["validation"]["confusion"])) == 60
    # nothing but the model is left beside it: no checkpoint, no temporary file
    assert [p.name for p in trained_model.parent.iterdir()] == [trained_model.name]


def test_model_file_gets_the_usual_permissions(trained_model):
    assert stat.S_IMODE(trained_model.stat().st_mode) == 0o666 & ~umask()


def test_read_header_rejects_foreign_tokenizer_and_newer_format(tmp_path, trained_model):
    good = read_header(trained_model)
    assert good["tokenizer"].startswith("dna-v1") and all(f"{b}=" in good["tokenizer"] for b in ALPHABET)
    for change, message in [({"tokenizer": "bpe-v9"}, "tokenizer 'bpe-v9'"),
                            ({"format_version": 99}, "format 99 is newer"),
                            ({"format": "other"}, "not a genomix model file")]:
        path = tmp_path / "changed.gmx"
        save_file({"x": torch.zeros(2)}, str(path), metadata={METADATA_KEY: json.dumps(good | change)})
        with pytest.raises(GenomixError, match=message):
            read_header(path)


# --- CLI end to end (in-process) ------------------------------------------------------------------------


def test_version(invoke):
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"genomix {__version__}"


def test_info_shows_classes(invoke, trained_model):
    result = invoke("info", trained_model)
    assert result.exit_code == 0, result.stderr
    assert f"classes    {CLASSES[0]}, {CLASSES[1]} (positive: {CLASSES[1]})" in result.stdout.splitlines()
    assert "paramixer" in result.stdout and "trained on 540 sequences" in result.stdout
    strands = next(line for line in result.stdout.splitlines() if line.startswith("strands"))
    assert strands.startswith("strands    both") and "strand signal 0." in strands  # species: no strand


def test_train_blends_in_the_kmer_term_by_default_and_info_shows_its_weight(invoke, train_fa, tmp_path):
    network_only = TINY[: TINY.index("--no-composition")]
    result = invoke("train", train_fa, "-o", tmp_path / "m.gmx", *network_only)
    assert result.exit_code == 0, (result.stderr, result.exception)
    header = read_header(tmp_path / "m.gmx")
    assert header["config"]["composition"] is True
    weight = header["training"]["composition_weight"]
    assert 0 <= weight <= 1
    assert f"k-mer term weight {weight:.2f}" in invoke("info", tmp_path / "m.gmx").stdout


def test_info_json(invoke, trained_model):
    result = invoke("info", trained_model, "--json")
    assert result.exit_code == 0, result.stderr
    header = json.loads(result.stdout)
    assert header["classes"] == CLASSES
    assert header["config"]["max_len"] == 64
    assert header["training"]["records"] == 540
    assert header == read_header(trained_model)


@pytest.fixture(scope="module")
def test_records(test_fa):
    return list(read_records(str(test_fa)))


def check_prediction_table(text: str, records) -> np.ndarray:
    header, rows = parse_tsv(text)
    assert header == HEADER
    assert [r[0] for r in rows] == [r.id for r in records], "one row per record, in input order"
    assert [int(r[1]) for r in rows] == [len(r.seq) for r in records], "whole sequences, never truncated"
    probs = np.array([[float(x) for x in r[4:-1]] for r in rows])
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1, atol=2e-6)
    for row, p in zip(rows, probs):
        best = int(p.argmax())
        assert row[2] == CLASSES[best]
        assert row[3] == row[4 + best], "score is the probability of the predicted class"
    return probs


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, invoke, trained_model, test_fa) -> tuple[Path, object]:
    """`genomix predict MODEL species_test.fa -o preds.tsv`, run once: (the TSV path, the CLI result)."""
    out = tmp_path_factory.mktemp("predicted") / "preds.tsv"
    return out, invoke("predict", trained_model, test_fa, "-o", out, "--device", "cpu")


def test_predict_writes_a_tsv_in_input_order(predicted, test_records):
    out, result = predicted
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "", "data goes to -o, logs to stderr"
    probs = check_prediction_table(out.read_text(), test_records)
    assert len(probs) == 200
    assert [p.name for p in out.parent.iterdir()] == ["preds.tsv"], "no temporary file left"


def test_predict_to_stdout_matches_file_and_does_not_depend_on_batch_size(invoke, predicted, trained_model,
                                                                          test_fa, test_records):
    result = invoke("predict", trained_model, test_fa, "--device", "cpu", "--batch-size", "7")
    assert result.exit_code == 0, result.stderr
    check_prediction_table(result.stdout, test_records)
    _, from_file = parse_tsv(predicted[0].read_text())
    _, from_stdout = parse_tsv(result.stdout)
    assert [r[:3] for r in from_file] == [r[:3] for r in from_stdout]
    np.testing.assert_allclose(np.array([r[3:] for r in from_file], float),
                               np.array([r[3:] for r in from_stdout], float), atol=2e-6)


def test_predict_reads_stdin(runner, predicted, trained_model, test_records):
    from genomix.cli import app

    some = test_records[::10]
    fasta = "".join(f">{r.id} label={r.label}\n{r.seq}\n" for r in some).encode()
    result = runner.invoke(app, ["predict", str(trained_model), "-", "--device", "cpu"], input=fasta)
    assert result.exit_code == 0, (result.stderr, result.exception)
    check_prediction_table(result.stdout, some)
    # a record's scores do not depend on the other records of the input
    _, from_file = parse_tsv(predicted[0].read_text())
    _, from_stdin = parse_tsv(result.stdout)
    np.testing.assert_allclose(np.array([r[3:] for r in from_file[::10]], float),
                               np.array([r[3:] for r in from_stdin], float), atol=2e-6)


def test_predict_rc_scores_both_strands_as_strand_free_models_do_by_default(invoke, trained_model, test_records,
                                                                            tmp_path):
    complement = str.maketrans("ACGTN", "TGCAN")
    long_seq = test_records[0].seq[:128]  # a multiple of max_len: its windows mirror those of its RC
    seqs = {"short": test_records[1].seq[:50], "long": long_seq}
    fasta = "".join(f">{name}\n{s}\n>{name}_rc\n{s.translate(complement)[::-1]}\n" for name, s in seqs.items())
    (tmp_path / "pairs.fa").write_text(fasta)
    scored = {}
    for flags in (["--rc"], [], ["--no-rc"]):
        result = invoke("predict", trained_model, tmp_path / "pairs.fa", *flags, "--device", "cpu")
        assert result.exit_code == 0, result.stderr
        scored[" ".join(flags)] = {r[0]: np.array(r[4:], float) for r in parse_tsv(result.stdout)[1]}
    for name in seqs:
        np.testing.assert_allclose(scored["--rc"][name], scored["--rc"][f"{name}_rc"], atol=2e-6)
    # The species sample has no strand, so its model scores both strands unless told otherwise.
    assert all(np.array_equal(scored[""][name], p) for name, p in scored["--rc"].items())
    assert not np.allclose(scored["--no-rc"]["long"], scored["--no-rc"]["long_rc"], atol=2e-6)


def test_evaluate_writes_json_to_stdout_that_agrees_with_predict(invoke, predicted, trained_model, test_fa,
                                                                   test_records):
    result = invoke("evaluate", trained_model, test_fa, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["classes"] == CLASSES
    assert metrics["n"] == 200
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auroc", "auprc"):
        assert isinstance(metrics[key], float), key
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == 200
    assert confusion.sum(1).tolist() == [100, 100]  # the test set is balanced
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / 200)
    _, rows = parse_tsv(predicted[0].read_text())
    agreement = np.mean([row[2] == record.label for row, record in zip(rows, test_records)])
    assert metrics["accuracy"] == pytest.approx(agreement)


def test_evaluate_takes_labels_from_class_arguments_and_tables(invoke, trained_model, test_fa, test_records,
                                                               tmp_path):
    # every record relabelled as the first class by CLASS=path: the confusion has one non-empty row
    result = invoke("evaluate", trained_model, f"{CLASSES[0]}={test_fa}", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    confusion = json.loads(result.stdout)["confusion"]
    assert sum(confusion[0]) == 200 and sum(confusion[1]) == 0
    # a --labels table overrides the header labels: all records relabelled as the second class
    (tmp_path / "ids.tsv").write_text("".join(f"{r.id}\t{CLASSES[1]}\n" for r in test_records))
    result = invoke("evaluate", trained_model, test_fa, "--labels", tmp_path / "ids.tsv", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    confusion = json.loads(result.stdout)["confusion"]
    assert sum(confusion[0]) == 0 and sum(confusion[1]) == 200


@pytest.fixture
def small_split(tmp_path, train_fa):
    """Small train/validation FASTAs without header labels, and one labels table covering both."""
    by_class: dict[str, list] = {}
    for record in read_records(str(train_fa)):
        by_class.setdefault(record.label, []).append(record)
    train, val, table = [], [], ["id\tlabel"]
    for label, recs in by_class.items():
        train += recs[:6]
        val += recs[6:8]
        table += [f"{r.id}\t{label}" for r in recs[:8]]
    (tmp_path / "train.fa").write_text("".join(f">{r.id}\n{r.seq}\n" for r in train))
    (tmp_path / "val.fa").write_text("".join(f">{r.id}\n{r.seq}\n" for r in val))
    (tmp_path / "ids.tsv").write_text("\n".join(table) + "\n")
    return tmp_path


def test_train_one_class_with_val_file_is_a_user_error(invoke, small_split):
    d = small_split
    result = invoke("train", f"{CLASSES[0]}={d / 'train.fa'}", "--val", f"{CLASSES[0]}={d / 'val.fa'}",
                    "-o", d / "m.gmx", *TINY)
    # one class only in CLASS=path form: a user error, raised in-process as GenomixError
    assert isinstance(result.exception, GenomixError)
    assert "at least two classes" in str(result.exception)
    assert not (d / "m.gmx").exists()


def test_train_with_val_file_and_one_labels_table_for_both(invoke, small_split):
    d = small_split
    result = invoke("train", d / "train.fa", "--val", d / "val.fa", "--labels", d / "ids.tsv",
                    "-o", d / "m.gmx", *TINY)
    assert result.exit_code == 0, repr(result.exception)
    header = read_header(d / "m.gmx")
    assert header["training"]["records"] == 12 and header["validation"]["n"] == 4


# --- user errors through the real entry point: exit 2, one line, no output ------------------------------------
#
# Each case is `genomix ARGS` run through main() in this process, in its own folder (which holds the case's files
# and an empty `out/` for outputs); one runs as `python -m genomix` in a process of its own.


def _foreign_safetensors(path: Path) -> None:
    save_file({"x": torch.zeros(2)}, str(path))


def _late_bad_record(test_records) -> str:
    # 70 short good records: with --batch-size 2, predict writes its first chunk (64 records) before the error
    return "".join(f">{r.id}\n{r.seq[:60]}\n" for r in test_records[:70]) + ">broken_one\nACGT?\n"


ERROR_CASES: dict[str, tuple[list[str], dict]] = {
    # name: (arguments, files to write in the case's folder); {train}, {test}, {model} are the sample paths
    "missing": (["train", "missing.fa", "-o", "out/m.gmx", *TINY], {}),
    "empty": (["train", "empty.fa", "-o", "out/m.gmx", *TINY], {"empty.fa": b""}),
    "not_fasta": (["train", "notes.txt", "-o", "out/m.gmx", *TINY], {"notes.txt": b"Dear diary,\nACGT\n"}),
    "bad_char": (["train", "bad.fa", "-o", "out/m.gmx", *TINY],
                 {"bad.fa": b">s1 label=a\nACGT\n>s2 label=b\nACGT\nACJT\n"}),
    "one_class": (["train", "only={train}", "-o", "out/m.gmx", *TINY], {}),
    "labels_unmatched": (["train", "{train}", "--labels", "ids.tsv", "-o", "out/m.gmx", *TINY],
                         {"ids.tsv": b"sp_train_0001\tx\nno_such_record\ty\n"}),
    "corrupt_model": (["predict", "random.gmx", "{test}", "-o", "out/p.tsv"],
                      {"random.gmx": np.random.default_rng(0).bytes(4096)}),
    "truncated_model": (["evaluate", "cut.gmx", "{test}"], {"cut.gmx": "truncated model"}),
    "foreign_model": (["predict", "foreign.safetensors", "{test}", "-o", "out/p.tsv"],
                      {"foreign.safetensors": _foreign_safetensors}),
    "resume": (["train", "{train}", "-o", "out/m.gmx", "--resume", *TINY], {}),
    "no_folder_train": (["train", "{train}", "-o", "nowhere/m.gmx", *TINY], {}),
    "no_folder_predict": (["predict", "{model}", "{test}", "-o", "nowhere/p.tsv"], {}),
    "late_bad_record": (["predict", "{model}", "late.fa", "-o", "out/p.tsv", "--batch-size", "2", "--device", "cpu"],
                        {"late.fa": "late bad record", "out/p.tsv": b"previous results\n"}),
}


@pytest.fixture
def cli_case(tmp_path, monkeypatch, genomix_main, train_fa, test_fa, trained_model, test_records):
    """name -> (the finished ERROR_CASES command, the case's folder): run through main() in that folder."""
    names = {"train": str(train_fa), "test": str(test_fa), "model": str(trained_model)}

    def run(name: str) -> tuple[subprocess.CompletedProcess, Path]:
        args, files = ERROR_CASES[name]
        folder = tmp_path / name
        (folder / "out").mkdir(parents=True)
        for file, content in files.items():
            if callable(content):
                content(folder / file)
            elif content == "truncated model":
                data = trained_model.read_bytes()
                (folder / file).write_bytes(data[: len(data) // 2])
            elif content == "late bad record":
                (folder / file).write_text(_late_bad_record(test_records))
            else:
                (folder / file).write_bytes(content)
        monkeypatch.chdir(folder)
        return genomix_main(*(a.format(**names) for a in args)), folder

    return run


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "out").iterdir())


def test_help_lists_the_commands(genomix_main):
    proc = genomix_main("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "predict", "evaluate", "info"):
        assert command in proc.stdout.decode()


def test_python_m_genomix_reads_stdin_and_reports_a_user_error_in_one_line(tmp_path, train_fa, user_error):
    """The one case in a process of its own: the interpreter's entry point, a real stdin, a real exit code."""
    (tmp_path / "out").mkdir()
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "genomix", "train", "-", "-o", "out/m.gmx", *TINY], cwd=tmp_path,
                          input=b"\x00\x01 binary junk\n", capture_output=True, timeout=300, env=env)
    user_error(proc, "-: not a FASTA")
    assert outputs(tmp_path) == []


USER_ERRORS = {  # case → what the one line must name; none of them may leave an output behind
    "missing": ["missing.fa: no such file"],
    "empty": ["empty.fa: is empty"],
    "not_fasta": ["notes.txt: not a FASTA, FASTQ or CSV/TSV file"],
    "bad_char": ["bad.fa", "record 's2'", "'J'", "position 7"],
    "one_class": ["at least two classes", "'only'"],
    "labels_unmatched": ["ids.tsv", "'no_such_record'"],
    "corrupt_model": ["random.gmx: not a genomix model file"],
    "foreign_model": ["foreign.safetensors: not a genomix model file", "without genomix metadata"],
    "resume": ["--resume: no checkpoint at", "m.gmx.ckpt"],  # checked before any work: the only line
}


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_error_is_one_line_and_leaves_no_output(cli_case, user_error, case):
    proc, folder = cli_case(case)
    user_error(proc, *USER_ERRORS[case])
    assert outputs(folder) == []


def test_truncated_model_file(cli_case, user_error):
    proc, _ = cli_case("truncated_model")
    user_error(proc, "cut.gmx")
    assert proc.stdout == b""


def test_output_folder_does_not_exist(cli_case, user_error):
    proc, folder = cli_case("no_folder_train")
    user_error(proc, "nowhere/m.gmx", "folder nowhere does not exist")
    assert not (folder / "nowhere").exists()
    proc, folder = cli_case("no_folder_predict")
    user_error(proc, "nowhere/p.tsv", "folder nowhere does not exist")
    assert not (folder / "nowhere").exists()
    assert proc.stdout == b""


def test_bad_record_late_in_predict_input_leaves_no_partial_output(cli_case, user_error):
    proc, folder = cli_case("late_bad_record")
    user_error(proc, "late.fa", "'broken_one'", "'?'", "position 5", one_line=False)  # after the model's log
    assert outputs(folder) == ["p.tsv"], "no temporary file left"
    assert (folder / "out" / "p.tsv").read_text() == "previous results\n", "the old output is untouched"


# --- one vocabulary: deprecated spellings, closed choices, shared options --------------------------------------


def stub(monkeypatch, target: str, returns: object = None) -> list[tuple]:
    """Replace the library function `target` by one that records its (args, kwargs) and returns `returns`."""
    calls: list[tuple] = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return returns

    monkeypatch.setattr(target, fake)
    return calls


def _summary():
    from genomix.applying.variants import VariantSummary

    return VariantSummary()


DEPRECATED = {  # case: (command line, library function, what it must receive, the notices)
    "train": (["train", "x.fa", "-o", "m.gmx", "--model", "transformer", "--window", "64"],
              "genomix.fitting.training.train",
              lambda args, kwargs: (args[2].arch, args[2].genome_window) == ("transformer", 64),
              ["--model is deprecated in train; use --arch", "--window is deprecated in train; use --genome-window"]),
    "pretrain": (["pretrain", "x.fa", "-o", "b.gmx", "--model=transformer", "--window=64"],
                 "genomix.fitting.pretraining.pretrain",
                 lambda args, kwargs: (args[2].arch, args[2].genome_window) == ("transformer", 64),
                 ["--model is deprecated in pretrain; use --arch",
                  "--window is deprecated in pretrain; use --genome-window"]),
    "variants": (["variants", "m.gmx", "--vcf", "c.vcf", "--reference", "g.fa", "--window", "32"],
                 "genomix.applying.variants.score_variants", lambda args, kwargs: kwargs["allele_window"] == 32,
                 ["--window is deprecated in variants; use --allele-window"]),
    "scan": (["scan", "m.gmx", "g.fa"], "genomix.applying.scanning.scan", lambda args, kwargs: args[1] == "g.fa",
             ["the GENOME argument is deprecated in scan; use --reference GENOME"]),
}


@pytest.mark.parametrize("case", DEPRECATED)
def test_deprecated_spellings_still_work_with_a_notice_each(invoke, monkeypatch, case):
    args, target, received, notices = DEPRECATED[case]
    calls = stub(monkeypatch, target, _summary() if case == "variants" else None)
    result = invoke(*args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(calls) == 1 and received(*calls[0])
    assert result.stderr.splitlines()[: len(notices)] == [f"genomix: warning: {n}" for n in notices]


def test_new_spellings_give_no_notice(invoke, monkeypatch):
    calls = stub(monkeypatch, "genomix.fitting.training.train")
    result = invoke("train", "x.fa", "-o", "m.gmx", "--arch", "transformer", "--genome-window", "64")
    assert result.exit_code == 0 and result.stderr == ""
    assert (calls[0][0][2].arch, calls[0][0][2].genome_window) == ("transformer", 64)
    calls = stub(monkeypatch, "genomix.applying.scanning.scan")
    assert invoke("scan", "m.gmx", "--reference", "g.fa").stderr == "" and calls[0][0][1] == "g.fa"


def test_evaluate_json_flag_is_deprecated_and_the_json_goes_to_stdout_anyway(invoke, trained_model, test_fa):
    result = invoke("evaluate", trained_model, test_fa, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == ("genomix: warning: --json is deprecated in evaluate; the metrics JSON "
                                             "goes to -o, stdout by default")
    assert json.loads(result.stdout)["n"] == 200
    assert "evaluation (200 sequences)" in result.stderr, "the table is for people: on stderr"


@pytest.mark.parametrize(("args", "fragment"), [
    (["explain", "{model}", "{test}", "--method", "shap"], "'shap' is not one of 'ism', 'gradient', 'ig'"),
    (["train", "{test}", "-o", "m.gmx", "--arch", "bert"], "'bert' is not one of"),
    (["pretrain", "{test}", "-o", "b.gmx", "--arch", "kmer"], "'kmer' is not one of"),
    (["train", "{test}", "-o", "m.gmx", "--genome-window", "4"], "--genome-window"),
    (["variants", "{model}", "--vcf", "c.vcf", "--reference", "{test}", "--allele-window", "0"], "--allele-window"),
    (["scan", "{model}", "-o", "t.bedgraph"], "scan needs --reference genome.fa"),
    (["scan", "{model}", "{test}", "--reference", "{test}"], "give the genome once, as --reference"),
    (["evaluate", "{model}", "{test}", "--report", "-"], "-o - and --report - would both be stdout"),
    (["predict", "{model}", "{test}", "--report", "-"], "-o - and --report - would both be stdout"),
    (["predict", "{model}", "{test}", "-o", "x.tsv", "--report", "./x.tsv"], "-o x.tsv and --report ./x.tsv would both "
     "be one file"),
    (["scan", "{model}", "--reference", "{test}", "-o", "t.bedgraph", "--bed-out", "t.bedgraph"], "would both be one "
     "file"),
])
def test_closed_choices_and_ranges_are_refused_in_one_line(monkeypatch, genomix_main, tmp_path, trained_model, test_fa,
                                                           args, fragment):
    monkeypatch.chdir(tmp_path)
    proc = genomix_main(*[a.format(model=trained_model, test=test_fa) for a in args])
    lines = proc.stderr.decode().splitlines()
    errors = [line for line in lines if line.startswith("genomix: error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and fragment in errors[0], lines
    assert list(tmp_path.iterdir()) == []


THREADED = {  # every command that takes --threads: its command line and its library function
    "train": (["train", "x.fa", "-o", "m.gmx"], "genomix.fitting.training.train"),
    "pretrain": (["pretrain", "x.fa", "-o", "b.gmx"], "genomix.fitting.pretraining.pretrain"),
    "predict": (["predict", "m.gmx", "x.fa"], "genomix.applying.predicting.predict"),
    "embed": (["embed", "m.gmx", "x.fa", "-o", "e.npy"], "genomix.applying.embedding.embed"),
    "evaluate": (["evaluate", "m.gmx", "x.fa"], "genomix.applying.evaluating.evaluate"),
    "scan": (["scan", "m.gmx", "--reference", "g.fa"], "genomix.applying.scanning.scan"),
    "variants": (["variants", "m.gmx", "--vcf", "c.vcf", "--reference", "g.fa"],
                 "genomix.applying.variants.score_variants"),
    "explain": (["explain", "m.gmx", "x.fa"], "genomix.applying.explaining.explain"),
}


@pytest.mark.parametrize("case", THREADED)
def test_threads_are_applied_once_before_the_command_runs(invoke, monkeypatch, case):
    args, target = THREADED[case]
    events: list[object] = []
    monkeypatch.setattr(torch, "set_num_threads", events.append)
    returns = {"evaluate": ({"n": 0}, CLASSES), "variants": _summary()}.get(case)
    monkeypatch.setattr(target, lambda *a, **k: events.append("run") or returns)
    monkeypatch.setattr("genomix.cli.report_table", lambda *a: "")
    result = invoke(*args, "--threads", "3", "--device", "cpu")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert events == [3, "run"]


def test_every_command_that_computes_takes_threads_and_device():
    from typer.main import get_command

    from genomix.cli import app

    commands = get_command(app).commands
    for name, command in commands.items():
        options = {p.name for p in command.params}
        assert ({"threads", "device"} <= options) == (name in THREADED), name


def test_evaluate_report_is_the_report_predict_writes(invoke, trained_model, test_fa, tmp_path):
    for threshold in ([], ["--threshold", "0.3"]):
        evaluated = invoke("evaluate", trained_model, test_fa, "--report", tmp_path / "e.tsv", "-o",
                           tmp_path / "m.json", "--device", "cpu", *threshold)
        assert evaluated.exit_code == 0, evaluated.stderr
        predicted = invoke("predict", trained_model, test_fa, "--report", tmp_path / "p.tsv", "-o",
                           tmp_path / "p.out.tsv", "--device", "cpu", *threshold)
        assert predicted.exit_code == 0, predicted.stderr
        report = (tmp_path / "e.tsv").read_text()
        assert report == (tmp_path / "p.tsv").read_text()
        called = {row[0]: int(row[1]) for row in parse_tsv(report)[1]}
        confusion = np.array(json.loads((tmp_path / "m.json").read_text())["confusion"])
        assert [called[c] for c in CLASSES] == confusion.sum(0).tolist()  # the columns are the calls
    assert evaluated.stdout == "", "-o took the metrics"


def test_explain_ig_follows_seed(invoke, trained_model, test_records, tmp_path):
    from genomix.applying.explaining import read_npz

    (tmp_path / "few.fa").write_text("".join(f">{r.id}\n{r.seq[:60]}\n" for r in test_records[:2]))
    scores = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        out = tmp_path / f"{name}.npz"
        result = invoke("explain", trained_model, tmp_path / "few.fa", "-o", out, "--method", "ig", "--seed", seed,
                        "--device", "cpu")
        assert result.exit_code == 0, (result.stderr, result.exception)
        scores[name] = np.concatenate([e.hypothetical for e in read_npz(out)[0]])
    assert np.array_equal(scores["first"], scores["again"])
    assert not np.allclose(scores["first"], scores["other"], atol=1e-6)


def test_evaluate_plots_follow_the_positive_class_and_the_threshold(monkeypatch, tmp_path, test_records):
    """A binary model whose positive class is the first (the other is named as the negative): the curves are of
    that class, and the confusion matrix is of the calls the metrics count at --threshold, not the argmax."""
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    from genomix.applying.evaluating import evaluate
    from genomix.applying.scoring import predict_records
    from genomix.io.sources import RecordSource
    from genomix.models import create_model
    from genomix.models.modelfile import TrainedModel, load_model, save_model
    from genomix.sequences.dataset import positive_class

    classes = ["enhancer", "non_enhancer"]
    assert positive_class(classes) == "enhancer"
    torch.manual_seed(0)
    network = create_model("paramixer-cdil", 2, max_len=64, dim=8, hidden=8, layers=1)
    save_model(TrainedModel.of(network, classes, positive_class="enhancer"), tmp_path / "m.gmx")
    for i, label in enumerate(classes):
        (tmp_path / f"{label}.fa").write_text("".join(f">{r.id}\n{r.seq}\n" for r in test_records[i::2][:30]))
    source = RecordSource([f"{label}={tmp_path / label}.fa" for label in classes])
    p = np.array([np.exp(x.log_probs[0]) for x in predict_records(load_model(tmp_path / "m.gmx"), source.records(),
                                                                  device="cpu")])
    threshold = float(np.median(p))  # half the records change call from the argmax's
    assert np.any((p >= threshold) != (p >= 0.5))
    drawn: dict[str, list] = {"curves": [], "confusion": []}
    for display in (RocCurveDisplay, PrecisionRecallDisplay):
        original = display.from_predictions
        monkeypatch.setattr(display, "from_predictions",
                            lambda y, score, *a, _o=original, **k: drawn["curves"].append((y, score, k["name"]))
                            or _o(y, score, *a, **k))
    original = ConfusionMatrixDisplay.from_predictions
    monkeypatch.setattr(ConfusionMatrixDisplay, "from_predictions",
                        lambda y, calls, *a, **k: drawn["confusion"].append((y, calls)) or original(y, calls, *a, **k))
    result, _ = evaluate(tmp_path / "m.gmx", source, device="cpu", threshold=threshold, plots=tmp_path / "plots")
    truth = np.repeat([0, 1], 30)
    assert len(drawn["curves"]) == 2
    for y, score, name in drawn["curves"]:
        assert name == "enhancer" and np.array_equal(y, truth == 0) and np.allclose(score, p, atol=1e-6)
    (y, calls), = drawn["confusion"]
    assert np.array_equal(calls, np.where(p >= threshold, 0, 1))
    confusion = np.zeros((2, 2), int)
    np.add.at(confusion, (y, calls), 1)
    assert confusion.tolist() == result["confusion"]


def test_the_vocabulary_in_docs_cli_md_is_the_commands():
    """docs/CLI.md's table (flag × command) says which commands take each flag: it must be what they take."""
    from typer.main import get_command

    from genomix.cli import app

    lines = (Path(__file__).resolve().parents[1] / "docs" / "CLI.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| flag |"))
    short = [cell.strip() for cell in header.strip("|").split("|")][1:-1]
    names = dict(zip(["T", "P", "pr", "em", "ev", "sc", "va", "ex", "in"],
                     ["train", "pretrain", "predict", "embed", "evaluate", "scan", "variants", "explain", "info"]))
    documented: dict[str, set[str]] = {}
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for flag in cells[0].replace("`", "").split(", "):
            documented[flag] = {names[s] for s, mark in zip(short, cells[1:-1]) if mark}
    taken: dict[str, set[str]] = {}
    for name, command in get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                for flag in param.opts:
                    taken.setdefault(flag, set()).add(name)
            elif not param.hidden:
                taken.setdefault(param.name.upper(), set()).add(name)
    assert documented == taken


def test_two_outputs_that_are_one_file_through_a_hard_link_are_refused(genomix_main, trained_model, test_fa, tmp_path):
    """The report would replace the predictions (or mix into them) without a word: refused before any work."""
    (tmp_path / "calls.tsv").write_text("kept\n")
    os.link(tmp_path / "calls.tsv", tmp_path / "same.tsv")
    done = genomix_main("predict", trained_model, test_fa, "-o", tmp_path / "calls.tsv", "--report",
                        tmp_path / "same.tsv", "--device", "cpu")
    check_user_error(done, "would both be one file")
    assert (tmp_path / "calls.tsv").read_text() == "kept\n"


@pytest.mark.parametrize("reserved", ["unclassified", "unknown"])
def test_a_class_named_as_a_no_call_label_is_refused_at_training(genomix_main, tmp_path, reserved):
    """A class called `unclassified` would merge with the records that get no call (and `unknown` with the novel
    ones) in every report: training refuses it before any work."""
    records = [f">r{i} label={reserved if i % 2 else 'x'}\nACGTACGTAC\n" for i in range(20)]
    (tmp_path / "t.fa").write_text("".join(records))
    done = genomix_main("train", tmp_path / "t.fa", "-o", tmp_path / "m.gmx", *TINY)
    check_user_error(done, f"class '{reserved}' is the label genomix gives records it cannot call")
    assert not (tmp_path / "m.gmx").exists()


def test_an_error_naming_a_file_with_a_line_break_stays_one_line(genomix_main, trained_model, tmp_path):
    done = genomix_main("predict", trained_model, tmp_path / "no\nsuch.fa", "--device", "cpu")
    message = check_user_error(done, "no\\nsuch.fa", "no such file", one_line=False)  # after the model's log line
    assert message.startswith("genomix: error: ")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_failing_report_leaves_no_other_output_behind(command, genomix_main, trained_model, test_fa, tmp_path,
                                                        monkeypatch):
    """The main output and --report commit together: the report failing (a full disk, say) leaves neither."""
    from genomix.applying import evaluating, predicting

    def full_disk(*args, **kwargs):
        raise GenomixError("report.tsv: cannot write (No space left on device)")

    monkeypatch.setattr(predicting if command == "predict" else evaluating, "write_summary", full_disk)
    main = tmp_path / ("calls.tsv" if command == "predict" else "metrics.json")
    done = genomix_main(command, trained_model, test_fa, "-o", main, "--report",
                        tmp_path / "report.tsv", "--device", "cpu")
    check_user_error(done, "No space left on device", one_line=False)
    assert list(tmp_path.iterdir()) == []
