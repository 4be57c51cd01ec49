"""Oracles and builders for the capture reader tests (no tests here).

The expected records never come from the reader under test: they come from
tshark, from dpkt, or from the small struct-based pcap walker below.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dpkt
import pytest

from tests.conftest import CORPUS
from vxlaninspect.capture import Capture, open_capture
from vxlaninspect.errors import CaptureError

ETHERNET_FILE = "zeek__redis-50-pings.pcap"  # link type 1
SLL_FILE = "tcpdump__resp_1_benchmark.pcap"  # link type 113


@dataclass(frozen=True)
class Record:
    """One record as the reader delivers it."""

    ts_ns: int
    caplen: int
    wirelen: int
    linktype: int
    data: bytes
    offset: int


@dataclass(frozen=True)
class Reading:
    """Everything read from a capture, and the error that ended it (if any)."""

    records: list[Record]
    error: CaptureError | None
    batches: int
    capture: Capture | None  # closed after the reading; None when it could not be opened


def read_capture(source: str | Path | BinaryIO, chunk_bytes: int = 32 << 20) -> Reading:
    """Read a capture to its end with the reader under test, keeping the error instead of raising it."""
    records: list[Record] = []
    batches = 0
    capture = None
    try:
        with open_capture(source, chunk_bytes=chunk_bytes) as capture:
            for batch in capture.batches():
                batches += 1
                for i in range(len(batch)):
                    records.append(
                        Record(
                            ts_ns=int(batch.ts_ns[i]),
                            caplen=int(batch.caplen[i]),
                            wirelen=int(batch.wirelen[i]),
                            linktype=int(batch.linktype[i]),
                            data=batch.record(i),
                            offset=int(batch.rec_offset[i]),
                        )
                    )
    except CaptureError as error:
        return Reading(records, error, batches, capture)
    return Reading(records, None, batches, capture)


def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus capture {name} not found in {CORPUS}")
    return path


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run the README's test command")
    return path


def run_tool(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


@dataclass(frozen=True)
class PcapRecord:
    """A record of a classic pcap file, as the struct walker sees it."""

    offset: int
    ts_ns: int
    caplen: int
    wirelen: int
    data: bytes


@dataclass(frozen=True)
class PcapFile:
    big_endian: bool
    nanosecond: bool
    snaplen: int
    linktype: int
    records: list[PcapRecord]


_PCAP_MAGIC = {0xA1B2C3D4: False, 0xA1B23C4D: True}


def walk_pcap(raw: bytes) -> PcapFile:
    """Parse a whole, undamaged classic pcap file with struct."""
    for order in "<>":
        magic = struct.unpack_from(order + "I", raw)[0]
        if magic in _PCAP_MAGIC:
            break
    else:
        raise ValueError("not a pcap file")
    nanosecond = _PCAP_MAGIC[magic]
    snaplen, linktype = struct.unpack_from(order + "II", raw, 16)
    records, offset = [], 24
    while offset < len(raw):
        sec, frac, caplen, wirelen = struct.unpack_from(order + "IIII", raw, offset)
        ts_ns = sec * 10**9 + frac * (1 if nanosecond else 1000)
        records.append(PcapRecord(offset, ts_ns, caplen, wirelen, raw[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    assert offset == len(raw), "trailing bytes"
    return PcapFile(order == ">", nanosecond, snaplen, linktype, records)


def swap_pcap_byte_order(raw: bytes) -> bytes:
    """The same pcap file written in the other byte order."""
    order = "<" if struct.unpack_from("<I", raw)[0] in _PCAP_MAGIC else ">"
    other = ">" if order == "<" else "<"
    out = bytearray(struct.pack(other + "IHHiIII", *struct.unpack_from(order + "IHHiIII", raw)))
    offset = 24
    while offset < len(raw):
        header = struct.unpack_from(order + "IIII", raw, offset)
        out += struct.pack(other + "IIII", *header)
        out += raw[offset + 16 : offset + 16 + header[2]]
        offset += 16 + header[2]
    return bytes(out)


def dpkt_packets(path: Path) -> list[tuple[int, bytes]]:
    """(link type, bytes) of every record, read by dpkt from a classic pcap file.

    The link-type field's top bits hold FCS information (draft-ietf-opsawg-pcap), not the type.
    """
    with open(path, "rb") as file:
        reader = dpkt.pcap.Reader(file)
        return [(reader.datalink() & 0xFFFF, bytes(data)) for _, data in reader]


@dataclass(frozen=True)
class TsharkFrame:
    ts_ns: int | None  # None: the record has no timestamp
    wirelen: int
    caplen: int
    interface: int | None


def tshark_frames(path: Path, display_filter: str | None = None) -> list[TsharkFrame]:
    """What tshark reads from a capture: timestamp (exact ns), frame and captured length, interface."""
    fields = ["frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id"]
    command = [require_tool("tshark"), "-n", "-r", str(path), "-T", "fields"]
    if display_filter:
        command += ["-Y", display_filter]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    frames = []
    for line in output.splitlines():
        epoch, wirelen, caplen, interface = line.split("\t")
        seconds, _, fraction = epoch.partition(".")
        frames.append(
            TsharkFrame(
                ts_ns=int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9]) if epoch else None,
                wirelen=int(wirelen),
                caplen=int(caplen),
                interface=int(interface) if interface else None,
            )
        )
    return frames


@dataclass(frozen=True)
class Block:
    """A pcapng block, split out of a little-endian file with struct."""

    offset: int
    kind: int
    body: bytes  # between the leading length and the trailing length


def pcapng_blocks(raw: bytes) -> list[Block]:
    blocks, offset = [], 0
    while offset < len(raw):
        kind, length = struct.unpack_from("<II", raw, offset)
        assert struct.unpack_from("<I", raw, offset + length - 4)[0] == length
        blocks.append(Block(offset, kind, raw[offset + 8 : offset + length - 4]))
        offset += length
    return blocks


def pcapng_block(kind: int, body: bytes) -> bytes:
    """A little-endian pcapng block; ``body`` is padded to 4 bytes."""
    body += bytes(-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)
