"""The pcapng format: sections of blocks, each section with its own byte order and interfaces.

Packets come from enhanced (EPB), simple (SPB) and obsolete (OPB) packet blocks;
interface description blocks (IDB) give each interface its link type, snaplen
and clock; every other block type is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numba import njit

from .capture_walk import MAX_RECORD_BYTES, Damage, IndexArrays, Stop, fetch_ahead, load_u16, load_u32, read_uint

MAX_BLOCK_BYTES = 16 << 20
"""A block claiming more bytes than this is damage (the limit Wireshark long used)."""

SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 0x00000001
OBSOLETE_PACKET = 0x00000002
SIMPLE_PACKET = 0x00000003
ENHANCED_PACKET = 0x00000006

BYTE_ORDER_MAGIC = 0x1A2B3C4D
_BYTE_ORDER_MAGIC_SWAPPED = 0x4D3C2B1A
_MIN_BLOCK_BYTES = 12
_MIN_SECTION_HEADER_BYTES = 28
_MIN_INTERFACE_BYTES = 20
_MIN_PACKET_BYTES = 32  # EPB and OPB: header, 20 bytes of fields, trailing length
_MIN_SIMPLE_PACKET_BYTES = 16

_OPTION_END = 0
_OPTION_TSRESOL = 9
_OPTION_TSOFFSET = 14
_DEFAULT_TSRESOL = 6  # microseconds
_NS_PER_SECOND = 1_000_000_000
_INT64_MAX = (1 << 63) - 1

_BLOCK_NAMES = {
    SECTION_HEADER: "section header block",
    INTERFACE_DESCRIPTION: "interface description block",
    OBSOLETE_PACKET: "obsolete packet block",
    SIMPLE_PACKET: "simple packet block",
    ENHANCED_PACKET: "enhanced packet block",
}


def is_pcapng(head: bytes) -> bool:
    return int.from_bytes(head[:4], "little") == SECTION_HEADER


class Clock(IntEnum):
    """How an interface's timestamp units become nanoseconds."""

    MULTIPLY = 0  # ns = units * scale           (if_tsresol 10^-k, k <= 9)
    DIVIDE = 1  # ns = units // scale            (if_tsresol 10^-k, 9 < k <= 19)
    BINARY = 2  # ns = units * 10^9 >> scale     (if_tsresol 2^-scale)


@dataclass(frozen=True)
class Interface:
    linktype: int
    snaplen: int
    clock: Clock
    scale: int
    offset_ns: int  # if_tsoffset in nanoseconds


def interface_clock(tsresol: int) -> tuple[Clock, int]:
    """The ``Clock`` and scale for an ``if_tsresol`` value (top bit set: a power of 2, else of 10)."""
    exponent = tsresol & 0x7F
    if tsresol & 0x80:
        if exponent > 63:
            raise Damage(f"if_tsresol 2^-{exponent} is finer than 2^-63")
        return Clock.BINARY, exponent
    if exponent > 19:
        raise Damage(f"if_tsresol 10^-{exponent} is finer than 10^-19")
    if exponent <= 9:
        return Clock.MULTIPLY, 10 ** (9 - exponent)
    return Clock.DIVIDE, 10 ** (exponent - 9)


@dataclass(frozen=True)
class Section:
    big_endian: bool
    version: tuple[int, int]
    length: int  # bytes of the section header block


def block_byte_order(data: np.ndarray, pos: int) -> bool:
    """Whether the section header block at ``pos`` (12 bytes present) is big-endian."""
    magic = read_uint(data, pos + 8, 4, False)
    if magic == BYTE_ORDER_MAGIC:
        return False
    if magic == _BYTE_ORDER_MAGIC_SWAPPED:
        return True
    raise Damage(f"pcapng section header has byte-order magic {data[pos + 8 : pos + 12].tobytes().hex()}, not 1a2b3c4d")


def parse_section_header(data: np.ndarray, pos: int) -> Section:
    """The section header block at ``pos``, whose length the kernel has checked."""
    big_endian = block_byte_order(data, pos)
    length = read_uint(data, pos + 4, 4, big_endian)
    if length < _MIN_SECTION_HEADER_BYTES:
        raise Damage(f"section header block of {length} bytes is too short")
    version = (read_uint(data, pos + 12, 2, big_endian), read_uint(data, pos + 14, 2, big_endian))
    if version[0] != 1:
        raise Damage(f"unsupported pcapng version {version[0]}.{version[1]}")
    return Section(big_endian=big_endian, version=version, length=length)


def parse_interface(data: np.ndarray, pos: int, big_endian: bool) -> Interface:
    """The interface description block at ``pos``, whose length the kernel has checked."""
    length = read_uint(data, pos + 4, 4, big_endian)
    if length < _MIN_INTERFACE_BYTES:
        raise Damage(f"interface description block of {length} bytes is too short")
    tsresol, tsoffset = _DEFAULT_TSRESOL, 0
    at, end = pos + 16, pos + length - 4
    while end - at >= 4:
        code, size = read_uint(data, at, 2, big_endian), read_uint(data, at + 2, 2, big_endian)
        if code == _OPTION_END:
            break
        if size > end - at - 4:
            raise Damage(f"interface description block option {code} of {size} bytes overruns its block")
        if code == _OPTION_TSRESOL and size == 1:
            tsresol = int(data[at + 4])
        elif code == _OPTION_TSOFFSET and size == 8:
            tsoffset = int.from_bytes(data[at + 4 : at + 12].tobytes(), "big" if big_endian else "little", signed=True)
        at += 4 + (size + 3) // 4 * 4
    clock, scale = interface_clock(tsresol)
    offset_ns = tsoffset * _NS_PER_SECOND
    if abs(offset_ns) > _INT64_MAX:
        raise Damage(f"if_tsoffset of {tsoffset} seconds is out of range")
    return Interface(
        linktype=read_uint(data, pos + 8, 2, big_endian),
        snaplen=read_uint(data, pos + 12, 4, big_endian),
        clock=clock,
        scale=scale,
        offset_ns=offset_ns,
    )


class InterfaceTable:
    """The interfaces of the current section as columns for the kernel; appending is amortised O(1)."""

    def __init__(self) -> None:
        self.count = 0
        self._linktype = np.empty(4, dtype=np.uint16)
        self._snaplen = np.empty(4, dtype=np.uint32)
        self._clock = np.empty(4, dtype=np.uint8)
        self._scale = np.empty(4, dtype=np.uint64)
        self._offset_ns = np.empty(4, dtype=np.int64)

    def append(self, interface: Interface) -> None:
        if self.count == len(self._linktype):
            for name in ("_linktype", "_snaplen", "_clock", "_scale", "_offset_ns"):
                column = getattr(self, name)
                setattr(self, name, np.concatenate([column, np.empty_like(column)]))
        i = self.count
        self._linktype[i] = interface.linktype
        self._snaplen[i] = interface.snaplen
        self._clock[i] = interface.clock
        self._scale[i] = interface.scale
        self._offset_ns[i] = interface.offset_ns
        self.count += 1

    def clear(self) -> None:
        self.count = 0

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.count
        return self._linktype[:n], self._snaplen[:n], self._clock[:n], self._scale[:n], self._offset_ns[:n]


_FULL = int(Stop.FULL)
_NEED_BYTES = int(Stop.NEED_BYTES)
_RECORD_TOO_LONG = int(Stop.RECORD_TOO_LONG)
_SECTION = int(Stop.SECTION)
_INTERFACE = int(Stop.INTERFACE)
_BAD_BYTE_ORDER = int(Stop.BAD_BYTE_ORDER)
_BLOCK_TOO_SHORT = int(Stop.BLOCK_TOO_SHORT)
_BLOCK_NOT_ALIGNED = int(Stop.BLOCK_NOT_ALIGNED)
_BLOCK_TOO_LONG = int(Stop.BLOCK_TOO_LONG)
_TRAILER_MISMATCH = int(Stop.TRAILER_MISMATCH)
_BAD_INTERFACE = int(Stop.BAD_INTERFACE)
_PACKET_BLOCK_TOO_SHORT = int(Stop.PACKET_BLOCK_TOO_SHORT)
_DATA_EXCEEDS_BLOCK = int(Stop.DATA_EXCEEDS_BLOCK)
_MULTIPLY = int(Clock.MULTIPLY)
_DIVIDE = int(Clock.DIVIDE)
_NS = np.uint64(_NS_PER_SECOND)
_U32_BITS = np.uint64(32)
_U32_MASK = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)


@njit(cache=True, nogil=True)
def units_to_ns(units: np.uint64, clock: int, scale: np.uint64) -> np.int64:
    """Timestamp units to nanoseconds, exactly (rounded down), in 64-bit integer arithmetic."""
    if clock == _MULTIPLY:
        return np.int64(units * scale)
    if clock == _DIVIDE:
        return np.int64(units // scale)
    fraction = units & ((_ONE << scale) - _ONE)
    if scale <= _U32_BITS:
        fraction_ns = (fraction * _NS) >> scale
    else:  # fraction * 10^9 could overflow: multiply the two 32-bit halves apart
        high = (fraction >> _U32_BITS) * _NS
        low = (fraction & _U32_MASK) * _NS
        fraction_ns = (high + (low >> _U32_BITS)) >> (scale - _U32_BITS)
    return np.int64((units >> scale) * _NS + fraction_ns)


@njit(cache=True, nogil=True)
def index_pcapng_blocks(
    data: np.ndarray,
    pos: int,
    big_endian: bool,
    if_linktype: np.ndarray,
    if_snaplen: np.ndarray,
    if_clock: np.ndarray,
    if_scale: np.ndarray,
    if_offset_ns: np.ndarray,
    max_record: int,
    max_block: int,
    offset: int,
    data_start: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    linktypes: np.ndarray,
    rec_offset: np.ndarray,
) -> tuple[int, int, int, int]:
    """Index packet blocks from ``data[pos]`` on: (records, end position, stop, bytes needed from there).

    ``offset`` is the stream offset of ``data[0]``; data starts are counted from ``data[pos]``.
    Returns at section headers and interface descriptions for Python to parse,
    and at the first malformed block.
    """
    size = data.shape[0]
    start = pos
    interfaces = if_linktype.shape[0]
    count = 0
    ahead = pos  # bytes before this are in the cache or on their way
    while count < data_start.shape[0]:
        ahead = fetch_ahead(data, ahead, pos)
        if size - pos < 8:
            return count, pos, _NEED_BYTES, 8
        kind = load_u32(data, pos, big_endian)
        block_big_endian = big_endian
        if kind == SECTION_HEADER:
            if size - pos < 12:
                return count, pos, _NEED_BYTES, 12
            magic = load_u32(data, pos + 8, False)
            if magic == BYTE_ORDER_MAGIC:
                block_big_endian = False
            elif magic == _BYTE_ORDER_MAGIC_SWAPPED:
                block_big_endian = True
            else:
                return count, pos, _BAD_BYTE_ORDER, 0
        length = load_u32(data, pos + 4, block_big_endian)
        if length < _MIN_BLOCK_BYTES:
            return count, pos, _BLOCK_TOO_SHORT, 0
        if length % 4:
            return count, pos, _BLOCK_NOT_ALIGNED, 0
        if length > max_block:
            return count, pos, _BLOCK_TOO_LONG, 0
        if size - pos < length:
            return count, pos, _NEED_BYTES, length
        if load_u32(data, pos + length - 4, block_big_endian) != length:
            return count, pos, _TRAILER_MISMATCH, 0
        if kind == ENHANCED_PACKET or kind == OBSOLETE_PACKET:
            if length < _MIN_PACKET_BYTES:
                return count, pos, _PACKET_BLOCK_TOO_SHORT, 0
            if kind == ENHANCED_PACKET:
                interface = load_u32(data, pos + 8, big_endian)
            else:
                interface = load_u16(data, pos + 8, big_endian)
            if interface >= interfaces:
                return count, pos, _BAD_INTERFACE, 0
            captured = load_u32(data, pos + 20, big_endian)
            if captured > max_record:
                return count, pos, _RECORD_TOO_LONG, 0
            if captured > length - _MIN_PACKET_BYTES:
                return count, pos, _DATA_EXCEEDS_BLOCK, 0
            units = (np.uint64(load_u32(data, pos + 12, big_endian)) << _U32_BITS) | np.uint64(
                load_u32(data, pos + 16, big_endian)
            )
            data_start[count] = pos + 28 - start
            caplen[count] = captured
            wirelen[count] = load_u32(data, pos + 24, big_endian)
            ts_ns[count] = units_to_ns(units, if_clock[interface], if_scale[interface]) + if_offset_ns[interface]
            linktypes[count] = if_linktype[interface]
            rec_offset[count] = offset + pos
            count += 1
        elif kind == SIMPLE_PACKET:
            if interfaces == 0:
                return count, pos, _BAD_INTERFACE, 0
            if length < _MIN_SIMPLE_PACKET_BYTES:
                return count, pos, _PACKET_BLOCK_TOO_SHORT, 0
            original = load_u32(data, pos + 8, big_endian)
            captured = original
            if if_snaplen[0] != 0 and captured > if_snaplen[0]:
                captured = np.int64(if_snaplen[0])
            if captured > max_record:
                return count, pos, _RECORD_TOO_LONG, 0
            if captured > length - _MIN_SIMPLE_PACKET_BYTES:
                return count, pos, _DATA_EXCEEDS_BLOCK, 0
            data_start[count] = pos + 12 - start
            caplen[count] = captured
            wirelen[count] = original
            ts_ns[count] = 0
            linktypes[count] = if_linktype[0]
            rec_offset[count] = offset + pos
            count += 1
        elif kind == SECTION_HEADER:
            return count, pos, _SECTION, 0
        elif kind == INTERFACE_DESCRIPTION:
            return count, pos, _INTERFACE, 0
        pos += length
    return count, pos, _FULL, 0


class PcapngIndexer:
    """Indexes the blocks of a pcapng stream, section after section."""

    def __init__(self) -> None:
        self.linktypes: set[int] = set()
        self.sections = 0
        self._big_endian = False
        self._interfaces = InterfaceTable()

    def index(self, data: np.ndarray, pos: int, offset: int, arrays: IndexArrays) -> tuple[int, int, int, int]:
        return index_pcapng_blocks(
            data,
            pos,
            self._big_endian,
            *self._interfaces.columns(),
            MAX_RECORD_BYTES,
            MAX_BLOCK_BYTES,
            offset,
            *arrays.columns(),
        )

    def resume(self, stop: Stop, data: np.ndarray, pos: int) -> int:
        if stop == Stop.SECTION:
            section = parse_section_header(data, pos)
            self._big_endian = section.big_endian
            self._interfaces.clear()
            self.sections += 1
            return pos + section.length
        if stop == Stop.INTERFACE:
            interface = parse_interface(data, pos, self._big_endian)
            self._interfaces.append(interface)
            self.linktypes.add(interface.linktype)
            return pos + read_uint(data, pos + 4, 4, self._big_endian)
        raise Damage(self._describe(stop, data, pos))

    def truncation(self, data: np.ndarray, pos: int) -> str:
        remain = len(data) - pos
        if remain < 8 or (is_pcapng(data[pos : pos + 4].tobytes()) and remain < 12):
            return f"truncated pcapng block header: {8 if remain < 8 else 12} bytes needed, {remain} remain"
        return f"truncated pcapng block: header says {self._block_length(data, pos)} bytes, {remain} remain"

    def _block_length(self, data: np.ndarray, pos: int) -> int:
        return read_uint(data, pos + 4, 4, self._block_byte_order(data, pos))

    def _block_byte_order(self, data: np.ndarray, pos: int) -> bool:
        if read_uint(data, pos, 4, False) == SECTION_HEADER:
            return block_byte_order(data, pos)
        return self._big_endian

    def _describe(self, stop: Stop, data: np.ndarray, pos: int) -> str:
        """The reason for a damage stop of the kernel at ``pos``."""
        if stop == Stop.BAD_BYTE_ORDER:
            block_byte_order(data, pos)  # raises Damage with the magic found
        big_endian = self._big_endian
        kind = read_uint(data, pos, 4, big_endian)
        length = self._block_length(data, pos)
        name = _BLOCK_NAMES.get(kind, f"block of type 0x{kind:08x}")
        if stop == Stop.BLOCK_TOO_SHORT:
            return f"pcapng block length {length} is less than {_MIN_BLOCK_BYTES}"
        if stop == Stop.BLOCK_NOT_ALIGNED:
            return f"pcapng block length {length} is not a multiple of 4"
        if stop == Stop.BLOCK_TOO_LONG:
            return f"pcapng block length {length} exceeds the limit of {MAX_BLOCK_BYTES} bytes"
        if stop == Stop.TRAILER_MISMATCH:
            trailer = read_uint(data, pos + length - 4, 4, self._block_byte_order(data, pos))
            return f"pcapng block length {length} does not match its trailing length {trailer}"
        if stop == Stop.PACKET_BLOCK_TOO_SHORT:
            return f"{name} of {length} bytes is too short"
        if stop == Stop.BAD_INTERFACE:
            if kind == SIMPLE_PACKET:
                return f"{name} before any interface description block in its section"
            size = 4 if kind == ENHANCED_PACKET else 2
            interface = read_uint(data, pos + 8, size, big_endian)
            return f"{name} names interface {interface}, but its section has {self._interfaces.count}"
        captured = self._captured_length(kind, data, pos)
        if stop == Stop.RECORD_TOO_LONG:
            return f"record length {captured} exceeds the limit of {MAX_RECORD_BYTES} bytes"
        assert stop == Stop.DATA_EXCEEDS_BLOCK, stop
        return f"{name} of {length} bytes cannot hold {captured} captured bytes"

    def _captured_length(self, kind: int, data: np.ndarray, pos: int) -> int:
        if kind != SIMPLE_PACKET:
            return read_uint(data, pos + 20, 4, self._big_endian)
        original = read_uint(data, pos + 8, 4, self._big_endian)
        snaplen = int(self._interfaces.columns()[1][0])
        return min(original, snaplen) if snaplen else original
