"""Transformer baseline: the same embedding, width, depth, pooling and head as Paramixer, with its mixing
done by dot-product attention (`scaled_dot_product_attention`, so PyTorch picks its flash or
memory-efficient kernels). It is the model a user would otherwise choose, kept here to compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from genomix.errors import GenomixError
from genomix.models.base import NeuralOptions, SequenceClassifier, at_least
from genomix.models.registry import register


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention with padded keys masked out, then a GELU feed-forward."""

    def __init__(self, dim: int, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, key_mask: Tensor | None) -> Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        h = h + self.dropout(self.proj(attn.transpose(1, 2).reshape(b, n, d)))
        return h + self.dropout(self.ff(self.norm2(h)))


@dataclass(frozen=True)
class TransformerOptions(NeuralOptions):
    heads: int = 4  # attention heads; must divide dim

    def check(self, model: str) -> None:
        super().check(model)
        at_least(model, heads=(self.heads, 1))
        if self.dim % self.heads:
            raise GenomixError(f"model {model}: dim {self.dim} is not divisible by heads {self.heads}")


@register("transformer")
class Transformer(SequenceClassifier):
    """Transformer encoder classifier with the same interface and defaults as Paramixer."""

    Options = TransformerOptions

    def __init__(self, num_classes: int, max_len: int, options: TransformerOptions) -> None:
        super().__init__(num_classes, max_len, options)
        self.blocks = nn.ModuleList(AttentionBlock(options.dim, options.hidden, options.heads, options.dropout)
                                    for _ in range(options.layers))

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        # Without padding, no mask: that lets PyTorch use its fastest (flash) attention kernel.
        key_mask = None if bool(mask.all()) else mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, key_mask)
        return x
