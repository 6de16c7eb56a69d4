"""The `genomix` command line: parses options and delegates each command to a library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from genomix import __version__, evaluating, predicting, scanning, training
from genomix.console import console, reuse_large_allocations
from genomix.errors import GenomixError
from genomix.metrics import report_table
from genomix.modelfile import describe, read_header
from genomix.training import TrainSettings

app = typer.Typer(
    name="genomix",
    help="Train and apply DNA sequence classifiers built on Paramixer.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

Inputs = Annotated[
    list[str],
    typer.Argument(help="FASTA/FASTQ/CSV/TSV files (gzip/bzip2 ok), '-' for stdin; CLASS=FILE labels a whole file."),
]
OptionalInputs = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(help="FASTA/FASTQ/CSV/TSV files (gzip/bzip2 ok), '-' for stdin; CLASS=FILE labels a whole file."),
]
Bed = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--bed", help="BED regions (strand respected), labelled by their name column or CLASS=FILE. "
                 "Repeatable."),
]
Reference = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Genome FASTA (plain or bgzip) that --bed regions are cut from."),
]
Genomes = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--genome", help="CLASS=genome.fa (plain or bgzip): windows of this genome belong to CLASS. "
                 "Repeatable, several genomes per class allowed."),
]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Sequences (or windows) per batch.")]
Strands = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option("--rc/--no-rc", help="Average each score over both strands. Default: as the model was trained "
                 "(yes after --rc-augment)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genomix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Train and apply DNA sequence classifiers built on Paramixer."""


@app.command()
def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (safetensors).")],
    inputs: OptionalInputs = None,
    model: Annotated[str, typer.Option(help="paramixer, transformer, cnn or kmer.")] = TrainSettings.model,
    protocol: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Paramixer protocol: cdil (default, O(N log N)) or chord (O(N log² N); every factor "
                          "links all distances 2^k)."),
    ] = None,
    max_len: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-len", help="Longest window the model reads; longer training sequences are cropped."),
    ] = None,
    dim: Annotated[int, typer.Option(help="Embedding width D.")] = TrainSettings.dim,
    hidden: Annotated[int, typer.Option(help="Hidden width H of the MLPs.")] = TrainSettings.hidden,
    layers: Annotated[int, typer.Option(help="Number of mixing blocks.")] = TrainSettings.layers,
    dropout: Annotated[float, typer.Option(help="Dropout rate.")] = TrainSettings.dropout,
    epochs: Annotated[int, typer.Option(help="Most epochs to train.")] = TrainSettings.epochs,
    batch_size: BatchSize = TrainSettings.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up, cosine decay).")] = TrainSettings.lr,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of the inputs held out (stratified) for validation.")
    ] = TrainSettings.val_fraction,
    val: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--val", help="Validation file(s) instead of a split; CLASS=FILE allowed. Repeatable."),
    ] = None,
    labels: Annotated[Optional[str], typer.Option(help="Two-column table: id, label.")] = None,  # noqa: UP045
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without validation gain.")
    ] = TrainSettings.patience,
    rc_augment: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--rc-augment/--no-rc-augment",
                     help="Train on random reverse complements and score both strands. Default: on when the "
                     "training sequences have no strand (cannot be told from their reverse complements), as for "
                     "species or enhancers; off for promoters."),
    ] = TrainSettings.rc_augment,
    composition: Annotated[
        bool,
        typer.Option("--composition/--no-composition",
                     help="Neural models: blend in a k-mer logistic regression, weighted by validation likelihood "
                     "(0 when it does not help)."),
    ] = TrainSettings.composition,
    seed: Annotated[int, typer.Option(help="Random seed (split, crops, initialisation).")] = TrainSettings.seed,
    device: Device = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT.ckpt after an interruption.")] = False,
    bed: Bed = None,
    reference: Reference = None,
    genome: Genomes = None,
    window: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="With --genome: bases per training window (and the model's --max-len)."),
    ] = None,
    holdout_fraction: Annotated[
        float, typer.Option("--holdout-fraction", help="With --genome: end share of every contig held out, "
                            "half for validation, half for test (`genomix evaluate --genome`).")
    ] = TrainSettings.holdout_fraction,
    windows_per_epoch: Annotated[
        int, typer.Option("--windows-per-epoch", help="With --genome: fresh random windows per epoch, "
                          "the same number for every class.")
    ] = TrainSettings.windows_per_epoch,
) -> None:
    """Train a classifier on labelled sequences, BED regions or whole genomes, and write it to a model file."""
    settings = TrainSettings(
        model=model, protocol=protocol, max_len=max_len, dim=dim, hidden=hidden, layers=layers, dropout=dropout,
        epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction, patience=patience,
        rc_augment=rc_augment, composition=composition, seed=seed, device=device, window=window,
        holdout_fraction=holdout_fraction, windows_per_epoch=windows_per_epoch,
    )
    training.train(inputs or [], output, settings, labels=labels, val_inputs=val, resume=resume,
                   genomes=genome or [], bed=bed or [], reference=reference)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model file written by `genomix train`.")],
    inputs: OptionalInputs = None,
    output: Annotated[str, typer.Option("--output", "-o", help="TSV to write; '-' for stdout.")] = "-",
    batch_size: BatchSize = 64,
    device: Device = "auto",
    rc: Strands = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Binary models: call the positive class when its probability reaches this."),
    ] = None,
    bed: Bed = None,
    reference: Reference = None,
    shard: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="I/N: score only records I, I+N, I+2N... (1-based) to split work across jobs."),
    ] = None,
) -> None:
    """Score sequences: a TSV row per record (id, length, label, score, p_<class>...) in input order."""
    predicting.predict(model, inputs or [], output, batch_size=batch_size, device=device, rc=rc,
                       threshold=threshold, bed=bed or [], reference=reference, shard=shard)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model file written by `genomix train`.")],
    inputs: OptionalInputs = None,
    labels: Annotated[Optional[str], typer.Option(help="Two-column table: id, label.")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    rc: Strands = None,
    plots: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Folder for ROC, precision-recall and confusion-matrix PNGs."),
    ] = None,
    bed: Bed = None,
    reference: Reference = None,
    genome: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--genome", help="CLASS=genome.fa: score the test windows of genomes held out at training "
                     "(same window and --holdout-fraction as training). Repeatable."),
    ] = None,
) -> None:
    """Measure a model on labelled sequences: accuracy, balanced accuracy, macro-F1, MCC, AUROC, AUPRC."""
    result, classes = evaluating.evaluate(model, inputs or [], labels=labels, batch_size=batch_size, device=device,
                                          rc=rc, plots=plots, bed=bed or [], reference=reference,
                                          genomes=genome or [])
    if as_json:
        typer.echo(json.dumps(result | {"classes": classes}, indent=2))
    else:
        console.print(report_table(result, classes, "evaluation"))


@app.command()
def scan(
    model: Annotated[Path, typer.Argument(help="Model file written by `genomix train`.")],
    genome: Annotated[Path, typer.Argument(help="Genome FASTA, plain or bgzip (indexed on first use).")],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="bedGraph to write; '-' for stdout. With --all-classes, one file per class: "
        "out.bedgraph becomes out.CLASS.bedgraph.")],
    window: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Bases per window (default: the model's max_len; longer windows are tiled as in predict)."),
    ] = None,
    step: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Bases between window starts (default: half the window)."),
    ] = None,
    class_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--class", help="Class whose probability is tracked (default: a binary model's positive class)."),
    ] = None,
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="One bedGraph per class, named OUTPUT_STEM.CLASS.SUFFIX.")
    ] = False,
    bed_out: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--bed-out", help="BED of the regions where p(CLASS) reaches --threshold: the windows' extents, "
                     "merged where they overlap or touch, scored 1000 × the highest probability."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="Probability that --bed-out regions reach.")] = 0.5,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    rc: Strands = None,
) -> None:
    """Slide a model along every contig of a genome: a bedGraph track of p(CLASS), mostly-N windows left out."""
    scanning.scan(model, genome, output, window=window, step=step, class_name=class_name, all_classes=all_classes,
                  bed_out=bed_out, threshold=threshold, batch_size=batch_size, device=device, rc=rc)


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Model file written by `genomix train`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole description as JSON.")] = False,
) -> None:
    """Describe a model file: architecture, classes, training data and settings, validation metrics."""
    header = read_header(model)
    typer.echo(json.dumps(header, indent=2) if as_json else describe(header))


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; bugs keep their traceback."""
    reuse_large_allocations()
    try:
        app()
    except GenomixError as err:
        print(f"genomix: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("genomix: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `genomix predict ... | head`: the reader left, which is fine
        sys.stderr.close()
        sys.exit(0)
