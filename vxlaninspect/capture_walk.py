"""What the pcap and pcapng readers share: limits, the record index the kernels fill, the walk over windows.

The compiled helpers here (``load_u16``, ``load_u32``, ``fetch_ahead``) are
compiled into both walkers, and numba's on-disk cache of a walker only notices
changes to its own file: after changing one of them, touch ``capture_pcap.py``
and ``capture_pcapng.py`` too (or clear ``__pycache__``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import IntEnum
from typing import Protocol

import numpy as np
from numba import njit

from .capture_source import ByteSource
from .errors import CaptureError
from .prefetch import prefetch
from .records import RecordBatch

MAX_RECORD_BYTES = 256 << 10
"""A record claiming more captured bytes than this is damage (libpcap's and Wireshark's usual limit)."""


class Stop(IntEnum):
    """Why an indexing kernel returned."""

    FULL = 0  # the index arrays are full
    NEED_BYTES = 1  # the next record or block is not wholly in the window
    RECORD_TOO_LONG = 2
    SECTION = 3  # a pcapng section header block, for Python to parse
    INTERFACE = 4  # a pcapng interface description block, for Python to parse
    BAD_BYTE_ORDER = 5
    BLOCK_TOO_SHORT = 6
    BLOCK_NOT_ALIGNED = 7
    BLOCK_TOO_LONG = 8
    TRAILER_MISMATCH = 9
    BAD_INTERFACE = 10
    PACKET_BLOCK_TOO_SHORT = 11
    DATA_EXCEEDS_BLOCK = 12


_ONE, _TWO, _THREE = np.uint64(1), np.uint64(2), np.uint64(3)


PREFETCH_DISTANCE = 4096
"""Bytes ahead of the record being indexed that are fetched into the cache: a record's
position depends on the one before, so the walk would otherwise wait on memory at each."""
_LINE = 64


class Damage(Exception):
    """Bytes that are not a valid record or block; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@njit(cache=True, nogil=True)
def load_u16(data: np.ndarray, at: int, big_endian: bool) -> int:
    i = np.uint64(at)  # an unsigned index spares numba's negative-index handling
    first, second = np.int64(data[i]), np.int64(data[i + _ONE])
    return (first << 8) | second if big_endian else (second << 8) | first


@njit(cache=True, nogil=True)
def load_u32(data: np.ndarray, at: int, big_endian: bool) -> int:
    i = np.uint64(at)
    b0, b1, b2, b3 = np.int64(data[i]), np.int64(data[i + _ONE]), np.int64(data[i + _TWO]), np.int64(data[i + _THREE])
    if big_endian:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=True, nogil=True)
def fetch_ahead(data: np.ndarray, ahead: int, pos: int) -> int:
    """Prefetch ``data`` from ``ahead`` to ``PREFETCH_DISTANCE`` bytes past ``pos``; the new ``ahead``."""
    last = data.shape[0] - 1
    while ahead < pos + PREFETCH_DISTANCE:
        prefetch(data, min(ahead, last))
        ahead += _LINE
    return ahead


def read_uint(data: np.ndarray, at: int, size: int, big_endian: bool) -> int:
    """An unsigned integer of ``size`` bytes, read in Python (for headers and messages)."""
    return int.from_bytes(data[at : at + size].tobytes(), "big" if big_endian else "little")


class IndexArrays:
    """Arrays a kernel fills, one slot per record: the columns of a ``RecordBatch``."""

    def __init__(self, capacity: int) -> None:
        self.data_start = np.empty(capacity, dtype=np.int64)
        self.caplen = np.empty(capacity, dtype=np.uint32)
        self.wirelen = np.empty(capacity, dtype=np.uint32)
        self.ts_ns = np.empty(capacity, dtype=np.int64)
        self.linktype = np.empty(capacity, dtype=np.uint16)
        self.rec_offset = np.empty(capacity, dtype=np.int64)

    def columns(self) -> tuple[np.ndarray, ...]:
        return self.data_start, self.caplen, self.wirelen, self.ts_ns, self.linktype, self.rec_offset

    def batch(self, data: np.ndarray, count: int) -> RecordBatch:
        """The first ``count`` slots as a batch over ``data``."""
        return RecordBatch(data, *(column[:count] for column in self.columns()))


class RecordIndex:
    """Two sets of index arrays used in turn, so batches need no copying.

    A set that a delivered batch still views is replaced rather than overwritten:
    every batch stays valid for as long as the caller keeps it.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._sets = [IndexArrays(capacity), IndexArrays(capacity)]
        self._unshared = _references(self._sets[0])
        self._turn = 0

    @classmethod
    def for_chunk(cls, chunk_bytes: int) -> RecordIndex:
        return cls(max(chunk_bytes // 256, 64))

    def writable(self) -> IndexArrays:
        """A set of arrays that no delivered batch views."""
        if _references(self._sets[self._turn]) > self._unshared:
            self._turn = 1 - self._turn
            if _references(self._sets[self._turn]) > self._unshared:
                self._sets[self._turn] = IndexArrays(self._capacity)
        return self._sets[self._turn]


def _references(arrays: IndexArrays) -> int:
    return max(sys.getrefcount(column) for column in arrays.columns())


class Indexer(Protocol):
    """One capture format's side of the walk."""

    def index(self, data: np.ndarray, pos: int, offset: int, arrays: IndexArrays) -> tuple[int, int, int, int]:
        """Index records from ``data[pos]`` on: (records, end position, ``Stop``, bytes needed from there).

        ``offset`` is the stream offset of ``data[0]``; data starts are counted from ``data[pos]``.
        """

    def resume(self, stop: Stop, data: np.ndarray, pos: int) -> int:
        """Handle a stop other than FULL and NEED_BYTES at ``pos``: the position to go on from, or ``Damage``."""

    def truncation(self, data: np.ndarray, pos: int) -> str:
        """Why the bytes from ``pos`` to the end of the stream are not a whole record."""


def walk(source: ByteSource, path: str, offset: int, indexer: Indexer, index: RecordIndex) -> Iterator[RecordBatch]:
    """The records from stream ``offset`` on, in batches.

    Damage raises ``CaptureError``, after every record before it was yielded.
    """
    need = 0
    while True:
        data, at_end = source.window(offset, need)
        pos = 0
        while True:
            arrays = index.writable()
            count, end, stop, need = indexer.index(data, pos, offset, arrays)
            if count:
                yield arrays.batch(data[pos:end], count)
            pos = end
            if stop == Stop.FULL:
                continue
            if stop == Stop.NEED_BYTES:
                break
            try:
                pos = indexer.resume(Stop(stop), data, pos)
            except Damage as damage:
                raise CaptureError(path, offset + pos, damage.reason) from None
        offset += pos
        if at_end:
            if source.error is not None:
                raise source.error
            if pos < len(data):
                raise CaptureError(path, offset, indexer.truncation(data, pos))
            return
