"""One direction of a flow as a byte stream, and a parser's events over it, each with the time its bytes arrived.

TCP segments go through the bounded reassembly (``inspect.reassembly.Stream``);
only segments that carry payload are kept, so offset 0 is the lowest sequence
number kept, unless ``starts`` says that segment does not begin a message
(the capture began mid-connection) and a later one does: the stream then
starts at the first segment that does. UDP and other datagrams follow one
another as they came.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from .flows import Segment
from .inspect.parser import Malformed, Parser
from .inspect.reassembly import DEFAULT_LIMIT, Chunk, Data, Gap, Stream

_FIN, _RST = 0x01, 0x04
_MODULUS = 1 << 32
_HALF = 1 << 31

Starts = Callable[[bytes], bool]
"""Whether a segment's payload looks like the start of a message."""


class Delivery(NamedTuple):
    """Stream bytes (and gaps) that became available when a segment arrived at ``ts_ns`` (a tuple: one per segment)."""

    ts_ns: int
    chunks: tuple[Chunk, ...]


class Side(NamedTuple):
    """One direction of a flow, reassembled: what arrived when, in stream order (a tuple: two per flow)."""

    deliveries: tuple[Delivery, ...]
    last_ts: int | None  # time of the last segment
    aligned: bool = False  # the stream starts with a segment that ``starts`` said begins a message

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes of the stream, up to its first gap."""
        taken = bytearray()
        for delivery in self.deliveries:
            for chunk in delivery.chunks:
                if isinstance(chunk, Gap):
                    return bytes(taken)
                taken += chunk.data[: size - len(taken)]
                if len(taken) >= size:
                    return bytes(taken)
        return bytes(taken)


class Timed(NamedTuple):
    """A parser event (a tuple: one per event), the time the bytes that completed it arrived, and whether it came from bytes fed.

    ``fed`` is False for events caused by missing bytes (a gap) or by the end
    of the stream: a ``Malformed`` of that kind is the capture's doing, not the
    traffic's.
    """

    ts_ns: int
    event: object
    fed: bool


def reassemble(segments: Sequence[Segment], transport: str, starts: Starts | None = None, limit: int = DEFAULT_LIMIT) -> Side:
    """The stream of one flow direction from its kept segments (capture order)."""
    if not segments:
        return Side((), None)
    if transport != "tcp":
        return _datagrams(segments, starts)
    first = segments[0]
    if starts is None or starts(first.data):
        side = contiguous(segments, limit, aligned=starts is not None)
        if side is not None:
            return side

    def position(segment: Segment) -> int:
        return (segment.seq - first.seq + _HALF) % _MODULUS - _HALF

    ordered = sorted(segments, key=position)
    origin = ordered[0]
    if starts is not None and not starts(origin.data):
        origin = next((s for s in ordered if starts(s.data)), origin)
    return reassembled(segments, origin.seq, limit, aligned=starts is not None and starts(origin.data))


def contiguous(segments: Sequence[Segment], limit: int, *, aligned: bool = False) -> Side | None:
    """The stream when the segments follow one another exactly in capture order (the usual case); else None.

    Gives what ``reassembled`` would, without its bookkeeping.
    """
    deliveries = []
    expected = segments[0].seq
    offset = 0
    last = len(segments) - 1
    for k, segment in enumerate(segments):
        size = len(segment.data)
        flags = segment.tcp_flags
        if segment.seq != expected or flags & _RST or (flags & _FIN and k != last) or offset + size > limit:
            return None
        deliveries.append(Delivery(segment.ts_ns, (Data(offset, segment.data),)))
        offset += size
        expected = (expected + size) % _MODULUS
    return Side(tuple(deliveries), segments[-1].ts_ns, aligned)


def reassembled(segments: Sequence[Segment], origin: int, limit: int, *, aligned: bool = False) -> Side:
    """The stream through the bounded reassembly, offset 0 at sequence number ``origin``."""
    stream = Stream(limit)
    stream.add(origin - 1, syn=True)
    deliveries = []
    for segment in segments:
        flags = segment.tcp_flags
        stream.add(segment.seq, segment.data, fin=bool(flags & _FIN), rst=bool(flags & _RST))
        chunks = stream.take()
        if chunks:
            deliveries.append(Delivery(segment.ts_ns, tuple(chunks)))
    last = segments[-1].ts_ns
    stream.finish()
    rest = stream.take()
    if rest:
        deliveries.append(Delivery(last, tuple(rest)))
    return Side(tuple(deliveries), last, aligned)


def _datagrams(segments: Sequence[Segment], starts: Starts | None) -> Side:
    deliveries = []
    offset = 0
    for segment in segments:
        deliveries.append(Delivery(segment.ts_ns, (Data(offset, segment.data),)))
        offset += len(segment.data)
    return Side(tuple(deliveries), segments[-1].ts_ns, starts is not None and starts(segments[0].data))


def run(parser: Parser, side: Side) -> list[Timed]:
    """Feed a whole direction to ``parser`` and end it: its events, timed."""
    timed: list[Timed] = []
    for delivery in side.deliveries:
        for chunk in delivery.chunks:
            if isinstance(chunk, Data):
                timed.extend(Timed(delivery.ts_ns, event, True) for event in parser.feed(chunk.data))
            else:
                timed.extend(Timed(delivery.ts_ns, event, False) for event in parser.gap(chunk.size))
    if side.last_ts is not None:
        timed.extend(Timed(side.last_ts, event, False) for event in parser.finish())
    return timed


def failed_at_start(timed: Sequence[Timed]) -> bool:
    """Whether the parser gave up before it made sense of anything: the stream is not its protocol."""
    return bool(timed) and timed[0].fed and isinstance(timed[0].event, Malformed)
