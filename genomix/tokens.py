"""Token ids for DNA: PAD=0, A=1, C=2, G=3, T=4, N=5, through a 256-entry byte lookup table.

Sequences reaching this module are already normalised by the reader (upper-case A, C, G, T, N only),
so encoding is one vectorised table look-up per sequence, not a Python loop per base.
"""

from __future__ import annotations

import numpy as np

PAD = 0
ALPHABET = "ACGTN"
VOCAB_SIZE = len(ALPHABET) + 1

_LOOKUP = np.zeros(256, dtype=np.uint8)
for _token, _base in enumerate(ALPHABET, start=1):
    _LOOKUP[ord(_base)] = _token
_COMPLEMENT = np.array([PAD, 4, 3, 2, 1, 5], dtype=np.uint8)  # PAD, A↔T, C↔G, N


def encode(seq: str) -> np.ndarray:
    """Token ids (uint8) of a normalised sequence."""
    return _LOOKUP[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """Reverse complement of one unpadded token sequence."""
    return _COMPLEMENT[tokens[::-1]]
