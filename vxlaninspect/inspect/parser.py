"""What every application parser shares: the error event and the feeding interface.

A parser is fed the bytes of one direction of one connection, in order, and
returns the events those bytes complete. It never raises on hostile input:
input it cannot parse yields one ``Malformed`` event, after which the parser
ignores everything it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .reassembly import Chunk, Data


@dataclass(frozen=True)
class Malformed:
    """The stream stopped making sense at stream offset ``offset``; the parser stopped there."""

    offset: int
    reason: str


class Parser(Protocol):
    """The interface of every parser in this package."""

    def feed(self, data: bytes) -> Sequence[object]:
        """The events completed by the next bytes of the stream."""
        ...

    def gap(self, size: int) -> Sequence[object]:
        """``size`` bytes of the stream are missing here (a ``reassembly.Gap``)."""
        ...

    def finish(self) -> Sequence[object]:
        """The stream ended (closed, or no more of it will be looked at)."""
        ...


def feed_chunks(parser: Parser, chunks: Iterable[Chunk], *, finish: bool = False) -> list[object]:
    """Feed reassembled chunks (``Data`` and ``Gap``) to ``parser``; optionally end the stream."""
    events: list[object] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk.data) if isinstance(chunk, Data) else parser.gap(chunk.size))
    if finish:
        events.extend(parser.finish())
    return events
