"""Paramixer: attention replaced by a product of log2(N) sparse factors whose entries are MLP outputs.

A block maps V_in to  V_0 = g(V_in),  V_{m+1} = V_m + W_m(X) V_m  (m = 0 … M-1),  out = dropout(V_M).
Row i of W_m has K non-zeros, at columns (i + s) mod L for the protocol's shifts s, with values f_m(X_i),
where X is the embedded input shared by all blocks. By default (`factor_mlp="block"`) the f_m of a block
share their hidden layer: one MLP f maps X_i to the M·K values of row i of every factor, and f_m(X_i) is
its m-th slice, which spares M - 1 hidden layers per block; `factor_mlp="factor"` gives each factor its own
MLP (docs/MODEL.md). L is each sequence's own length, so a sequence mixes only with itself and padding never
changes its result.

With `factor_norm` (the default) each factor reads V at unit scale, V_{m+1} = V_m + W_m D_m V_m with the
diagonal D_m = 1 / rms(V_m[j]), and the block ends with a LayerNorm: out = dropout(LN(V_M)). W_m D_m has
the same sparsity as W_m, so this is still a product of M sparse factors, but V now grows additively
through the M factors instead of geometrically: with many factors (long inputs) the plain product's
geometric growth stops training (docs/MODEL.md).

- CHORD: every factor links i to i and i + 2^k (k < M): K = M + 1, O(N log² N · D) per block.
- CDIL:  factor m links i to i, i ± d, i ± 2d, i ± 3d, i ± 4d with d = 2^m: K = 9, O(N log N · D).

(W V)[i] = Σ_k W[i, k] · V[(i + s_k) mod L] is a weighted sum of K shifted copies of V. One op computes
V + W D V per factor in one pass, computing the shifted rows from i, s and L (`factor_kernels`); it keeps W,
V and D's diagonal for backward, B·N·(K + D + 1) values, and the MLPs recompute their hidden layers there.
Each shift is a permutation of the rows, so its transpose (needed for the gradient of V) is the opposite
shift: the backward is gathers too, no scatter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from genomix.errors import GenomixError
from genomix.models.base import NeuralOptions, SequenceClassifier
from genomix.models.factor_kernels import fused_backward, fused_forward
from genomix.models.factor_kernels import reference_backward as _product_backward
from genomix.models.factor_kernels import reference_forward as _product
from genomix.models.registry import register, register_legacy

PROTOCOLS = ("chord", "cdil")
FACTOR_MLPS = ("block", "factor")  # one MLP gives the values of all factors of a block, or one MLP per factor


def num_factors(max_len: int) -> int:
    """M = ceil(log2 N): enough factors for every position to reach every other one."""
    return max(1, math.ceil(math.log2(max_len)))


@cache
def factor_shifts(protocol: str, n_factors: int) -> tuple[tuple[int, ...], ...]:
    """For each factor, the column offsets s of its non-zeros (row i links to (i + s) mod L)."""
    if protocol == "chord":
        chord = (0, *(2**k for k in range(n_factors)))
        return (chord,) * n_factors
    if protocol == "cdil":
        return tuple((0, *(sign * c * 2**m for c in (1, 2, 3, 4) for sign in (1, -1))) for m in range(n_factors))
    raise ValueError(f"unknown protocol {protocol!r}")


class ShiftIndex:
    """What every shift of a batch is computed from: each sequence's length L_b and the padded length N.

    Row i < L_b reads row (i + s) mod L_b; padded rows read themselves. The kernels derive those rows from
    i, s and L_b as they go (`genomix.models.factor_kernels`), so nothing per position is built or cached.
    """

    def __init__(self, lengths: Tensor, n: int) -> None:
        self.lengths, self.n = lengths, n


class _Kernels:
    """Chooses the factor step's forward and backward: the torch reference, or the fused native kernels.

    The reference makes K passes over memory per factor; the native kernels (C on the CPU, Triton on CUDA)
    one. On the CPU the fused kernel runs for every input: its C build is cached on disk, so a process pays
    at most a library load. On CUDA a Triton JIT and autotuning cost every process seconds, so there the
    fused kernel runs in training and for inputs of at least FUSE_MIN_LEN. The choice depends only on the
    input, never on what the process ran before. GENOMIX_COMPILE=0 keeps the reference everywhere; where a
    native kernel cannot be built, the op falls back to the reference.
    """

    FUSE_MIN_LEN = 4096

    def __init__(self) -> None:
        self.enabled = os.environ.get("GENOMIX_COMPILE", "1") != "0"

    def pick(self, v: Tensor, training: bool):
        fused = training or v.device.type != "cuda" or v.shape[1] >= self.FUSE_MIN_LEN
        if self.enabled and fused:
            return fused_forward, fused_backward
        return _product, _product_backward


KERNELS = _Kernels()


class _FactorProduct(torch.autograd.Function):
    """out = [V +] W D V for one sparse factor; W, V and D's diagonal are kept for backward, nothing else."""

    @staticmethod
    def forward(ctx, w: Tensor, v: Tensor, lengths: Tensor, shifts: tuple[int, ...], normalize: bool,
                residual: bool, training: bool) -> Tensor:
        forward, _ = KERNELS.pick(v, training)
        out, r = forward(v, w, lengths, list(shifts), normalize, residual)
        ctx.save_for_backward(w, v, r, lengths)
        ctx.shifts, ctx.normalize, ctx.residual = shifts, normalize, residual
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        w, v, r, lengths = ctx.saved_tensors
        _, backward = KERNELS.pick(v, training=True)
        grad_v, grad_w = backward(grad_out, v, w, r, lengths, list(ctx.shifts), ctx.normalize, ctx.residual)
        return grad_w, grad_v, None, None, None, None, None


def factor_product(w: Tensor, v: Tensor, shifts: tuple[int, ...], index: ShiftIndex, *, normalize: bool = False,
                   residual: bool = False) -> Tensor:
    """W V for a sparse factor with values w (B, N, K) at the given shifts, applied to v (B, N, D).

    With `normalize`, W D V: V's rows read at unit root-mean-square (factor_norm); with `residual`, V + that.
    """
    training = torch.is_grad_enabled() and (w.requires_grad or v.requires_grad)
    return _FactorProduct.apply(w.to(v.dtype), v, index.lengths, shifts, normalize, residual, training)


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


def _recomputed(net: nn.Module, x: Tensor) -> Tensor:
    """net(x), with net's hidden layer recomputed in backward instead of kept: 2·H values per position and MLP,
    more than a factor keeps (K + D + 1), for one extra GEMM and GELU per MLP in backward."""
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(net, x, use_reentrant=False)
    return net(x)


class ParamixerBlock(nn.Module):
    """One Paramixer block: g, then M sparse factors whose values an MLP computes from the embedded input X."""

    def __init__(self, dim: int, hidden: int, shifts: tuple[tuple[int, ...], ...], dropout: float,
                 factor_norm: bool = True, factor_mlp: str = "block") -> None:
        super().__init__()
        if factor_mlp not in FACTOR_MLPS:
            raise ValueError(f"factor_mlp {factor_mlp!r}: choose from {', '.join(FACTOR_MLPS)}")
        self.shifts = shifts
        self.out_norm = nn.LayerNorm(dim) if factor_norm else None
        self.g = mlp(dim, hidden, dim)
        if factor_mlp == "block":  # row i of every W_m, from X_i
            self.f = mlp(dim, hidden, sum(len(s) for s in shifts))
            outputs = [self.f[-1]]
        else:  # f_m: row i of W_m is f_m(X_i)
            self.f = nn.ModuleList(mlp(dim, hidden, len(s)) for s in shifts)
            outputs = [f_m[-1] for f_m in self.f]
        for layer in outputs:  # each W_m starts near zero, so each factor starts near the identity (I + W_m)
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        self.dropout = nn.Dropout(dropout)

    def factor_values(self, x: Tensor) -> tuple[Tensor, ...]:
        """f_m(X) for every factor m: (B, N, K) each."""
        if isinstance(self.f, nn.ModuleList):
            return tuple(_recomputed(f_m, x) for f_m in self.f)
        return _recomputed(self.f, x).split([len(s) for s in self.shifts], -1)

    def forward(self, v_in: Tensor, x: Tensor, index: ShiftIndex) -> Tensor:
        v = _recomputed(self.g, v_in)
        for w, shifts in zip(self.factor_values(x), self.shifts):  # factor_norm: W_m D_m, D_m = 1 / rms(V_m)
            v = factor_product(w, v, shifts, index, normalize=self.out_norm is not None, residual=True)
        if self.out_norm is not None:
            v = self.out_norm(v)
        return self.dropout(v)


@dataclass(frozen=True)
class ParamixerOptions(NeuralOptions):
    factor_norm: bool = True  # each factor reads V at unit scale, and the block ends with a LayerNorm
    factor_mlp: str = "block"  # one MLP for the values of all factors of a block, or one per factor

    def check(self, model: str) -> None:
        super().check(model)
        if self.factor_mlp not in FACTOR_MLPS:
            raise GenomixError(f"model {model}: option factor_mlp must be one of {', '.join(FACTOR_MLPS)}, "
                               f"got {self.factor_mlp!r}")


class Paramixer(SequenceClassifier):
    """Paramixer classifier: pre-norm residual stack of Paramixer blocks over a DNA embedding. The protocol
    (which positions each factor links) is fixed by the registered variant."""

    Options = ParamixerOptions
    protocol: str

    def __init__(self, num_classes: int, max_len: int, options: ParamixerOptions) -> None:
        super().__init__(num_classes, max_len, options)
        shifts = factor_shifts(self.protocol, num_factors(max_len))
        self.norms = nn.ModuleList(nn.LayerNorm(options.dim) for _ in range(options.layers))
        self.blocks = nn.ModuleList(
            ParamixerBlock(options.dim, options.hidden, shifts, options.dropout, options.factor_norm,
                           options.factor_mlp)
            for _ in range(options.layers))

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        index = ShiftIndex(lengths, x.shape[1])
        h = x
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h), x, index)
        return h

    @classmethod
    def upgrade(cls, config: dict) -> dict:
        # Files from before these options existed were built without them.
        return {"factor_norm": False, "factor_mlp": "factor"} | super().upgrade(config)


@register("paramixer-cdil")
class ParamixerCDIL(Paramixer):
    """CDIL: factor m links i to i ± c·2^m (c = 1 … 4); K = 9 non-zeros per row, O(N log N · D) per block."""

    protocol = "cdil"


@register("paramixer-chord")
class ParamixerCHORD(Paramixer):
    """CHORD: every factor links i to i + 2^k (k < M); K = M + 1 non-zeros per row, O(N log² N · D) per block."""

    protocol = "chord"


def _legacy_paramixer(config: dict) -> tuple[str, dict]:
    """Files written before the variants had their own names: `paramixer` with a `protocol` option."""
    return f"paramixer-{config.pop('protocol', 'cdil')}", config


register_legacy("paramixer", _legacy_paramixer)
