"""Flows: packets grouped by node pair, VNI and bidirectional 5-tuple, with their first payload bytes.

A flow's key is the unordered pair of underlay addresses that carried it (none
for traffic outside any overlay), its VNI (None outside an overlay), its
transport and the canonical ordering of its two endpoints: side ``a`` is the
endpoint that sorts first (address, then port), ``b`` the other. The same inner
5-tuple in two VNIs, or between two node pairs, makes two flows.

``FlowTable`` accumulates packet tables chunk by chunk in one compiled pass
over a flat open-addressing hash table (one ``int64`` row per slot: the key
and the counters), so no Python object exists per packet or per flow;
``render`` hands the flows over as ``FlowColumns``. Each table hashes with
factors of its own, drawn at random, so no capture can be crafted to make
every lookup collide. It holds at most ``max_flows`` flows; beyond that it
evicts those whose last packet is oldest (the first made among equals),
counting them per VNI (a flow seen again after its eviction starts afresh and
counts again if evicted again). It also keeps the first payload bytes of each
flow direction, bounded per direction and in total, for the inspection stage
(``FlowPayloads``).

All compiled code of this module lives here (but the shared ``prefetch``
intrinsic): numba's cache only notices changes to the file that defines a
cached function.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numba import njit

from .flow import Flow, Namer
from .flow_columns import VNI, FlowColumns, canonical_order
from .hashing import random_hash_factors
from .prefetch import prefetch
from .schema import Encap, PacketFlag, Status

DEFAULT_MAX_FLOWS = 100_000
"""Flows held per capture: about 2.7 KB each once rendered, so the default bounds a scan near 300 MB."""
DEFAULT_PAYLOAD_PER_DIRECTION = 64 * 1024
DEFAULT_PAYLOAD_TOTAL = 256 * 1024 * 1024
SEGMENT_OVERHEAD = 64
"""Bytes of the payload budget a kept segment costs besides its data (its time, sequence number, ...),
so that many tiny segments cannot exceed the budget either."""
EVICT_FRACTION = 8
"""A full table evicts ``max_flows // EVICT_FRACTION`` flows at a time (at least one)."""

# A flow's row in the table: 24 int64 words, three cache lines. A packet of an
# IPv4 flow (whose key's high address words are all zero) reads two: the first
# holds what a probe compares (the serial, which marks a free slot, and the low
# key words), the second the counters every packet changes. The third holds the
# high key words, compared only when the key has any (``_HAS_HI``), and what
# only some packets change.
_SERIAL = 0  # identity of the flow for its payload segments; _EMPTY in a free slot
_K_PORTS = 1  # proto << 32 | a_port << 16 | b_port
_K_VNI = 2  # vni + 1 (0 outside overlays), and _HAS_HI when a high address word is not zero
_K_A_LO, _K_B_LO, _K_NODE_A_LO, _K_NODE_B_LO = 3, 4, 5, 6
_LAST_TS = 7
_FIRST_TS = 8
_PACKETS = 9  # a pair of counters is indexed by direction (0: a to b, 1: b to a)
_BYTES = 11
_PAYLOAD = 13
_MARKS = 15  # bit (1 << AppHint) << 16 * direction for each hint seen; bit 32 + direction for a SYN-ACK
_K_A_HI, _K_B_HI, _K_NODE_A_HI, _K_NODE_B_HI = 16, 17, 18, 19
_SYN_TS = 20  # first SYN without ACK sent in that direction; _NEVER when none
_CAPTURED = 22  # payload bytes kept for inspection
_ROW = 24
_LINE = 8  # words per cache line
_HAS_HI = np.uint64(1 << 32)

_KEY = (_K_PORTS, _K_VNI, _K_A_LO, _K_B_LO, _K_NODE_A_LO, _K_NODE_B_LO, _K_A_HI, _K_B_HI, _K_NODE_A_HI, _K_NODE_B_HI)
"""The row's key words, in the order a probe compares them (a key is a tuple of these words, as ``uint64``)."""
_KEY_WORDS = len(_KEY)
_COLUMN_KEY = [_K_NODE_A_HI, _K_NODE_A_LO, _K_NODE_B_HI, _K_NODE_B_LO, _K_A_HI, _K_A_LO, _K_B_HI, _K_B_LO, _K_VNI, _K_PORTS]
"""The row's words that are ``FlowColumns``' key words, in its order."""
_COLUMN_COUNTERS = [_FIRST_TS, _LAST_TS, _PACKETS, _PACKETS + 1, _BYTES, _BYTES + 1, _PAYLOAD, _PAYLOAD + 1, _SYN_TS, _SYN_TS + 1, _MARKS]
"""The row's words that are ``FlowColumns``' counters, in its order (``FIRST_TS`` ... ``MARKS``)."""

_KEPT_ROW, _KEPT_SERIAL, _KEPT_DIR, _KEPT_TAKE = range(4)
"""Columns of the payload segments a pass keeps: the packet's row, its flow, direction and bytes kept."""

_AHEAD = 8
"""Rows ahead of the one being counted whose table slots are already being fetched, so that cache misses
overlap (over a table of 100,000 flows, the pass took half the time with them)."""

_NEVER = np.iinfo(np.int64).max
_EMPTY = -1

_OK = int(Status.OK)
_ENCAP_NONE = int(Encap.NONE)
_ENCAP_LAST_OVERLAY = int(Encap.VXLAN_GPE)  # NONE, VXLAN, GENEVE, VXLAN_GPE carry flows
_FRAGMENT = int(PacketFlag.FRAGMENT)
_TCP, _UDP, _SCTP = 6, 17, 132
_SYN, _ACK = 0x02, 0x10
_S16, _S32 = np.uint64(16), np.uint64(32)
_ZERO = np.uint64(0)


# The hot path keeps a key in registers: the helpers below take and give it as a
# tuple and are inlined where they are used (keys in arrays, or helpers left as
# calls, made the pass over a chunk twice as slow).


@njit(cache=True, nogil=True, inline="always")
def _home(key, factors, shift):
    """The slot where probing for ``key`` starts: multiply-shift hashing (independent products, side by side)."""
    h = (
        key[0] * factors[0] + key[1] * factors[1] + key[2] * factors[2] + key[3] * factors[3] + key[4] * factors[4]
        + key[5] * factors[5] + key[6] * factors[6] + key[7] * factors[7] + key[8] * factors[8] + key[9] * factors[9]
    )  # fmt: skip
    return np.int64(h >> shift)


@njit(cache=True, nogil=True, inline="always")
def _holds(table, slot, key):
    """Whether ``slot`` holds ``key``: the words of the slot's first cache line, then (only for a key that has
    any) the high address words."""
    ports, vni, a_lo, b_lo, node_a_lo, node_b_lo, a_hi, b_hi, node_a_hi, node_b_hi = key
    return (
        table[slot, _K_PORTS] == np.int64(ports)
        and table[slot, _K_VNI] == np.int64(vni)
        and table[slot, _K_A_LO] == np.int64(a_lo)
        and table[slot, _K_B_LO] == np.int64(b_lo)
        and table[slot, _K_NODE_A_LO] == np.int64(node_a_lo)
        and table[slot, _K_NODE_B_LO] == np.int64(node_b_lo)
        and (
            not vni & _HAS_HI
            or (
                table[slot, _K_A_HI] == np.int64(a_hi)
                and table[slot, _K_B_HI] == np.int64(b_hi)
                and table[slot, _K_NODE_A_HI] == np.int64(node_a_hi)
                and table[slot, _K_NODE_B_HI] == np.int64(node_b_hi)
            )
        )
    )


@njit(cache=True, nogil=True, inline="always")
def _probe(table, key, slot, mask):
    """The slot holding ``key``, or the free slot where it belongs, from ``slot`` on."""
    while True:  # as a loop condition, the same test made the pass a fifth slower
        if table[slot, _SERIAL] == _EMPTY or _holds(table, slot, key):
            return slot
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def _row_key(table, slot):
    """The key of the flow in ``slot`` (its high address words read only when it has any)."""
    vni = np.uint64(table[slot, _K_VNI])
    low = (
        np.uint64(table[slot, _K_PORTS]), vni,
        np.uint64(table[slot, _K_A_LO]), np.uint64(table[slot, _K_B_LO]),
        np.uint64(table[slot, _K_NODE_A_LO]), np.uint64(table[slot, _K_NODE_B_LO]),
    )  # fmt: skip
    if not vni & _HAS_HI:
        return low + (_ZERO, _ZERO, _ZERO, _ZERO)
    return low + (
        np.uint64(table[slot, _K_A_HI]), np.uint64(table[slot, _K_B_HI]),
        np.uint64(table[slot, _K_NODE_A_HI]), np.uint64(table[slot, _K_NODE_B_HI]),
    )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _store_key(table, slot, key):
    """Write ``key`` into the key words of ``slot``."""
    for k in range(_KEY_WORDS):
        table[slot, _KEY[k]] = np.int64(key[k])


@njit(cache=True, nogil=True)
def _rehash(old, new, factors, shift):
    """Copy the flows of ``old`` into ``new``, whose slots are all free."""
    mask = len(new) - 1
    for s in range(len(old)):
        if old[s, _SERIAL] != _EMPTY:
            key = _row_key(old, s)
            new[_probe(new, key, _home(key, factors, shift), mask), :] = old[s, :]


@njit(cache=True, nogil=True)
def _held(table, n):
    """The slots of the ``n`` flows held, their last packet times, and the first free slot (-1 when none);
    one pass over the first cache line of every slot."""
    slots = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    free = -1
    k = 0
    for s in range(len(table)):
        if table[s, _SERIAL] == _EMPTY:
            if free < 0:
                free = s
        elif k < n:
            slots[k] = s
            last[k] = table[s, _LAST_TS]
            k += 1
    return slots[:k], last[:k], free


@njit(cache=True, nogil=True)
def _reseat(table, start, factors, shift):
    """Move flows up into slots freed before them, in place, so that probing finds every flow again.

    ``start`` is a slot that was free before any flow was removed: no run of
    occupied slots crossed it, so walking the table from there takes every
    run from its first slot on, and each flow's home comes before it in the
    walk. Each flow moves to the first free slot from its home on, or stays.
    """
    mask = len(table) - 1
    for step in range(1, len(table) + 1):
        s = (start + step) & mask
        if table[s, _SERIAL] == _EMPTY:
            continue
        slot = _home(_row_key(table, s), factors, shift)
        while slot != s and table[slot, _SERIAL] != _EMPTY:
            slot = (slot + 1) & mask
        if slot != s:
            table[slot, :] = table[s, :]
            table[s, _SERIAL] = _EMPTY


_NO_KEY = (_ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO)


@njit(cache=True, nogil=True, inline="always")
def _flow_key(r):
    """Packet ``r``'s direction in its flow (-1 when it has no flow) and the flow's key."""
    encap = int(r["encap"])
    if int(r["status"]) != _OK or int(r["ipver"]) == 0 or encap > _ENCAP_LAST_OVERLAY:
        return -1, _NO_KEY
    proto = int(r["proto"])
    ported = proto == _TCP or proto == _UDP or proto == _SCTP
    sport = int(r["sport"]) if ported else 0
    dport = int(r["dport"]) if ported else 0
    if ported and sport == 0 and dport == 0 and int(r["flags"]) & _FRAGMENT:
        return -1, _NO_KEY  # a later fragment: its ports are in the first one
    s_hi, s_lo, d_hi, d_lo = r["src_hi"], r["src_lo"], r["dst_hi"], r["dst_lo"]
    if s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sport <= dport))):
        d, a_lo, b_lo, a_hi, b_hi, a_port, b_port = 0, s_lo, d_lo, s_hi, d_hi, sport, dport
    else:
        d, a_lo, b_lo, a_hi, b_hi, a_port, b_port = 1, d_lo, s_lo, d_hi, s_hi, dport, sport
    ports = (np.uint64(proto) << _S32) | (np.uint64(a_port) << _S16) | np.uint64(b_port)
    if encap == _ENCAP_NONE:
        vni = node_a_lo = node_b_lo = node_a_hi = node_b_hi = _ZERO
    else:
        vni = np.uint64(int(r["vni"]) + 1)
        os_hi, os_lo, od_hi, od_lo = r["o_src_hi"], r["o_src_lo"], r["o_dst_hi"], r["o_dst_lo"]
        if os_hi < od_hi or (os_hi == od_hi and os_lo <= od_lo):
            node_a_lo, node_b_lo, node_a_hi, node_b_hi = os_lo, od_lo, os_hi, od_hi
        else:
            node_a_lo, node_b_lo, node_a_hi, node_b_hi = od_lo, os_lo, od_hi, os_hi
    if a_hi | b_hi | node_a_hi | node_b_hi:
        vni |= _HAS_HI
    return d, (ports, vni, a_lo, b_lo, node_a_lo, node_b_lo, a_hi, b_hi, node_a_hi, node_b_hi)


@njit(cache=True, nogil=True, inline="always")
def _fetch_slot(table, r, factors, shift):
    """Start fetching the cache lines a probe and a count read for packet ``r``'s flow."""
    d, key = _flow_key(r)
    if d >= 0:
        home = _home(key, factors, shift)
        prefetch(table, home * _ROW)  # the table's rows are contiguous: an element index from its start
        prefetch(table, home * _ROW + _LINE)


@njit(cache=True, nogil=True)
def _count(table, slot, r, d):
    """Add packet ``r``, sent in direction ``d``, to the flow in ``slot``."""
    ts = r["ts_ns"]
    table[slot, _FIRST_TS] = min(table[slot, _FIRST_TS], ts)
    table[slot, _LAST_TS] = max(table[slot, _LAST_TS], ts)
    table[slot, _PACKETS + d] += 1
    table[slot, _BYTES + d] += r["wirelen"]
    table[slot, _PAYLOAD + d] += r["payload_wire"]
    if int(r["proto"]) == _TCP:
        flags = int(r["tcp_flags"])
        if flags & _SYN:
            if flags & _ACK:
                table[slot, _MARKS] |= 1 << (32 + d)
            elif ts < table[slot, _SYN_TS + d]:
                table[slot, _SYN_TS + d] = ts
    app = int(r["app"])
    if app:
        table[slot, _MARKS] |= 1 << (app + 16 * d)


@njit(cache=True, nogil=True)
def _accumulate(
    rows, start, table, factors, shift, n, limit, next_serial, kept, n_kept, per_direction, budget,
):  # fmt: skip
    """Add ``rows[start:]`` to the table; stop early, returning the row reached, when a new flow finds it full.

    ``factors`` and ``shift`` are the table's hashing (``_home``): a table of
    ``2 ** (64 - shift)`` slots.

    Returns ``(row reached, flows, next serial, budget left, segments kept)``.
    Each payload to keep (while ``budget`` lasts) is a row of ``kept`` from
    ``n_kept`` on: ``_KEPT_ROW``, ``_KEPT_SERIAL``, ``_KEPT_DIR``,
    ``_KEPT_TAKE`` (how many payload bytes to keep).
    """
    mask = len(table) - 1
    for i in range(start, min(start + _AHEAD, len(rows))):
        _fetch_slot(table, rows[i], factors, shift)
    for i in range(start, len(rows)):
        if i + _AHEAD < len(rows):
            _fetch_slot(table, rows[i + _AHEAD], factors, shift)
        r = rows[i]
        d, key = _flow_key(r)
        if d < 0:
            continue
        slot = _probe(table, key, _home(key, factors, shift), mask)
        if table[slot, _SERIAL] == _EMPTY:
            if n == limit:
                return i, n, next_serial, budget, n_kept
            n += 1
            table[slot, :] = 0
            _store_key(table, slot, key)
            table[slot, _FIRST_TS] = table[slot, _LAST_TS] = r["ts_ns"]
            table[slot, _SYN_TS] = table[slot, _SYN_TS + 1] = _NEVER
            table[slot, _SERIAL] = next_serial
            next_serial += 1
        _count(table, slot, r, d)
        size = int(r["payload_len"])
        if size > 0 and budget > SEGMENT_OVERHEAD:
            room = per_direction - table[slot, _CAPTURED + d]
            if room > 0:
                take = min(size, room, budget - SEGMENT_OVERHEAD)
                table[slot, _CAPTURED + d] += take
                budget -= take + SEGMENT_OVERHEAD
                kept[n_kept, _KEPT_ROW] = i
                kept[n_kept, _KEPT_SERIAL] = table[slot, _SERIAL]
                kept[n_kept, _KEPT_DIR] = d
                kept[n_kept, _KEPT_TAKE] = take
                n_kept += 1
    return len(rows), n, next_serial, budget, n_kept


def _aligned_rows(slots: int) -> np.ndarray:
    """An uninitialised table of ``slots`` rows whose rows start on cache lines."""
    spare = np.empty(slots * _ROW + _LINE, dtype=np.int64)
    skip = (-spare.ctypes.data % (8 * _LINE)) // 8
    return spare[skip : skip + slots * _ROW].reshape(slots, _ROW)


@njit(cache=True, nogil=True)
def _gather(data, starts, lengths, out):
    """Copy ``data[starts[k]:starts[k] + lengths[k]]`` for every ``k``, back to back, into ``out``."""
    p = 0
    for k in range(len(starts)):
        size = lengths[k]
        out[p : p + size] = data[starts[k] : starts[k] + size]
        p += size


class Direction(IntEnum):
    """A direction of a flow, as the inspection stage sees it."""

    CLIENT_TO_SERVER = 0
    SERVER_TO_CLIENT = 1


@dataclass(frozen=True, slots=True)
class Segment:
    """A kept TCP/UDP payload: the first bytes of a flow direction, in capture order."""

    ts_ns: int
    seq: int  # TCP sequence number (0 for UDP)
    tcp_flags: int
    data: bytes  # the kept bytes: possibly fewer than captured, when a bound was reached
    wire_len: int  # payload bytes the headers claim


class FlowPayloads:
    """The kept payload segments of each flow direction, looked up by ``Flow``."""

    def __init__(
        self,
        flows: FlowColumns,
        serials: np.ndarray,
        ranges: dict[tuple[int, int], tuple[int, int]],
        meta: dict[str, np.ndarray],
        chunks: list[np.ndarray],
    ) -> None:
        self._ranges = ranges
        self._meta = meta
        self._chunks = chunks  # segment bytes, in the chunk and at the offset ``meta`` gives
        kept = np.flatnonzero(np.isin(serials, [serial for serial, _ in ranges]))
        self._flows = flows.take(kept)
        self._serial_of = {flow.key: serial for flow, serial in zip(self._flows, serials[kept].tolist())}

    def flows(self) -> Iterator[Flow]:
        """The flows with at least one kept segment."""
        return iter(self._flows)

    def segments(self, flow: Flow, direction: Direction) -> tuple[Segment, ...]:
        """The kept segments ``flow`` carried in ``direction``, in capture order."""
        side = flow.client_side if direction == Direction.CLIENT_TO_SERVER else 1 - flow.client_side
        span = self._ranges.get((self._serial_of.get(flow.key, -1), side))
        if span is None:
            return ()
        first, end = span
        names = ("ts", "seq", "flags", "chunk", "start", "take", "wire")
        columns = (self._meta[name][first:end].tolist() for name in names)
        return tuple(
            Segment(
                ts_ns=ts,
                seq=seq,
                tcp_flags=flags,
                data=self._chunks[chunk][start : start + take].tobytes(),
                wire_len=wire,
            )
            for ts, seq, flags, chunk, start, take, wire in zip(*columns)
        )

    @property
    def kept_bytes(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)


class FlowTable:
    """Flows of the packet tables added so far, with bounded payload prefixes per direction."""

    def __init__(
        self,
        max_flows: int = DEFAULT_MAX_FLOWS,
        payload_per_direction: int = DEFAULT_PAYLOAD_PER_DIRECTION,
        payload_total: int = DEFAULT_PAYLOAD_TOTAL,
    ) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, not {max_flows}")
        if payload_per_direction < 0 or payload_total < 0:
            raise ValueError("payload bounds cannot be negative")
        self.max_flows = max_flows
        self.payload_per_direction = payload_per_direction
        self._budget = payload_total
        self._n = 0
        self._next_serial = 0
        self._factors = random_hash_factors(_KEY_WORDS)
        self._kept = np.empty((0, 4), dtype=np.int64)
        self._allocate(min(max_flows, 1024))
        self.evicted: dict[int | None, int] = {}
        """Flows evicted to stay within ``max_flows``, per VNI (None outside overlays)."""
        self._segments: list[dict[str, np.ndarray]] = []
        self._segment_data: list[np.ndarray] = []

    def __len__(self) -> int:
        return self._n

    @property
    def evicted_total(self) -> int:
        return sum(self.evicted.values())

    def _allocate(self, flows: int) -> None:
        """A table with room for ``flows`` flows (half its slots), holding the flows held so far."""
        bits = (2 * flows - 1).bit_length()
        table = _aligned_rows(1 << bits)
        table[:, _SERIAL] = _EMPTY
        self._shift = np.uint64(64 - bits)
        if self._n:
            _rehash(self._table, table, self._factors, self._shift)
        self._table = table
        self._room = flows

    def _make_room(self) -> None:
        if self._room < self.max_flows:
            self._allocate(min(2 * self._room, self.max_flows))
            return
        held, last, start = _held(self._table, self._n)  # start: free before the eviction (at most half are held)
        count = max(1, self.max_flows // EVICT_FRACTION)
        bound = np.partition(last, count - 1)[count - 1]
        tied = held[last == bound]
        tied = tied[np.argsort(self._table[tied, _SERIAL], kind="stable")]
        oldest = np.concatenate((held[last < bound], tied))[:count]
        vnis, per_vni = np.unique(self._table[oldest, _K_VNI] % int(_HAS_HI) - 1, return_counts=True)
        for vni, evicted in zip(vnis.tolist(), per_vni.tolist()):
            key = None if vni < 0 else vni
            self.evicted[key] = self.evicted.get(key, 0) + evicted
        self._table[oldest, _SERIAL] = _EMPTY
        self._n -= count
        _reseat(self._table, start, self._factors, self._shift)

    def add(self, rows: np.ndarray, data: np.ndarray | None = None) -> None:
        """Count the packets of ``rows`` (``PACKET_DTYPE``); keep payload prefixes from ``data``, their buffer."""
        budget = self._budget if data is not None else 0
        if len(self._kept) < len(rows) and budget:
            self._kept = np.empty((len(rows), 4), dtype=np.int64)  # kept between calls: no page faults per call
        start = kept = 0
        while True:
            start, self._n, self._next_serial, budget, kept = _accumulate(
                rows, start, self._table, self._factors, self._shift, self._n, self._room, self._next_serial,
                self._kept, kept, self.payload_per_direction, budget,
            )  # fmt: skip
            if start == len(rows):
                break
            self._make_room()
        if kept:
            self._budget = budget
            self._keep(rows, data, self._kept[:kept])

    def _keep(self, rows: np.ndarray, data: np.ndarray, kept: np.ndarray) -> None:
        picked = rows[kept[:, _KEPT_ROW]]
        lengths = kept[:, _KEPT_TAKE].copy()
        out = np.empty(int(lengths.sum()), dtype=np.uint8)
        starts = picked["data_start"] + picked["payload_off"].astype(np.int64)
        _gather(np.asarray(data, dtype=np.uint8), starts, lengths, out)
        self._segment_data.append(out)
        self._segments.append(
            {
                "serial": kept[:, _KEPT_SERIAL].copy(),
                "dir": kept[:, _KEPT_DIR].astype(np.uint8),
                "ts": picked["ts_ns"],
                "seq": picked["tcp_seq"],
                "flags": picked["tcp_flags"],
                "wire": picked["payload_wire"],
                "take": lengths,
                "chunk": np.full(len(kept), len(self._segment_data) - 1, dtype=np.int64),
                "start": np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64),
            }
        )

    def render(self, namer: Namer | None = None) -> tuple[FlowColumns, FlowPayloads]:
        """The flows held (``namer`` names the service of each endpoint), and their kept payloads."""
        held = self._table[self._table[:, _SERIAL] != _EMPTY]
        keys = held[:, _COLUMN_KEY].view(np.uint64)
        keys[:, VNI] %= _HAS_HI
        order = canonical_order(keys)
        held, keys = held[order], keys[order]
        flows = FlowColumns.from_table(keys, held[:, _COLUMN_COUNTERS], namer)
        return flows, self._payloads(flows, held[:, _SERIAL])

    def _payloads(self, flows: FlowColumns, serials: np.ndarray) -> FlowPayloads:
        if not self._segments:
            return FlowPayloads(flows, serials, {}, {}, [])
        meta = {name: np.concatenate([s[name] for s in self._segments]) for name in self._segments[0]}
        order = np.lexsort((meta["dir"], meta["serial"]))  # stable: capture order within a direction
        meta = {name: column[order] for name, column in meta.items()}
        groups = meta["serial"] * 2 + meta["dir"]
        firsts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
        ends = np.append(firsts[1:], len(groups))
        ranges = {
            (int(groups[f]) >> 1, int(groups[f]) & 1): (int(f), int(e)) for f, e in zip(firsts.tolist(), ends.tolist())
        }
        return FlowPayloads(flows, serials, ranges, meta, self._segment_data)
