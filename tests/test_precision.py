"""--precision: bf16 scoring end to end, its calls against fp32, and a bad value refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from helpers import TEST_FA

from genomix.applying.scoring import Scorer
from genomix.models.modelfile import load_model

FIXTURES = Path(__file__).parent / "fixtures"


def rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_bf16_predict_runs_end_to_end_and_calls_as_fp32(genomix_main):
    model = FIXTURES / "v0_paramixer.gmx"
    fp32 = genomix_main("predict", model, TEST_FA, "--device", "cpu", "--precision", "fp32")
    bf16 = genomix_main("predict", model, TEST_FA, "--device", "cpu", "--precision", "bf16")
    assert fp32.returncode == 0 and bf16.returncode == 0, bf16.stderr
    assert "precision bf16" in bf16.stderr.decode() and "precision fp32" in fp32.stderr.decode()
    again = genomix_main("predict", model, TEST_FA, "--device", "cpu")  # the flag does not outlive its command
    assert "precision fp32 (auto)" in again.stderr.decode() and again.stdout == fp32.stdout
    exact, low = rows(fp32.stdout.decode()), rows(bf16.stdout.decode())
    assert [r[:2] for r in low] == [r[:2] for r in exact]  # ids and lengths, in input order
    columns = [i for i, name in enumerate(exact[0]) if name.startswith("p_")]  # the class probabilities
    low_p, exact_p = (np.array([[r[i] for i in columns] for r in t[1:]], float) for t in (low, exact))
    np.testing.assert_allclose(low_p, exact_p, atol=0.01)
    assert not np.array_equal(low_p, exact_p)  # bf16 did run
    # This barely trained model puts many records near 0.5: a call may flip only where fp32's margin is
    # within bf16's move.
    clear = np.abs(exact_p[:, 1] - 0.5) > 0.01
    assert clear.sum() > 100
    assert [r[2] for r, c in zip(low[1:], clear) if c] == [r[2] for r, c in zip(exact[1:], clear) if c]


def test_a_bad_precision_exits_2(genomix_main):
    result = genomix_main("predict", FIXTURES / "v0_paramixer.gmx", TEST_FA, "--precision", "fp8")
    assert result.returncode == 2 and "fp8" in result.stderr.decode()


def test_scorer_precision_sets_the_networks_arithmetic():
    model = load_model(FIXTURES / "v0_paramixer.gmx")
    assert Scorer.of(model, "cpu", precision="bf16").dtype == torch.bfloat16
    assert Scorer.of(model, "cpu", precision="fp32").dtype == torch.float32
    assert Scorer.of(model, "cpu").dtype == torch.float32  # auto on the CPU: fp32 (docs/PERFORMANCE.md)
    assert Scorer(model.network, torch.device("cpu")).dtype == torch.float32  # training's choice
