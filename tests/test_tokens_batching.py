"""Token ids, reverse complement, padding, prediction windows, length buckets and training crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genomix.sequences.batching import (
    BUCKET_POOL,
    bucket_batches,
    num_batches,
    pad,
    padding_fraction,
    random_crop,
    window_starts,
)
from genomix.sequences.tokens import ALPHABET, PAD, VOCAB_SIZE, encode, reverse_complement

# --- tokens --------------------------------------------------------------------------------------------


def test_encode_known_answer():
    tokens = encode("ACGTN")
    assert tokens.dtype == np.uint8
    assert tokens.tolist() == [1, 2, 3, 4, 5]
    assert encode("GATTACA").tolist() == [3, 1, 4, 4, 1, 2, 1]
    assert PAD == 0 and VOCAB_SIZE == 6 and ALPHABET == "ACGTN"


def test_encode_empty():
    assert encode("").tolist() == []


def test_reverse_complement_known_answer():
    assert reverse_complement(encode("AACGTN")).tolist() == encode("NACGTT").tolist()
    assert reverse_complement(encode("GATTACA")).tolist() == encode("TGTAATC").tolist()
    assert reverse_complement(encode("A")).tolist() == encode("T").tolist()


def test_reverse_complement_is_an_involution():
    rng = np.random.default_rng(0)
    for length in [1, 2, 7, 64, 1000]:
        tokens = rng.integers(1, 6, size=length).astype(np.uint8)
        rc = reverse_complement(tokens)
        assert rc.dtype == tokens.dtype and len(rc) == length
        assert np.array_equal(reverse_complement(rc), tokens)
        # complement keeps N as N and pairs A-T, C-G: base counts swap accordingly
        counts, rc_counts = np.bincount(tokens, minlength=6), np.bincount(rc, minlength=6)
        assert rc_counts.tolist() == [0, counts[4], counts[3], counts[2], counts[1], counts[5]]


# --- pad -----------------------------------------------------------------------------------------------


def test_pad_known_answer():
    tokens, lengths = pad([np.array([1, 2, 3], np.uint8), np.array([4], np.uint8), np.array([5, 5], np.uint8)])
    assert tokens.dtype == torch.int64 and lengths.dtype == torch.int64
    assert tokens.tolist() == [[1, 2, 3], [4, PAD, PAD], [5, 5, PAD]]
    assert lengths.tolist() == [3, 1, 2]


def test_pad_single_row_has_no_padding():
    tokens, lengths = pad([encode("ACGT")])
    assert tokens.shape == (1, 4) and tokens.tolist() == [[1, 2, 3, 4]] and lengths.tolist() == [4]


# --- window_starts --------------------------------------------------------------------------------------


def test_window_starts_known_answers():
    assert window_starts(10, 64) == [0]
    assert window_starts(64, 64) == [0]
    assert window_starts(65, 64) == [0, 1]
    assert window_starts(128, 64) == [0, 64]
    assert window_starts(150, 64) == [0, 64, 86]


@pytest.mark.parametrize("max_len", [1, 2, 7, 8, 64])
def test_window_starts_tile_every_position_within_bounds(max_len):
    for length in range(1, 400):
        starts = window_starts(length, max_len)
        assert starts == sorted(set(starts)), "starts must be increasing, no duplicates"
        assert starts[0] == 0
        covered = np.zeros(length, dtype=int)
        for start in starts:
            assert start >= 0
            end = start + max_len
            assert min(end, length) - start == min(max_len, length), "every window is full length"
            assert end <= length or start == 0 and length < max_len, "a window never runs past the end"
            covered[start:end] += 1
        assert covered.min() >= 1, f"length {length}: a position is not covered"
        assert len(starts) == math.ceil(length / max_len), "no more windows than needed"
        if length >= max_len:
            assert starts[-1] == length - max_len, "the last window is flush with the end"


# --- bucket_batches / num_batches ---------------------------------------------------------------------------


def mixed_lengths(n: int = 2000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.integers(20, 100, n // 2), rng.integers(500, 5000, n - n // 2)])[rng.permutation(n)]


def check_partition(batches, n: int, batch_size: int) -> None:
    assert all(1 <= len(b) <= batch_size for b in batches)
    flat = np.concatenate(batches) if batches else np.array([], dtype=int)
    assert len(flat) == n, "every index exactly once"
    assert sorted(flat.tolist()) == list(range(n))


@pytest.mark.parametrize("batch_size", [1, 3, 16, 64])
@pytest.mark.parametrize("seeded", [True, False])
def test_bucket_batches_partition_indices(batch_size, seeded):
    lengths = mixed_lengths()
    rng = np.random.default_rng(7) if seeded else None
    check_partition(bucket_batches(lengths, batch_size, rng), len(lengths), batch_size)


def test_bucket_batches_without_rng_is_one_global_sort():
    lengths = mixed_lengths(500)
    batches = bucket_batches(lengths, 16)
    order = np.concatenate(batches)
    assert np.all(np.diff(lengths[order]) >= 0)
    assert all(len(b) == 16 for b in batches[:-1])


def test_bucket_batches_has_less_padding_than_random_order():
    lengths = mixed_lengths()
    batch_size = 16
    rng = np.random.default_rng(3)
    random_order = rng.permutation(len(lengths))
    random_batches = [random_order[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    random_padding = padding_fraction(lengths, random_batches)
    bucketed = padding_fraction(lengths, bucket_batches(lengths, batch_size, np.random.default_rng(4)))
    sorted_padding = padding_fraction(lengths, bucket_batches(lengths, batch_size))
    assert random_padding > 0.3
    assert bucketed < random_padding / 5
    assert sorted_padding <= bucketed + 1e-12


def test_bucket_batches_random_order_depends_on_seed():
    lengths = mixed_lengths(800)
    first = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(1))]
    again = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(1))]
    other = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(2))]
    assert first == again
    assert first != other


def test_padding_fraction_known_answer():
    lengths = np.array([2, 4, 4, 1])
    # batches (0, 1): 2 * 4 slots for 6 bases; (2, 3): 2 * 4 slots for 5 bases -> 5 of 16 are padding
    assert padding_fraction(lengths, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(5 / 16)
    assert padding_fraction(lengths, [np.array([1, 2]), np.array([0]), np.array([3])]) == 0.0


@pytest.mark.parametrize("batch_size", [1, 2, 5, 32])
def test_num_batches_matches_bucket_batches(batch_size):
    pool = BUCKET_POOL * batch_size
    sizes = set(range(0, 120)) | {pool - 1, pool, pool + 1, 2 * pool - 1, 2 * pool, 2 * pool + 1, 3 * pool + 7}
    rng = np.random.default_rng(0)
    for n in sorted(sizes):
        lengths = rng.integers(1, 50, n)
        expected = len(bucket_batches(lengths, batch_size, np.random.default_rng(n)))
        assert num_batches(n, batch_size) == expected, f"n={n}, batch_size={batch_size}"


# --- random_crop -----------------------------------------------------------------------------------------------


def test_random_crop_is_a_contiguous_window_of_max_len():
    tokens = np.arange(100)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(2000):
        crop = random_crop(tokens, 30, rng)
        assert len(crop) == 30
        assert np.array_equal(crop, np.arange(crop[0], crop[0] + 30)), "a contiguous slice"
        assert 0 <= crop[0] <= 70
        starts.add(int(crop[0]))
    assert starts == set(range(71)), "every start, including both ends, can be drawn"


def test_random_crop_keeps_short_sequences_whole():
    rng = np.random.default_rng(0)
    for length in (1, 29, 30):
        tokens = np.arange(length)
        assert np.array_equal(random_crop(tokens, 30, rng), tokens)


def test_bucket_widths_are_few_and_cover_every_batch():
    from genomix.sequences.batching import bucket_width

    widths = {bucket_width(n, 4096) for n in range(1, 4097)}
    assert widths == {64, 128, 256, 512, 1024, 2048, 4096}
    assert all(bucket_width(n, 4096) >= n for n in range(1, 4097)) and bucket_width(300, 251) == 251
    tokens, lengths = pad([np.array([1, 2, 3], np.uint8)], width=bucket_width(3, 64))
    assert tokens.shape == (1, 64) and lengths.tolist() == [3] and tokens[0, 3:].eq(PAD).all()
