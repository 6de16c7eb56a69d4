"""Paramixer: attention replaced by a product of log2(N) sparse factors whose entries are MLP outputs.

A block maps V_in to  V_0 = g(V_in),  V_{m+1} = V_m + W_m(X) V_m  (m = 0 … M-1),  out = dropout(V_M).
Row i of W_m has K non-zeros, at columns (i + s) mod L for the protocol's shifts s, with values f_m(X_i),
where X is the embedded input shared by all blocks. L is each sequence's own length, so a sequence mixes
only with itself and padding never changes its result.

- CHORD: every factor links i to i and i + 2^k (k < M): K = M + 1, O(N log² N · D) per block.
- CDIL:  factor m links i to i, i ± d, i ± 2d, i ± 3d, i ± 4d with d = 2^m: K = 9, O(N log N · D).

(W V)[i] = Σ_k W[i, k] · V[(i + s_k) mod L] is a weighted sum of K shifted copies of V. The autograd op
below keeps only W and V for backward and recomputes the shifts there, so a factor costs B·N·(K + D)
activation memory instead of B·N·K·D. Each shift is a permutation of the rows, so its transpose (needed
for the gradient of V) is the opposite shift: the backward is gathers too, no scatter.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor, nn

from genomix.models import register
from genomix.models.base import SequenceClassifier

PROTOCOLS = ("chord", "cdil")


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

    def __call__(self, shift: int) -> Tensor:
        if shift not in self.cache:
            inside = self.positions < self.lengths
            shifted = torch.where(inside, (self.positions + shift) % self.lengths, self.positions)
            self.cache[shift] = (shifted + self.offsets).reshape(-1)
        return self.cache[shift]


class _FactorProduct(torch.autograd.Function):
    """out = W V for one sparse factor, with the shifted copies of V recomputed in backward."""

    @staticmethod
    def forward(ctx, w: Tensor, v: Tensor, shifts: tuple[int, ...], index: ShiftIndex) -> Tensor:
        b, n, d = v.shape
        rows = v.reshape(b * n, d)
        weights = w.reshape(b * n, -1)
        out = torch.zeros_like(rows)
        for k, shift in enumerate(shifts):
            out.addcmul_(weights[:, k : k + 1], rows.index_select(0, index(shift)))
        ctx.save_for_backward(w, v)
        ctx.shifts, ctx.index = shifts, index
        return out.view(b, n, d)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        w, v = ctx.saved_tensors
        b, n, d = v.shape
        rows, grad = v.reshape(b * n, d), grad_out.reshape(b * n, d)
        weights = w.reshape(b * n, -1)
        grad_w = torch.empty_like(weights)
        grad_v = torch.zeros_like(rows)
        for k, shift in enumerate(ctx.shifts):
            grad_w[:, k] = (grad * rows.index_select(0, ctx.index(shift))).sum(-1)
            grad_v.addcmul_(weights.index_select(0, ctx.index(-shift))[:, k : k + 1],
                            grad.index_select(0, ctx.index(-shift)))
        return grad_w.view_as(w), grad_v.view_as(v), None, None


def factor_product(w: Tensor, v: Tensor, shifts: tuple[int, ...], index: ShiftIndex) -> Tensor:
    """(W V) for a sparse factor with values w (B, N, K) at the given shifts, applied to v (B, N, D)."""
    return _FactorProduct.apply(w.to(v.dtype), v, shifts, index)


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


class ParamixerBlock(nn.Module):
    """One Paramixer block: g, then M sparse factors whose values are MLPs of the embedded input X."""

    def __init__(self, dim: int, hidden: int, shifts: tuple[tuple[int, ...], ...], dropout: float) -> None:
        super().__init__()
        self.shifts = shifts
        self.g = mlp(dim, hidden, dim)
        self.f = nn.ModuleList(mlp(dim, hidden, len(s)) for s in shifts)  # f_m: row i of W_m is f_m(X_i)
        for f_m in self.f:  # W_m starts near zero, so each factor starts near the identity (I + W_m)
            nn.init.normal_(f_m[-1].weight, std=0.02)
            nn.init.zeros_(f_m[-1].bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, v_in: Tensor, x: Tensor, index: ShiftIndex) -> Tensor:
        v = self.g(v_in)
        for f_m, shifts in zip(self.f, self.shifts):
            v = v + factor_product(f_m(x), v, shifts, index)
        return self.dropout(v)


@register("paramixer")
class Paramixer(SequenceClassifier):
    """Paramixer classifier: pre-norm residual stack of Paramixer blocks over a DNA embedding."""

    def __init__(
        self,
        num_classes: int,
        max_len: int,
        protocol: str = "cdil",
        dim: int = 64,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        stem_kernel: int = 9,
        pos_embedding: bool = True,
    ) -> None:
        super().__init__(num_classes, dim, max_len, stem_kernel, pos_embedding, dropout)
        self.config = dict(max_len=max_len, protocol=protocol, dim=dim, hidden=hidden, layers=layers,
                           dropout=dropout, stem_kernel=stem_kernel, pos_embedding=pos_embedding)
        shifts = factor_shifts(protocol, num_factors(max_len))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.blocks = nn.ModuleList(ParamixerBlock(dim, hidden, shifts, dropout) for _ in range(layers))

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        index = ShiftIndex(lengths, x.shape[1])
        h = x
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h), x, index)
        return h
