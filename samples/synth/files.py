"""Capture files written byte by byte, so that the same frames always give the same bytes.

pcap (microseconds, little-endian) with Ethernet or Linux cooked v2 (SLL2)
link headers, pcapng (nanoseconds), and gzip without a time stamp.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from .wire import BROADCAST, Frame, Node

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL2 = 276
SNAPLEN = 262144
SLL2_OUTGOING = 4
SLL2_BROADCAST = 1
SLL2_HOST = 0
ARPHRD_ETHER = 1


def pcap(frames: Sequence[Frame], linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """A pcap file: magic 0xa1b2c3d4 (microseconds) written little-endian, as tcpdump on x86 writes it."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype)]
    for frame in frames:
        seconds, nanoseconds = divmod(frame.ts_ns, 1_000_000_000)
        out.append(struct.pack("<IIII", seconds, nanoseconds // 1000, len(frame.data), len(frame.data)))
        out.append(frame.data)
    return b"".join(out)


def sll2_frames(frames: Sequence[Frame], node: Node, interface_index: int) -> list[Frame]:
    """The Ethernet frames as ``tcpdump -i any`` records them on ``node``: the MAC header replaced by SLL2's."""
    cooked = []
    for frame in frames:
        destination, source, ethertype = frame.data[:6], frame.data[6:12], frame.data[12:14]
        if source == node.mac:
            packet_type = SLL2_OUTGOING
        elif destination == BROADCAST:
            packet_type = SLL2_BROADCAST
        else:
            packet_type = SLL2_HOST
        header = (
            ethertype
            + bytes(2)
            + struct.pack(">iHBB", interface_index, ARPHRD_ETHER, packet_type, 6)
            + source
            + bytes(2)
        )
        cooked.append(Frame(frame.ts_ns, header + frame.data[14:]))
    return cooked


def pcapng(frames: Sequence[Frame], interface_name: str, application: str) -> bytes:
    """A pcapng file: one section, one Ethernet interface with nanosecond time stamps, one EPB per frame."""
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _options([(4, application.encode())])
    idb = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + _options([(2, interface_name.encode()), (9, bytes([9]))])
    out = [_block(0x0A0D0D0A, shb), _block(1, idb)]
    for frame in frames:
        epb = struct.pack("<IIIII", 0, frame.ts_ns >> 32, frame.ts_ns & 0xFFFFFFFF, len(frame.data), len(frame.data))
        out.append(_block(6, epb + _pad(frame.data)))
    return b"".join(out)


def gzip_bytes(data: bytes) -> bytes:
    """RFC 1952 gzip with no file name and a zero modification time: the same input gives the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush()
    header = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x02\xff"  # deflate, no flags, mtime 0, best compression, OS unknown
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("<HH", code, len(value)) + _pad(value) for code, value in options) + bytes(4)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)
