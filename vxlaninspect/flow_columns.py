"""The flows of a Report as columns, rendered into ``Flow`` values only when read.

A scan counts tens of thousands of flows, and a ``Flow`` object costs more to
build than counting its packets did; most questions (how many flows per VNI,
which services answered, which leaked) are answered from the counts alone.
``FlowColumns`` keeps each flow as a row of key words (the ``FlowTable``'s
numeric key) and a row of counters, in canonical order, merges and groups them
with numpy, and renders ``Flow`` values when they are iterated or indexed.

The canonical order is numeric: VNI (flows outside overlays last), node pair,
transport number, then side ``a`` and side ``b`` by address and port. Flows
built from ``Flow`` values (a Report read from JSON) get the same key words
from their text, so the two kinds merge and compare alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property, lru_cache
from typing import overload

import numpy as np

from .addresses import endpoint_order, ip_text, ip_words, join_endpoint
from .flow import (
    PORTED_TRANSPORTS,
    TRANSPORTS,
    Flow,
    Namer,
    PROTOCOL_OF_HINTS,
    protocol_rank,
    transport_name,
)
from .merging import pick_known
from .well_known import known_ports

KEY_WORDS = 10
"""Key words per flow: node ``a`` hi, lo; node ``b`` hi, lo; side ``a`` hi, lo; side ``b`` hi, lo;
VNI + 1 (0 outside overlays); ``proto << 32 | a_port << 16 | b_port``."""
NODE_A, NODE_B, SIDE_A, SIDE_B, VNI, PORTS = 0, 2, 4, 6, 8, 9

FIRST_TS, LAST_TS, PACKETS, BYTES, PAYLOAD, SYN_TS, MARKS = 0, 1, 2, 4, 6, 8, 10
"""Counter columns; ``PACKETS``, ``BYTES``, ``PAYLOAD`` and ``SYN_TS`` are pairs indexed by side.
``MARKS`` holds bit ``(1 << AppHint) << 16 * side`` per hint and bit ``32 + side`` per SYN-ACK sent."""
COUNTERS = 11
NEVER = np.iinfo(np.int64).max
"""A ``SYN_TS`` of a side that sent no SYN."""

_TRANSPORT_NUMBERS = {name: number for number, name in TRANSPORTS.items()}
_NO_VNI_RANK = np.uint64(1 << 25)
_U16, _U32 = np.uint64(16), np.uint64(32)
_LOW16, _LOW8 = np.uint64(0xFFFF), np.uint64(0xFF)


def transport_number(transport: str) -> int:
    """The IP protocol number ``transport_name`` printed as ``transport``."""
    if transport in _TRANSPORT_NUMBERS:
        return _TRANSPORT_NUMBERS[transport]
    if transport.startswith("ip-") and transport[3:].isdigit():
        return int(transport[3:])
    raise ValueError(f"not a transport: {transport!r}")


def canonical_order(keys: np.ndarray) -> np.ndarray:
    """The permutation that puts rows of key words (``KEY_WORDS`` uint64 each) in canonical order."""
    ports = keys[:, PORTS]
    vni_rank = np.where(keys[:, VNI] == 0, _NO_VNI_RANK, keys[:, VNI])
    return np.lexsort(
        (
            ports & _LOW16, keys[:, SIDE_B + 1], keys[:, SIDE_B],
            (ports >> _U16) & _LOW16, keys[:, SIDE_A + 1], keys[:, SIDE_A],
            ports >> _U32, keys[:, NODE_B + 1], keys[:, NODE_B], keys[:, NODE_A + 1], keys[:, NODE_A], vni_rank,
        )
    )  # fmt: skip


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """First row of each run of equal key rows (``keys`` sorted)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    differs = np.any(keys[1:] != keys[:-1], axis=1)
    return np.flatnonzero(np.concatenate(([True], differs)))


class FlowColumns(Sequence[Flow]):
    """Flows in canonical order, one per key; a ``Sequence[Flow]`` whose values are rendered on first read.

    ``names`` (object, one pair per flow) holds each side's service name from
    metadata and ``inspected`` (object) the protocol inspection identified; None
    for either means none is known for any flow.
    """

    def __init__(
        self,
        keys: np.ndarray,
        counts: np.ndarray,
        names: np.ndarray | None = None,
        inspected: np.ndarray | None = None,
    ) -> None:
        """Rows of key words and counters, combined per key and put in canonical order."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1, KEY_WORDS)
        counts = np.ascontiguousarray(counts, dtype=np.int64).reshape(-1, COUNTERS)
        order = canonical_order(keys)
        keys, counts = keys[order], counts[order]
        names = names[order] if names is not None else None
        inspected = inspected[order] if inspected is not None else None
        starts = _group_starts(keys)
        if len(starts) < len(keys):
            keys, counts, names, inspected = _combine(keys, counts, names, inspected, starts)
        self.keys, self.counts, self.names, self.inspected = keys, counts, names, inspected
        for array in (self.keys, self.counts):
            array.flags.writeable = False

    @classmethod
    def from_table(cls, keys: np.ndarray, counts: np.ndarray, namer: Namer | None = None) -> FlowColumns:
        """Flows counted by a ``FlowTable``, each side named by ``namer`` (vni, address text) when given."""
        names = _names(keys, namer) if namer is not None else None
        return cls(keys, counts, names)

    @classmethod
    def from_flows(cls, flows: Iterable[Flow]) -> FlowColumns:
        """The columns of ``Flow`` values; flows of one key are added up."""
        flows = list(flows)
        keys = np.zeros((len(flows), KEY_WORDS), dtype=np.uint64)
        counts = np.zeros((len(flows), COUNTERS), dtype=np.int64)
        names = np.empty((len(flows), 2), dtype=object)
        inspected = np.empty(len(flows), dtype=object)
        for k, flow in enumerate(flows):
            keys[k] = _key_words(flow)
            counts[k] = (
                flow.first_ts, flow.last_ts, *flow.sent_packets, *flow.sent_bytes, *flow.sent_payload,
                *(NEVER if ts is None else ts for ts in flow.syn_ts),
                flow.hints[0] | flow.hints[1] << 16 | int(flow.synack[0]) << 32 | int(flow.synack[1]) << 33,
            )  # fmt: skip
            names[k] = flow.names
            inspected[k] = flow.inspected
        return cls(keys, counts, names if names.any() else None, inspected if inspected.any() else None)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Flow: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Flow, ...]: ...

    def __getitem__(self, index: int | slice) -> Flow | tuple[Flow, ...]:
        return self._flows[index]

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._flows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FlowColumns):
            return (
                np.array_equal(self.keys, other.keys)
                and np.array_equal(self.counts, other.counts)
                and _objects_equal(self.names, other.names, len(self), 2)
                and _objects_equal(self.inspected, other.inspected, len(self), 0)
            )
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._flows == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.keys.tobytes(), self.counts.tobytes()))

    def __repr__(self) -> str:
        return f"FlowColumns({len(self)} flows)"

    def __reduce__(self) -> tuple:
        return (FlowColumns, (self.keys, self.counts, self.names, self.inspected))

    def __add__(self, other: FlowColumns) -> FlowColumns:
        """The flows of both: counts of one key in both are added up."""
        if not len(other):
            return self
        if not len(self):
            return other
        return FlowColumns(
            np.concatenate((self.keys, other.keys)),
            np.concatenate((self.counts, other.counts)),
            _concat_objects(self.names, other.names, len(self), len(other), 2),
            _concat_objects(self.inspected, other.inspected, len(self), len(other), 0),
        )

    def with_inspected(self, protocols: dict[tuple[int | None, str], str]) -> FlowColumns:
        """These flows, those whose (VNI, server endpoint) is in ``protocols`` marked with the protocol it names."""
        if not protocols:
            return self
        inspected = np.empty(len(self), dtype=object) if self.inspected is None else self.inspected.copy()
        for (vni, server), protocol in protocols.items():
            hi, lo, port = endpoint_order(server)
            match = (
                (self.vni == (-1 if vni is None else vni))
                & self.ported
                & (self.server_words[:, 0] == np.uint64(hi))
                & (self.server_words[:, 1] == np.uint64(lo))
                & (self.server_port == port)
            )
            inspected[match] = protocol
        return FlowColumns(self.keys, self.counts, self.names, inspected)

    # Columns derived from the key words and counters, one value per flow.

    @cached_property
    def vni(self) -> np.ndarray:
        """The VNI, -1 outside overlays."""
        return self.keys[:, VNI].astype(np.int64) - 1

    @cached_property
    def proto(self) -> np.ndarray:
        return ((self.keys[:, PORTS] >> _U32) & _LOW8).astype(np.int64)

    @cached_property
    def ports(self) -> np.ndarray:
        """Ports of sides ``a`` and ``b`` (0 for a transport without ports)."""
        ports = self.keys[:, PORTS]
        return np.stack((((ports >> _U16) & _LOW16).astype(np.int64), (ports & _LOW16).astype(np.int64)), axis=1)

    @cached_property
    def ported(self) -> np.ndarray:
        return np.isin(self.proto, [number for number, name in TRANSPORTS.items() if name in PORTED_TRANSPORTS])

    @cached_property
    def client_side(self) -> np.ndarray:
        """0 where side ``a`` is the client, 1 where ``b`` is: the rule of ``Flow.client_side``, on columns."""
        syn_a, syn_b = self.counts[:, SYN_TS], self.counts[:, SYN_TS + 1]
        synack_a = (self.counts[:, MARKS] >> 32) & 1
        synack_b = (self.counts[:, MARKS] >> 33) & 1
        port_a, port_b = self.ports[:, 0], self.ports[:, 1]
        known = np.zeros((len(self), 2), dtype=bool)
        for number, name in TRANSPORTS.items():
            if name in PORTED_TRANSPORTS:
                rows = self.proto == number
                known[rows] = _known_port_table(name)[self.ports[rows]]
        by_port = np.where(
            known[:, 0] != known[:, 1], known[:, 0], np.where(port_a != port_b, port_a < port_b, False)
        ) & self.ported
        by_synack = np.where(synack_a != synack_b, synack_a == 1, by_port)
        has_syn = (syn_a != NEVER) | (syn_b != NEVER)
        return np.where(has_syn, syn_b < syn_a, by_synack).astype(np.int64)

    @cached_property
    def server_words(self) -> np.ndarray:
        """The server's address (hi, lo) per flow."""
        return self._address_words(1 - self.client_side)

    @cached_property
    def client_words(self) -> np.ndarray:
        """The client's address (hi, lo) per flow."""
        return self._address_words(self.client_side)

    def _address_words(self, side: np.ndarray) -> np.ndarray:
        """The address (hi, lo) of side ``side`` (0: ``a``, 1: ``b``) per flow."""
        return np.where(side[:, None] == 0, self.keys[:, SIDE_A : SIDE_A + 2], self.keys[:, SIDE_B : SIDE_B + 2])

    @cached_property
    def server_port(self) -> np.ndarray:
        return np.where(self.client_side == 0, self.ports[:, 1], self.ports[:, 0])

    def pair_sum(self, column: int) -> np.ndarray:
        """Both sides' ``PACKETS``, ``BYTES`` or ``PAYLOAD`` added up."""
        return self.counts[:, column] + self.counts[:, column + 1]

    def server_names(self) -> list[str | None]:
        """The server's name from metadata, per flow."""
        if self.names is None:
            return [None] * len(self)
        return self.names[np.arange(len(self)), 1 - self.client_side].tolist()

    def protocol_codes(self) -> tuple[np.ndarray, list[str | None]]:
        """``Flow.protocol`` per flow as an index into the list returned with it, which is ordered
        by ``protocol_rank`` (so the smallest index of a group of flows is its strongest protocol)."""
        inspected = [] if self.inspected is None else [p for p in self.inspected.tolist() if p is not None]
        vocabulary = sorted(set(PROTOCOL_OF_HINTS) | set(inspected), key=protocol_rank)
        code_of = {protocol: code for code, protocol in enumerate(vocabulary)}
        marks = self.counts[:, MARKS]
        hints = (marks | (marks >> 16)) & 0xFFFF
        codes = np.array([code_of[p] for p in PROTOCOL_OF_HINTS], dtype=np.int64)[hints]
        if inspected:
            found = np.flatnonzero(self.inspected != None)  # noqa: E711 (elementwise)
            codes[found] = [code_of[p] for p in inspected]
        return codes, vocabulary

    def count_by_vni(self) -> dict[int, int]:
        """Flows per VNI (flows outside overlays are not counted)."""
        vnis, counts = np.unique(self.vni[self.vni >= 0], return_counts=True)
        return dict(zip(vnis.tolist(), counts.tolist()))

    def take(self, indices: np.ndarray) -> tuple[Flow, ...]:
        """The flows at ``indices``, rendered without rendering the others."""
        if "_flows" in self.__dict__:
            return tuple(self._flows[i] for i in indices.tolist())
        return tuple(_render(self, indices))

    @cached_property
    def _flows(self) -> tuple[Flow, ...]:
        return tuple(_render(self, np.arange(len(self))))


@lru_cache(maxsize=None)
def _known_port_table(transport: str) -> np.ndarray:
    """Per port number, whether a well-known service listens on it over ``transport``."""
    table = np.zeros(1 << 16, dtype=bool)
    table[list(known_ports(transport))] = True
    return table


def _key_words(flow: Flow) -> tuple[int, ...]:
    proto = transport_number(flow.transport)
    a_hi, a_lo, a_port = endpoint_order(flow.a)
    b_hi, b_lo, b_port = endpoint_order(flow.b)
    nodes = (0, 0, 0, 0)
    if flow.underlay is not None:
        nodes = (*ip_words(flow.underlay[0]), *ip_words(flow.underlay[1]))
    vni_word = 0 if flow.vni is None else flow.vni + 1
    return (*nodes, a_hi, a_lo, b_hi, b_lo, vni_word, proto << 32 | a_port << 16 | b_port)


def _names(keys: np.ndarray, namer: Namer) -> np.ndarray | None:
    """Each side's name from ``namer``, asked once per (VNI, address)."""
    vnis = (keys[:, VNI].astype(np.int64) - 1).tolist()
    words = keys[:, SIDE_A : SIDE_B + 2].tolist()
    known: dict[tuple[int, int, int], str | None] = {}
    names = np.empty((len(keys), 2), dtype=object)
    for k, (vni, w) in enumerate(zip(vnis, words)):
        for side in (0, 1):
            at = (vni, w[2 * side], w[2 * side + 1])
            if at not in known:
                known[at] = namer(None if vni < 0 else vni, ip_text(at[1], at[2]))
            names[k, side] = known[at]
    return names if names.any() else None


def _combine(
    keys: np.ndarray, counts: np.ndarray, names: np.ndarray | None, inspected: np.ndarray | None, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One row per run of equal keys (``keys`` sorted, runs beginning at ``starts``): counts added up."""
    merged = np.empty((len(starts), COUNTERS), dtype=np.int64)
    merged[:, FIRST_TS] = np.minimum.reduceat(counts[:, FIRST_TS], starts)
    merged[:, LAST_TS] = np.maximum.reduceat(counts[:, LAST_TS], starts)
    for column in (PACKETS, PACKETS + 1, BYTES, BYTES + 1, PAYLOAD, PAYLOAD + 1):
        merged[:, column] = np.add.reduceat(counts[:, column], starts)
    for column in (SYN_TS, SYN_TS + 1):
        merged[:, column] = np.minimum.reduceat(counts[:, column], starts)
    merged[:, MARKS] = np.bitwise_or.reduceat(counts[:, MARKS], starts)
    ends = np.append(starts[1:], len(keys)).tolist()
    return keys[starts], merged, _pick(names, starts, ends), _pick(inspected, starts, ends)


def _pick(objects: np.ndarray | None, starts: np.ndarray, ends: list[int]) -> np.ndarray | None:
    """Per run, per column, the known value that sorts first."""
    if objects is None:
        return None
    picked = objects[starts].copy()
    flat = picked.reshape(len(starts), -1)
    rows = objects.reshape(len(objects), -1)
    for g, (first, end) in enumerate(zip(starts.tolist(), ends)):
        for k in range(first + 1, end):
            for c in range(rows.shape[1]):
                flat[g, c] = pick_known(min, flat[g, c], rows[k, c])
    return picked


def _concat_objects(x: np.ndarray | None, y: np.ndarray | None, x_len: int, y_len: int, width: int) -> np.ndarray | None:
    if x is None and y is None:
        return None
    return np.concatenate((_objects(x, x_len, width), _objects(y, y_len, width)))


def _objects(values: np.ndarray | None, length: int, width: int) -> np.ndarray:
    """``values``, or as many Nones (``width`` per row; 0 for a flat array) when it is None."""
    if values is not None:
        return values
    return np.empty((length, width) if width else length, dtype=object)


def _objects_equal(x: np.ndarray | None, y: np.ndarray | None, length: int, width: int) -> bool:
    return bool(np.all(_objects(x, length, width) == _objects(y, length, width)))


def _render(columns: FlowColumns, at: np.ndarray) -> Iterator[Flow]:
    """The flows at rows ``at``, as values."""
    vnis = columns.vni[at].tolist()
    protos = columns.proto[at].tolist()
    ports = columns.ports[at].tolist()
    words = columns.keys[at, :VNI].tolist()
    rows = columns.counts[at].tolist()
    names = columns.names[at].tolist() if columns.names is not None else None
    inspected = columns.inspected[at].tolist() if columns.inspected is not None else None
    texts: dict[tuple[int, int], str] = {}

    def text(hi: int, lo: int) -> str:
        found = texts.get((hi, lo))
        if found is None:
            found = texts[(hi, lo)] = ip_text(hi, lo)
        return found

    for k in range(len(at)):
        vni = None if vnis[k] < 0 else vnis[k]
        w, c = words[k], rows[k]
        transport = transport_name(protos[k])
        ported = transport in PORTED_TRANSPORTS
        underlay = None
        if vni is not None:
            underlay = (text(w[NODE_A], w[NODE_A + 1]), text(w[NODE_B], w[NODE_B + 1]))
        marks = c[MARKS]
        yield Flow(
            vni=vni,
            underlay=underlay,
            transport=transport,
            a=join_endpoint(text(w[SIDE_A], w[SIDE_A + 1]), ports[k][0] if ported else None),
            b=join_endpoint(text(w[SIDE_B], w[SIDE_B + 1]), ports[k][1] if ported else None),
            first_ts=c[FIRST_TS],
            last_ts=c[LAST_TS],
            sent_packets=(c[PACKETS], c[PACKETS + 1]),
            sent_bytes=(c[BYTES], c[BYTES + 1]),
            sent_payload=(c[PAYLOAD], c[PAYLOAD + 1]),
            syn_ts=tuple(None if ts == NEVER else ts for ts in c[SYN_TS : SYN_TS + 2]),
            synack=(bool(marks >> 32 & 1), bool(marks >> 33 & 1)),
            hints=(marks & 0xFFFF, marks >> 16 & 0xFFFF),
            names=tuple(names[k]) if names is not None else (None, None),
            inspected=inspected[k] if inspected is not None else None,
        )


EMPTY_FLOWS = FlowColumns(np.zeros((0, KEY_WORDS), dtype=np.uint64), np.zeros((0, COUNTERS), dtype=np.int64))
