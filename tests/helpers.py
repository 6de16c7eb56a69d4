"""What several test modules share that cannot be a fixture: sample paths and settings used in parametrize lists,
data generators called with arguments, and checks. Fixtures live in conftest.py; test modules import from here
(`from helpers import ...`), never from each other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch

from genomix.applying.scoring import predict_records
from genomix.io.reading import Record

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
TRAIN_FA = SAMPLES / "species_train.fa"
TEST_FA = SAMPLES / "species_test.fa"
CLASSES = ["corynebacterium_diphtheriae", "escherichia_coli"]
# The network alone (no k-mer term): one epoch leaves it weak, and the blend would then hide it behind the
# strand-symmetric k-mer regression that these tests are not about.
TINY = ["--dim", "16", "--hidden", "16", "--layers", "1", "--epochs", "1", "--max-len", "64", "--device", "cpu",
        "--no-composition"]
BACKBONE = ["--dim", "32", "--hidden", "32", "--layers", "1", "--max-len", "128"]  # the `backbone` fixture's


def motif_records(n: int, seed: int, length: int = 64) -> list[Record]:
    """Random DNA; class 'motif' has TATAAT planted at a random place: only the content, not GC, differs."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), length))
        label = "motif" if i % 2 else "plain"
        if label == "motif":
            at = int(rng.integers(0, length - 6))
            seq = seq[:at] + "TATAAT" + seq[at + 6 :]
        records.append(Record(f"s{i}", seq, label))
    return records


PLANTED = "CTGATTGC"  # planted by `planted`; not its own reverse complement
PLANTED_LENGTH = 60


def planted(n: int, seed: int) -> tuple[list[Record], list[int]]:
    """Random sequences, every other one with PLANTED at a random position (label `motif`), and where it is (-1)."""
    rng = np.random.default_rng(seed)
    records, where = [], []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), PLANTED_LENGTH))
        at = int(rng.integers(0, PLANTED_LENGTH - len(PLANTED) + 1)) if i % 2 == 0 else -1
        if at >= 0:
            seq = seq[:at] + PLANTED + seq[at + len(PLANTED) :]
        elif PLANTED in seq:
            continue
        records.append(Record(f"r{i}", seq, "motif" if at >= 0 else "background"))
        where.append(at)
    return records, where


def accuracy(model, records) -> float:
    predictions = list(predict_records(model, records, device="cpu"))
    return float(np.mean([model.classes[p.probs.argmax()] == r.label for p, r in zip(predictions, records)]))


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


def dense_factor(w: torch.Tensor, shifts, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """W as a dense (B, N, N) matrix: row i of sequence b has w[b, i, k] at column (i + s_k) mod L_b."""
    dense = torch.zeros(w.shape[0], n, n, dtype=w.dtype)
    for b, length in enumerate(lengths.tolist()):
        for i in range(length):
            for k, s in enumerate(shifts):
                dense[b, i, (i + s) % length] += w[b, i, k]
    return dense


def valid(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """t with the positions past each sequence's length zeroed."""
    return t * (torch.arange(t.shape[1])[None, :] < lengths[:, None])[..., None]
