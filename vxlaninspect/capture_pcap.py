"""The classic pcap format: a 24-byte file header, then records with 16-byte headers.

Both byte orders, microsecond (a1b2c3d4) and nanosecond (a1b23c4d) timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .capture_walk import MAX_RECORD_BYTES, Damage, IndexArrays, Stop, fetch_ahead, load_u32, read_uint

FILE_HEADER_BYTES = 24
RECORD_HEADER_BYTES = 16

_MAGIC = {
    # first four bytes: (big endian, nanoseconds per timestamp fraction unit)
    bytes.fromhex("d4c3b2a1"): (False, 1000),
    bytes.fromhex("a1b2c3d4"): (True, 1000),
    bytes.fromhex("4d3cb2a1"): (False, 1),
    bytes.fromhex("a1b23c4d"): (True, 1),
}
_LINKTYPE_MASK = 0x03FFFFFF  # the upper bits carry FCS information


def is_pcap(head: bytes) -> bool:
    return head[:4] in _MAGIC


@dataclass(frozen=True)
class PcapHeader:
    big_endian: bool
    fraction_ns: int  # nanoseconds per unit of a record's timestamp fraction: 1000 or 1
    version: tuple[int, int]
    snaplen: int
    linktype: int


def parse_pcap_header(data: np.ndarray) -> PcapHeader:
    """The file header at the start of ``data``."""
    if len(data) < FILE_HEADER_BYTES:
        raise Damage(f"truncated pcap file header: {FILE_HEADER_BYTES} bytes needed, {len(data)} present")
    big_endian, fraction_ns = _MAGIC[data[:4].tobytes()]
    linktype = read_uint(data, 20, 4, big_endian) & _LINKTYPE_MASK
    if linktype > 0xFFFF:
        raise Damage(f"link type {linktype} is out of range")
    return PcapHeader(
        big_endian=big_endian,
        fraction_ns=fraction_ns,
        version=(read_uint(data, 4, 2, big_endian), read_uint(data, 6, 2, big_endian)),
        snaplen=read_uint(data, 16, 4, big_endian),
        linktype=linktype,
    )


_FULL = int(Stop.FULL)
_NEED_BYTES = int(Stop.NEED_BYTES)
_RECORD_TOO_LONG = int(Stop.RECORD_TOO_LONG)


@njit(cache=True, nogil=True)
def index_pcap_records(
    data: np.ndarray,
    pos: int,
    big_endian: bool,
    fraction_ns: int,
    linktype: int,
    max_record: int,
    offset: int,
    data_start: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    linktypes: np.ndarray,
    rec_offset: np.ndarray,
) -> tuple[int, int, int, int]:
    """Index whole records from ``data[pos]`` on: (records, end position, stop, bytes needed from there).

    ``offset`` is the stream offset of ``data[0]``; data starts are counted from ``data[pos]``.
    A record length over snaplen is tolerated (real tools write it); over ``max_record`` it is damage.
    """
    size = data.shape[0]
    start = pos
    count = 0
    ahead = pos  # bytes before this are in the cache or on their way
    while count < data_start.shape[0]:
        ahead = fetch_ahead(data, ahead, pos)
        if size - pos < 16:
            return count, pos, _NEED_BYTES, 16
        length = load_u32(data, pos + 8, big_endian)
        if length > max_record:
            return count, pos, _RECORD_TOO_LONG, 0
        if size - pos - 16 < length:
            return count, pos, _NEED_BYTES, 16 + length
        data_start[count] = pos + 16 - start
        caplen[count] = length
        wirelen[count] = load_u32(data, pos + 12, big_endian)
        ts_ns[count] = (
            load_u32(data, pos, big_endian) * 1_000_000_000 + load_u32(data, pos + 4, big_endian) * fraction_ns
        )
        linktypes[count] = linktype
        rec_offset[count] = offset + pos
        pos += 16 + length
        count += 1
    return count, pos, _FULL, 0


class PcapIndexer:
    """Indexes the records of one pcap file (after its file header)."""

    def __init__(self, header: PcapHeader) -> None:
        self.header = header
        self.linktypes = {header.linktype}

    def index(self, data: np.ndarray, pos: int, offset: int, arrays: IndexArrays) -> tuple[int, int, int, int]:
        header = self.header
        return index_pcap_records(
            data,
            pos,
            header.big_endian,
            header.fraction_ns,
            header.linktype,
            MAX_RECORD_BYTES,
            offset,
            *arrays.columns(),
        )

    def resume(self, stop: Stop, data: np.ndarray, pos: int) -> int:
        assert stop == Stop.RECORD_TOO_LONG, stop
        length = read_uint(data, pos + 8, 4, self.header.big_endian)
        raise Damage(f"record length {length} exceeds the limit of {MAX_RECORD_BYTES} bytes")

    def truncation(self, data: np.ndarray, pos: int) -> str:
        remain = len(data) - pos
        if remain < RECORD_HEADER_BYTES:
            return f"truncated record header: {RECORD_HEADER_BYTES} bytes needed, {remain} remain"
        length = read_uint(data, pos + 8, 4, self.header.big_endian)
        return f"truncated record: header says {length} captured bytes, {remain - RECORD_HEADER_BYTES} remain"
