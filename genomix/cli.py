"""The `genomix` command line: parses options and delegates each command to a library function.

Options shared by several commands are defined once below, so a flag means the same thing everywhere;
docs/CLI.md is the vocabulary (every flag, the commands that take it, its one meaning).
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from genomix.applying import embedding, evaluating, explaining, predicting, scanning, variants
from genomix.applying.metrics import report_table
from genomix.applying.scoring import BATCH_SIZE
from genomix.console import PRECISIONS, console, resolve_device, reuse_large_allocations, use_threads
from genomix.errors import GenomixError
from genomix.fitting import distributed, pretraining, training
from genomix.fitting.pretraining import PretrainSettings
from genomix.fitting.skeleton import DEFAULT_MAX_LEN_CAP, MIN_LEN, checkpoint_path
from genomix.fitting.training import TrainSettings
from genomix.io.files import exit_on_sigterm
from genomix.io.sources import RecordSource
from genomix.io.writers import WRITERS
from genomix.models import DEFAULT_MODEL, MODELS, list_models
from genomix.models.modelfile import describe, read_card, read_header
from genomix.overview import COMMANDS, new_app

app = new_app()
INTERRUPTED = 130  # the exit code of Ctrl-C, by the shell's convention
TRAINING = TrainSettings()  # the training defaults, written once, in TrainSettings
PRETRAINING = PretrainSettings()
OPTIONS = MODELS[DEFAULT_MODEL].Options()  # the default model's option defaults, shown in --help

# Old spellings that still work for a release, each with a one-line notice: command -> {old: new}; a new of
# None drops the flag (what it asked for is now the default, said in DROPPED).
DEPRECATED: dict[str, dict[str, str | None]] = {
    "train": {"--model": "--arch", "--window": "--genome-window"},
    "pretrain": {"--model": "--arch", "--window": "--genome-window"},
    "variants": {"--window": "--allele-window"},
    "evaluate": {"--json": None},
}
DROPPED = {"--json": "the metrics JSON goes to -o, stdout by default"}


def deprecated(command: str, old: str, advice: str) -> None:
    print(f"genomix: warning: {old} is deprecated in {command}; {advice}", file=sys.stderr)


class Command(TyperCommand):
    """A command that still takes the deprecated spellings of its options (`DEPRECATED`), saying so on stderr."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        renamed, kept = DEPRECATED.get(self.name or "", {}), []
        for i, arg in enumerate(args):
            if arg == "--":  # what follows is not an option
                kept += args[i:]
                break
            flag, eq, value = arg.partition("=")
            if flag in renamed:
                new = renamed[flag]
                deprecated(str(self.name), flag, f"use {new}" if new else DROPPED[flag])
                if new is None:
                    continue
                arg = new + eq + value
            kept.append(arg)
        return super().parse_args(ctx, kept)


def command(name: str | None = None) -> Any:
    """Register a command that still takes its deprecated spellings (`Command`), with its help from
    `genomix.overview.COMMANDS` (a command not listed there shows its docstring)."""

    def register(function: Any) -> Any:
        key = name or function.__name__
        return app.command(key, cls=Command, help=COMMANDS.get(key))(function)

    return register


def choices(name: str, values: list[str]) -> Any:
    """A closed set of values as an Enum: --help lists them, and the parser refuses others (exit 2)."""
    return Enum(name, {v: v for v in values}, type=str)


def value_of(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


Arch = choices("Arch", list_models())
NeuralArch = choices("NeuralArch", pretraining.neural_models())
Method = choices("Method", list(explaining.METHODS))
ReportFormat = choices("ReportFormat", ["tsv", "kraken"])
PrecisionChoice = choices("PrecisionChoice", list(PRECISIONS))


LARGEST_INT = 2**63 - 1  # what an integer option may hold at most: numpy and torch take 64-bit integers


def _shown(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


@dataclass(frozen=True)
class Range:
    """The legal values of a numeric option: finite, and within its bounds (each included unless open; an integer
    within 64 bits). Every numeric option of the command line declares its range once, as `callback=Range(...).check`,
    so a bad value fails in one line that names the flag, before any input is read or model loaded. The library
    checks its arguments again (a model its options, whatever their spelling), for callers from Python."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def bounds(self, value: float) -> tuple[float | None, float | None]:
        """The bounds that `value` is held to: the declared ones, and for an integer those of 64 bits."""
        beyond = isinstance(value, int) and abs(value) > LARGEST_INT
        return (-LARGEST_INT if self.low is None and beyond else self.low,
                LARGEST_INT if self.high is None and beyond else self.high)

    def __contains__(self, value: float) -> bool:
        low, high = self.bounds(value)
        return (math.isfinite(value)
                and (low is None or low < value or (value == low and not self.low_open))
                and (high is None or value < high or (value == high and not self.high_open)))

    def describe(self, value: float) -> str:
        """What the range is, in words: 'at least 1', 'a positive number', 'in (0, 1]'..."""
        low, high = self.bounds(value)
        show = _shown
        if low is not None and high is not None:
            if self.low_open == self.high_open:
                return f"between {show(low)} and {show(high)}" + (", exclusive" if self.low_open else "")
            return f"in {'(' if self.low_open else '['}{show(low)}, {show(high)}{')' if self.high_open else ']'}"
        if low is not None:
            return ("a positive number" if low == 0 else f"greater than {show(low)}") if self.low_open else \
                f"at least {show(low)}"
        if high is not None:
            return f"less than {show(high)}" if self.high_open else f"at most {show(high)}"
        return "a finite number"

    def check(self, ctx: Any, param: Any, value: Any) -> Any:
        """The option's callback: its value when legal (or not given), else a one-line error naming the flag."""
        if value is not None and value not in self:
            raise GenomixError(f"{param.opts[0]} must be {self.describe(value)}, got {value}")
        return value


COUNT = Range(1)  # a number of things: epochs, windows, bases...
FRACTION = Range(0, 1, low_open=True, high_open=True)  # a share strictly between none and all
FRACTION_OR_NONE = Range(0, 1, high_open=True)  # a share that may be none (a validation split, dropout)
SEED = Range(0, 2**32 - 1)  # numpy's seeds
THREADS = Range(1, 4096)  # torch takes a 32-bit count


def _threads(ctx: Any, param: Any, threads: int | None) -> int | None:
    """--threads is checked and applied here, once, for every command that takes it."""
    use_threads(THREADS.check(ctx, param, threads))
    return threads


def _device(device: str) -> str:
    """--device is checked here, once, so a bad or absent device fails before any input is read."""
    resolve_device(device)
    return device


# --- options shared by several commands ------------------------------------------------------------------
ModelFile = Annotated[Path, typer.Argument(help="Model file written by `genomix train`.")]
Inputs = Annotated[list[str] | None, typer.Argument(
    help="FASTA/FASTQ/CSV/TSV files (gzip/bzip2 ok), '-' for stdin; CLASS=FILE labels a whole file.")]
Labels = Annotated[str | None, typer.Option(help="Two-column table: id, label.")]
Bed = Annotated[list[str] | None, typer.Option(
    "--bed", help="BED regions of --reference (strand respected), labelled by their name column or "
    "CLASS=FILE. Repeatable.")]
REFERENCE = "Genome FASTA (plain or bgzip, indexed on first use) that coordinates refer to"
Reference = Annotated[str | None, typer.Option(help=f"{REFERENCE}: the --bed regions.")]
Device = Annotated[str, typer.Option(callback=_device, help="auto (CUDA when present), cpu, cuda or cuda:N.")]
ScoreBatch = Annotated[int, typer.Option(
    "--batch-size", callback=COUNT.check, help="Sequences (or windows) per scoring batch.")]
Strands = Annotated[bool | None, typer.Option(
    "--rc/--no-rc", help="Average each score over both strands. Default: as the model file says "
    "(both after training with --rc-augment).")]
Threshold = Annotated[float | None, typer.Option(
    callback=FRACTION.check, help="Call the class (a binary model's positive class, or scan's --class) when its "
    "probability reaches this. Default: the most probable class.")]
ReportFile = Annotated[str | None, typer.Option(
    help="Summary TSV: per called class (and unclassified) the records (scan: windows), bases, their "
    "shares and the mean score; '-' for stdout.")]
Plots = Annotated[Path | None, typer.Option(
    help="Folder for PNG figures, created if needed (evaluate: ROC, precision-recall and confusion "
    "matrix; explain: a sequence logo of each top-scoring record, or of --ids).")]
Precision = Annotated[PrecisionChoice, typer.Option(
    help="Arithmetic of the network's matrix products: bf16, fp32, or auto (bf16 on CUDA; "
    "fp32 on the CPU, docs/PERFORMANCE.md).")]
Threads = Annotated[int | None, typer.Option(
    callback=_threads, help="CPU threads for torch (a pipeline job's share of the cores). "
    "Default: torch's choice.")]
Seed = Annotated[int, typer.Option(
    callback=SEED.check, help="Random seed: the same seed draws the same (train, pretrain: split, crops, "
    "initialisation; explain: ig's shuffled references).")]


def format_option(name: str, formats: Sequence[str]) -> Any:
    """--format of a command whose -o is typed by its suffix: one of the command's `formats`, whatever the suffix."""
    return Annotated[choices(name, list(formats)) | None, typer.Option(
        "--format", help="Format of -o whatever its suffix (a name without one, a pipe). Default: by the suffix.")]


PredictFormat = format_option("PredictFormat", WRITERS)
EmbedFormat = format_option("EmbedFormat", embedding.FORMATS)
ScanFormat = format_option("ScanFormat", scanning.FORMATS)
ExplainFormat = format_option("ExplainFormat", explaining.OUTPUTS)
VariantsFormat = format_option("VariantsFormat", variants.OUTPUTS)


def model_options(pairs: list[str] | None, **flags: Any) -> dict[str, Any]:
    """The model options of `--set KEY=VALUE` pairs and of the shorthand flags that were given."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not (sep and key):
            raise GenomixError(f"--set {pair}: expected KEY=VALUE, e.g. --set heads=8")
        options[key.strip().replace("-", "_")] = value.strip()
    for key, value in flags.items():
        if value is not None:
            if key in options:
                raise GenomixError(f"--{key} and --set {key}=... both given: give one")
            options[key] = value
    return options


@contextmanager
def resumable(output: str) -> Iterator[None]:
    """train and pretrain, interrupted (Ctrl-C, SIGTERM) after an epoch: name the checkpoint kept and the command
    that continues from it, to copy as it is."""
    try:
        yield
    except KeyboardInterrupt:
        checkpoint = checkpoint_path(output)
        if checkpoint.is_file() and distributed.is_main():  # under torchrun, once
            again = shlex.join(["genomix", *sys.argv[1:], *["--resume"] * ("--resume" not in sys.argv)])
            print(f"genomix: {checkpoint} holds the last finished epoch; to continue: {again}", file=sys.stderr)
        raise


# --- training options (their defaults live in TrainSettings or in each model's options) ---------------------
SetOptions = Annotated[list[str] | None, typer.Option(
    "--set", help="Model option KEY=VALUE (e.g. heads=8, kmer_embedding=0). Repeatable.")]
DEFAULT_OF = f"{DEFAULT_MODEL} default"
Dim = Annotated[int | None, typer.Option(
    callback=COUNT.check, help=f"Embedding width D ({DEFAULT_OF} {OPTIONS.dim}).")]
Hidden = Annotated[int | None, typer.Option(
    callback=COUNT.check, help=f"Hidden width H ({DEFAULT_OF} {OPTIONS.hidden}).")]
Layers = Annotated[int | None, typer.Option(
    callback=COUNT.check, help=f"Mixing blocks ({DEFAULT_OF} {OPTIONS.layers}).")]
Dropout = Annotated[float | None, typer.Option(
    callback=FRACTION_OR_NONE.check, help=f"Dropout rate ({DEFAULT_OF} {OPTIONS.dropout}).")]
Composition = Annotated[bool | None, typer.Option(
    "--composition/--no-composition", help="Neural models: blend in a k-mer logistic regression, "
    "weighted by validation likelihood (0 when it does not help). Default: "
    f"{'on' if OPTIONS.composition else 'off'}.")]
MaxLen = Annotated[int | None, typer.Option(
    "--max-len", callback=Range(MIN_LEN).check, help="Longest window the model reads; longer training sequences are "
    "cropped. Default: the --genome-window, else the longest training sequence, at most "
    f"{DEFAULT_MAX_LEN_CAP:,}.")]
Epochs = Annotated[int, typer.Option(callback=COUNT.check, help="Most epochs to train.")]
TrainBatch = Annotated[int, typer.Option("--batch-size", callback=COUNT.check, help="Sequences per training batch.")]
Lr = Annotated[float, typer.Option(
    callback=Range(0, low_open=True).check, help="Peak learning rate (AdamW, warm-up, cosine decay).")]
ValFiles = Annotated[list[str] | None, typer.Option(
    "--val", help="Validation file(s) instead of a split; CLASS=FILE allowed. Repeatable.")]
Patience = Annotated[int, typer.Option(
    callback=COUNT.check, help="Stop after this many epochs without validation gain.")]
Resume = Annotated[bool, typer.Option(help="Continue from OUTPUT.ckpt after an interruption.")]
GenomeWindow = Annotated[int | None, typer.Option(
    "--genome-window", callback=Range(MIN_LEN).check, help="With --genome: bases per window cut from a genome "
    "(required with --genome).")]
HoldoutFraction = Annotated[float, typer.Option(
    "--holdout-fraction", callback=FRACTION.check, help="With --genome: end share of every contig held out, half "
    "for validation, half for test (`genomix evaluate --genome`).")]
ModelOutput = Annotated[str, typer.Option("--output", "-o", help="Model file to write (safetensors).")]


# --- train's own options ---
StratifiedFraction = Annotated[float, typer.Option(
    "--val-fraction", callback=FRACTION_OR_NONE.check, help="Share of the inputs held out (stratified) for "
    "validation.")]
RcAugment = Annotated[bool | None, typer.Option(
    "--rc-augment/--no-rc-augment", help="Train on random reverse complements and score both strands. Default: on "
    "when the training sequences have no strand (cannot be told from their reverse complements), as for species or "
    "enhancers; off for promoters.")]
PositiveClass = Annotated[str | None, typer.Option(
    "--positive-class", help="Binary models: the class that --threshold, AUROC and scan call. Default: the one whose "
    "partner is named as negative (non_X, not_X, negative, background, control), else the second in sorted order.")]
LabelledGenomes = Annotated[list[str] | None, typer.Option(
    "--genome", help="CLASS=genome.fa (plain or bgzip): windows of this genome belong to CLASS. Repeatable, several "
    "genomes per class allowed.")]
ClassWindows = Annotated[int, typer.Option(
    "--windows-per-epoch", callback=COUNT.check, help="With --genome: fresh random windows per epoch, the same "
    "number for every class.")]
Init = Annotated[str | None, typer.Option(
    help="Backbone file (`genomix pretrain`) to fine-tune: the architecture and every weight but the head come from "
    "it.")]
FreezeBackbone = Annotated[bool, typer.Option(
    "--freeze-backbone", help="With --init: train only the head (and fit the k-mer term as usual).")]

@command()
def train(
    output: ModelOutput,
    inputs: Inputs = None,
    arch: Annotated[Arch | None, typer.Option(
        help=f"Architecture to train (`genomix models` lists their options). Default: {DEFAULT_MODEL}, "
        "or with --init the backbone's.")] = None,
    set_: SetOptions = None,
    dim: Dim = None,
    hidden: Hidden = None,
    layers: Layers = None,
    dropout: Dropout = None,
    composition: Composition = None,
    max_len: MaxLen = None,
    epochs: Epochs = TRAINING.epochs,
    batch_size: TrainBatch = TRAINING.batch_size,
    lr: Lr = TRAINING.lr,
    val_fraction: StratifiedFraction = TRAINING.val_fraction,
    val: ValFiles = None,
    labels: Labels = None,
    patience: Patience = TRAINING.patience,
    rc_augment: RcAugment = TRAINING.rc_augment,
    positive_class: PositiveClass = TRAINING.positive_class,
    seed: Seed = TRAINING.seed,
    device: Device = TRAINING.device,
    resume: Resume = False,
    bed: Bed = None,
    reference: Reference = None,
    genome: LabelledGenomes = None,
    genome_window: GenomeWindow = TRAINING.genome_window,
    holdout_fraction: HoldoutFraction = TRAINING.holdout_fraction,
    windows_per_epoch: ClassWindows = TRAINING.windows_per_epoch,
    init: Init = TRAINING.init,
    freeze_backbone: FreezeBackbone = TRAINING.freeze_backbone,
    known_recall: Annotated[float, typer.Option(
        "--known-recall", callback=FRACTION.check, help="Share of validation records the novelty threshold keeps "
        "known (`predict --unknown`).")] = TRAINING.known_recall,
    threads: Threads = None,
) -> None:
    options = model_options(set_, dim=dim, hidden=hidden, layers=layers, dropout=dropout, composition=composition)
    settings = TrainSettings(
        arch=value_of(arch), options=options, max_len=max_len, epochs=epochs, batch_size=batch_size, lr=lr,
        val_fraction=val_fraction, patience=patience, rc_augment=rc_augment, genome_window=genome_window,
        holdout_fraction=holdout_fraction, windows_per_epoch=windows_per_epoch, positive_class=positive_class,
        seed=seed, device=device, init=init, freeze_backbone=freeze_backbone, known_recall=known_recall,
    )
    source = RecordSource(inputs or [], labels, bed or [], reference, genome or [], val or [])
    with resumable(output):
        training.train(source, output, settings, resume=resume)


@command()
def pretrain(
    output: Annotated[str, typer.Option("--output", "-o", help="Backbone file to write (safetensors).")],
    inputs: Annotated[list[str] | None, typer.Argument(
        help="FASTA/FASTQ/CSV/TSV files (gzip/bzip2 ok), '-' for stdin; labels are ignored.")] = None,
    arch: Annotated[NeuralArch | None, typer.Option(
        help=f"Neural architecture to pretrain. Default: {DEFAULT_MODEL}.")] = None,
    set_: SetOptions = None,
    dim: Dim = None,
    hidden: Hidden = None,
    layers: Layers = None,
    dropout: Dropout = None,
    max_len: MaxLen = None,
    epochs: Epochs = PRETRAINING.epochs,
    batch_size: TrainBatch = PRETRAINING.batch_size,
    lr: Lr = PRETRAINING.lr,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", callback=FRACTION_OR_NONE.check, help="Share of the inputs held out (at random) for "
        "validation.")] = PRETRAINING.val_fraction,
    val: ValFiles = None,
    patience: Patience = PRETRAINING.patience,
    rc_augment: Annotated[bool, typer.Option(
        "--rc-augment/--no-rc-augment", help="Pretrain on random reverse complements too.")
    ] = bool(PRETRAINING.rc_augment),
    mask_fraction: Annotated[float, typer.Option(
        "--mask-fraction", callback=FRACTION.check, help="Share of the bases to predict in each window (80% of "
        "them hidden as N, 10% replaced by a random base, 10% left).")] = PRETRAINING.mask_fraction,
    seed: Seed = PRETRAINING.seed,
    device: Device = PRETRAINING.device,
    resume: Resume = False,
    genome: Annotated[list[str] | None, typer.Option(
        "--genome", help="Genome FASTA (plain or bgzip) to draw fresh random windows of every epoch, "
        "outside the held-out end of every contig; a CLASS= prefix is ignored. Repeatable.")] = None,
    genome_window: GenomeWindow = PRETRAINING.genome_window,
    holdout_fraction: HoldoutFraction = PRETRAINING.holdout_fraction,
    windows_per_epoch: Annotated[int, typer.Option(
        "--windows-per-epoch", callback=COUNT.check, help="With --genome: fresh random windows per epoch.")
    ] = PRETRAINING.windows_per_epoch,
    threads: Threads = None,
) -> None:
    options = model_options(set_, dim=dim, hidden=hidden, layers=layers, dropout=dropout)
    settings = PretrainSettings(
        arch=value_of(arch), options=options, max_len=max_len, epochs=epochs, batch_size=batch_size, lr=lr,
        val_fraction=val_fraction, patience=patience, rc_augment=rc_augment, genome_window=genome_window,
        holdout_fraction=holdout_fraction, windows_per_epoch=windows_per_epoch, mask_fraction=mask_fraction,
        seed=seed, device=device,
    )
    source = RecordSource(inputs or [], genomes=genome or [], val_inputs=val or [])
    with resumable(output):
        pretraining.pretrain(source, output, settings, resume=resume)


@command()
def predict(
    model: ModelFile,
    inputs: Inputs = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Predictions to write: .tsv, .jsonl, .parquet or "
                                        ".kraken (Kraken2's per-read lines); '-' for stdout (TSV).")] = "-",
    format_: PredictFormat = None,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    threshold: Threshold = None,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", callback=Range(0, 1, low_open=True).check, help="Call a record 'unclassified' when its top "
        "(calibrated) probability is below this, in (0, 1].")] = None,
    report: ReportFile = None,
    classified_out: Annotated[str | None, typer.Option(
        "--classified-out", help="Write each record to the file of its class: '#' in the name becomes "
        "the class (unclassified too), e.g. 'out_#.fq.gz'. FASTQ stays FASTQ.")] = None,
    paired: Annotated[tuple[str, str] | None, typer.Option(
        help="R1 R2: score each read pair as one record (mates' log-probabilities averaged).")] = None,
    bed: Bed = None,
    reference: Reference = None,
    shard: Annotated[str | None, typer.Option(
        help="I/N: score only records I, I+N, I+2N... (1-based) to split work across jobs.")] = None,
    report_format: Annotated[ReportFormat | None, typer.Option(
        "--report-format", help="kraken: the --report in Kraken2's format (MultiQC, taxpasta, Krona, kraken-biom "
        "read it). Default: kraken for a .kreport file, else tsv.")] = None,
    taxonomy: Annotated[str | None, typer.Option(
        help="TSV mapping each class to an NCBI taxid (columns class, taxid; optional name, rank, lineage) for "
        "the Kraken-format outputs. Default: each class a species under the root, with a stable id.")] = None,
    unknown: Annotated[bool, typer.Option(
        "--unknown", help="Call a record 'unknown' when its novelty score is past the model's threshold (unlike "
        "the training data).")] = False,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    source = RecordSource(inputs or [], bed=bed or [], reference=reference)
    outputs = predicting.Outputs(output, report, classified_out, value_of(report_format), taxonomy, value_of(format_))
    predicting.predict(model, source, outputs, batch_size=batch_size, device=device, rc=rc, threshold=threshold,
                       shard=shard, min_score=min_score, paired=paired, unknown=unknown, precision=precision.value)


@command()
def embed(
    model: ModelFile,
    inputs: Inputs = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Embeddings to write: .parquet (id, length, e0...) "
                                        "or .npy (with the ids in OUTPUT.ids).")] = ...,
    format_: EmbedFormat = None,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    bed: Bed = None,
    reference: Reference = None,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    source = RecordSource(inputs or [], bed=bed or [], reference=reference)
    embedding.embed(model, source, output, batch_size=batch_size, device=device, rc=rc, format=value_of(format_),
                    precision=precision.value)


@command()
def evaluate(
    model: ModelFile,
    inputs: Inputs = None,
    labels: Labels = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Metrics to write as JSON; '-' for stdout. The "
                                        "table goes to stderr.")] = "-",
    report: ReportFile = None,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    threshold: Threshold = None,
    plots: Plots = None,
    bed: Bed = None,
    reference: Reference = None,
    genome: Annotated[list[str] | None, typer.Option(
        "--genome", help="CLASS=genome.fa: score the test windows of genomes held out at training "
        "(same window and --holdout-fraction as training). Repeatable.")] = None,
    unknown: Annotated[list[str] | None, typer.Option(
        "--unknown", help="Sequences of organisms the model was not trained on: adds open-set metrics of the "
        "novelty score (AUROC, FPR at 95% known recall, unknown records called known). Repeatable.")] = None,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    source = RecordSource(inputs or [], labels, bed or [], reference, genome or [])
    result, classes = evaluating.evaluate(model, source, batch_size=batch_size, device=device, rc=rc,
                                          threshold=threshold, plots=plots, output=output, report=report,
                                          unknown=RecordSource(unknown) if unknown else None,
                                          precision=precision.value)
    console.print(report_table(result, classes, "evaluation"))


@command()
def scan(
    model: ModelFile,
    genome: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: give the genome as --reference.")] = None,
    reference: Annotated[str | None, typer.Option(help=f"{REFERENCE}: the genome slid along (required).")] = None,
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Track to write: bedGraph, or bigWig for a .bw/.bigwig suffix; '-' for stdout "
        "(bedGraph). With --all-classes, one file per class: out.bedgraph becomes out.CLASS.bedgraph.")] = "-",
    format_: ScanFormat = None,
    window: Annotated[int | None, typer.Option(
        callback=Range(scanning.MIN_WINDOW).check, help="Bases per window slid along the genome. Default: the "
        "model's max_len; longer windows are tiled as in predict.")] = None,
    step: Annotated[int | None, typer.Option(
        callback=COUNT.check, help="Bases between window starts. Default: half the window.")] = None,
    class_name: Annotated[str | None, typer.Option(
        "--class", help="Class whose probability is tracked. Default: a binary model's positive class.")] = None,
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="One bedGraph per class, named OUTPUT_STEM.CLASS.SUFFIX.")
    ] = False,
    bed_out: Annotated[str | None, typer.Option(
        "--bed-out", help="BED of the regions where CLASS is called (see --threshold): the windows' "
        "extents, merged where they overlap or touch, scored 1000 × the highest probability.")] = None,
    threshold: Threshold = None,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    report: ReportFile = None,
    unknown: Annotated[bool, typer.Option(
        "--unknown", help="Windows past the model's novelty threshold are 'unknown' in --report and never called "
        "in --bed-out.")] = False,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    if genome is not None:
        if reference is not None:
            raise GenomixError("scan: give the genome once, as --reference")
        deprecated("scan", "the GENOME argument", "use --reference GENOME")
        reference = str(genome)
    if reference is None:
        raise GenomixError("scan needs --reference genome.fa, the genome to slide along")
    scanning.scan(model, reference, output, window=window, step=step, class_name=class_name,
                  all_classes=all_classes, bed_out=bed_out, threshold=threshold, batch_size=batch_size, device=device,
                  rc=rc, report=report, unknown=unknown, format=value_of(format_), precision=precision.value)


@command("variants")
def variants_(
    model: ModelFile,
    vcf: Annotated[str, typer.Option("--vcf", help="Variant calls: VCF, plain or bgzip.")],
    reference: Annotated[str, typer.Option(help=f"{REFERENCE}: the positions of the VCF.")],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Effects to write: .tsv (a row per allele), .vcf or .vcf.gz (+ .tbi; the input "
        "with INFO fields added); '-' for stdout (TSV, or VCF with --format vcf).")] = "-",
    format_: VariantsFormat = None,
    allele_window: Annotated[int | None, typer.Option(
        "--allele-window", callback=COUNT.check, help="Bases per window, centred on each allele. Default: the "
        "model's max_len.")] = None,
    skip_mismatch: Annotated[bool, typer.Option(
        "--skip-mismatch", help="Count records whose REF differs from the reference, instead of stopping.")] = False,
    region: Annotated[str | None, typer.Option(
        help="Score only CHROM or CHROM:START-END (a bgzip VCF with a tabix index).")] = None,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    summary = variants.score_variants(model, vcf, reference, output, allele_window=allele_window,
                                      skip_mismatch=skip_mismatch, region=region, device=device,
                                      batch_size=batch_size, rc=rc, format=value_of(format_),
                                      precision=precision.value)
    console.log(summary.line())


@command()
def explain(
    model: ModelFile,
    inputs: Inputs = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Attributions to write: .npz (per-base scores, "
                                        "hypothetical contributions and, for ism, every substitution), .tsv or '-' "
                                        "for stdout (a row per base), .bedgraph/.bg or .bw/.bigwig (genome "
                                        "coordinates of --bed regions).")] = "-",
    format_: ExplainFormat = None,
    method: Annotated[Method, typer.Option(help="ism (every substitution, exact), gradient (gradient x input, a few "
                                           "forward passes) or ig (integrated gradients from dinucleotide "
                                           "shuffles, drawn with --seed).")] = "gradient",
    class_name: Annotated[str | None, typer.Option(
        "--class", help="Class whose log-odds are explained, or 'predicted' (each record's most "
        "probable). Default: a binary model's positive class, else the predicted class.")] = None,
    start: Annotated[int | None, typer.Option(
        callback=Range(0).check, help="First position explained in every record (0-based). Default: 0.")] = None,
    end: Annotated[int | None, typer.Option(
        callback=COUNT.check, help="Position after the last one explained (0-based, exclusive). Default: the "
        "record's end.")] = None,
    plots: Plots = None,
    ids: Annotated[list[str] | None, typer.Option("--ids", help="Records to draw with --plots. Repeatable.")] = None,
    top: Annotated[int, typer.Option(
        callback=COUNT.check, help="Records drawn with --plots without --ids: the highest log-odds.")
    ] = explaining.Extras.top,
    motifs: Annotated[Path | None, typer.Option(
        help="Folder for motifs found in the attributions (TF-MoDISco-lite): motifs.meme, motifs.tsv "
        "(seqlets, consensus, known match) and a logo each.")] = None,
    known: Annotated[str | None, typer.Option(
        help="MEME file of known motifs to compare the --motifs with (TOMTOM).")] = None,
    max_passes: Annotated[
        int, typer.Option("--max-passes", callback=COUNT.check, help="Most window forward passes an ism request may "
                          "take.")
    ] = explaining.MAX_ISM_PASSES,
    seed: Seed = 0,
    batch_size: ScoreBatch = BATCH_SIZE,
    device: Device = "auto",
    rc: Strands = None,
    bed: Bed = None,
    reference: Reference = None,
    threads: Threads = None,
    precision: Precision = "auto",
) -> None:
    source = RecordSource(inputs or [], bed=bed or [], reference=reference)
    extras = explaining.Extras(plots=plots, ids=ids, top=top, motifs=motifs, known=known)
    explaining.explain(model, source, output, method=method.value, class_name=class_name, start=start, end=end,
                       extras=extras, batch_size=batch_size, device=device, rc=rc, max_passes=max_passes, seed=seed,
                       format=value_of(format_), precision=precision.value)


@command()
def info(
    model: ModelFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole header as JSON.")] = False,
) -> None:
    typer.echo(json.dumps(read_header(model), indent=2) if as_json else describe(read_card(model)))


@command()
def models() -> None:
    for name in list_models():
        options = MODELS[name].Options().as_dict()
        doc = (MODELS[name].__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name}: {doc}\n    " + (" ".join(f"{k}={v}" for k, v in options.items()) or "no options"))


def one_line(message: str) -> str:
    """The message with its line breaks escaped (a file name may hold one): an error is always one line."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def main() -> None:
    """Entry point: user errors (ours and the option parser's) become one line on stderr and exit code 2 (1 for
    a fault of the machine, `GenomixError.exit_code`); an interruption says what it was; a reader that leaves a
    pipe ends the run quietly; bugs keep their traceback."""
    reuse_large_allocations()
    exit_on_sigterm()
    try:
        status = app(standalone_mode=False)
    except GenomixError as err:
        print(f"genomix: error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(err.exit_code)
    except typer.TyperException as err:  # a bad option value, a missing argument, an unknown command
        message = " ".join(err.format_message().split()) if hasattr(err, "format_message") else ""
        if message:  # an empty message: the help was shown (no arguments)
            print(f"genomix: error: {message} (see --help)", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))
    except SystemExit as err:  # the parser ends a broken pipe (`genomix predict ... | head`) with exit code 1
        if isinstance(err.__context__, BrokenPipeError):
            sys.stderr.close()
            sys.exit(0)
        raise
    if status == INTERRUPTED:  # the parser turns Ctrl-C and SIGTERM into this exit code
        terminated = signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # exit_on_sigterm's handler has run
        print(f"genomix: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM if terminated else INTERRUPTED)
    sys.exit(status or 0)
