"""Bounded reassembly of one direction of a TCP connection.

A ``Stream`` takes the segments of one direction in capture order and hands
back the byte stream in sequence order as ``Data`` chunks, with a ``Gap``
wherever bytes are known to be missing. Rules:

* **Stream offsets.** Offset 0 is the byte after the SYN (ISN + 1). Without a
  SYN (a capture that starts mid-connection) the first segment carrying data or
  a FIN starts the stream, so bytes sent before it are not part of the stream.
  Sequence numbers are compared modulo 2**32, so streams that wrap are whole.
  The first SYN seen fixes offset 0; later SYNs with another ISN are ignored.
* **First copy wins.** A byte offered twice (retransmission, overlapping
  segments) keeps the value it had the first time it was offered, whether that
  copy was delivered already or is still waiting behind a hole.
* **Gaps are never papered over.** Data behind a hole waits for the hole to be
  filled. It is delivered after a ``Gap`` of the hole's exact size when the hole
  is declared lost: by ``finish()`` (end of capture), by a RST, or when more
  than ``max_pending`` out-of-order segments wait. ``finish()`` also reports
  bytes missing before a FIN or before the highest byte seen. A direction
  has at most ``max_gaps`` gaps: it ends, truncated, where another would start.
* **FIN and RST end the direction.** Bytes after the first FIN are ignored; a
  RST ends the direction at once (its payload is ignored).
* **Bounded.** Only offsets below ``limit`` are kept; offering more sets
  ``truncated``. Every piece held (waiting out of order, or delivered but not
  yet taken) is charged its length plus ``PIECE_OVERHEAD`` bytes to an
  optional ``ByteBudget`` shared by all streams, so neither many bytes nor
  many tiny segments can exceed it; when it runs out the stream ends there,
  truncated. Delivered bytes that follow each other are joined into one
  ``Data`` chunk.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from enum import IntEnum

SEQ_MODULUS = 1 << 32
_SEQ_MASK = SEQ_MODULUS - 1
_HALF = 1 << 31
DEFAULT_LIMIT = 64 * 1024
"""Bytes kept per direction unless told otherwise."""
DEFAULT_MAX_PENDING = 256
"""Out-of-order segments held per direction before the first hole is declared lost."""
DEFAULT_MAX_GAPS = 64
"""Gaps a direction may have; it ends where another would start."""
PIECE_OVERHEAD = 64
"""Budget bytes charged per piece held, besides its length: the cost of keeping it."""


@dataclass(frozen=True, slots=True)
class Data:
    """Bytes of the stream in order, starting at stream offset ``offset``."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """``size`` bytes starting at stream offset ``offset`` were never seen."""

    offset: int
    size: int


Chunk = Data | Gap


class Truncation(IntEnum):
    """Why a stream stopped keeping bytes before its end."""

    NONE = 0
    LIMIT = 1  # the stream went past the per-direction limit
    BUDGET = 2  # the shared byte budget ran out
    GAPS = 3  # more holes than max_gaps


class ByteBudget:
    """Bytes that all streams sharing this object may hold at once."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"byte budget must not be negative, not {limit}")
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes from the budget if they are all available."""
        if size > self.limit - self.used:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """Give back ``size`` bytes reserved earlier."""
        self.used -= size


class Stream:
    """One direction of a TCP connection, reassembled within bounds."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        budget: ByteBudget | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_gaps: int = DEFAULT_MAX_GAPS,
    ) -> None:
        if not 0 < limit < _HALF:
            raise ValueError(f"stream limit must be between 1 and 2**31 - 1 bytes, not {limit}")
        if max_pending < 1 or max_gaps < 0:
            raise ValueError(f"max_pending must be at least 1 and max_gaps at least 0, not {max_pending}, {max_gaps}")
        self.limit = limit
        self.max_pending = max_pending
        self.max_gaps = max_gaps
        self._budget = budget
        self._base: int | None = None  # sequence number of stream offset 0
        self._syn = False
        self._next = 0  # offset of the next byte to deliver
        self._cap = limit  # offsets at or beyond this are dropped
        self._highest = 0  # end offset of the furthest byte or FIN offered
        self._fin: int | None = None  # offset of the FIN
        self._starts: list[int] = []  # out-of-order pieces: sorted, disjoint, all beyond _next
        self._pieces: list[bytes] = []
        self._ready: list[Chunk] = []
        self._tail = bytearray()  # delivered bytes not yet in _ready, ending at _next
        self._held = 0  # budget bytes reserved: pieces waiting, delivered or not yet taken
        self._delivered_cost = 0  # the part of _held that take() gives back
        self._gaps: list[Gap] = []
        self._truncation = Truncation.NONE
        self._reset = False
        self._finished = False

    # -- state --------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Offset 0 is known (a SYN, data or a FIN has been seen)."""
        return self._base is not None

    @property
    def midstream(self) -> bool:
        """The stream started without a SYN: the capture began mid-connection."""
        return self._base is not None and not self._syn

    @property
    def held(self) -> int:
        """Budget bytes this stream holds: pieces out of order or not yet taken, with their overhead."""
        return self._held

    @property
    def fin_reached(self) -> bool:
        return self._fin is not None and self._next >= self._fin

    @property
    def reset(self) -> bool:
        return self._reset

    @property
    def ended(self) -> bool:
        """No more bytes will be delivered: FIN reached in order, RST, ``finish()`` or ``discard()``."""
        return self._finished or self._reset or self.fin_reached

    @property
    def complete(self) -> bool:
        """Every byte up to the FIN was delivered, with no gap."""
        return self.fin_reached and not self._gaps

    @property
    def truncated(self) -> bool:
        return self._truncation != Truncation.NONE

    @property
    def truncation(self) -> Truncation:
        return self._truncation

    @property
    def gaps(self) -> tuple[Gap, ...]:
        """Every gap declared so far, in stream order."""
        return tuple(self._gaps)

    # -- input --------------------------------------------------------------

    def add(self, seq: int, payload: bytes = b"", *, syn: bool = False, fin: bool = False, rst: bool = False) -> None:
        """Offer one segment: its sequence number, payload and SYN/FIN/RST flags."""
        if self.ended:
            return
        seq &= _SEQ_MASK
        if self._base is None:
            if syn:
                self._base = (seq + 1) & _SEQ_MASK
                self._syn = True
            elif payload or fin:
                self._base = seq
            elif rst:
                self._reset = True
                return
            else:
                return  # a bare ACK before the stream starts tells nothing
        if rst:
            self._reset = True
            self._declare_lost()
            return
        offset = self._offset(seq) + (1 if syn else 0)
        end = offset + len(payload)
        if end > self._highest:
            self._highest = end
            if end > self.limit:
                self._truncate(Truncation.LIMIT)
        if fin and self._fin is None:
            self._fin = end
        if payload:
            self._store(offset, payload)
        if self._starts:
            self._deliver_pending()
            while len(self._starts) > self.max_pending:
                self._skip_to(self._starts[0])
                self._deliver_pending()

    def finish(self) -> None:
        """End of capture: declare every remaining hole lost and deliver what waited behind it."""
        if not self.ended:
            self._declare_lost()
        self._finished = True

    def discard(self) -> None:
        """Drop everything held, give it back to the budget, accept nothing more."""
        self._release(self._held)
        self._delivered_cost = 0
        self._starts.clear()
        self._pieces.clear()
        self._ready.clear()
        self._tail.clear()
        self._finished = True

    def take(self) -> list[Chunk]:
        """The chunks delivered since the last call, in stream order; their bytes leave the budget."""
        self._flush_tail()
        chunks, self._ready = self._ready, []
        self._release(self._delivered_cost)
        self._delivered_cost = 0
        return chunks

    # -- internals ----------------------------------------------------------

    def _offset(self, seq: int) -> int:
        assert self._base is not None
        distance = (seq - self._base) & _SEQ_MASK
        return distance - SEQ_MODULUS if distance >= _HALF else distance

    def _store(self, offset: int, payload: bytes) -> None:
        """Hold the bytes of ``payload`` that are new and within bounds (first copy wins)."""
        start = max(offset, self._next)
        end = min(offset + len(payload), self._cap)
        if self._fin is not None:
            end = min(end, self._fin)
        if start >= end:
            return
        if start == self._next and not self._starts:  # in order, nothing waiting: deliver at once
            cost = end - start + PIECE_OVERHEAD
            if not self._reserve(cost):
                self._cut_at(start, Truncation.BUDGET)
                return
            self._tail += payload[start - offset : end - offset]
            self._next = end
            self._delivered_cost += cost
            return
        fresh: list[tuple[int, int]] = []
        cursor = start
        index = max(bisect_right(self._starts, start) - 1, 0)
        for piece_start, piece in zip(self._starts[index:], self._pieces[index:]):
            if piece_start >= end:
                break
            piece_end = piece_start + len(piece)
            if piece_start > cursor:
                fresh.append((cursor, piece_start))
            cursor = max(cursor, piece_end)
        if cursor < end:
            fresh.append((cursor, end))
        for piece_start, piece_end in fresh:
            if not self._reserve(piece_end - piece_start + PIECE_OVERHEAD):
                self._cut_at(piece_start, Truncation.BUDGET)
                return
            index = bisect_right(self._starts, piece_start)
            self._starts.insert(index, piece_start)
            self._pieces.insert(index, payload[piece_start - offset : piece_end - offset])

    def _deliver_pending(self) -> None:
        while self._starts and self._starts[0] == self._next:
            self._starts.pop(0)
            piece = self._pieces.pop(0)
            self._tail += piece
            self._next += len(piece)
            self._delivered_cost += len(piece) + PIECE_OVERHEAD

    def _flush_tail(self) -> None:
        if self._tail:
            self._ready.append(Data(self._next - len(self._tail), bytes(self._tail)))
            self._tail.clear()

    def _skip_to(self, offset: int) -> None:
        """Declare the bytes from ``_next`` to ``offset`` lost (or end the stream at ``_next`` if too many were)."""
        if len(self._gaps) >= self.max_gaps:
            self._cut_at(self._next, Truncation.GAPS)
            return
        self._flush_tail()
        gap = Gap(self._next, offset - self._next)
        self._gaps.append(gap)
        self._ready.append(gap)
        self._next = offset

    def _declare_lost(self) -> None:
        while self._starts:
            self._skip_to(self._starts[0])
            self._deliver_pending()
        known_end = min(self._highest, self._cap)
        if self._fin is not None:
            known_end = min(known_end, self._fin)
        if known_end > self._next:
            self._skip_to(known_end)

    def _truncate(self, reason: Truncation) -> None:
        if self._truncation == Truncation.NONE:
            self._truncation = reason

    def _cut_at(self, offset: int, reason: Truncation) -> None:
        """Keep nothing from ``offset`` on."""
        self._truncate(reason)
        self._cap = min(self._cap, offset)
        while self._starts and self._starts[-1] >= offset:
            self._starts.pop()
            self._release(len(self._pieces.pop()) + PIECE_OVERHEAD)

    def _reserve(self, size: int) -> bool:
        if self._budget is not None and not self._budget.reserve(size):
            return False
        self._held += size
        return True

    def _release(self, size: int) -> None:
        if self._budget is not None:
            self._budget.release(size)
        self._held -= size
