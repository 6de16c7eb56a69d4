"""The CUDA path gives the CPU's answers, within what bf16 autocast allows, for every command.

Skipped where no CUDA device is present (CI has none): run `python -m pytest tests/test_cuda.py` on a GPU machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSES

from genomix.applying import scanning
from genomix.applying.scoring import predict_records
from genomix.fitting.training import TrainSettings, fit
from genomix.io.reading import read_inputs
from genomix.models import create_model, factor_kernels, paramixer
from genomix.models.modelfile import save_model
from genomix.models.paramixer import ShiftIndex, _Kernels, factor_product, factor_shifts, num_factors

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# A trained model's probabilities under bf16 autocast stay this close to the CPU's fp32 ones.
BF16_PROB_TOLERANCE = 0.05


@pytest.mark.parametrize("protocol", ["cdil", "chord"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_factor_product_on_cuda_equals_the_cpu(protocol, compiled, monkeypatch):
    """Values and gradients of the factor product, eager and Triton-compiled, against the CPU's eager code."""
    kernels = _Kernels()
    kernels.enabled = compiled
    torch.manual_seed(0)
    n = 300
    lengths = torch.tensor([n, n - 37, 5])
    shifts = factor_shifts(protocol, num_factors(n))[-1]
    w = torch.randn(3, n, len(shifts))
    v = torch.randn(3, n, 8)
    upstream = torch.randn(3, n, 8)

    def run(device: str, chosen: _Kernels) -> list[torch.Tensor]:
        monkeypatch.setattr(paramixer, "KERNELS", chosen)
        wd, vd = (t.detach().to(device).requires_grad_() for t in (w, v))  # fresh leaves on each device
        out = factor_product(wd, vd, shifts, ShiftIndex(lengths.to(device), n))
        (out * upstream.to(device)).sum().backward()
        return [t.detach().cpu() for t in (out, wd.grad, vd.grad)]

    eager = _Kernels()
    eager.enabled = False
    reference = run("cpu", eager)
    results = run("cuda", kernels)
    assert compiled == (kernels.pick(v.cuda(), training=True)[0] is factor_kernels.fused_forward)
    for cpu, cuda in zip(reference, results):
        torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("protocol", ["cdil", "chord"])
@pytest.mark.parametrize("n", [4096, 3000])
def test_triton_step_in_bf16_is_the_fp32_reference_within_bf16(protocol, n):
    """V + W D V in bf16 on the GPU (fp32 inside the kernel) against fp32 on the CPU: relative error < 1e-2."""
    torch.manual_seed(0)
    lengths = torch.tensor([n, n - 999])
    shifts = list(factor_shifts(protocol, num_factors(n))[-1])
    w, v, grad = torch.randn(2, n, len(shifts)) * 0.1, torch.randn(2, n, 64), torch.randn(2, n, 64)
    w16, v16, g16 = (t.cuda().bfloat16() for t in (w, v, grad))
    w, v, grad = (t.bfloat16().float() for t in (w, v, grad))  # the same inputs, rounded alike
    out, r = factor_kernels.fused_forward(v16, w16, lengths.cuda(), shifts, True, True)
    grad_v, grad_w = factor_kernels.fused_backward(g16, v16, w16, r, lengths.cuda(), shifts, True, True)
    ref_out, ref_r = factor_kernels.reference_forward(v, w, lengths, shifts, True, True)
    ref_v, ref_w = factor_kernels.reference_backward(grad, v, w, ref_r, lengths, shifts, True, True)
    for got, want in ((out, ref_out), (grad_v, ref_v), (grad_w, ref_w)):
        assert ((got.float().cpu() - want).norm() / want.norm()).item() < 1e-2


def test_whole_train_step_replays_as_a_cuda_graph_with_eager_answers():
    """torch.compile(mode="reduce-overhead") on forward + loss, for two padded shapes as length buckets give:
    the same loss and gradients as eager, and no graph breaks."""
    torch.manual_seed(0)
    model = create_model("paramixer-cdil", 2, max_len=512, dim=32, hidden=64, layers=1, dropout=0.0).cuda().train()

    def loss_of(tokens, lengths, labels):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(tokens, lengths)
        return torch.nn.functional.cross_entropy(logits.float(), labels)

    compiled = torch.compile(loss_of, mode="reduce-overhead")
    for n in (512, 256):
        tokens = torch.randint(1, 5, (4, n), device="cuda")
        lengths = torch.tensor([n, n - 17, n // 2, 9], device="cuda")
        labels = torch.tensor([0, 1, 1, 0], device="cuda")
        assert torch._dynamo.explain(loss_of)(tokens, lengths, labels).graph_break_count == 0
        for _ in range(3):  # compile, record, replay
            torch.compiler.cudagraph_mark_step_begin()
            model.zero_grad(set_to_none=True)
            loss = compiled(tokens, lengths, labels)
            loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        expected = loss_of(tokens, lengths, labels)
        expected.backward()
        torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-3, atol=1e-3)
        for got, want in zip(grads, [p.grad for p in model.parameters() if p.grad is not None]):
            torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


@pytest.fixture(scope="module", params=["paramixer-cdil", "paramixer-chord", "transformer", "cnn"])
def cuda_model(request, train_fa: Path):
    """A model trained on the GPU (bf16 autocast) on the species sample."""
    settings = TrainSettings(arch=request.param, device="cuda", max_len=512)
    return fit(list(read_inputs([str(train_fa)])), settings)


def test_model_trained_on_cuda_beats_chance_and_predicts_alike_on_cpu(cuda_model, test_fa):
    assert cuda_model.card.training.device.startswith("cuda")
    records = list(read_inputs([str(test_fa)]))
    truth = np.array([CLASSES.index(r.label) for r in records])
    on_gpu = np.array([p.probs for p in predict_records(cuda_model, records, device="cuda")])
    on_cpu = np.array([p.probs for p in predict_records(cuda_model, records, device="cpu")])
    assert np.abs(on_gpu - on_cpu).max() < BF16_PROB_TOLERANCE
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).mean() >= 0.97
    assert (on_gpu.argmax(1) == truth).mean() >= 0.65  # two balanced classes: chance is 0.5


def test_scan_on_cuda_writes_the_cpu_track(cuda_model, test_fa, tmp_path):
    """Scanning the test sequences as contigs gives, window by window, the CPU's probabilities."""
    model_path, genome = tmp_path / "m.gmx", tmp_path / "contigs.fa"
    save_model(cuda_model, model_path)
    shutil.copy(test_fa, genome)  # scan indexes its input: keep the index out of the repository
    tracks = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.bedgraph"
        scanning.scan(model_path, genome, out, step=256, device=device)
        tracks[device] = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [row[:3] for row in tracks["cuda"]] == [row[:3] for row in tracks["cpu"]] and tracks["cpu"]
    diff = np.abs(np.array([float(r[3]) for r in tracks["cuda"]]) - np.array([float(r[3]) for r in tracks["cpu"]]))
    assert diff.max() < BF16_PROB_TOLERANCE
