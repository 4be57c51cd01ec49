"""Factors for the compiled tables' multiply-shift hashing, drawn at random for each table.

A table hashes a key as the sum of its words times these factors, keeping the
top bits. Factors of their own for every table mean that no capture can be
crafted to make every lookup of every table collide (which would turn each
lookup into a walk over all entries).
"""

from __future__ import annotations

import numpy as np


def random_hash_factors(words: int) -> np.ndarray:
    """``words`` random odd ``uint64`` factors, one per key word."""
    return np.random.default_rng().integers(0, 1 << 64, size=words, dtype=np.uint64) | np.uint64(1)
