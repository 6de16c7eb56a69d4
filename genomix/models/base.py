"""What every neural sequence classifier shares: embedding, masked pooling and the classification head.

A subclass only supplies `mix`, the part that lets positions exchange information. Padding is handled
here once: padded positions are zeroed before mixing and never enter the pooled summary, so a sequence
gets the same logits alone or in a batch with longer ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genomix.tokens import VOCAB_SIZE


def padding_mask(lengths: Tensor, n: int) -> Tensor:
    """(B, N) boolean mask, True on the real (non-padded) positions."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


class SequenceClassifier(nn.Module):
    """Token embedding (+ optional local convolution and learned positions) → mixing → mean pool → head.

    The convolutional stem gives each position a view of its k-mer context before long-range mixing;
    learned positions let a model use where a motif sits (e.g. relative to a TSS in promoter windows).
    """

    name: str

    def __init__(
        self,
        num_classes: int,
        dim: int,
        max_len: int,
        stem_kernel: int,
        pos_embedding: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(VOCAB_SIZE, dim)
        self.stem = nn.Conv1d(dim, dim, stem_kernel, padding=stem_kernel // 2) if stem_kernel else None
        self.pos = nn.Embedding(max_len, dim) if pos_embedding else None
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def embed_tokens(self, tokens: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(tokens) * mask[..., None]
        if self.stem is not None:
            x = x + nn.functional.gelu(self.stem(x.transpose(1, 2))).transpose(1, 2)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        return self.dropout(x) * mask[..., None]

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, classes) for token ids (B, N) padded with 0 and true lengths (B,)."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"input of length {tokens.shape[1]} exceeds the model's max_len {self.max_len}")
        mask = padding_mask(lengths, tokens.shape[1])
        x = self.embed_tokens(tokens, mask)
        h = self.norm(self.mix(x, lengths, mask)) * mask[..., None]
        return self.head(h.sum(1) / lengths[:, None].to(h.dtype))
