"""pcapng beyond what editcap writes: clocks, byte orders, simple and obsolete packet blocks, skipped blocks.

Each file is an ``editcap -F pcapng`` capture with its blocks rewritten here;
tshark reads the rewritten file as the oracle, except for clocks finer than
Wireshark's 64-bit arithmetic handles, where the exact value is computed with
Python integers from the pcapng definition (``units / units_per_second``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.test_capture_support import (
    ETHERNET_FILE,
    SLL_FILE,
    Block,
    corpus_file,
    pcapng_block,
    pcapng_blocks,
    read_capture,
    require_tool,
    run_tool,
    tshark_frames,
    walk_pcap,
)

SECTION_HEADER, INTERFACE, OBSOLETE_PACKET, SIMPLE_PACKET, STATISTICS, ENHANCED_PACKET = (
    0x0A0D0D0A,
    1,
    2,
    3,
    5,
    6,
)
OPTION_TSRESOL, OPTION_TSOFFSET = 9, 14


def editcap_pcapng(tmp_path: Path, name: str) -> bytes:
    out = tmp_path / f"{name}.pcapng"
    run_tool(require_tool("editcap"), "-F", "pcapng", corpus_file(name), out)
    return out.read_bytes()


def units_per_second(tsresol: int) -> int:
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol


def with_clock(raw: bytes, tsresol: int, tsoffset: int) -> tuple[bytes, list[int]]:
    """Rewrite a microsecond pcapng to another if_tsresol and if_tsoffset; also the exact expected timestamps."""
    out, expected = b"", []
    ups = units_per_second(tsresol)
    for block in pcapng_blocks(raw):
        body = block.body
        if block.kind == INTERFACE:
            options = struct.pack("<HHB3x", OPTION_TSRESOL, 1, tsresol) + struct.pack(
                "<HHq", OPTION_TSOFFSET, 8, tsoffset
            )
            body = body[:8] + options + struct.pack("<HH", 0, 0)
        elif block.kind == ENHANCED_PACKET:
            high, low = struct.unpack_from("<II", body, 4)
            since_offset_ns = ((high << 32) | low) * 1000 - tsoffset * 10**9
            units = since_offset_ns * ups // 10**9
            body = body[:4] + struct.pack("<II", units >> 32, units & 0xFFFFFFFF) + body[12:]
            expected.append(units * 10**9 // ups + tsoffset * 10**9)
        out += pcapng_block(block.kind, body)
    return out, expected


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.tshark
@pytest.mark.parametrize(
    ("tsresol", "tsoffset"),
    [(3, 0), (9, 0), (6, -100), (0x80 | 10, 0), (0x80 | 20, 0), (0x80 | 30, 7), (0x80 | 32, 1726660000)],
)
def test_clocks_agree_with_tshark(tmp_path: Path, tsresol: int, tsoffset: int) -> None:
    raw, exact = with_clock(editcap_pcapng(tmp_path, ETHERNET_FILE), tsresol, tsoffset)
    path = write(tmp_path / "clock.pcapng", raw)
    times = [record.ts_ns for record in read_capture(path).records]
    assert times == [frame.ts_ns for frame in tshark_frames(path)]
    assert times == exact


@pytest.mark.parametrize("tsresol", [0x80 | 33, 0x80 | 34, 0x80 | 40, 0x80 | 63, 12, 19])
def test_clocks_finer_than_64_bit_products(tmp_path: Path, tsresol: int) -> None:
    """Resolutions whose ``units * 10^9`` overflows 64 bits are still converted exactly."""
    raw = editcap_pcapng(tmp_path, ETHERNET_FILE)  # spans 2 ms, so even 2^-63 units fit after the offset
    first_second = walk_pcap(corpus_file(ETHERNET_FILE).read_bytes()).records[0].ts_ns // 10**9
    rewritten, exact = with_clock(raw, tsresol, first_second)
    reading = read_capture(write(tmp_path / "fine.pcapng", rewritten))
    assert reading.error is None
    assert [record.ts_ns for record in reading.records] == exact


@pytest.mark.parametrize(
    ("tsresol", "reason"),
    [(20, "if_tsresol 10^-20 is finer than 10^-19"), (0x80 | 64, "if_tsresol 2^-64 is finer than 2^-63")],
)
def test_unrepresentable_clocks_are_damage(tmp_path: Path, tsresol: int, reason: str) -> None:
    raw, _ = with_clock(editcap_pcapng(tmp_path, ETHERNET_FILE), 6, 0)
    interface = next(block for block in pcapng_blocks(raw) if block.kind == INTERFACE)
    patched = bytearray(raw)
    patched[interface.offset + 8 + 8 + 4] = tsresol  # the value of the first option, if_tsresol
    reading = read_capture(write(tmp_path / "clock.pcapng", bytes(patched)))
    assert reading.error is not None
    assert (reading.error.offset, reading.error.reason) == (interface.offset, reason)
    assert reading.records == []


def as_obsolete_packets(raw: bytes) -> bytes:
    """Enhanced packet blocks rewritten as obsolete packet blocks (16-bit interface, drops count)."""
    out = b""
    for block in pcapng_blocks(raw):
        body = block.body
        if block.kind == ENHANCED_PACKET:
            interface = struct.unpack_from("<I", body)[0]
            out += pcapng_block(OBSOLETE_PACKET, struct.pack("<HH", interface, 0) + body[4:])
        else:
            out += pcapng_block(block.kind, body)
    return out


def as_simple_packets(raw: bytes, snaplen: int) -> bytes:
    """Enhanced packet blocks rewritten as simple packet blocks, under an interface of ``snaplen``."""
    out = b""
    for block in pcapng_blocks(raw):
        body = block.body
        if block.kind == INTERFACE:
            body = body[:4] + struct.pack("<I", snaplen) + body[8:]
        elif block.kind == ENHANCED_PACKET:
            caplen, wirelen = struct.unpack_from("<II", body, 12)
            body = struct.pack("<I", wirelen) + body[20 : 20 + min(caplen, snaplen or caplen)]
            block = Block(block.offset, SIMPLE_PACKET, body)
        out += pcapng_block(block.kind, body)
    return out


@pytest.mark.tshark
def test_obsolete_packet_blocks(tmp_path: Path) -> None:
    path = write(tmp_path / "opb.pcapng", as_obsolete_packets(editcap_pcapng(tmp_path, ETHERNET_FILE)))
    records = read_capture(path).records
    assert [(r.ts_ns, r.wirelen, r.caplen) for r in records] == [
        (f.ts_ns, f.wirelen, f.caplen) for f in tshark_frames(path)
    ]
    assert [r.data for r in records] == [r.data for r in walk_pcap(corpus_file(ETHERNET_FILE).read_bytes()).records]


@pytest.mark.tshark
@pytest.mark.parametrize("snaplen", [0, 65535, 64])
def test_simple_packet_blocks(tmp_path: Path, snaplen: int) -> None:
    """An SPB's captured length is its original length cut to interface 0's snaplen (0: no limit)."""
    path = write(tmp_path / "spb.pcapng", as_simple_packets(editcap_pcapng(tmp_path, ETHERNET_FILE), snaplen))
    records = read_capture(path).records
    frames = tshark_frames(path)
    assert [(r.wirelen, r.caplen) for r in records] == [(f.wirelen, f.caplen) for f in frames]
    originals = walk_pcap(corpus_file(ETHERNET_FILE).read_bytes()).records
    assert [r.data for r in records] == [o.data[: snaplen or None] for o in originals]
    assert {f.ts_ns for f in frames} == {None}
    assert {r.ts_ns for r in records} == {0}, "a simple packet block has no timestamp: 0"


@pytest.mark.tshark
def test_other_blocks_are_skipped(tmp_path: Path) -> None:
    """Statistics, custom and unknown block types between packets change nothing.

    (tshark shows a custom block as a frame without link layer: it is filtered out.)
    """
    raw = editcap_pcapng(tmp_path, ETHERNET_FILE)
    statistics = pcapng_block(STATISTICS, struct.pack("<III", 0, 0, 0) + struct.pack("<HH", 0, 0))
    custom = pcapng_block(0x00000BAD, struct.pack("<I", 32473) + b"opaque payload")
    unknown = pcapng_block(0x7EADBEEF, bytes(40))
    out = b""
    for i, block in enumerate(pcapng_blocks(raw)):
        out += pcapng_block(block.kind, block.body)
        if i % 3 == 2:
            out += statistics + custom + unknown
    path = write(tmp_path / "extra-blocks.pcapng", out)
    records = read_capture(path).records
    assert [(r.ts_ns, r.wirelen, r.caplen) for r in records] == [
        (f.ts_ns, f.wirelen, f.caplen) for f in tshark_frames(path, "not frame.cb_pen")
    ]
    assert [r.data for r in records] == [r.data for r in read_capture(write(tmp_path / "plain.pcapng", raw)).records]


_SWAPPED_OPTIONS = {
    SECTION_HEADER: {},
    INTERFACE: {OPTION_TSOFFSET: "q", 8: "Q"},  # if_tsoffset, if_speed
    ENHANCED_PACKET: {2: "I", 4: "Q"},  # epb_flags, epb_dropcount
}
_FIXED_FIELDS = {SECTION_HEADER: "IHHq", INTERFACE: "HHI", ENHANCED_PACKET: "IIIII"}


def big_endian(raw: bytes) -> bytes:
    """A little-endian pcapng of section, interface and enhanced packet blocks, written big-endian."""
    out = b""
    for block in pcapng_blocks(raw):
        fixed = _FIXED_FIELDS[block.kind]
        size = struct.calcsize("<" + fixed)
        values = struct.unpack_from("<" + fixed, block.body)
        body = struct.pack(">" + fixed, *values)
        at = size
        if block.kind == ENHANCED_PACKET:
            caplen = values[3]
            body += block.body[at : at + caplen + (-caplen % 4)]
            at += caplen + (-caplen % 4)
        while at + 4 <= len(block.body):
            code, length = struct.unpack_from("<HH", block.body, at)
            value = block.body[at + 4 : at + 4 + length]
            if code in _SWAPPED_OPTIONS[block.kind]:
                form = _SWAPPED_OPTIONS[block.kind][code]
                value = struct.pack(">" + form, *struct.unpack("<" + form, value))
            body += struct.pack(">HH", code, length) + value + bytes(-length % 4)
            at += 4 + length + (-length % 4)
        length = len(body) + 12
        out += struct.pack(">II", block.kind, length) + body + struct.pack(">I", length)
    return out


@pytest.mark.tshark
def test_big_endian_sections(tmp_path: Path) -> None:
    little = editcap_pcapng(tmp_path, ETHERNET_FILE)
    rewritten, _ = with_clock(little, 9, 0)
    for raw in (little, rewritten):
        path = write(tmp_path / "big.pcapng", big_endian(raw))
        records = read_capture(path).records
        assert [(r.ts_ns, r.wirelen, r.caplen) for r in records] == [
            (f.ts_ns, f.wirelen, f.caplen) for f in tshark_frames(path)
        ]
        little_records = read_capture(write(tmp_path / "little.pcapng", raw)).records
        assert [(r.ts_ns, r.data) for r in records] == [(r.ts_ns, r.data) for r in little_records]


@pytest.mark.tshark
def test_sections_of_both_byte_orders(tmp_path: Path) -> None:
    ethernet = editcap_pcapng(tmp_path, ETHERNET_FILE)
    sll = editcap_pcapng(tmp_path, SLL_FILE)
    path = write(tmp_path / "mixed.pcapng", ethernet + big_endian(sll) + ethernet)
    reading = read_capture(path, chunk_bytes=4096)
    assert reading.error is None
    assert [(r.ts_ns, r.wirelen, r.caplen) for r in reading.records] == [
        (f.ts_ns, f.wirelen, f.caplen) for f in tshark_frames(path)
    ]
    linktypes = [r.linktype for r in reading.records]
    ethernet_count = len(walk_pcap(corpus_file(ETHERNET_FILE).read_bytes()).records)
    sll_count = len(walk_pcap(corpus_file(SLL_FILE).read_bytes()).records)
    assert linktypes == [1] * ethernet_count + [113] * sll_count + [1] * ethernet_count


@pytest.mark.tshark
def test_many_interfaces(tmp_path: Path) -> None:
    """``mergecap -I none`` keeps one interface per input: six interfaces, packets of each."""
    names = [
        ETHERNET_FILE,
        SLL_FILE,
        "suricata-verify__decode-sll2-01.pcap",
        "tcpdump__vxlan.pcap",
        "tcpdump__espudp1.pcap",
        "zeek__geneve-vxlan-dns-truncated.pcap",
    ]
    inputs = [corpus_file(name) for name in names]
    merged = tmp_path / "six.pcapng"
    run_tool(require_tool("mergecap"), "-I", "none", "-F", "pcapng", "-w", merged, *inputs)
    interface_linktype = {i: walk_pcap(path.read_bytes()).linktype for i, path in enumerate(inputs)}
    frames = tshark_frames(merged)
    assert len({f.interface for f in frames}) == 6
    reading = read_capture(merged, chunk_bytes=2048)
    assert reading.error is None
    assert [(r.ts_ns, r.caplen, r.wirelen, r.linktype) for r in reading.records] == [
        (f.ts_ns, f.caplen, f.wirelen, interface_linktype[f.interface]) for f in frames
    ]
