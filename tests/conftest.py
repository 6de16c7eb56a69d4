"""Shared fixtures: sample data paths, a tiny trained model (trained once per session), CLI runners."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genomix.cli import app, main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
TRAIN_FA = SAMPLES / "species_train.fa"
TEST_FA = SAMPLES / "species_test.fa"
CLASSES = ["corynebacterium_diphtheriae", "escherichia_coli"]
# The network alone (no k-mer term): one epoch leaves it weak, and the blend would then hide it behind the
# strand-symmetric k-mer regression that these tests are not about.
TINY = ["--dim", "16", "--hidden", "16", "--layers", "1", "--epochs", "1", "--max-len", "64", "--device", "cpu",
        "--no-composition"]


@pytest.fixture(scope="session")
def train_fa() -> Path:
    assert TRAIN_FA.is_file(), f"sample data missing: {TRAIN_FA}"
    return TRAIN_FA


@pytest.fixture(scope="session")
def test_fa() -> Path:
    assert TEST_FA.is_file(), f"sample data missing: {TEST_FA}"
    return TEST_FA


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def invoke(runner: CliRunner) -> Callable:
    """Run `genomix ARGS...` in-process; the result has .exit_code, .stdout, .stderr, .exception."""

    def run(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    return run


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, invoke: Callable, train_fa: Path) -> Path:
    """A tiny paramixer trained for one epoch on the species sample (about 3 s on a CPU)."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "tiny.gmx"
    result = invoke("train", train_fa, "-o", path, *TINY)
    assert result.exit_code == 0, (result.stderr, result.exception)
    return path


def call_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, list[str]]:
    """`genomix ARGS` through main(), in this process: (exit code, stderr lines). main() installs a SIGTERM
    handler; the test's own is put back."""
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sys, "argv", ["genomix", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main()
    signal.signal(signal.SIGTERM, handler)
    return caught.value.code, capsys.readouterr().err.splitlines()


def check_user_error(proc: subprocess.CompletedProcess, *fragments: str, one_line: bool = True) -> str:
    """Exit code 2, no traceback, the error as the (only) stderr line, naming every fragment; returns it."""
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, f"exit code {proc.returncode}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    if one_line:
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    message = lines[-1]
    assert message.startswith("genomix: error: "), stderr
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="session")
def user_error() -> Callable[..., str]:
    return check_user_error


@pytest.fixture
def fake_stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], None]:
    """Replace sys.stdin by a text stream whose .buffer yields the given bytes."""

    def feed(data: bytes) -> None:
        buffer = io.BufferedReader(io.BytesIO(data))
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffer))

    return feed
