"""Paramixer checked against the same factors built as dense N×N matrices, plus its structural promises."""

import pytest
import torch
from helpers import dense_factor, valid

from genomix.models import create_model
from genomix.models.factor_kernels import fused_forward
from genomix.models.paramixer import (
    ParamixerBlock,
    ShiftIndex,
    _Kernels,
    _product,
    factor_product,
    factor_shifts,
    num_factors,
)

PROTOCOLS = ["chord", "cdil"]


def test_shift_sets_match_the_protocols():
    assert factor_shifts("chord", 4) == ((0, 1, 2, 4, 8),) * 4
    cdil = factor_shifts("cdil", 3)
    assert sorted(cdil[2]) == [-16, -12, -8, -4, 0, 4, 8, 12, 16]
    assert all(len(s) == 9 for s in cdil)
    assert num_factors(16384) == 14 and num_factors(16385) == 15 and num_factors(251) == 8


def test_the_cpu_runs_the_fused_kernel_for_every_input_whatever_ran_before():
    kernels = _Kernels()
    kernels.enabled = True
    short = torch.zeros(2, 16, 4)
    assert kernels.pick(short, training=False)[0] is fused_forward  # the C build is cached on disk
    assert kernels.pick(short, training=True)[0] is fused_forward
    assert kernels.pick(short, training=False)[0] is fused_forward
    kernels.enabled = False  # GENOMIX_COMPILE=0
    assert kernels.pick(short, training=True)[0] is _product


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("n", [16, 13])
def test_factor_product_equals_dense_values_and_gradients(protocol, n):
    torch.manual_seed(0)
    lengths = torch.tensor([n, n - 5, 1])
    shifts = factor_shifts(protocol, num_factors(n))[-1]
    w = torch.randn(3, n, len(shifts), dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, n, 4, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, n, 4, dtype=torch.float64)

    out = factor_product(w, v, shifts, ShiftIndex(lengths, n))
    (valid(out, lengths) * upstream).sum().backward()
    grads = w.grad.clone(), v.grad.clone()
    w.grad, v.grad = None, None

    reference = dense_factor(w, shifts, lengths, n) @ v
    (valid(reference, lengths) * upstream).sum().backward()
    torch.testing.assert_close(valid(out, lengths), valid(reference, lengths))
    torch.testing.assert_close(valid(grads[0], lengths), valid(w.grad, lengths))
    torch.testing.assert_close(grads[1], v.grad)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_factor_product_passes_gradcheck(protocol):
    torch.manual_seed(1)
    lengths = torch.tensor([11, 6])
    shifts = factor_shifts(protocol, 4)[1]
    w = torch.randn(2, 11, len(shifts), dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 11, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, v: factor_product(w, v, shifts, ShiftIndex(lengths, 11)), (w, v))


def factor_values_by_hand(block: ParamixerBlock, x: torch.Tensor) -> list[torch.Tensor]:
    """f_m(X) for each factor: factor_mlp="block" gives factor m the next K outputs of the one MLP."""
    if isinstance(block.f, torch.nn.ModuleList):
        return [f_m(x) for f_m in block.f]
    values, start, out = block.f(x), 0, []
    for s in block.shifts:
        out.append(values[..., start : start + len(s)])
        start += len(s)
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("n", "factor_norm", "factor_mlp"),
                         [(32, False, "block"), (27, False, "factor"), (32, True, "factor"), (27, True, "block")])
def test_block_equals_product_of_dense_factors(protocol, n, factor_norm, factor_mlp):
    torch.manual_seed(2)
    shifts = factor_shifts(protocol, num_factors(n))
    block = ParamixerBlock(dim=8, hidden=16, shifts=shifts, dropout=0.0, factor_norm=factor_norm,
                           factor_mlp=factor_mlp).double()
    lengths = torch.tensor([n, n - 9])
    x, v_in = torch.randn(2, n, 8, dtype=torch.float64), torch.randn(2, n, 8, dtype=torch.float64)

    out = block(v_in, x, ShiftIndex(lengths, n))
    v = block.g(v_in)
    for w, s in zip(factor_values_by_hand(block, x), shifts):
        # With factor_norm, W_m reads V_m scaled to unit root-mean-square at every position.
        read = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) if factor_norm else v
        v = v + dense_factor(w, s, lengths, n) @ read
    if factor_norm:
        v = block.out_norm(v)
    torch.testing.assert_close(valid(out, lengths), valid(v, lengths))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("n", [64, 45])
def test_every_output_position_depends_on_every_input_position(protocol, n):
    torch.manual_seed(3)
    block = ParamixerBlock(dim=4, hidden=8, shifts=factor_shifts(protocol, num_factors(n)), dropout=0.0).double()
    torch.nn.init.normal_(block.f[-1].weight, std=0.5)  # values well away from zero so no path cancels by accident
    x = torch.randn(1, n, 4, dtype=torch.float64)
    v_in = torch.randn(1, n, 4, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: block(v, x, ShiftIndex(torch.tensor([n]), n)), v_in)
    influence = jacobian.abs().sum(dim=(0, 2, 3, 5))  # (output position, input position)
    assert influence.shape == (n, n)
    assert bool((influence > 0).all())


def test_factor_norm_keeps_a_deep_product_bounded():
    """Without factor_norm, ten factors with large values multiply V's scale by orders of magnitude (the
    blow-up that stalled training at 16,384 bases); with it, the block's output stays at unit scale."""
    n, shifts = 1024, factor_shifts("cdil", num_factors(1024))
    scales = {}
    for factor_norm in (False, True):
        torch.manual_seed(5)
        block = ParamixerBlock(dim=8, hidden=16, shifts=shifts, dropout=0.0, factor_norm=factor_norm)
        torch.nn.init.normal_(block.f[-1].weight, std=0.5)
        x, v_in = torch.randn(1, n, 8), torch.randn(1, n, 8)
        with torch.no_grad():
            out, start = block(v_in, x, ShiftIndex(torch.tensor([n]), n)), block.g(v_in)
        scales[factor_norm] = float(out.pow(2).mean().sqrt()), float(start.pow(2).mean().sqrt())
    assert scales[False][0] > 1000 * scales[False][1]
    assert 0.5 < scales[True][0] < 2  # a LayerNorm's output: root-mean-square about 1


def test_fewer_factors_do_not_reach_everywhere():
    """The dependency test above can fail: with M - 1 CHORD factors, offsets ≥ 2^(M-1) stay out of reach."""
    n = 64
    shifts = factor_shifts("chord", num_factors(n))[:-1]
    block = ParamixerBlock(dim=2, hidden=4, shifts=shifts, dropout=0.0).double()
    x, v_in = torch.randn(1, n, 2, dtype=torch.float64), torch.randn(1, n, 2, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: block(v, x, ShiftIndex(torch.tensor([n]), n)), v_in)
    assert not bool((jacobian.abs().sum(dim=(0, 2, 3, 5)) > 0).all())


@pytest.mark.parametrize(("name", "options"), [("paramixer-chord", {}),
                                               ("paramixer-cdil", {}),
                                               ("paramixer-cdil", {"factor_norm": False, "kmer_embedding": 0}),
                                               ("transformer", {}),
                                               ("cnn", {}), ("kmer", {})])
def test_padding_and_batch_mates_change_nothing(name, options):
    torch.manual_seed(4)
    if name != "kmer":
        options |= {"dim": 16, "hidden": 32}
    model = create_model(name, 3, max_len=128, **options).eval()
    if name == "kmer":  # a fitted-looking head, so the test is not trivially about zeros
        torch.nn.init.normal_(model.head.weight)
    short = torch.randint(1, 6, (1, 37))
    alone = torch.softmax(model(short, torch.tensor([37])), -1)
    batch = torch.randint(1, 6, (3, 128))
    batch[1, :37] = short[0]
    batch[1, 37:] = 0
    together = torch.softmax(model(batch, torch.tensor([128, 37, 90])), -1)
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=0)
    # Garbage (not PAD) in the padded tail must not matter either.
    batch[1, 37:] = torch.randint(1, 6, (91,))
    torch.testing.assert_close(torch.softmax(model(batch, torch.tensor([128, 37, 90])), -1)[1], alone[0],
                               atol=1e-5, rtol=0)
