"""Shared fixtures: sample data paths, one trained model of each kind (trained once per session, for every
module that needs one), and ways to run the command line in this process."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    BACKBONE,
    PLANTED,
    PLANTED_LENGTH,
    TEST_FA,
    TINY,
    TRAIN_FA,
    check_user_error,
    motif_records,
    planted,
)
from typer.testing import CliRunner

from genomix.cli import app, main
from genomix.fitting.training import TrainSettings, fit
from genomix.models.modelfile import TrainedModel


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread in the test process: the models here are tiny, so a second thread saves little time and
    costs much CPU; and where the cores are shared (with other jobs, or with the tests' own subprocesses) threads
    that wait for each other cost up to 50 times the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def train_fa() -> Path:
    assert TRAIN_FA.is_file(), f"sample data missing: {TRAIN_FA}"
    return TRAIN_FA


@pytest.fixture(scope="session")
def test_fa() -> Path:
    assert TEST_FA.is_file(), f"sample data missing: {TEST_FA}"
    return TEST_FA


# --- the command line, in this process ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def invoke(runner: CliRunner) -> Callable:
    """Run `genomix ARGS...` in-process; the result has .exit_code, .stdout, .stderr, .exception."""

    def run(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    return run


@pytest.fixture
def fake_stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], None]:
    """Replace sys.stdin by a text stream whose .buffer yields the given bytes."""

    def feed(data: bytes) -> None:
        buffer = io.BufferedReader(io.BytesIO(data))
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffer))

    return feed


@pytest.fixture
def genomix_main(monkeypatch: pytest.MonkeyPatch,
                 capfd: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """Run `genomix ARGS` through main(), the console script's entry point, in this process: what a subprocess
    would give (exit code; stdout and stderr, captured at the file descriptors) without an interpreter start and
    torch's import. main() installs a SIGTERM handler; the test's own is put back."""

    def run(*args: object) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        monkeypatch.setattr(sys, "argv", ["genomix", *argv])
        handler = signal.getsignal(signal.SIGTERM)
        capfd.readouterr()
        try:
            with pytest.raises(SystemExit) as caught:
                main()
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(argv, caught.value.code or 0, out.encode(), err.encode())

    return run


@pytest.fixture
def command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, genomix_main: Callable, trained_model: Path,
                 train_fa: Path, test_fa: Path) -> tuple[Callable[[list[str]], tuple[int, list[str]]], Path]:
    """(call, out): call(ARGS) runs `genomix ARGS` through main() in an empty working folder and gives (exit code,
    stderr lines); ARGS may name {model} (the tiny trained model), {train}, {test} (the samples) and {out}, a
    folder that holds only in.tsv (a table of one read) so that a test can see that nothing was written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.tsv").write_text("id\tsequence\nr1\tACGTACGT\n")
    names = {"model": trained_model, "train": train_fa, "test": test_fa, "out": out}
    monkeypatch.chdir(tmp_path)

    def call(args: list[str]) -> tuple[int, list[str]]:
        proc = genomix_main(*(a.format(**names) for a in args))
        return proc.returncode, proc.stderr.decode().splitlines()

    return call, out


@pytest.fixture(scope="session")
def user_error() -> Callable[..., str]:
    return check_user_error


# --- trained models: one of each kind, trained once --------------------------------------------------------


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, invoke: Callable, train_fa: Path) -> Path:
    """The tiny paramixer classifier: `genomix train` on the species sample, one epoch, network only (about 3 s
    on a CPU); its file."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "tiny.gmx"
    result = invoke("train", train_fa, "-o", path, *TINY)
    assert result.exit_code == 0, (result.stderr, result.exception)
    return path


@pytest.fixture(scope="session")
def motif_paramixer() -> TrainedModel:
    """A small paramixer, network only, that has learnt the TATAAT motif: 20 epochs on `motif_records(400,
    seed=0)`; as the single-process run that data-parallel training is compared with."""
    settings = TrainSettings(arch="paramixer-cdil", seed=1, batch_size=16, epochs=20, lr=3e-3, device="cpu",
                             options=dict(dim=32, hidden=32, layers=1, dropout=0.1, composition=False))
    return fit(motif_records(400, seed=0), settings)


@pytest.fixture(scope="session")
def motif_kmer() -> TrainedModel:
    """The k-mer regression fitted on the same motif records, with its default settings."""
    return fit(motif_records(400, seed=0), TrainSettings(arch="kmer", seed=1, device="cpu"))


@pytest.fixture(scope="session")
def planted_model() -> tuple[TrainedModel, list, np.ndarray]:
    """A small CNN trained (seconds) on 1,200 planted sequences (`helpers.planted`) with random reverse
    complements, so that it is scored, and explained, on both strands; and 300 held-out positives with the
    motif's positions (a boolean array, record × base)."""
    torch.manual_seed(0)
    train, _ = planted(1200, 0)
    settings = TrainSettings(arch="cnn", options={"dim": 32, "hidden": 32, "layers": 2, "composition": False},
                             epochs=6, lr=3e-3, rc_augment=True, device="cpu")
    model = fit(train, settings)
    test, where = planted(600, 1)
    positives = [(r, w) for r, w in zip(test, where) if w >= 0]
    inside = np.zeros((len(positives), PLANTED_LENGTH), dtype=bool)
    for row, (_, at) in enumerate(positives):
        inside[row, at : at + len(PLANTED)] = True
    return model, [r for r, _ in positives], inside


@pytest.fixture(scope="session")
def backbone(tmp_path_factory: pytest.TempPathFactory, invoke: Callable, train_fa: Path, test_fa: Path) -> Path:
    """A small backbone pretrained for 4 epochs (76 steps) on the species sample, validated on its held-out file
    (its architecture: helpers.BACKBONE)."""
    path = tmp_path_factory.mktemp("backbone") / "backbone.gmx"
    result = invoke("pretrain", train_fa, "--val", test_fa, "-o", path, *BACKBONE, "--epochs", "4",
                    "--lr", "5e-3", "--device", "cpu")
    assert result.exit_code == 0, (result.stderr, result.exception)
    return path
