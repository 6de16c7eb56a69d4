"""Turning token arrays into padded batches: length buckets, training crops and prediction windows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from genomix.sequences.tokens import PAD

BUCKET_POOL = 50  # batches sorted together: enough to group lengths, few enough to keep batches random


def pad(token_arrays: Sequence[np.ndarray], width: int | None = None) -> tuple[Tensor, Tensor]:
    """(tokens (B, N) int64 padded with PAD, lengths (B,) int64) for a list of 1-D token arrays; N is the longest
    length, or `width` where that is more."""
    lengths = np.fromiter((len(t) for t in token_arrays), dtype=np.int64, count=len(token_arrays))
    tokens = np.full((len(token_arrays), max(int(lengths.max()), width or 0)), PAD, dtype=np.int64)
    for row, t in zip(tokens, token_arrays):
        row[: len(t)] = t
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def bucket_width(longest: int, max_len: int) -> int:
    """A padded width from few: the next power of two from 64 up, at most max_len. A captured (CUDA-graph) step
    is recorded once per shape, so batches padded to these widths record a handful of graphs, not one per length."""
    return min(max_len, max(64, 1 << (longest - 1).bit_length()))


def random_crop(tokens: np.ndarray, max_len: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of `max_len` tokens (the whole array when it is not longer)."""
    if len(tokens) <= max_len:
        return tokens
    start = int(rng.integers(0, len(tokens) - max_len + 1))
    return tokens[start : start + max_len]


def window_starts(length: int, max_len: int) -> list[int]:
    """Starts of the windows that tile a sequence: every `max_len`, the last one flush with the end.

    A sequence no longer than `max_len` is one window; longer ones are covered completely, never cut.
    """
    if length <= max_len:
        return [0]
    starts = list(range(0, length - max_len, max_len))
    return starts + [length - max_len]


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Index batches of similar lengths, so that little of each batch is padding.

    With `rng`, the order is random (training): indices are shuffled, sorted by length within pools of
    BUCKET_POOL batches, cut into batches, and the batches shuffled. Without it, one global sort.
    """
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    pool = BUCKET_POOL * batch_size if rng is not None else max(len(order), 1)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def num_batches(n: int, batch_size: int) -> int:
    """How many batches `bucket_batches` makes of n items with a random order."""
    full_pools, rest = divmod(n, BUCKET_POOL * batch_size)
    return full_pools * BUCKET_POOL + math.ceil(rest / batch_size)


def padding_fraction(lengths: np.ndarray, batches: Sequence[np.ndarray]) -> float:
    """Share of the batched positions that are padding."""
    total = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - float(lengths.sum()) / total if total else 0.0
