"""The fused factor kernels (C on the CPU, Triton under its interpreter) against the dense-matrix reference.

out = [V +] W D V with D = diag(1 / rms(V)) when normalized: the test builds W as a dense (B, N, N) matrix
(`helpers.dense_factor`) and lets autograd differentiate the dense expression.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import dense_factor, valid

from genomix.models import create_model, factor_kernels, triton_factor
from genomix.models.paramixer import factor_shifts, num_factors

CASES = [(protocol, n) for protocol in ("cdil", "chord") for n in (64, 45)]
MODES = [(False, False), (True, True), (True, False), (False, True)]  # (normalize, residual)


def dense_step(w, v, shifts, lengths, normalize, residual):
    read = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) if normalize else v
    out = dense_factor(w, shifts, lengths, v.shape[1]) @ read
    return v + out if residual else out


def inputs(protocol, n, dtype, seed=0):
    torch.manual_seed(seed)
    lengths = torch.tensor([n, n - 13, 1])
    shifts = factor_shifts(protocol, num_factors(n))[-2]
    w = torch.randn(3, n, len(shifts), dtype=dtype, requires_grad=True)
    v = torch.randn(3, n, 8, dtype=dtype, requires_grad=True)
    return lengths, shifts, w, v, torch.randn(3, n, 8, dtype=dtype)


def values_and_grads(fn, w, v, upstream, lengths):
    out = fn(w, v)
    gw, gv = torch.autograd.grad((valid(out, lengths) * upstream).sum(), (w, v))
    return [valid(out, lengths), valid(gw, lengths), gv]


def check_against_dense(run, protocol, n, normalize, residual, dtype, rtol, atol):
    """run(v, w, lengths, shifts, normalize, residual) -> (out, r) and its backward, via an autograd wrapper."""
    lengths, shifts, w, v, upstream = inputs(protocol, n, dtype)
    expected = values_and_grads(lambda w, v: dense_step(w, v, shifts, lengths, normalize, residual),
                                w.double(), v.double(), upstream.double(), lengths)
    got = values_and_grads(run(lengths, shifts, normalize, residual), w, v, upstream, lengths)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=rtol, atol=atol)


class _Op(torch.autograd.Function):
    """An autograd wrapper around one forward/backward pair, so each implementation is checked on its own."""

    @staticmethod
    def forward(ctx, w, v, lengths, shifts, normalize, residual, pair):
        out, r = pair[0](v, w, lengths, list(shifts), normalize, residual)
        ctx.save_for_backward(w, v, r, lengths)
        ctx.args = shifts, normalize, residual, pair
        return out

    @staticmethod
    def backward(ctx, grad):
        w, v, r, lengths = ctx.saved_tensors
        shifts, normalize, residual, pair = ctx.args
        grad_v, grad_w = pair[1](grad, v, w, r, lengths, list(shifts), normalize, residual)
        return grad_w, grad_v, None, None, None, None, None


def runner(pair):
    return lambda lengths, shifts, normalize, residual: (
        lambda w, v: _Op.apply(w, v, lengths, shifts, normalize, residual, pair))


@pytest.mark.parametrize(("protocol", "n"), CASES)
@pytest.mark.parametrize(("normalize", "residual"), MODES)
def test_reference_equals_dense(protocol, n, normalize, residual):
    check_against_dense(runner((factor_kernels.reference_forward, factor_kernels.reference_backward)), protocol, n,
                        normalize, residual, torch.float64, 1e-10, 1e-10)


@pytest.mark.parametrize(("protocol", "n"), CASES)
@pytest.mark.parametrize(("normalize", "residual"), MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_kernel_equals_dense(protocol, n, normalize, residual, dtype):
    if factor_kernels.c_library() is None:
        pytest.skip("no C compiler")
    tolerance = 1e-5 if dtype == torch.float32 else 1e-10
    check_against_dense(runner((factor_kernels.fused_forward, factor_kernels.fused_backward)), protocol, n,
                        normalize, residual, dtype, tolerance, tolerance)


def test_c_kernel_splits_rows_over_threads_with_the_same_answer(monkeypatch):
    """Rows are independent, so splitting them between threads must not change a single value."""
    if factor_kernels.c_library() is None:
        pytest.skip("no C compiler")
    lengths, shifts, w, v, grad = inputs("cdil", 300, torch.float32, seed=3)
    lengths = torch.tensor([300, 171, 40])
    results = []
    for threads, min_rows in ((1, factor_kernels.MIN_ROWS_PER_THREAD), (2, 50)):
        monkeypatch.setattr(factor_kernels, "MIN_ROWS_PER_THREAD", min_rows)
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        out, r = factor_kernels.fused_forward(v.detach(), w.detach(), lengths, list(shifts), True, True)
        results.append([out, *factor_kernels.fused_backward(grad, v.detach(), w.detach(), r, lengths, list(shifts),
                                                            True, True)])
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_the_c_source_ships_with_the_package_and_a_changed_source_builds_a_new_library(monkeypatch, tmp_path):
    """The kernels are package data (factor_kernels.c); the cached library is keyed by the source's text, so an
    edited source is compiled again instead of an old build being loaded."""
    shipped = factor_kernels.resources.files("genomix.models").joinpath("factor_kernels.c").read_text()
    assert "FORWARD(float, f32, float)" in shipped
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    factor_kernels.c_library.cache_clear()
    try:
        if factor_kernels.c_library() is None:
            pytest.skip("no C compiler")
        edited = tmp_path / "source"
        edited.mkdir()
        (edited / "factor_kernels.c").write_text(shipped + "/* edited */\n")
        monkeypatch.setattr(factor_kernels.resources, "files", lambda package: edited)
        factor_kernels.c_library.cache_clear()
        assert factor_kernels.c_library() is not None
        assert len(list((tmp_path / "cache" / "genomix").glob("factor_kernels_*.so"))) == 2
    finally:
        factor_kernels.c_library.cache_clear()  # the next caller loads the library of the shipped source


def test_the_op_falls_back_to_the_reference_without_a_compiler(monkeypatch):
    lengths, shifts, w, v, _ = inputs("chord", 45, torch.float32)
    monkeypatch.setattr(factor_kernels, "c_library", lambda: None)
    out, _ = factor_kernels.fused_forward(v.detach(), w.detach(), lengths, list(shifts), True, True)
    expected, _ = factor_kernels.reference_forward(v.detach(), w.detach(), lengths, list(shifts), True, True)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_slice_of_the_mlp_output_needs_no_copy():
    """factor_mlp="block" hands each factor a strided slice of one (B, N, M·K) tensor: the kernel reads it as is."""
    lengths, shifts, _, v, _ = inputs("cdil", 64, torch.float32)
    whole = torch.randn(3, 64, 3 * len(shifts))
    w = whole[..., len(shifts) : 2 * len(shifts)]
    assert triton_factor.w_rows(w)[0] is w
    out, _ = factor_kernels.fused_forward(v.detach(), w, lengths, list(shifts), True, True)
    expected, _ = factor_kernels.reference_forward(v.detach(), w.contiguous(), lengths, list(shifts), True, True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_training_step_compiles_without_graph_breaks():
    """The shift handling and the autograd op are traceable: dynamo sees one graph for forward + loss, and
    AOTAutograd traces its backward. (The CPU never runs the step compiled; inductor's C++ code generation would
    only add tens of seconds on a cold cache, so the graph runs on the aot_eager backend.)"""
    torch._dynamo.reset()
    model = create_model("paramixer-cdil", 2, max_len=64, dim=8, hidden=16, layers=1, kmer_embedding=0, dropout=0.0)
    tokens, lengths = torch.randint(1, 5, (2, 64)), torch.tensor([64, 40])

    def loss_of(tokens, lengths):
        return model(tokens, lengths).logsumexp(-1).mean()

    explained = torch._dynamo.explain(loss_of)(tokens, lengths)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    compiled = torch.compile(loss_of, backend="aot_eager")
    loss = compiled(tokens, lengths)
    loss.backward()
    torch.testing.assert_close(loss, loss_of(tokens, lengths), rtol=1e-5, atol=1e-5)


# --- Triton, under its interpreter -------------------------------------------------------------------


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(not INTERPRETED, reason="run under TRITON_INTERPRET=1 by "
                                      "test_triton_kernels_under_the_interpreter")


def test_triton_kernels_under_the_interpreter():
    """The test_interpreted_* tests, in a fresh process with TRITON_INTERPRET=1 set before triton is imported
    (the interpreter must also replace triton's own library functions, so setting it later is too late)."""
    pytest.importorskip("triton")
    if INTERPRETED:
        pytest.skip("already interpreting")
    env = dict(os.environ, TRITON_INTERPRET="1")
    # --noconftest: these tests need no fixture, and the conftest would import the whole CLI for nothing
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-k",
                          "interpreted", __file__], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    assert "skipped" not in run.stdout.splitlines()[-1]


def triton_pair():
    def forward(v, w, lengths, shifts, normalize, residual):
        return triton_factor.forward(v, w, lengths, factor_kernels.shift_tensor(shifts, v.device), normalize,
                                     residual)

    def backward(grad, v, w, r, lengths, shifts, normalize, residual):
        return triton_factor.backward(grad, v, w, r, lengths, factor_kernels.shift_tensor(shifts, v.device),
                                      normalize, residual)

    return forward, backward


@interpreted_only
@pytest.mark.parametrize(("protocol", "n"), CASES)
@pytest.mark.parametrize(("normalize", "residual"), [(True, True), (False, False)])
def test_interpreted_triton_kernel_equals_dense_fp32(protocol, n, normalize, residual):
    check_against_dense(runner(triton_pair()), protocol, n, normalize, residual, torch.float32, 1e-5,
                        1e-5)


@interpreted_only
@pytest.mark.parametrize("protocol", ["cdil", "chord"])
def test_interpreted_triton_kernel_equals_dense_bf16(protocol):
    """bf16 in and out, fp32 inside: within bf16's rounding of the inputs and the result."""
    lengths, shifts, w, v, upstream = inputs(protocol, 45, torch.float32)
    w16, v16 = (t.detach().bfloat16().requires_grad_() for t in (w, v))
    expected = values_and_grads(lambda w, v: dense_step(w, v, shifts, lengths, True, True), w16.double(),
                                v16.double(), upstream.double(), lengths)
    got = values_and_grads(runner(triton_pair())(lengths, shifts, True, True), w16, v16,
                           upstream.bfloat16(), lengths)
    for g, e in zip(got, expected):
        assert ((g.double() - e).norm() / e.norm()).item() < 1e-2


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_the_c_forward_equals_the_reference_for_short_inputs(dtype, tolerance):
    """150-base reads, as inference runs them: fp32 within rounding; bf16 (fp32 sums, one rounding on store)
    against the reference in fp32 on the same rounded inputs."""
    if factor_kernels.c_library() is None:
        pytest.skip("no C compiler")
    torch.manual_seed(0)
    n, lengths = 150, torch.tensor([150, 131, 1, 150])
    shifts = list(factor_shifts("cdil", num_factors(n))[3])
    v, w = torch.randn(4, n, 64).to(dtype), (torch.randn(4, n, len(shifts)) * 0.2).to(dtype)
    for normalize, residual in MODES:
        out, r = factor_kernels.fused_forward(v, w, lengths, shifts, normalize, residual)
        expected, r_expected = factor_kernels.reference_forward(v.float(), w.float(), lengths, shifts, normalize,
                                                                residual)
        assert out.dtype == dtype and r.dtype == torch.float32
        torch.testing.assert_close(out.float(), expected, rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(r, r_expected, rtol=1e-5, atol=1e-5)


def test_inference_gives_the_same_values_before_and_after_a_training_step():
    """The kernel is chosen by the input alone: a training step in the same process changes nothing."""
    torch.manual_seed(0)
    model = create_model("paramixer-cdil", 2, 150, dim=16, hidden=16)
    tokens, lengths = torch.randint(0, 4, (3, 150)), torch.tensor([150, 97, 150])
    model.eval()
    with torch.no_grad():
        before = model(tokens, lengths)
    model.train()
    model(tokens, lengths).sum().backward()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(tokens, lengths), before)
