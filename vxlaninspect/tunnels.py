"""Tunnels: what each underlay node pair carried in each direction.

A tunnel is one direction between two underlay addresses and one
encapsulation: VXLAN (and its kin) counted per VNI, with the packets that
carried application payload in cleartext; ESP counted per SPI with the first
and last time each SPI was seen. Docker keys ESP per node pair and direction
and rotates the key every 12 hours, so a second SPI in the same direction is a
key rotation. ESP between nodes is encrypted overlay traffic even when nothing
says which network it belongs to: its VNI is inside the ciphertext.

``TunnelTable`` accumulates packet tables in one compiled pass, holding at most
``max_entries`` (direction, encapsulation, VNI or SPI) entries; packets of
entries beyond that are counted as untracked. The same pass counts every
packet by encapsulation and decode status (``PacketTotals``), so the rows are
read once for both. ``Tunnel`` is the rendered, mergeable value of one direction.

All compiled code of this module lives here: numba's cache only notices
changes to the file that defines a cached function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from .addresses import ip_text
from .hashing import random_hash_factors
from .merging import pick_known
from .schema import ENCAP_NAMES, Encap, PacketFlag, Status

DEFAULT_MAX_ENTRIES = 65_536

OVERLAY_ENCAPS = frozenset({"vxlan", "geneve", "vxlan-gpe"})
ESP_ENCAPS = frozenset({"esp", "esp-udp"})

# Key words: source, destination, then encap << 34 | (VNI or SPI + 1), 0 when neither was read.
_KEY_WORDS = 5
_C_PACKETS, _C_BYTES, _C_PAYLOAD_PACKETS, _C_PAYLOAD_BYTES, _C_FIRST_TS, _C_LAST_TS = range(6)
_COUNTERS = 6
_EMPTY = -1

# Totals of every packet (``TunnelTable.totals``).
_T_PACKETS, _T_BYTES = 0, 1
_T_ENCAP = 2  # one per Encap
_T_STATUS = _T_ENCAP + len(Encap)  # one per Status
_T_NON_IP = _T_STATUS + len(Status)
_T_PAYLOAD_TRUNCATED = _T_NON_IP + 1
_T_FRAGMENTS = _T_NON_IP + 2
_T_UNTRACKED_PACKETS = _T_NON_IP + 3
_TOTALS = _T_NON_IP + 4
_F_NON_IP = int(PacketFlag.NON_IP)
_F_PAYLOAD_TRUNCATED = int(PacketFlag.PAYLOAD_TRUNCATED)
_F_FRAGMENTS = int(PacketFlag.FRAGMENT | PacketFlag.OUTER_FRAGMENT)

_OK = int(Status.OK)
_E_NONE = int(Encap.NONE)
_E_LAST_OVERLAY = int(Encap.VXLAN_GPE)
_E_ESP = int(Encap.ESP)
_E_ESP_UDP = int(Encap.ESP_UDP)
_S34 = np.uint64(34)
_SUB_MASK = np.uint64((1 << 34) - 1)
_ZERO = np.uint64(0)


@njit(cache=True, nogil=True)
def _home(key, factors, shift):
    """The slot where probing for ``key`` (``_KEY_WORDS`` words) starts: multiply-shift hashing."""
    h = _ZERO
    for k in range(_KEY_WORDS):
        h += key[k] * factors[k]
    return np.int64(h >> shift)


@njit(cache=True, nogil=True)
def _reindex(keys, n, index, factors, shift):
    index[:] = _EMPTY
    mask = np.int64(len(index) - 1)
    for f in range(n):
        slot = _home(keys[f], factors, shift)
        while index[slot] != _EMPTY:
            slot = (slot + 1) & mask
        index[slot] = f


@njit(cache=True, nogil=True)
def _tally(r, totals):
    totals[_T_PACKETS] += 1
    totals[_T_BYTES] += r["wirelen"]
    totals[_T_ENCAP + int(r["encap"])] += 1
    totals[_T_STATUS + int(r["status"])] += 1
    flags = int(r["flags"])
    if flags & _F_NON_IP:
        totals[_T_NON_IP] += 1
    if flags & _F_PAYLOAD_TRUNCATED:
        totals[_T_PAYLOAD_TRUNCATED] += 1
    if flags & _F_FRAGMENTS:
        totals[_T_FRAGMENTS] += 1


@njit(cache=True, nogil=True)
def _accumulate(rows, start, keys, counters, index, factors, shift, n, limit, capacity, totals):
    """Add ``rows[start:]``; stop, returning the row reached, when a new entry needs more capacity.

    Returns ``(row reached, entries)``. Every packet is added to ``totals``;
    tunnel packets of new entries beyond ``limit`` count there as untracked.
    """
    mask = np.int64(len(index) - 1)
    w = np.zeros(_KEY_WORDS, dtype=np.uint64)
    f = _EMPTY  # the entry of the previous tunnel packet, while its key is in ``w``
    for i in range(start, len(rows)):
        r = rows[i]
        encap = int(r["encap"])
        if encap != _E_NONE and int(r["o_ipver"]) != 0:
            sub = -1
            if encap <= _E_LAST_OVERLAY:
                sub = int(r["vni"])
            elif (encap == _E_ESP or encap == _E_ESP_UDP) and int(r["status"]) == _OK:
                sub = int(r["spi"])
            meta = (np.uint64(encap) << _S34) | np.uint64(sub + 1)
            same = (
                f != _EMPTY
                and w[0] == r["o_src_hi"]
                and w[1] == r["o_src_lo"]
                and w[2] == r["o_dst_hi"]
                and w[3] == r["o_dst_lo"]
                and w[4] == meta
            )
            if not same:
                w[0], w[1], w[2], w[3], w[4] = r["o_src_hi"], r["o_src_lo"], r["o_dst_hi"], r["o_dst_lo"], meta
                slot = _home(w, factors, shift)
                f = _EMPTY
                while index[slot] != _EMPTY:
                    g = index[slot]
                    if (
                        keys[g, 0] == w[0]
                        and keys[g, 1] == w[1]
                        and keys[g, 2] == w[2]
                        and keys[g, 3] == w[3]
                        and keys[g, 4] == w[4]
                    ):
                        f = g
                        break
                    slot = (slot + 1) & mask
                if f == _EMPTY and n < limit:
                    if n == capacity:
                        return i, n
                    f = n
                    n += 1
                    index[slot] = f
                    keys[f, :] = w
                    counters[f, :] = 0
                    counters[f, _C_FIRST_TS] = counters[f, _C_LAST_TS] = r["ts_ns"]
            if f == _EMPTY:
                totals[_T_UNTRACKED_PACKETS] += 1
            else:
                ts = r["ts_ns"]
                counters[f, _C_PACKETS] += 1
                counters[f, _C_BYTES] += r["wirelen"]
                if ts < counters[f, _C_FIRST_TS]:
                    counters[f, _C_FIRST_TS] = ts
                if ts > counters[f, _C_LAST_TS]:
                    counters[f, _C_LAST_TS] = ts
                if int(r["status"]) == _OK and r["payload_wire"] > 0 and encap <= _E_LAST_OVERLAY:
                    counters[f, _C_PAYLOAD_PACKETS] += 1
                    counters[f, _C_PAYLOAD_BYTES] += r["payload_wire"]
        _tally(r, totals)
    return len(rows), n


@dataclass(frozen=True, slots=True)
class VniTraffic:
    """Overlay packets of one VNI in one tunnel direction."""

    vni: int
    packets: int
    bytes: int
    payload_packets: int  # packets whose inner TCP/UDP payload crossed in cleartext
    payload_bytes: int
    first_ts: int
    last_ts: int

    def __add__(self, other: VniTraffic) -> VniTraffic:
        return VniTraffic(
            self.vni,
            self.packets + other.packets,
            self.bytes + other.bytes,
            self.payload_packets + other.payload_packets,
            self.payload_bytes + other.payload_bytes,
            min(self.first_ts, other.first_ts),
            max(self.last_ts, other.last_ts),
        )


@dataclass(frozen=True, slots=True)
class SpiTraffic:
    """ESP packets of one SPI in one tunnel direction."""

    spi: int
    packets: int
    bytes: int
    first_ts: int
    last_ts: int

    def __add__(self, other: SpiTraffic) -> SpiTraffic:
        return SpiTraffic(
            self.spi,
            self.packets + other.packets,
            self.bytes + other.bytes,
            min(self.first_ts, other.first_ts),
            max(self.last_ts, other.last_ts),
        )


@dataclass(frozen=True, slots=True)
class Rotation:
    """A new SPI in a tunnel direction that already had one: a key rotation."""

    ts: int  # when the new SPI was first seen
    spi: int


@dataclass(frozen=True)
class Tunnel:
    """One direction between two underlay addresses in one encapsulation."""

    src: str
    dst: str
    encap: str  # a value of ENCAP_NAMES
    src_node: str | None
    dst_node: str | None
    packets: int
    bytes: int
    first_ts: int
    last_ts: int
    vni_traffic: tuple[VniTraffic, ...] = ()  # sorted by VNI
    spi_traffic: tuple[SpiTraffic, ...] = ()  # sorted by SPI

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.src, self.dst, self.encap)

    @property
    def vnis(self) -> tuple[int, ...]:
        return tuple(t.vni for t in self.vni_traffic)

    @property
    def spis(self) -> tuple[int, ...]:
        return tuple(t.spi for t in self.spi_traffic)

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        """Every SPI after the first to appear in this direction, in order of appearance."""
        ordered = sorted(self.spi_traffic, key=lambda t: (t.first_ts, t.spi))
        return tuple(Rotation(t.first_ts, t.spi) for t in ordered[1:])

    def __add__(self, other: Tunnel) -> Tunnel:
        if other.key != self.key:
            raise ValueError(f"cannot add counts of two different tunnels: {self.key} and {other.key}")
        return Tunnel(
            src=self.src,
            dst=self.dst,
            encap=self.encap,
            src_node=pick_known(min, self.src_node, other.src_node),
            dst_node=pick_known(min, self.dst_node, other.dst_node),
            packets=self.packets + other.packets,
            bytes=self.bytes + other.bytes,
            first_ts=min(self.first_ts, other.first_ts),
            last_ts=max(self.last_ts, other.last_ts),
            vni_traffic=_merge_sorted(self.vni_traffic, other.vni_traffic, lambda t: t.vni),
            spi_traffic=_merge_sorted(self.spi_traffic, other.spi_traffic, lambda t: t.spi),
        )


def _merge_sorted(xs: tuple, ys: tuple, key: Callable) -> tuple:
    merged = {key(x): x for x in xs}
    for y in ys:
        k = key(y)
        merged[k] = merged[k] + y if k in merged else y
    return tuple(merged[k] for k in sorted(merged))


@dataclass(frozen=True)
class PacketTotals:
    """Counts of all packets, whatever they carried."""

    packets: int
    bytes: int  # on the wire
    by_encap: dict[Encap, int]
    by_status: dict[Status, int]
    non_ip: int  # innermost frame not IP
    payload_truncated: int
    fragments: int  # inner or outer IP fragments
    untracked_packets: int  # tunnel packets of entries beyond the table's bound


class TunnelTable:
    """Tunnel traffic of the packet tables added so far, and totals of all their packets."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self._n = 0
        self._totals = np.zeros(_TOTALS, dtype=np.int64)
        self._factors = random_hash_factors(_KEY_WORDS)
        self._allocate(min(max_entries, 256))

    def __len__(self) -> int:
        return self._n

    @property
    def totals(self) -> PacketTotals:
        """Counts of every packet added so far (the same pass counts them)."""
        t = self._totals.tolist()
        return PacketTotals(
            packets=t[_T_PACKETS],
            bytes=t[_T_BYTES],
            by_encap={encap: t[_T_ENCAP + encap] for encap in Encap},
            by_status={status: t[_T_STATUS + status] for status in Status},
            non_ip=t[_T_NON_IP],
            payload_truncated=t[_T_PAYLOAD_TRUNCATED],
            fragments=t[_T_FRAGMENTS],
            untracked_packets=t[_T_UNTRACKED_PACKETS],
        )

    def _allocate(self, capacity: int) -> None:
        keys = np.zeros((capacity, _KEY_WORDS), dtype=np.uint64)
        counters = np.zeros((capacity, _COUNTERS), dtype=np.int64)
        if self._n:
            keys[: self._n] = self._keys[: self._n]
            counters[: self._n] = self._counters[: self._n]
        self._keys, self._counters = keys, counters
        bits = (2 * capacity - 1).bit_length()
        self._index = np.empty(1 << bits, dtype=np.int64)
        self._shift = np.uint64(64 - bits)
        _reindex(self._keys, self._n, self._index, self._factors, self._shift)

    def add(self, rows: np.ndarray) -> None:
        """Count the packets of ``rows`` (``PACKET_DTYPE``): all in the totals, tunnel packets per tunnel."""
        start = 0
        while True:
            start, self._n = _accumulate(
                rows, start, self._keys, self._counters, self._index, self._factors, self._shift, self._n,
                self.max_entries, len(self._keys), self._totals,
            )  # fmt: skip
            if start == len(rows):
                return
            self._allocate(min(2 * len(self._keys), self.max_entries))

    def render(self, node_name: Callable[[str], str | None] = lambda ip: None) -> tuple[Tunnel, ...]:
        """The tunnels seen, sorted by (src, dst, encap); ``node_name`` names an underlay address."""
        n = self._n
        words = self._keys[:n].tolist()
        cols = self._counters[:n].tolist()
        grouped: dict[tuple[str, str, str], list[tuple[int, list[int]]]] = {}
        for w, c in zip(words, cols):
            encap = ENCAP_NAMES[Encap(w[4] >> 34)]
            key = (ip_text(w[0], w[1]), ip_text(w[2], w[3]), encap)
            grouped.setdefault(key, []).append((int(w[4] & int(_SUB_MASK)) - 1, c))
        tunnels = []
        for (src, dst, encap), entries in sorted(grouped.items()):
            vni_traffic = []
            spi_traffic = []
            for sub, c in sorted(entries):
                if sub < 0:
                    continue
                if encap in OVERLAY_ENCAPS:
                    vni_traffic.append(
                        VniTraffic(
                            vni=sub,
                            packets=c[_C_PACKETS],
                            bytes=c[_C_BYTES],
                            payload_packets=c[_C_PAYLOAD_PACKETS],
                            payload_bytes=c[_C_PAYLOAD_BYTES],
                            first_ts=c[_C_FIRST_TS],
                            last_ts=c[_C_LAST_TS],
                        )
                    )
                elif encap in ESP_ENCAPS:
                    spi_traffic.append(SpiTraffic(sub, c[_C_PACKETS], c[_C_BYTES], c[_C_FIRST_TS], c[_C_LAST_TS]))
            tunnels.append(
                Tunnel(
                    src=src,
                    dst=dst,
                    encap=encap,
                    src_node=node_name(src),
                    dst_node=node_name(dst),
                    packets=sum(c[_C_PACKETS] for _, c in entries),
                    bytes=sum(c[_C_BYTES] for _, c in entries),
                    first_ts=min(c[_C_FIRST_TS] for _, c in entries),
                    last_ts=max(c[_C_LAST_TS] for _, c in entries),
                    vni_traffic=tuple(vni_traffic),
                    spi_traffic=tuple(spi_traffic),
                )
            )
        return tuple(tunnels)
