"""Agreement with Wireshark: decode a capture with vxlaninspect and with tshark, and compare packet by packet.

``verify(path)`` streams both decodings side by side (bounded memory whatever
the capture's size) and compares, per packet, the fields of ``PacketView``:
tunnels and VNIs, outer and inner addresses, protocols and ports, ESP SPI and
sequence, payload length, truncation, and the application protocols tshark has
a dissector for (HTTP, TLS, SSH, RESP).

A difference is either *known*, with a ``Reason`` that explains it (the two
decoders differ by design there), or a *disagreement*. Known differences are
counted and listed by reason, never dropped; ``Verification.ok`` is true when
there is no disagreement and both saw the same number of packets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import DEFAULT_CONFIG, DecodeConfig
from .decoding import decode
from .errors import CaptureError
from .tshark_fields import TsharkError, TsharkFailed, TsharkFrame, TsharkNotFound, TsharkRun
from .verify_reasons import PacketPair, Reason, explain
from .verify_views import APP_FIELDS, FIELD_NAMES, NO, row_view, tshark_view

__all__ = [
    "DEFAULT_EXAMPLES",
    "Difference",
    "FieldTally",
    "KnownDifferences",
    "Reason",
    "TsharkError",
    "TsharkFailed",
    "TsharkNotFound",
    "Verification",
    "compare_packet",
    "verify",
]

DEFAULT_EXAMPLES = 20
"""Disagreements kept in full, and examples kept per known reason."""


@dataclass(frozen=True)
class Difference:
    """A field of a packet (frame numbers start at 1, as in Wireshark) on which the two sides differ."""

    frame: int
    field: str
    ours: str | None
    tshark: str | None
    reason: Reason | None = None  # None: a disagreement


@dataclass(frozen=True)
class FieldTally:
    """How often a field was compared (at least one side had a value), agreed, and differed for a known reason."""

    field: str
    compared: int
    agreed: int
    known: int

    @property
    def disagreed(self) -> int:
        return self.compared - self.agreed - self.known


@dataclass(frozen=True)
class KnownDifferences:
    """The differences of one known reason: how many, and the first examples."""

    reason: Reason
    count: int
    examples: tuple[Difference, ...]

    @property
    def text(self) -> str:
        return self.reason.text


@dataclass(frozen=True)
class Verification:
    """The outcome of ``verify``: per field tallies, disagreements, and known differences by reason."""

    path: str
    packets: int  # decoded by vxlaninspect
    tshark_packets: int
    fields: tuple[FieldTally, ...]
    disagreement_count: int
    disagreements: tuple[Difference, ...]  # the first ones, in frame order
    known: tuple[KnownDifferences, ...]  # by reason, in ``Reason`` order
    capture_error: str | None = None  # vxlaninspect stopped at damage (after the packets counted)
    tshark_error: str | None = None  # what tshark said when it stopped with an error status

    @property
    def ok(self) -> bool:
        return self.disagreement_count == 0 and self.packets == self.tshark_packets

    def tally(self, field: str) -> FieldTally:
        """The tally of one field of ``PacketView``."""
        for tally in self.fields:
            if tally.field == field:
                return tally
        raise KeyError(field)


def compare_packet(
    number: int, row: np.void, frame: TsharkFrame, config: DecodeConfig = DEFAULT_CONFIG
) -> tuple[tuple[str, ...], tuple[Difference, ...]]:
    """The fields compared on packet ``number`` (from 1), and its differences with their reasons where known."""
    ports = _port_table(config)
    pair = PacketPair(row, row_view(row, ports), tshark_view(frame), frame, ports)
    mine, others = vars(pair.ours), vars(pair.theirs)
    if mine == others:  # the common case, at C speed
        return tuple(field for field, value in mine.items() if value is not None), ()
    compared: list[str] = []
    differences: list[Difference] = []
    for field in FIELD_NAMES:
        ours, theirs = mine[field], others[field]
        if ours is None and theirs is None:
            continue
        if field in APP_FIELDS and theirs is None and ours == NO:
            continue  # tshark ran no dissector of that protocol, and the payload does not look like it
        compared.append(field)
        if ours != theirs:
            differences.append(Difference(number, field, ours, theirs, explain(field, pair)))
    return tuple(compared), tuple(differences)


@lru_cache(maxsize=16)
def _port_table(config: DecodeConfig) -> np.ndarray:
    return config.port_table()


class _Tallies:
    """Accumulates per-packet comparisons into a ``Verification``."""

    def __init__(self, examples: int) -> None:
        self._examples = examples
        self.compared = dict.fromkeys(FIELD_NAMES, 0)
        self.agreed = dict.fromkeys(FIELD_NAMES, 0)
        self.known = dict.fromkeys(FIELD_NAMES, 0)
        self.disagreements: list[Difference] = []
        self.disagreement_count = 0
        self.by_reason: dict[Reason, list[Difference]] = {}
        self.reason_count: dict[Reason, int] = {}

    def add(self, compared: Iterable[str], differences: Iterable[Difference]) -> None:
        differing = set()
        for difference in differences:
            differing.add(difference.field)
            if difference.reason is None:
                self.disagreement_count += 1
                if len(self.disagreements) < self._examples:
                    self.disagreements.append(difference)
                continue
            self.known[difference.field] += 1
            self.reason_count[difference.reason] = self.reason_count.get(difference.reason, 0) + 1
            kept = self.by_reason.setdefault(difference.reason, [])
            if len(kept) < self._examples:
                kept.append(difference)
        for field in compared:
            self.compared[field] += 1
            if field not in differing:
                self.agreed[field] += 1

    def result(self, path: str, packets: int, tshark_packets: int, capture_error: str | None, tshark_error: str | None) -> Verification:
        return Verification(
            path=path,
            packets=packets,
            tshark_packets=tshark_packets,
            fields=tuple(FieldTally(f, self.compared[f], self.agreed[f], self.known[f]) for f in FIELD_NAMES),
            disagreement_count=self.disagreement_count,
            disagreements=tuple(self.disagreements),
            known=tuple(
                KnownDifferences(reason, self.reason_count[reason], tuple(self.by_reason[reason]))
                for reason in Reason
                if reason in self.reason_count
            ),
            capture_error=capture_error,
            tshark_error=tshark_error,
        )


def verify(
    path: str | os.PathLike[str],
    config: DecodeConfig = DEFAULT_CONFIG,
    tshark: str = "tshark",
    *,
    max_packets: int | None = None,
    examples: int = DEFAULT_EXAMPLES,
) -> Verification:
    """Compare vxlaninspect's decoding of a capture with tshark's, packet by packet.

    ``tshark``: the program's name or path. ``max_packets`` compares only the
    first packets; ``examples`` is how many disagreements are kept in full,
    and how many examples per known reason. Raises ``TsharkNotFound`` when tshark is missing,
    ``TsharkFailed`` when it cannot read the capture at all, and
    ``CaptureError`` when vxlaninspect cannot open it; damage further in is
    recorded in the result, and the packets before it are compared.
    """
    if max_packets is not None and max_packets < 1:
        raise ValueError(f"max_packets must be positive, not {max_packets}")
    tallies = _Tallies(examples)
    packets = 0
    capture_error = None
    with TsharkRun(path, config, tshark, max_packets=max_packets) as run:
        frames = iter(run)
        matched = 0
        try:
            for row in _rows(path, config, max_packets):
                packets += 1
                frame = next(frames, None)
                if frame is None:
                    continue
                matched += 1
                tallies.add(*compare_packet(packets, row, frame, config))
        except CaptureError as error:
            if packets == 0 and error.offset == 0:
                raise
            capture_error = str(error)
        tshark_packets = matched + sum(1 for _ in frames)
        tshark_error = run.error
    return tallies.result(os.fspath(path), packets, tshark_packets, capture_error, tshark_error)


def _rows(path: str | os.PathLike[str], config: DecodeConfig, max_packets: int | None) -> Iterator[np.void]:
    count = 0
    for table in decode(path, config=config):
        for row in table.rows:
            if max_packets is not None and count == max_packets:
                return
            count += 1
            yield row
