"""Paramixer: attention replaced by a product of log2(N) sparse factors whose entries are MLP outputs.

A block maps V_in to  V_0 = g(V_in),  V_{m+1} = V_m + W_m(X) V_m  (m = 0 … M-1),  out = dropout(V_M).
Row i of W_m has K non-zeros, at columns (i + s) mod L for the protocol's shifts s, with values f_m(X_i),
where X is the embedded input shared by all blocks. By default (`factor_mlp="block"`) the f_m of a block
share their hidden layer: one MLP f maps X_i to the M·K values of row i of every factor, and f_m(X_i) is
its m-th slice: 1.5x faster training than `factor_mlp="factor"`, one MLP per factor, with validation
MCC unchanged on average over the seven real sets but lower on two promoter sets (docs/TUNING.md). L is
each sequence's own length, so a sequence mixes only with itself and padding never changes its result.

With `factor_norm` (the default) each factor reads V at unit scale, V_{m+1} = V_m + W_m D_m V_m with the
diagonal D_m = 1 / rms(V_m[j]), and the block ends with a LayerNorm: out = dropout(LN(V_M)). W_m D_m has
the same sparsity as W_m, so this is still a product of M sparse factors, but V now grows additively
through the M factors instead of geometrically. Without it, a model at 16,384 bases (14 factors) saw its
block outputs grow by 10^12 within 20 training steps and then learnt nothing (docs/MODEL.md).

- CHORD: every factor links i to i and i + 2^k (k < M): K = M + 1, O(N log² N · D) per block.
- CDIL:  factor m links i to i, i ± d, i ± 2d, i ± 3d, i ± 4d with d = 2^m: K = 9, O(N log N · D).

(W V)[i] = Σ_k W[i, k] · V[(i + s_k) mod L] is a weighted sum of K shifted copies of V. The autograd op
below keeps only W and V for backward and recomputes the shifts there, so a factor costs B·N·(K + D)
activation memory instead of B·N·K·D. Each shift is a permutation of the rows, so its transpose (needed
for the gradient of V) is the opposite shift: the backward is gathers too, no scatter.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

from genomix.errors import GenomixError
from genomix.models import register, register_legacy
from genomix.models.base import NeuralOptions, SequenceClassifier

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
    """Flat row indices of circular shifts, per sequence length, cached for one batch.

    For shift s, row b*N + i reads row b*N + (i + s) mod L_b when i < L_b; padded rows read themselves,
    which keeps every shift a permutation (so the transposed shift is just the opposite shift).
    """

    def __init__(self, lengths: Tensor, n: int) -> None:
        self.lengths = lengths[:, None]
        self.positions = torch.arange(n, device=lengths.device)[None, :]
        self.offsets = self.positions.new_tensor(range(0, len(lengths) * n, n))[:, None]
        self.cache: dict[int, Tensor] = {}
        self.stacks: dict[tuple[int, ...], Tensor] = {}

    def __call__(self, shift: int) -> Tensor:
        if shift not in self.cache:
            inside = self.positions < self.lengths
            shifted = torch.where(inside, (self.positions + shift) % self.lengths, self.positions)
            self.cache[shift] = (shifted + self.offsets).reshape(-1)
        return self.cache[shift]

    def stack(self, shifts: tuple[int, ...]) -> Tensor:
        """(K, B*N) indices of several shifts, one row per shift."""
        if shifts not in self.stacks:
            self.stacks[shifts] = torch.stack([self(s) for s in shifts])
        return self.stacks[shifts]


def _product(rows: Tensor, weights: Tensor, gather: Tensor) -> Tensor:
    """Σ_k weights[:, k] · rows[gather[k]]: the factor product on flat (B*N, ·) rows."""
    out = torch.zeros_like(rows)
    for k in range(gather.shape[0]):
        out.addcmul_(weights[:, k : k + 1], rows.index_select(0, gather[k]))
    return out


def _product_backward(rows: Tensor, weights: Tensor, grad: Tensor, gather: Tensor, scatter: Tensor):
    """Gradients of `_product`: shifts are recomputed, and the transpose of a shift is the opposite shift."""
    grad_w = torch.empty_like(weights)
    grad_rows = torch.zeros_like(rows)
    for k in range(gather.shape[0]):
        grad_w[:, k] = (grad * rows.index_select(0, gather[k])).sum(-1)
        grad_rows.addcmul_(weights.index_select(0, scatter[k])[:, k : k + 1], grad.index_select(0, scatter[k]))
    return grad_w, grad_rows


class _Kernels:
    """The factor product's forward and backward, eager or fused by `torch.compile`.

    Eager, each of the K terms is a separate pass over memory; compiled, the K gathers and multiply-adds
    become one loop (about 8x faster on a CPU at N = 16,384, 7x at N = 500). Compiling costs tens of seconds
    once per process, so it is used where that pays: in training, which runs hundreds of steps, for inputs
    of at least FUSE_MIN_LEN, and for everything after the first compile (validation during training, say).
    Short inference in a fresh process runs eager. Where compilation is unavailable or fails, the eager
    code runs. GENOMIX_COMPILE=0 turns it off.
    """

    FUSE_MIN_LEN = 4096

    def __init__(self) -> None:
        self.enabled = os.environ.get("GENOMIX_COMPILE", "1") != "0"
        self.compiled = None

    def pick(self, n: int, training: bool):
        if not self.enabled or (n < self.FUSE_MIN_LEN and not training and self.compiled is None):
            return _product, _product_backward
        if self.compiled is None:
            try:
                self.compiled = (torch.compile(_product, dynamic=True), torch.compile(_product_backward, dynamic=True))
            except Exception as err:  # noqa: BLE001 - any compiler problem means: run eager
                warnings.warn(f"torch.compile unavailable, Paramixer runs eager: {err}", stacklevel=2)
                self.enabled = False
                return _product, _product_backward
        return self.compiled


KERNELS = _Kernels()


class _FactorProduct(torch.autograd.Function):
    """out = W V for one sparse factor; only W and V are kept for backward, where the shifts are redone."""

    @staticmethod
    def forward(ctx, w: Tensor, v: Tensor, shifts: tuple[int, ...], index: ShiftIndex, training: bool) -> Tensor:
        b, n, d = v.shape
        product, _ = KERNELS.pick(n, training)
        out = product(v.reshape(b * n, d), w.reshape(b * n, -1), index.stack(shifts))
        ctx.save_for_backward(w, v)
        ctx.shifts, ctx.index = shifts, index
        return out.view(b, n, d)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        w, v = ctx.saved_tensors
        b, n, d = v.shape
        _, product_backward = KERNELS.pick(n, training=True)
        gather = ctx.index.stack(ctx.shifts)
        scatter = ctx.index.stack(tuple(-s for s in ctx.shifts))
        grad_w, grad_v = product_backward(v.reshape(b * n, d), w.reshape(b * n, -1), grad_out.reshape(b * n, d),
                                          gather, scatter)
        return grad_w.view_as(w), grad_v.view_as(v), None, None, None


def factor_product(w: Tensor, v: Tensor, shifts: tuple[int, ...], index: ShiftIndex) -> Tensor:
    """(W V) for a sparse factor with values w (B, N, K) at the given shifts, applied to v (B, N, D)."""
    training = torch.is_grad_enabled() and (w.requires_grad or v.requires_grad)
    return _FactorProduct.apply(w.to(v.dtype), v, shifts, index, training)


def _inverse_rms(v: Tensor) -> Tensor:
    """1 / root-mean-square of each row of v (B, N, D), computed in at least fp32 (bf16 squares lose too much)."""
    precise = v.to(torch.promote_types(v.dtype, torch.float32))
    return torch.rsqrt(precise.pow(2).mean(-1) + 1e-6).to(v.dtype)


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


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
            return tuple(f_m(x) for f_m in self.f)
        return self.f(x).split([len(s) for s in self.shifts], -1)

    def forward(self, v_in: Tensor, x: Tensor, index: ShiftIndex) -> Tensor:
        v = self.g(v_in)
        for w, shifts in zip(self.factor_values(x), self.shifts):
            if self.out_norm is not None:  # factor_norm: W_m D_m, column j of W_m scaled by 1 / rms(V_m[j])
                w = w * _inverse_rms(v).reshape(-1)[index.stack(shifts)].T.reshape_as(w)
            v = v + factor_product(w, v, shifts, index)
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
