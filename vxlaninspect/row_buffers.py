"""Packet tables written into memory the process already has, once nothing views it any more.

The kernel writes about 170 bytes per packet. Into a fresh table, every page
written is first faulted in and zeroed by the operating system, which costs a
good part of what decoding costs. A consumer that handles a chunk's table and
lets it go, as ``scan`` does, gets the same few buffers back chunk after chunk;
one that keeps its tables (or any view of them) gets new ones: a buffer is
handed out again only when nothing but the pool refers to it.
"""

from __future__ import annotations

import sys

import numpy as np

from .schema import PACKET_DTYPE

DEFAULT_SLOTS = 3
"""Buffers kept: one being written, one being read by the consumer, one to spare."""


class RowBuffers:
    """A pool of ``PACKET_DTYPE`` buffers; ``take(n)`` gives ``n`` rows of one no one else refers to."""

    def __init__(self, slots: int = DEFAULT_SLOTS) -> None:
        self._slots = slots
        self._buffers: list[np.ndarray] = []
        probe = [np.empty(0, dtype=PACKET_DTYPE)]
        self._unshared = sys.getrefcount(probe[0])  # the list's reference and the call's own

    def _free(self, k: int) -> bool:
        return sys.getrefcount(self._buffers[k]) <= self._unshared

    def take(self, rows: int) -> np.ndarray:
        """``rows`` rows of arbitrary content, a view of a buffer that nothing outside the pool refers to."""
        for k in range(len(self._buffers)):
            if len(self._buffers[k]) >= rows and self._free(k):
                return self._buffers[k][:rows]
        fresh = np.empty(1 << max(rows - 1, 0).bit_length(), dtype=PACKET_DTYPE)
        if len(self._buffers) < self._slots:
            self._buffers.append(fresh)
        else:
            free = [k for k in range(len(self._buffers)) if self._free(k)]
            if free:  # a free buffer too small for this table: the larger one replaces it
                self._buffers[free[0]] = fresh
        return fresh[:rows]
