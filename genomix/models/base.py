"""What every neural sequence classifier shares: embedding, masked pooling and the classification head.

A subclass only supplies `mix`, the part that lets positions exchange information. Padding is handled
here once: padded positions are zeroed before mixing and never enter the pooled summary, so a sequence
gets the same logits alone or in a batch with longer ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genomix.models.kmer import Kmer
from genomix.tokens import VOCAB_SIZE, kmer_codes, padding_mask


class SequenceClassifier(nn.Module):
    """Token embedding (+ optional local convolution and learned positions) → mixing → mean pool → head.

    The k-mer embedding adds, at each position, a vector for the k-mer that starts there: one table
    look-up gives a position its k-mer identity, and mean pooling of those vectors is a learned linear
    read-out of k-mer frequencies, the composition signal that species and many regulatory tasks rest on.
    The convolutional stem gives each position a view of its wider context before long-range mixing;
    learned positions let a model use where a motif sits (e.g. relative to a TSS in promoter windows).

    With `composition`, the model also holds a k-mer logistic regression (`Kmer`) and returns the blend
    (1 - a) · log_softmax(network) + a · log_softmax(k-mer), a log-probability up to a constant. Training
    fits the network as usual (a = 0), then the regression in closed form on the same sequences, then picks
    a by validation likelihood (`genomix.training`). Where composition carries the signal (species of
    origin), the convex regression is steadier than a network trained on a few thousand sequences, and the
    two err on different sequences; where it does not, a stays near 0.
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
        kmer: int = 0,
        composition: bool = False,
    ) -> None:
        super().__init__()
        self.max_len, self.kmer = max_len, kmer
        self.embed = nn.Embedding(VOCAB_SIZE, dim)
        # Row 4^k stands for "no valid k-mer here" (N, padding, or too close to the end) and stays zero.
        self.kmer_embed = nn.Embedding(4**kmer + 1, dim, padding_idx=4**kmer) if kmer else None
        self.stem = nn.Conv1d(dim, dim, stem_kernel, padding=stem_kernel // 2) if stem_kernel else None
        self.pos = nn.Embedding(max_len, dim) if pos_embedding else None
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        if composition:
            self.composition = Kmer(num_classes, max_len).requires_grad_(False)  # fitted in closed form
            self.register_buffer("composition_weight", torch.zeros(()))
        else:
            self.composition = None

    def embed_tokens(self, tokens: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(tokens)
        if self.kmer_embed is not None and tokens.shape[1] >= self.kmer:
            codes, valid = kmer_codes(tokens, lengths, self.kmer)
            codes = codes.masked_fill(~valid, 4**self.kmer)
            x = x + nn.functional.pad(self.kmer_embed(codes), (0, 0, 0, self.kmer - 1))  # last k-1: none
        x = x * mask[..., None]
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
        x = self.embed_tokens(tokens, lengths, mask)
        h = self.norm(self.mix(x, lengths, mask)) * mask[..., None]
        logits = self.head(h.sum(1) / lengths[:, None].to(h.dtype))
        if self.composition is None or not self.composition_weight:
            return logits
        a = self.composition_weight
        with torch.autocast(tokens.device.type, enabled=False):  # 5,460 standardised features: keep fp32
            kmer = self.composition(tokens, lengths)
        return (1 - a) * logits.float().log_softmax(-1) + a * kmer.log_softmax(-1)
