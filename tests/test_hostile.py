"""Damaged and hostile input: each case on real bytes, none may crash, hang or exhaust memory.

Captures are third-party corpus files damaged on purpose, or frames built here
with ``struct`` (every length field under the test's control). A damaged file
ends in ``CaptureError`` naming the file and byte offset, after every whole
record before the damage; a hostile packet is a status in its row, never an
exception, and the compiled kernel and the dpkt reference decode it alike.
Where tshark is at hand, each hostile packet is also checked against it
(``vxlaninspect.verify``): no disagreement, only differences of a named reason.
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import json
import lzma
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import zstandard
from click.testing import CliRunner

from tests.conftest import CORPUS, REPO
from vxlaninspect.capture import MAX_RECORD_BYTES, open_capture
from vxlaninspect.decoding import decode
from vxlaninspect.errors import CaptureError
from vxlaninspect.inspect.escape import escape
from vxlaninspect.kernel import decode_batch
from vxlaninspect.records import RecordBatch
from vxlaninspect.reference import decode_batch as reference_batch
from vxlaninspect.scanning import scan
from vxlaninspect.schema import MAX_TUNNEL_DEPTH, Encap, Layer, PacketFlag, Status
from vxlaninspect.verify import Reason, verify

# -- frames, built field by field ------------------------------------------------------

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: web\r\n\r\n"
LINKTYPE_ETHERNET = 1


def ether(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC_B + MAC_A + struct.pack(">H", ethertype) + payload


def ipv4(
    payload: bytes,
    proto: int,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    *,
    total_length: int | None = None,
    ihl: int = 5,
    fragment: int = 0,
) -> bytes:
    """A 20-byte IPv4 header and ``payload``; ``ihl`` and ``total_length`` may lie; ``fragment`` is flags << 13 | offset."""
    length = 20 + len(payload) if total_length is None else total_length
    header = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, fragment, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return header + payload


def ipv6(payload: bytes, next_header: int, src: str = "2001:db8::1", dst: str = "2001:db8::2", *, payload_length: int | None = None) -> bytes:
    length = len(payload) if payload_length is None else payload_length
    header = struct.pack(">IHBB", 6 << 28, length, next_header, 64)
    return header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def udp(payload: bytes, sport: int, dport: int, length: int | None = None) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def tcp(payload: bytes, sport: int = 40000, dport: int = 80, *, data_offset: int = 5, flags: int = 0x18) -> bytes:
    """A TCP header whose data offset may lie (no options are added) and ``payload``."""
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 1, data_offset << 4, flags, 64240, 0, 0) + payload


def vxlan(vni: int, flags: int = 0x08, reserved: bytes = b"\0\0\0", last: int = 0) -> bytes:
    return bytes([flags]) + reserved + struct.pack(">I", vni << 8 | last)


def vxlan_frame(inner: bytes, vni: int = 4096, *, sport: int = 49152, dport: int = 4789, fragment: int = 0, **header) -> bytes:
    """Inner Ethernet frame ``inner`` in VXLAN, UDP and IPv4 between two nodes."""
    return ether(ipv4(udp(vxlan(vni, **header) + inner, sport, dport), 17, "192.168.1.1", "192.168.1.2", fragment=fragment))


def inner_http(payload: bytes = HTTP_GET, **ip_fields) -> bytes:
    return ether(ipv4(tcp(payload), 6, "10.0.1.2", "10.0.1.3", **ip_fields))


def pcap_file(records: Iterable[bytes | tuple[bytes, int]], *, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> bytes:
    """A little-endian microsecond pcap; a record is its bytes, or (captured bytes, wire length)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for number, record in enumerate(records):
        data, wirelen = record if isinstance(record, tuple) else (record, len(record))
        out.append(struct.pack("<IIII", 1_700_000_000 + number, 0, len(data), wirelen) + data)
    return b"".join(out)


def pcapng_block(block_type: int, body: bytes, trailer: int | None = None) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length if trailer is None else trailer)


def pcapng_file(frames: Sequence[bytes]) -> bytes:
    """One section, one Ethernet interface (microseconds), an Enhanced Packet Block per frame."""
    section = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = pcapng_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 262144))
    packets = [
        pcapng_block(6, struct.pack("<IIIII", 0, 0, 1_000_000 * n, len(f), len(f)) + f) for n, f in enumerate(frames)
    ]
    return section + interface + b"".join(packets)


def batch_of(frames: Sequence[bytes], linktype: int = LINKTYPE_ETHERNET) -> RecordBatch:
    """A RecordBatch over ``frames`` laid end to end, as the capture reader hands them over."""
    data = np.frombuffer(b"".join(frames) or b"\0", dtype=np.uint8)
    lengths = np.array([len(f) for f in frames], dtype=np.uint32)
    starts = np.concatenate(([0], np.cumsum(lengths[:-1], dtype=np.int64))).astype(np.int64)[: len(frames)]
    n = len(frames)
    return RecordBatch(data, starts, lengths, lengths.copy(), np.zeros(n, np.int64), np.full(n, linktype, np.uint16), np.zeros(n, np.int64))


def decode_both(frames: Sequence[bytes], linktype: int = LINKTYPE_ETHERNET) -> np.ndarray:
    """Kernel rows of ``frames``, after checking that the reference decodes each the same, field by field."""
    batch = batch_of(frames, linktype)
    rows, expected = decode_batch(batch), reference_batch(batch)
    for i in range(len(frames)):
        differing = [name for name in rows.dtype.names if rows[name][i] != expected[name][i]]
        assert not differing, f"frame {i}: kernel and reference differ in {differing}"
    return rows


def decoded_records(data: bytes, path: Path, **options) -> tuple[int, CaptureError | None]:
    """How many records ``decode`` delivers from ``data`` written at ``path``, and the error it ends with."""
    path.write_bytes(data)
    count = 0
    try:
        for table in decode(path, **options):
            count += len(table)
    except CaptureError as error:
        return count, error
    return count, None


def corpus_file(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus capture {name} not found")
    return path.read_bytes()


def record_offsets(capture: bytes) -> list[int]:
    """Byte offset of each record header of a (whole, little-endian) pcap, read with struct."""
    offsets, at = [], 24
    while at + 16 <= len(capture):
        offsets.append(at)
        at += 16 + struct.unpack_from("<I", capture, at + 8)[0]
    return offsets


def tshark_agrees(tmp_path: Path, frames: Sequence[bytes | tuple[bytes, int]], reasons: set[Reason] = frozenset()) -> None:
    """tshark decodes ``frames`` as vxlaninspect does, but for differences of the named reasons."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: run the README's test command (it installs tshark)")
    path = tmp_path / "frames.pcap"
    path.write_bytes(pcap_file(frames))
    result = verify(path)
    assert result.disagreements == (), result.disagreements
    assert result.packets == result.tshark_packets == len(frames)
    assert {known.reason for known in result.known} == set(reasons)


# -- damaged files ----------------------------------------------------------------------

VXLAN_PCAP = "tcpdump__vxlan.pcap"


def test_zero_length_file_is_an_error_at_byte_0(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(CaptureError) as raised:
        open_capture(path)
    assert (raised.value.path, raised.value.offset) == (str(path), 0)
    assert "empty" in raised.value.reason
    (capture,) = scan(path).captures
    assert capture.error == raised.value.reason and capture.packets == 0


@pytest.mark.parametrize(
    "content",
    [b"# not a capture\n" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, gzip.compress(b"plain text, compressed")],
    ids=["text", "png", "gzip-text"],
)
def test_non_capture_file_is_an_error_at_byte_0(tmp_path, content):
    count, error = decoded_records(content, tmp_path / "x.pcap")
    assert count == 0 and error is not None and error.offset == 0
    assert "not a pcap or pcapng capture" in error.reason


@pytest.mark.parametrize("cut", range(1, 24))
def test_pcap_file_header_cut_short(tmp_path, cut):
    count, error = decoded_records(corpus_file(VXLAN_PCAP)[:cut], tmp_path / "cut.pcap")
    assert count == 0 and error is not None and error.offset == 0


def test_capture_cut_at_every_byte_keeps_the_whole_records_before_the_cut(tmp_path):
    data = corpus_file(VXLAN_PCAP)
    offsets = record_offsets(data)
    ends = offsets[1:] + [len(data)]
    assert len(offsets) == 10  # the MANIFEST's count
    for cut in range(24, len(data)):
        whole = sum(1 for end in ends if end <= cut)
        count, error = decoded_records(data[:cut], tmp_path / "cut.pcap")
        assert count == whole, cut
        if cut in offsets:
            assert error is None, cut  # a cut between records is a shorter capture, not damage
        else:
            assert error is not None and error.offset == offsets[whole], cut


def test_record_longer_than_the_snaplen_is_read(tmp_path):
    frames = [vxlan_frame(inner_http()), vxlan_frame(inner_http(b"x" * 500))]
    count, error = decoded_records(pcap_file(frames, snaplen=64), tmp_path / "snap.pcap")
    assert (count, error) == (2, None)


@pytest.mark.parametrize("claimed", [MAX_RECORD_BYTES + 1, 1 << 31, 0xFFFFFFFF])
def test_record_longer_than_256_kib_is_damage_after_the_records_before_it(tmp_path, claimed):
    data = bytearray(corpus_file(VXLAN_PCAP))
    third = record_offsets(bytes(data))[2]
    struct.pack_into("<I", data, third + 8, claimed)
    count, error = decoded_records(bytes(data), tmp_path / "long.pcap")
    assert count == 2 and error is not None and error.offset == third
    assert str(claimed) in error.reason


def test_record_claiming_more_than_the_file_holds(tmp_path):
    data = bytearray(corpus_file(VXLAN_PCAP))
    last = record_offsets(bytes(data))[-1]
    struct.pack_into("<I", data, last + 8, 100_000)
    count, error = decoded_records(bytes(data), tmp_path / "short.pcap")
    assert count == 9 and error is not None and error.offset == last


PCAPNG_FRAMES = [vxlan_frame(inner_http()), vxlan_frame(inner_http(b"POST / HTTP/1.1\r\n\r\n")), vxlan_frame(inner_http())]


def pcapng_with_bad_second_packet(damage: str) -> tuple[bytes, int]:
    """A pcapng file whose second packet block is damaged; and that block's offset."""
    good = pcapng_file(PCAPNG_FRAMES)
    blocks, at = [], 0
    while at < len(good):
        length = struct.unpack_from("<I", good, at + 4)[0]
        blocks.append(bytearray(good[at : at + length]))
        at += length
    bad = blocks[3]  # section, interface, first packet, second packet
    if damage == "trailer-disagrees":
        struct.pack_into("<I", bad, len(bad) - 4, len(bad) + 4)
    elif damage == "length-not-aligned":
        struct.pack_into("<I", bad, 4, len(bad) - 2)
    elif damage == "length-too-short":
        struct.pack_into("<I", bad, 4, 8)
    elif damage == "length-past-the-end":
        struct.pack_into("<I", bad, 4, 1 << 20)
    elif damage == "captured-length-past-the-block":
        struct.pack_into("<I", bad, 20, len(bad))
    offset = sum(len(b) for b in blocks[:3])
    return b"".join(bytes(b) for b in blocks), offset


@pytest.mark.parametrize(
    "damage",
    ["trailer-disagrees", "length-not-aligned", "length-too-short", "length-past-the-end", "captured-length-past-the-block"],
)
def test_pcapng_block_lengths_that_disagree(tmp_path, damage):
    data, offset = pcapng_with_bad_second_packet(damage)
    count, error = decoded_records(data, tmp_path / "bad.pcapng")
    assert count == 1 and error is not None
    assert error.offset == offset, error


def test_pcapng_section_header_with_a_lying_length(tmp_path):
    data = bytearray(pcapng_file(PCAPNG_FRAMES))
    struct.pack_into("<I", data, 4, 0xFFFFFFF0)
    count, error = decoded_records(bytes(data), tmp_path / "bad.pcapng")
    assert count == 0 and error is not None and error.offset == 0


COMPRESSORS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


STREAMED = ("gzip", "xz")
"""Compressions that decode a 27 kB capture before its end: bz2 needs a whole 900 kB block, zstd a 128 kB one."""


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_truncated_compressed_capture(tmp_path, compression):
    plain = corpus_file("suricata-verify__vxlan-decoder-03_aws-mirror.pcap")
    packed = COMPRESSORS[compression](plain)
    count, error = decoded_records(packed[: len(packed) * 3 // 4], tmp_path / f"cut.{compression}")
    assert error is not None and "truncated" in error.reason and compression in error.reason
    assert count < 100  # the MANIFEST counts 100 records in all
    if compression in STREAMED:
        assert count > 0  # the records before the cut are delivered


@pytest.mark.parametrize("compression", ["gzip", "bz2", "xz"])
def test_corrupt_compressed_capture(tmp_path, compression):
    plain = corpus_file("suricata-verify__vxlan-decoder-03_aws-mirror.pcap")
    packed = bytearray(COMPRESSORS[compression](plain))
    for at in range(len(packed) // 2, len(packed) // 2 + 16):
        packed[at] ^= 0x5A
    count, error = decoded_records(bytes(packed), tmp_path / f"corrupt.{compression}")
    assert error is not None and count < 100  # the decompressor, or the capture reader behind it, stops


RSS_PROBE = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from vxlaninspect.scanning import Limits, scan

    def rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    report = scan(sys.argv[1], limits=Limits(**json.loads(sys.argv[2])))
    done.set()
    sampler.join()
    print(json.dumps({
        "packets": report.stats.packets, "error": report.captures[0].error, "evicted": report.stats.evicted_flows,
        "flows": len(report.flows), "warnings": list(report.warnings), "growth_mib": (max(peak[0], rss()) - before) >> 20,
    }))
    """
)
"""Scans a capture (argv 1) with the Limits given as JSON (argv 2), sampling resident memory as it goes."""


def scan_measured(path: Path, **limits: int) -> dict:
    """The scan's counts and how far resident memory grew above what it was before the scan, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(path), json.dumps(limits)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(("compression", "members"), [("gzip", 4), ("zstd", 16)])
def test_decompression_bomb_costs_time_not_memory(tmp_path, compression, members):
    """64 MiB of records of 64 KiB zeros per compressed member, in a file of at most a megabyte: 256 MiB of
    gzip (zlib inflates zeros at about 100 MB/s), 1 GiB of zstd. Resident memory stays near the chunk size."""
    record = struct.pack("<IIII", 0, 0, 65535, 65535) + bytes(65535)
    member_records = 1024
    block = record * member_records
    header = pcap_file([])
    if compression == "gzip":
        bomb = gzip.compress(header) + gzip.compress(block, compresslevel=9) * members  # concatenated members
    else:
        bomb = zstandard.ZstdCompressor().compress(header) + zstandard.ZstdCompressor(level=19).compress(block) * members
    assert len(bomb) < 1 << 20
    path = tmp_path / f"bomb.{compression}"
    path.write_bytes(bomb)
    scanned = scan_measured(path, chunk_bytes=4 << 20)
    assert scanned["packets"] == members * member_records and scanned["error"] is None
    assert scanned["growth_mib"] < 128, f"resident memory grew by {scanned['growth_mib']} MiB"


# -- hostile packets ---------------------------------------------------------------------


@pytest.mark.tshark
def test_vxlan_with_reserved_bits_set_and_i_flag_off(tmp_path):
    frames = [
        vxlan_frame(inner_http(), 4097, flags=0xFF, reserved=b"\x12\x34\x56", last=0x78),
        vxlan_frame(inner_http(), 4098, flags=0x00),
        vxlan_frame(inner_http(), 4099, flags=0x80),
    ]
    rows = decode_both(frames)
    assert list(rows["vni"]) == [4097, 4098, 4099]  # the VNI is read whatever the flags say
    assert list(rows["vxlan_flags"]) == [0xFF, 0x00, 0x80]
    reserved = [bool(f & PacketFlag.VXLAN_RESERVED) for f in rows["flags"]]
    no_vni = [bool(f & PacketFlag.VXLAN_NO_VNI_FLAG) for f in rows["flags"]]
    assert (reserved, no_vni) == ([True, False, True], [False, True, True])
    assert list(rows["status"]) == [Status.OK] * 3 and list(rows["app"]) == [1] * 3
    tshark_agrees(tmp_path, frames)


def nested_vxlan(depth: int, inner: bytes) -> bytes:
    """``depth`` VXLAN headers around ``inner``; the outermost has VNI 1, the innermost VNI ``depth``."""
    frame = inner
    for vni in range(depth, 1, -1):
        frame = ether(ipv4(udp(vxlan(vni) + frame, 50000 + vni, 4789), 17, f"192.168.{vni}.1", f"192.168.{vni}.2"))
    return vxlan_frame(frame, 1)


@pytest.mark.tshark
def test_vxlan_nested_in_vxlan(tmp_path):
    frames = [nested_vxlan(depth, inner_http()) for depth in range(2, MAX_TUNNEL_DEPTH + 3)]
    rows = decode_both(frames)
    deep_enough = rows[: MAX_TUNNEL_DEPTH - 1]
    assert list(deep_enough["tunnels"]) == list(range(2, MAX_TUNNEL_DEPTH + 1))
    assert list(deep_enough["vni"]) == list(range(2, MAX_TUNNEL_DEPTH + 1)) and set(deep_enough["outer_vni"]) == {1}
    assert set(deep_enough["dport"]) == {80} and set(deep_enough["status"]) == {Status.OK}
    too_deep = rows[MAX_TUNNEL_DEPTH - 1 :]
    assert set(too_deep["status"]) == {Status.TOO_DEEP} and set(too_deep["error_layer"]) == {Layer.VXLAN}
    tshark_agrees(tmp_path, frames, {Reason.TUNNEL_DEPTH})


@pytest.mark.tshark
def test_fragments_of_the_overlay(tmp_path):
    carried = udp(vxlan(4096) + inner_http(), 49152, 4789)
    first = ether(ipv4(carried[:72], 17, "192.168.1.1", "192.168.1.2", fragment=0x2000))
    later = ether(ipv4(carried[72:], 17, "192.168.1.1", "192.168.1.2", fragment=72 // 8))
    inner_first = vxlan_frame(inner_http(fragment=0x2000))
    inner_later = vxlan_frame(ether(ipv4(b"later fragment bytes", 6, "10.0.1.2", "10.0.1.3", fragment=100)))
    rows = decode_both([first, later, inner_first, inner_later])
    flags = [PacketFlag(int(f)) for f in rows["flags"]]
    assert PacketFlag.OUTER_FRAGMENT in flags[0] and rows["vni"][0] == 4096 and rows["sport"][0] == 40000
    assert PacketFlag.FRAGMENT in flags[1] and rows["encap"][1] == Encap.NONE and rows["payload_off"][1] == 0
    assert PacketFlag.FRAGMENT in flags[2] and rows["app"][2] == 1
    assert PacketFlag.FRAGMENT in flags[3] and rows["sport"][3] == 0 and rows["vni"][3] == 4096
    assert set(rows["status"]) == {Status.OK}
    tshark_agrees(tmp_path, [first, later, inner_first, inner_later], {Reason.FRAGMENT_PAYLOAD})


MALFORMED = {Reason.MALFORMED_HEADER}
"""tshark reports an error too, and shows some fields of the bad header (tried with tshark 4.0.17)."""


@pytest.mark.tshark
@pytest.mark.parametrize(
    ("ip_fields", "status", "layer", "reasons"),
    [
        ({"total_length": 1400}, Status.MALFORMED, Layer.IPV4, MALFORMED),  # past the UDP datagram that carries it
        ({"total_length": 10}, Status.MALFORMED, Layer.IPV4, MALFORMED),  # shorter than its own header
        ({"total_length": 30}, Status.MALFORMED, Layer.TCP, MALFORMED),  # the TCP header does not fit in it
        ({"ihl": 3}, Status.MALFORMED, Layer.IPV4, set()),
        ({"ihl": 15}, Status.MALFORMED, Layer.TCP, MALFORMED),  # 40 bytes of "options" swallow the TCP header
        ({"total_length": 20 + 20 + 5}, Status.OK, Layer.NONE, set()),  # shorter than the bytes: the rest is padding
    ],
    ids=["longer-than-udp", "shorter-than-header", "cuts-tcp", "ihl-3", "ihl-15", "padding"],
)
def test_inner_ipv4_lengths_that_lie(tmp_path, ip_fields, status, layer, reasons):
    frame = vxlan_frame(inner_http(**ip_fields))
    (row,) = decode_both([frame])
    assert (row["status"], row["error_layer"]) == (status, layer)
    assert row["vni"] == 4096 and row["outer_vni"] == 4096
    if status == Status.OK:
        assert row["payload_len"] == 5 and row["app"] != 0  # "GET /" within the claimed length only
    tshark_agrees(tmp_path, [frame], reasons)


@pytest.mark.tshark
@pytest.mark.parametrize(
    ("data_offset", "status", "reasons"),
    [(0, Status.MALFORMED, MALFORMED), (4, Status.MALFORMED, MALFORMED), (15, Status.MALFORMED, set()), (6, Status.OK, set())],
)
def test_tcp_data_offsets_that_lie(tmp_path, data_offset, status, reasons):
    request = b"GET / HTTP/1.0\r\n\r\n"
    segment = tcp(b"\x01\x01\x01\x01" + request, data_offset=data_offset)  # 42 bytes; options if the offset says 6
    frame = vxlan_frame(ether(ipv4(segment, 6, "10.0.1.2", "10.0.1.3")))
    (row,) = decode_both([frame])
    assert row["status"] == status
    if status == Status.OK:
        assert row["payload_len"] == len(request) and row["app"] == 1
    else:
        assert row["error_layer"] == Layer.TCP and row["payload_off"] == 0
    tshark_agrees(tmp_path, [frame], reasons)


@pytest.mark.tshark
def test_tcp_header_cut_by_the_snaplen(tmp_path):
    frame = vxlan_frame(inner_http())
    cut = len(frame) - len(HTTP_GET) - 10  # inside the inner TCP header
    (row,) = decode_both([frame[:cut]])
    assert (row["status"], row["error_layer"]) == (Status.TRUNCATED, Layer.TCP)
    tshark_agrees(tmp_path, [(frame[:cut], len(frame))], {Reason.CUT_HEADER})


# -- a flow budget under millions of flows ------------------------------------------------

@pytest.mark.slow
def test_five_million_flows_are_evicted_under_a_fixed_memory_bound(tmp_path):
    """More than 5 M distinct overlay flows (3.2 GB of VXLAN; the generator draws flows at random from 8 M)."""
    path = tmp_path / "flows.pcap"
    generated = subprocess.run(
        [sys.executable, "-m", "benchmarks.generate", str(path), "--size", "3200M", "--flows", "8000000", "--mix", "vxlan=100",
         "--json", str(tmp_path / "generated.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    written = json.loads((tmp_path / "generated.json").read_text())
    distinct = written["flows"]
    assert distinct >= 5_000_000, generated.stdout
    max_flows = 10_000
    report = scan_measured(path, max_flows=max_flows)
    path.unlink()
    assert report["packets"] == written["packets"]
    assert report["flows"] <= max_flows
    assert report["evicted"] >= distinct - max_flows
    assert any(str(max_flows) in warning and "dropped" in warning for warning in report["warnings"])
    assert report["growth_mib"] < 256, f"resident memory grew by {report['growth_mib']} MiB"


# -- terminal escape sequences in what is printed ------------------------------------------

ESCAPES = b"\x1b[31m\x1b]0;owned\x07\x9b2J\r"
"""SGR, an OSC that sets the terminal title, a C1 CSI, and a carriage return."""


def test_escape_leaves_no_control_byte_and_can_be_read_back():
    text = escape(b"AUTH " + ESCAPES + b"\\ end", limit=1000)
    assert all(0x20 <= ord(c) <= 0x7E for c in text)
    assert text == "AUTH \\x1b[31m\\x1b]0;owned\\x07\\x9b2J\\x0d\\\\ end"
    back = text.encode().decode("unicode_escape").encode("latin-1")
    assert back == b"AUTH " + ESCAPES + b"\\ end"


def escape_capture(tmp_path: Path) -> Path:
    """A VXLAN capture whose name and payloads (HTTP request line and headers, a RESP AUTH) carry escapes."""
    request = b"GET /" + ESCAPES + b" HTTP/1.1\r\nHost: " + ESCAPES + b"\r\nUser-Agent: " + ESCAPES + b"\r\n\r\n"
    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(ESCAPES), ESCAPES)
    frames = [
        vxlan_frame(ether(ipv4(tcp(request, 50000, 80), 6, "10.0.1.2", "10.0.1.3"))),
        vxlan_frame(ether(ipv4(tcp(auth, 50001, 6379), 6, "10.0.1.2", "10.0.1.4"))),
    ]
    path = tmp_path / ("evil" + ESCAPES.decode("latin-1") + ".pcap")
    path.write_bytes(pcap_file(frames))
    return path


def control_bytes(text: str) -> set[str]:
    """Control characters in ``text``, but for line ends (CSV ends its lines with CR LF)."""
    text = text.replace("\r\n", "\n")
    return {c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F}


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
@pytest.mark.parametrize("command", ["scan", "flows", "tunnels", "leaks"])
def test_no_escape_sequence_reaches_the_report(tmp_path, command, fmt):
    from vxlaninspect.cli.main import main

    path = escape_capture(tmp_path)
    everything = ["-vv"] if command == "scan" else []  # scan shows captures, tunnels and flows too
    result = CliRunner().invoke(main, [command, str(path), "--format", fmt, *everything], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not control_bytes(result.stdout) and not control_bytes(result.stderr)


def test_no_escape_sequence_reaches_an_error_message(tmp_path):
    from vxlaninspect.cli.main import main

    path = tmp_path / ("bad" + ESCAPES.decode("latin-1") + ".pcap")
    path.write_bytes(b"not a capture")
    result = CliRunner().invoke(main, ["scan", str(path)], catch_exceptions=False)
    assert result.exit_code == 2 and "not a pcap" in result.stderr
    assert not control_bytes(result.stderr)
