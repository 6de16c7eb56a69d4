"""The shared pieces every command goes through: the record source, the model contract and registry, the
decision rule, the output writers, and model options from the command line."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
from helpers import CLASSES, ROOT, TINY, motif_records

from genomix import cli  # the new command's annotations name its shared options
from genomix.applying.evaluating import evaluate
from genomix.applying.predicting import predict
from genomix.applying.scoring import decide
from genomix.errors import GenomixError
from genomix.io.sources import RecordSource
from genomix.models import MODELS, create_model, list_models
from genomix.models.modelfile import read_header
from genomix.sequences.batching import pad
from genomix.sequences.tokens import encode


@pytest.mark.parametrize(("arguments", "message"), [
    ({"bed": ["a.bed"]}, "--bed needs --reference"),
    ({"inputs": ["x.fa"], "reference": "g.fa"}, "--reference is used with --bed only"),
    ({"inputs": ["x.fa"], "genomes": ["a=g.fa"]}, "give it without sequence files or --bed"),
    ({"genomes": ["a=g.fa"], "labels": "ids.tsv"}, "--genome windows take the class of their genome"),
])
def test_record_source_refuses_inconsistent_inputs_before_reading_any(arguments, message):
    with pytest.raises(GenomixError, match=message):
        RecordSource(**arguments)


def test_record_source_requires_something_to_read_and_says_what():
    with pytest.raises(GenomixError, match="nothing to score: give sequence files, --bed regions with --reference$"):
        RecordSource().require("score", genomes=False)
    with pytest.raises(GenomixError, match="or --genome CLASS=genome.fa"):
        RecordSource().require("train on")
    with pytest.raises(GenomixError, match="--genome is not an input of this command"):
        RecordSource(genomes=["a=g.fa"]).require("score", genomes=False)


def test_one_label_table_covers_inputs_and_validation_files(tmp_path):
    (tmp_path / "t.fa").write_text(">a\nACGT\n>b\nACGA\n")
    (tmp_path / "v.fa").write_text(">c\nACGG\n")
    (tmp_path / "ids.tsv").write_text("a\tx\nb\ty\nc\tx\n")
    source = RecordSource([tmp_path / "t.fa"], str(tmp_path / "ids.tsv"), val_inputs=[tmp_path / "v.fa"])
    assert [(r.id, r.label) for r in source.records()] == [("a", "x"), ("b", "y")]
    assert [(r.id, r.label) for r in source.validation_records()] == [("c", "x")]
    (tmp_path / "ids.tsv").write_text("a\tx\nb\ty\nc\tx\nd\ty\n")
    source = RecordSource([tmp_path / "t.fa"], str(tmp_path / "ids.tsv"), val_inputs=[tmp_path / "v.fa"])
    list(source.records())
    with pytest.raises(GenomixError, match="1 id\\(s\\) match no input record, e.g. 'd'"):
        list(source.validation_records())


@pytest.mark.parametrize("name", list_models())
def test_every_model_keeps_the_contract(name):
    torch.manual_seed(0)
    model = create_model(name, 3, max_len=32).eval()
    tokens, lengths = pad([encode("ACGTACGTTTGACAAC"), encode("GGGCCCATN")])
    features = model.embed(tokens, lengths)
    assert features.shape == (2, model.embed_dim)
    assert model(tokens, lengths).shape == (2, 3) and model.num_classes == 3 and model.max_len == 32
    assert model.fits_directly == (name == "kmer")
    torch.testing.assert_close(model(tokens, lengths), model.head(features))  # the head reads the pooled features
    assert create_model(name, 3, **model.config).config == model.config  # the config rebuilds the model


def test_model_options_are_checked_with_the_model_named():
    with pytest.raises(GenomixError, match="model cnn has no option heads"):
        create_model("cnn", 2, max_len=32, heads=8)
    with pytest.raises(GenomixError, match="model transformer: dim 30 is not divisible by heads 4"):
        create_model("transformer", 2, max_len=32, dim=30)
    with pytest.raises(GenomixError, match="option dropout must be in"):
        create_model("paramixer-chord", 2, max_len=32, dropout=1.5)
    assert create_model("transformer", 2, max_len=32, heads="8", pos_embedding="no").config["heads"] == 8


def test_decide_calls_the_named_positive_class():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    assert decide(probs, None).tolist() == [0, 1, 1]
    assert decide(probs, 0.6, positive=0).tolist() == [0, 1, 1]  # class 0 called from p_0 ≥ 0.6
    assert decide(probs, 0.5, positive=1).tolist() == [0, 1, 1]
    three = np.array([0.3, 0.5, 0.2])
    assert decide(three, 0.25, positive=2) == 1  # below the threshold: the most probable other class


def test_jsonl_predictions_carry_the_numbers_of_the_tsv(trained_model, test_fa, tmp_path):
    source = RecordSource([str(test_fa)])
    predict(trained_model, source, tmp_path / "p.tsv", device="cpu")
    predict(trained_model, source, tmp_path / "p.jsonl", device="cpu")
    rows = [line.split("\t") for line in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(d["id"], d["length"], d["label"]) for d in lines] == [(r[0], int(r[1]), r[2]) for r in rows]
    np.testing.assert_allclose([[d["probs"][c] for c in CLASSES] for d in lines],
                               np.array([r[4:-1] for r in rows], float), atol=1e-6)
    np.testing.assert_allclose([d["novelty"] for d in lines], np.array([r[-1] for r in rows], float), atol=1e-6)
    assert all(d["windows"] >= 1 for d in lines)
    with pytest.raises(GenomixError, match="unknown output format '.csv'"):
        predict(trained_model, source, tmp_path / "p.csv", device="cpu")
    assert not (tmp_path / "p.csv").exists()


def test_evaluate_threshold_and_output_follow_predict(trained_model, test_fa, tmp_path):
    source = RecordSource([str(test_fa)])
    predict(trained_model, source, tmp_path / "p.tsv", device="cpu", threshold=0.8)
    called = [line.split("\t")[2] for line in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
    result, classes = evaluate(trained_model, source, device="cpu", threshold=0.8, output=tmp_path / "m.json")
    confusion = np.array(result["confusion"])
    assert confusion.sum(0)[classes.index(CLASSES[1])] == called.count(CLASSES[1])  # the same calls
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(result | {"classes": classes}))


def test_set_gives_any_model_option_and_clashes_with_its_flag(invoke, train_fa, tmp_path):
    tiny = [a for a in TINY if a != "--no-composition"]
    result = invoke("train", train_fa, "-o", tmp_path / "t.gmx", "--arch", "transformer", *tiny,
                    "--set", "heads=2", "--set", "composition=false")
    assert result.exit_code == 0, (result.stderr, result.exception)
    config = read_header(tmp_path / "t.gmx")["config"]
    assert config["heads"] == 2 and config["composition"] is False and config["dim"] == 16
    result = invoke("train", train_fa, "-o", tmp_path / "u.gmx", *tiny, "--set", "dim=8")
    assert "--dim and --set dim=... both given" in str(result.exception)
    result = invoke("train", train_fa, "-o", tmp_path / "u.gmx", *tiny, "--set", "bogus=1")
    assert "model paramixer-cdil has no option bogus" in str(result.exception)
    assert not (tmp_path / "u.gmx").exists()


def test_models_command_lists_the_registry_with_defaults(invoke):
    result = invoke("models")
    assert result.exit_code == 0
    for name, cls in MODELS.items():
        assert f"{name}: " in result.stdout
        assert " ".join(f"{k}={v}" for k, v in cls.Options().as_dict().items()) in result.stdout


def test_a_new_model_is_one_class_with_its_own_options(tmp_path, monkeypatch):
    """What a newcomer writes to add a model: options with a default and a check, the mixing, a registration.
    Training, the model file, loading and scoring then work with no other change."""
    from dataclasses import dataclass

    from genomix.applying.scoring import predict_records
    from genomix.fitting.training import TrainSettings, fit
    from genomix.models import register
    from genomix.models.base import NeuralOptions, SequenceClassifier, at_least
    from genomix.models.modelfile import load_model, save_model

    @dataclass(frozen=True)
    class SmoothOptions(NeuralOptions):
        width: int = 5  # the option of its own

        def check(self, model: str) -> None:
            super().check(model)
            at_least(model, width=(self.width, 1))

    class Smooth(SequenceClassifier):
        """Positions averaged over a window of `width`."""

        Options = SmoothOptions

        def __init__(self, num_classes: int, max_len: int, options: SmoothOptions) -> None:
            super().__init__(num_classes, max_len, options)
            self.pool = torch.nn.AvgPool1d(options.width, stride=1, padding=options.width // 2)

        def mix(self, x, lengths, mask):
            return self.pool(x.transpose(1, 2)).transpose(1, 2)[:, : x.shape[1]] * mask[..., None]

    monkeypatch.setitem(MODELS, "smooth", Smooth)  # the registry forgets it after the test
    register("smooth")(Smooth)
    settings = TrainSettings(arch="smooth", options={"width": 3, "dim": 8, "hidden": 8}, epochs=1, device="cpu")
    model = fit(motif_records(60, seed=1), settings)
    save_model(model, tmp_path / "s.gmx")
    loaded = load_model(tmp_path / "s.gmx")
    assert loaded.network.options.width == 3 and loaded.card.model == "smooth"
    records = motif_records(5, seed=2)
    np.testing.assert_allclose([p.probs for p in predict_records(loaded, records, device="cpu")],
                               [p.probs for p in predict_records(model, records, device="cpu")], atol=1e-6)
    with pytest.raises(GenomixError, match="option width must be at least 1"):
        TrainSettings(arch="smooth", options={"width": 0})


def test_a_new_command_that_scores_records_is_one_function_and_its_cli_function(trained_model, test_fa, monkeypatch,
                                                                              genomix_main):
    """What a newcomer writes for a command that applies a model: a library function on the scoring service (here
    each record's GC share beside its most probable class) and a command-line function registered with the app.
    Reading, windows, strands, the temperature, --threads and --device come with them."""
    import typer

    from genomix.applying.scoring import Scorer, predict_records
    from genomix.io.reading import read_records
    from genomix.models.modelfile import load_model

    def gc_calls(model_path: str, source: RecordSource, device: str = "auto") -> list[tuple[str, float, str]]:
        model = load_model(model_path)
        records = list(source.records())
        log_probs = Scorer.of(model, device).log_probs([encode(r.seq) for r in records])
        return [(r.id, (r.seq.count("G") + r.seq.count("C")) / len(r.seq), model.classes[int(row.argmax())])
                for r, row in zip(records, log_probs)]

    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))  # forgotten afterwards

    @cli.command("gc-calls")
    def gc_calls_command(model: cli.ModelFile, inputs: cli.Inputs = None, device: cli.Device = "auto",
                         threads: cli.Threads = None) -> None:
        """Each record's GC share and its most probable class."""
        for row in gc_calls(str(model), RecordSource(inputs or []), device):
            typer.echo("\t".join(map(str, row)))

    done = genomix_main("gc-calls", trained_model, test_fa, "--device", "cpu", "--threads", "1")
    rows = [line.split("\t") for line in done.stdout.decode().splitlines()]
    model = load_model(trained_model)
    expected = {p.id: model.classes[int(p.probs.argmax())]
                for p in predict_records(model, read_records(str(test_fa)), device="cpu")}
    assert done.returncode == 0 and {r[0]: r[2] for r in rows} == expected and len(rows) == len(expected)
    assert genomix_main("gc-calls", trained_model, test_fa, "--device", "tpu").returncode == 2


def test_an_empty_read_gets_an_unclassified_row_and_is_skipped_in_training(trained_model, tmp_path):
    from genomix.fitting.training import TrainSettings, fit

    (tmp_path / "r.fq").write_text("@a\nACGTACGTAC\n+\nIIIIIIIIII\n@trimmed\n\n+\n\n@b\nGGGCCCAT\n+\nIIIIIIII\n")
    predict(trained_model, RecordSource([str(tmp_path / "r.fq")]), tmp_path / "p.tsv", device="cpu")
    rows = [line.split("\t") for line in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["a", "trimmed", "b"]
    assert rows[1][1:4] == ["0", "unclassified", "nan"] and rows[0][2] in CLASSES
    records = motif_records(40, seed=3)
    from genomix.io.reading import Record

    model = fit([*records, Record("empty", "", "motif")], TrainSettings(arch="kmer", device="cpu"))
    assert model.card.training.records + 4 == 40  # the empty one skipped; 10% of the rest for validation


def test_an_output_that_names_an_input_is_refused_and_the_input_kept(trained_model, test_fa, tmp_path):
    copy = tmp_path / "reads.tsv"  # a table of reads, as a predictions file would be named
    copy.write_text("id\tsequence\nr1\tACGTACGTTT\nr2\tGGGCCCAAAT\n")
    before = copy.read_bytes()
    (tmp_path / "link.tsv").symlink_to(copy)
    for target in (copy, tmp_path / "link.tsv", tmp_path / "." / "reads.tsv"):
        with pytest.raises(GenomixError, match="input"):
            predict(trained_model, RecordSource([str(copy)]), target, device="cpu")
    assert copy.read_bytes() == before


def _genomix_imports() -> dict[str, set[str]]:
    """Each module of genomix → the modules of genomix it imports (at the top or inside functions; not those
    imported for type hints only)."""
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "genomix").rglob("*.py")}
    imports = {}
    for module, path in paths.items():
        named = set()
        for node in ast.walk(_without_type_checking(ast.parse(path.read_text()))):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                named |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in paths else node.module
                          for alias in node.names}
        imports[module] = (named & set(paths)) - {module}
    return imports


def test_the_modules_of_genomix_import_one_another_without_a_cycle():
    """Each module's imports name only modules below it: a cycle makes what a module holds depend on which one
    was imported first."""
    import graphlib

    try:
        list(graphlib.TopologicalSorter(_genomix_imports()).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


STAGES = ("genomix.errors", "genomix.console", "genomix.io", "genomix.sequences", "genomix.models",  # the layout, in
          "genomix.applying", "genomix.fitting", "genomix.overview", "genomix.cli")  # the order data flows


def test_each_stage_of_the_layout_imports_only_the_stages_before_it():
    """Records flow one way (read, tokenise, model, score, write; fitting scores as predict does): a module never
    reaches into a later stage. The package root holds the version and imports nothing when imported (its public
    names load on first use); `python -m genomix` stands above every stage."""

    def stage(module: str) -> int:
        if module == "genomix":
            return -1
        found = [i for i, s in enumerate(STAGES) if module == s or module.startswith(f"{s}.")]
        return found[0] if found else len(STAGES)

    backwards = [f"{module} imports {name}" for module, names in _genomix_imports().items() for name in names
                 if stage(name) > stage(module)]
    assert not backwards, "\n".join(sorted(backwards))
    assert {stage(m) for m in _genomix_imports()} - {-1, len(STAGES)} == set(range(len(STAGES)))  # none left out


def test_the_package_is_the_public_face():
    """`import genomix` gives every command's function without loading torch until one is used."""
    import subprocess
    import sys

    import genomix

    check = "import genomix, sys; print('torch' in sys.modules, len(genomix.__all__))"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[0] == "False", done.stderr
    for name in genomix.__all__:
        assert getattr(genomix, name) is not None
    assert genomix.fit.__module__ == "genomix.fitting.training" and genomix.Scorer.__name__ == "Scorer"


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """The module without its `if TYPE_CHECKING:` blocks: imports for type hints only never run."""
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")]
    return tree


def test_every_command_reads_an_output_suffix_through_one_table():
    from genomix.io.formats import format_of, output_format

    assert [format_of(p) for p in ("a.TSV", "a.b.vcf.gz", "t.bg", "t.BigWig", "a.tsv.gz", "a.gz", "a", "-")] == \
        ["tsv", "vcf.gz", "bedgraph", "bigwig", "tsv.gz", None, None, None]
    assert output_format("-", ["npz", "tsv"], "tsv") == "tsv" and output_format("x.v1.npz", ["npz"], None) == "npz"
    with pytest.raises(GenomixError, match=r"^-o e.vcf.bz2: unknown output format '.bz2'; choose .tsv, .vcf, "
                                           r".vcf.gz, or '-' for tsv on stdout$"):
        output_format("e.vcf.bz2", ["tsv", "vcf", "vcf.gz"], "tsv")
    with pytest.raises(GenomixError, match=r"^--out e.tsv.gz: unknown output format '.tsv.gz'; choose .parquet$"):
        output_format("e.tsv.gz", ["parquet"], None, flag="--out")
    with pytest.raises(GenomixError, match="cannot go to a stream; give a file"):
        output_format("-", ["parquet", "npy"], None)
    assert output_format("a.txt", ["tsv", "jsonl"], "tsv", chosen="jsonl") == "jsonl"  # --format: whatever the suffix
    assert output_format("-", ["tsv", "jsonl"], "tsv", chosen="jsonl") == "jsonl"
    with pytest.raises(GenomixError, match="^--format npz: choose tsv, jsonl$"):
        output_format("a.tsv", ["tsv", "jsonl"], "tsv", chosen="npz")
    with pytest.raises(GenomixError, match="^-o -: parquet is written by going back in the file"):
        output_format("-", ["tsv", "parquet"], "tsv", chosen="parquet")


def test_the_command_line_loads_without_sklearn_and_pysam():
    """`genomix info` and `--help` should not pay the second it takes to load them: the commands that use them
    import them."""
    import subprocess
    import sys

    check = "import genomix.cli, sys; print('sklearn' in sys.modules, 'pysam' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_no_function_of_genomix_is_longer_than_fifty_lines():
    """A function a newcomer reads in one screen; longer ones are split where their steps are."""
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted((ROOT / "genomix").rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 50]
    assert not long, "\n".join(long)


def test_a_stream_without_a_suffix_takes_the_default_format_and_a_seeking_format_refuses_a_pipe(tmp_path):
    """`-o /dev/stdout`, a FIFO or `>(gzip > x.gz)` have no suffix: they get the command's text format. bigWig and
    parquet go back in the file, which a pipe cannot do: refused in one line."""
    import os

    from genomix.io.formats import output_format

    os.mkfifo(tmp_path / "pipe")
    os.mkfifo(tmp_path / "pipe.bw")
    assert output_format(tmp_path / "pipe", ["tsv", "jsonl", "parquet"], "tsv") == "tsv"
    assert output_format("/dev/stdout", ["bedgraph", "bigwig"], "bedgraph") == "bedgraph"
    with pytest.raises(GenomixError, match="pipe.bw: bigwig is written by going back in the file"):
        output_format(tmp_path / "pipe.bw", ["bedgraph", "bigwig"], "bedgraph")
    with pytest.raises(GenomixError, match="unknown output format '\\(no suffix\\)'"):
        output_format(tmp_path / "plain", ["tsv"], "tsv")  # a file to be, not a stream
