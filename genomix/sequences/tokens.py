"""Token ids for DNA: PAD=0, A=1, C=2, G=3, T=4, N=5, through a 256-entry byte lookup table.

Sequences reaching this module are already normalised by the reader (upper-case A, C, G, T, N only),
so encoding is one vectorised table look-up (per sequence or per chunk), not a Python loop per base. Models read
batches of these ids as tensors, and turn them into k-mer codes here; `genomix.applying.explaining` differentiates
models through base weights instead (`one_hot`, `kmer_weights`), which give the same results at one-hot input.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

import numpy as np
import torch
from torch import Tensor, nn

PAD = 0
ALPHABET = "ACGTN"
VOCAB_SIZE = len(ALPHABET) + 1
N_TOKEN = ALPHABET.index("N") + 1
BASE_TOKENS = np.arange(1, N_TOKEN, dtype=np.uint8)  # A, C, G, T
ENCODE_BLOCK = 1 << 20  # bases looked up at a time by `encode_all`
MASK_TOKEN = N_TOKEN  # masked-base pretraining hides a base as an N: the id every model already reads as "no base"

_LOOKUP = np.zeros(256, dtype=np.uint8)
for _token, _base in enumerate(ALPHABET, start=1):
    _LOOKUP[ord(_base)] = _token
_COMPLEMENT = np.array([PAD, *BASE_TOKENS[::-1], N_TOKEN], dtype=np.uint8)  # PAD, A↔T, C↔G, N


def encode(seq: str) -> np.ndarray:
    """Token ids (uint8) of a normalised sequence."""
    return _LOOKUP[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def encode_all(seqs: list[str]) -> list[np.ndarray]:
    """Token ids of many normalised sequences, looked up ENCODE_BLOCK bases of their concatenation at a time:
    per-sequence numpy calls would cost more than the look-ups themselves on short reads, and the whole
    concatenation would be two more bytes per base of a chromosome. The arrays are views of one buffer."""
    ends = list(accumulate(map(len, seqs)))
    tokens = np.empty(ends[-1] if ends else 0, dtype=np.uint8)
    done = 0
    for block in _blocks(seqs):
        tokens[done : done + len(block)] = encode(block)
        done += len(block)
    return [tokens[start:end] for start, end in zip([0, *ends], ends)]


def _blocks(seqs: list[str]) -> Iterator[str]:
    """The concatenation of `seqs` in consecutive strings of about ENCODE_BLOCK bases (a longer sequence cut)."""
    group: list[str] = []
    size = 0
    for seq in seqs:
        for start in range(0, len(seq), ENCODE_BLOCK):
            group.append(seq[start : start + ENCODE_BLOCK])
            size += len(group[-1])
            if size >= ENCODE_BLOCK:
                yield "".join(group)
                group, size = [], 0
    if group:
        yield "".join(group)


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """Reverse complement of one unpadded token sequence."""
    return _COMPLEMENT[tokens[::-1]]


def padding_mask(lengths: Tensor, n: int) -> Tensor:
    """(B, N) boolean mask, True on the real (non-padded) positions."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def kmer_codes(tokens: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Codes 0 … 4^k - 1 of the k-mers starting at positions 0 … N - k, and whether each is valid.

    A k-mer is valid when all its bases are A, C, G or T inside the sequence (not N, not padding).
    Both tensors are (B, N - k + 1); N must be at least k.
    """
    bases = tokens - 1  # A, C, G, T → 0 … 3; N → 4 and PAD → -1 are invalid
    valid = (bases >= 0) & (bases < 4) & padding_mask(lengths, tokens.shape[1])
    place = 4 ** torch.arange(k - 1, -1, -1, device=tokens.device)
    codes = (bases.clamp(0, 3).unfold(1, k, 1) * place).sum(-1)
    return codes, valid.unfold(1, k, 1).all(-1)


def one_hot(tokens: Tensor) -> Tensor:
    """(..., 4) float base weights of token ids: one-hot rows for A, C, G, T, zero rows for N and padding."""
    return nn.functional.one_hot(tokens.long(), VOCAB_SIZE)[..., BASE_TOKENS[0] : N_TOKEN].float()


def kmer_weights(bases: Tensor, k_max: int) -> list[Tensor]:
    """For base weights (B, N, 4), the weight of every k-mer at every start, (B, N - k + 1, 4^k) for k = 1 … k_max
    (while N ≥ k): the product of its bases' weights, in `kmer_codes`' order (the first base most significant).

    At one-hot input this is the one-hot of `kmer_codes`, zero where a k-mer touches N or padding (zero rows);
    between one-hot points it is the multilinear extension, so counts and embeddings of k-mers are differentiable.
    """
    levels = [bases]
    for k in range(2, min(k_max, bases.shape[1]) + 1):
        n = bases.shape[1] - k + 1
        levels.append((levels[-1][:, :n, :, None] * bases[:, k - 1 : k - 1 + n, None, :]).flatten(-2))
    return levels[:k_max]


def kmer_counts(bases: Tensor, k_max: int) -> list[Tensor]:
    """(B, 4^k) for k = 1 … k_max (while N ≥ k): each k-mer's total weight (`kmer_weights`), its count at
    one-hot input."""
    if _is_one_hot(bases):
        return [_OneHotKmers.apply(bases, None, k) for k in range(1, min(k_max, bases.shape[1]) + 1)]
    return [weights.sum(1) for weights in kmer_weights(bases, k_max)]


def kmer_embedding(bases: Tensor, table: Tensor, k: int) -> Tensor:
    """(B, N - k + 1, D): the rows of `table` (4^k or more, D) weighted by each start's k-mer weights (N ≥ k)."""
    if _is_one_hot(bases):
        return _OneHotKmers.apply(bases, table, k)
    return kmer_weights(bases, k)[-1] @ table[: 4**k]


def _is_one_hot(bases: Tensor) -> bool:
    """Every row one-hot or zero: the input where k-mers can be looked up instead of weighted."""
    return bool(((bases == 0) | (bases == 1)).all() and (bases.sum(-1) <= 1).all())


class _OneHotKmers(torch.autograd.Function):
    """k-mer counts (no table) or embeddings (a table) of one-hot base weights, by look-up, with the exact gradient
    of the multilinear extension at that point: d/d weight(p, c) of a k-mer covering p at digit j is the k-mer
    with that digit set to c, when its other bases are A, C, G or T. k × 4 look-ups per position instead of the
    4^k products and weights that `kmer_weights` builds: what makes gradient × input a few forward passes."""

    @staticmethod
    def forward(ctx, bases: Tensor, table: Tensor | None, k: int) -> Tensor:
        digits = torch.where(bases.sum(-1) > 0, bases.argmax(-1), -1)  # (B, N): 0 … 3, -1 for a zero row
        invalid = (digits < 0).unfold(1, k, 1)  # (B, n, k)
        place = 4 ** torch.arange(k - 1, -1, -1, device=bases.device)
        codes = (digits.clamp(min=0).unfold(1, k, 1) * place).sum(-1)
        valid = ~invalid.any(-1)
        ctx.save_for_backward(digits, codes, invalid, table)
        ctx.k, ctx.width = k, bases.shape[-1]
        if table is None:
            return torch.zeros(len(bases), 4**k, device=bases.device).scatter_add_(1, codes, valid.float())
        return table[codes] * valid[..., None]

    @staticmethod
    def backward(ctx, grad: Tensor):
        digits, codes, invalid, table = ctx.saved_tensors
        k = ctx.k
        n = codes.shape[1]
        grad_bases = grad.new_zeros(*digits.shape, ctx.width)
        others = invalid.sum(-1, keepdim=True) - invalid.int() == 0  # (B, n, k): valid but for digit j
        bases4 = torch.arange(4, device=grad.device)
        for j in range(k):
            place = 4 ** (k - 1 - j)
            substituted = (codes - digits[:, j : j + n].clamp(min=0) * place)[..., None] + bases4 * place  # (B, n, 4)
            if table is None:
                scores = grad.gather(1, substituted.flatten(1)).view_as(substituted)
            else:
                scores = (table[substituted] * grad[:, :, None, :]).sum(-1)
            grad_bases[:, j : j + n] += scores * others[:, :, j, None]
        grad_table = None
        if table is not None and ctx.needs_input_grad[1]:
            valid = ~invalid.any(-1)
            grad_table = torch.zeros_like(table).index_add_(0, codes[valid], grad[valid])
        return grad_bases, grad_table, None
