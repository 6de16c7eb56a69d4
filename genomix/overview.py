"""What `genomix --help` says: the program's summary and each command's, written once for the command line
(`genomix.cli`, whose commands take their help from here) and for the entry point that answers `--help` without
importing the commands, and with them torch (`genomix.launcher`)."""

from __future__ import annotations

from typing import Annotated

import typer

from genomix import __version__

HELP = "Train and apply DNA sequence classifiers built on Paramixer."
COMMANDS = {  # each command of genomix.cli and its help, in its order
    "train": "Train a classifier on labelled sequences, BED regions or whole genomes, and write it to a model file.",
    "pretrain": "Pretrain a backbone by masked-base modelling on unlabelled sequences or genomes (fine-tune it with "
                "`genomix train --init`).",
    "predict": "Score sequences: a row per record (id, length, label, score, p_<class>..., novelty) in input order.",
    "embed": "Write the pooled features of each record (windows averaged, as in predict), in input order.",
    "evaluate": "Measure a model on labelled sequences: accuracy, balanced accuracy, macro-F1, MCC, AUROC, AUPRC.",
    "scan": "Slide a model along every contig of a genome: a bedGraph track of p(CLASS), mostly-N windows left out.",
    "variants": "Score each variant of a VCF: the model on the reference and the alternative allele's windows, per "
                "class both probabilities and the change in log-odds, in input order.",
    "explain": "Which bases drive a prediction: per-base attributions (log-odds) of every record, with logos and "
               "motifs.",
    "info": "Describe a model file (or a backbone): architecture, classes, training data and settings, validation "
            "metrics.",
    "models": "List the architectures `genomix train --arch` takes, with their options and defaults (set with --set).",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genomix {__version__}")
        raise typer.Exit()


def new_app() -> typer.Typer:
    """The `genomix` app with its summary and `--version`, and no command yet."""
    app = typer.Typer(name="genomix", help=HELP, add_completion=False, no_args_is_help=True,
                      pretty_exceptions_enable=False, rich_markup_mode="rich")

    @app.callback()
    def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = False) -> None:
        pass

    return app


def overview() -> typer.Typer:
    """The command line as `--help` shows it: its commands by name and help, none of their options."""
    app = new_app()
    for name, text in COMMANDS.items():
        app.command(name, help=text)(lambda: None)
    return app
