"""Damaged captures: each error names the file and the exact byte offset, and every record before it is kept."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import zstandard

from tests.test_capture_support import (
    ETHERNET_FILE,
    PcapRecord,
    corpus_file,
    pcapng_block,
    pcapng_blocks,
    read_capture,
    require_tool,
    run_tool,
    walk_pcap,
)
from vxlaninspect.capture import open_capture
from vxlaninspect.errors import CaptureError

ENHANCED_PACKET = 6


def original_records() -> list[PcapRecord]:
    return walk_pcap(corpus_file(ETHERNET_FILE).read_bytes()).records


def assert_damage(path: Path, kept: list[PcapRecord], offset: int, reason: str) -> None:
    """Reading ``path`` yields exactly ``kept``, then fails at ``offset`` for ``reason``."""
    reading = read_capture(path)
    assert reading.error is not None, "damage went unnoticed"
    assert (reading.error.path, reading.error.offset, reading.error.reason) == (str(path), offset, reason)
    assert str(reading.error) == f"{path}: at byte {offset}: {reason}"
    assert [(r.ts_ns, r.caplen, r.wirelen, r.data) for r in reading.records] == [
        (r.ts_ns, r.caplen, r.wirelen, r.data) for r in kept
    ]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_open_fails(path: Path | str, offset: int, reason: str) -> None:
    with pytest.raises(CaptureError) as caught:
        open_capture(path)
    assert (caught.value.path, caught.value.offset, caught.value.reason) == (str(path), offset, reason)


# --- files that are not captures ------------------------------------------------------------


def test_zero_length_file(tmp_path: Path) -> None:
    assert_open_fails(write(tmp_path / "empty.pcap", b""), 0, "empty file")


def test_missing_file(tmp_path: Path) -> None:
    assert_open_fails(tmp_path / "missing.pcap", 0, "cannot open: No such file or directory")


def test_directory(tmp_path: Path) -> None:
    assert_open_fails(tmp_path, 0, "cannot open: Is a directory")


def test_executable_is_not_a_capture() -> None:
    path = Path("/bin/ls")
    head = path.read_bytes()[:4]
    assert_open_fails(path, 0, f"not a pcap or pcapng capture (starts with {head.hex()})")


def test_compressed_text_is_not_a_capture(tmp_path: Path) -> None:
    text = b"GET / HTTP/1.1\r\n" * 10
    path = write(tmp_path / "text.gz", gzip.compress(text))
    assert_open_fails(path, 0, f"not a pcap or pcapng capture (gzip data starts with {text[:4].hex()})")


def test_empty_compressed_stream(tmp_path: Path) -> None:
    assert_open_fails(write(tmp_path / "nothing.xz", lzma.compress(b"")), 0, "empty xz stream")


# --- pcap -----------------------------------------------------------------------------------


def test_truncated_file_header(tmp_path: Path) -> None:
    path = write(tmp_path / "header.pcap", corpus_file(ETHERNET_FILE).read_bytes()[:10])
    assert_open_fails(path, 0, "truncated pcap file header: 24 bytes needed, 10 present")


def test_truncated_last_record_header(tmp_path: Path) -> None:
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    path = write(tmp_path / "cut-header.pcap", raw + raw[24:31])
    assert_damage(path, original_records(), len(raw), "truncated record header: 16 bytes needed, 7 remain")


def test_truncated_last_record_data(tmp_path: Path) -> None:
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    records = original_records()
    last = records[-1]
    path = write(tmp_path / "cut-data.pcap", raw[:-5])
    reason = f"truncated record: header says {last.caplen} captured bytes, {last.caplen - 5} remain"
    assert_damage(path, records[:-1], last.offset, reason)


@pytest.mark.parametrize("length", [262145, 0xFFFFFFFF])
def test_record_length_over_the_limit(tmp_path: Path, length: int) -> None:
    raw = bytearray(corpus_file(ETHERNET_FILE).read_bytes())
    records = original_records()
    victim = records[3]
    struct.pack_into("<I", raw, victim.offset + 8, length)
    path = write(tmp_path / "huge-record.pcap", bytes(raw))
    assert_damage(path, records[:3], victim.offset, f"record length {length} exceeds the limit of 262144 bytes")


def test_record_length_at_the_limit_is_read(tmp_path: Path) -> None:
    """A 256 KiB record (libpcap's maximum) is valid; only beyond it is damage."""
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    big = bytes(range(256)) * 1024
    record = struct.pack("<IIII", 1, 2, len(big), len(big)) + big
    path = write(tmp_path / "jumbo.pcap", raw + record)
    reading = read_capture(path, chunk_bytes=4096)
    assert reading.error is None
    assert reading.records[-1].data == big
    assert reading.records[-1].ts_ns == 1_000_002_000


# --- pcapng ---------------------------------------------------------------------------------


@pytest.fixture
def pcapng(tmp_path: Path) -> bytes:
    """The Ethernet corpus capture as written by ``editcap -F pcapng``."""
    out = tmp_path / "source.pcapng"
    run_tool(require_tool("editcap"), "-F", "pcapng", corpus_file(ETHERNET_FILE), out)
    return out.read_bytes()


def packet_block_offsets(raw: bytes) -> list[int]:
    return [block.offset for block in pcapng_blocks(raw) if block.kind == ENHANCED_PACKET]


def patched(raw: bytes, offset: int, value: int) -> bytes:
    out = bytearray(raw)
    struct.pack_into("<I", out, offset, value)
    return bytes(out)


def test_pcapng_block_length_not_a_multiple_of_4(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[5]
    length = struct.unpack_from("<I", pcapng, victim + 4)[0] + 2
    path = write(tmp_path / "unaligned.pcapng", patched(pcapng, victim + 4, length))
    assert_damage(path, original_records()[:5], victim, f"pcapng block length {length} is not a multiple of 4")


def test_pcapng_trailing_length_mismatch(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[7]
    length = struct.unpack_from("<I", pcapng, victim + 4)[0]
    path = write(tmp_path / "trailer.pcapng", patched(pcapng, victim + length - 4, length + 4))
    reason = f"pcapng block length {length} does not match its trailing length {length + 4}"
    assert_damage(path, original_records()[:7], victim, reason)


def test_pcapng_block_length_below_minimum(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[0]
    path = write(tmp_path / "short.pcapng", patched(pcapng, victim + 4, 8))
    assert_damage(path, [], victim, "pcapng block length 8 is less than 12")


def test_pcapng_block_length_over_the_limit(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[2]
    path = write(tmp_path / "long.pcapng", patched(pcapng, victim + 4, 0xFFFFFFF0))
    assert_damage(
        path, original_records()[:2], victim, "pcapng block length 4294967280 exceeds the limit of 16777216 bytes"
    )


def test_pcapng_interface_out_of_range(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[4]
    path = write(tmp_path / "interface.pcapng", patched(pcapng, victim + 8, 7))
    reason = "enhanced packet block names interface 7, but its section has 1"
    assert_damage(path, original_records()[:4], victim, reason)


def test_pcapng_captured_length_beyond_its_block(tmp_path: Path, pcapng: bytes) -> None:
    victim = packet_block_offsets(pcapng)[1]
    length = struct.unpack_from("<I", pcapng, victim + 4)[0]
    path = write(tmp_path / "caplen.pcapng", patched(pcapng, victim + 20, length))
    reason = f"enhanced packet block of {length} bytes cannot hold {length} captured bytes"
    assert_damage(path, original_records()[:1], victim, reason)


def test_pcapng_truncated_last_block(tmp_path: Path, pcapng: bytes) -> None:
    last = packet_block_offsets(pcapng)[-1]
    length = struct.unpack_from("<I", pcapng, last + 4)[0]
    path = write(tmp_path / "cut.pcapng", pcapng[:-10])
    reason = f"truncated pcapng block: header says {length} bytes, {length - 10} remain"
    assert_damage(path, original_records()[:-1], last, reason)


def test_pcapng_truncated_block_header(tmp_path: Path, pcapng: bytes) -> None:
    path = write(tmp_path / "cut-header.pcapng", pcapng + pcapng[-100:-95])
    assert_damage(path, original_records(), len(pcapng), "truncated pcapng block header: 8 bytes needed, 5 remain")


def test_pcapng_bad_byte_order_magic(tmp_path: Path, pcapng: bytes) -> None:
    path = write(tmp_path / "magic.pcapng", patched(pcapng, 8, 0x01020304))
    assert_open_fails(path, 0, "pcapng section header has byte-order magic 04030201, not 1a2b3c4d")


def test_pcapng_bad_byte_order_in_a_later_section(tmp_path: Path, pcapng: bytes) -> None:
    path = write(tmp_path / "second.pcapng", pcapng + patched(pcapng, 8, 0))
    reason = "pcapng section header has byte-order magic 00000000, not 1a2b3c4d"
    assert_damage(path, original_records(), len(pcapng), reason)


def test_pcapng_simple_packet_without_interface(tmp_path: Path, pcapng: bytes) -> None:
    section = pcapng_blocks(pcapng)[0]
    shb = pcapng[: section.offset + len(section.body) + 12]
    spb = pcapng_block(3, struct.pack("<I", 4) + b"abcd")
    path = write(tmp_path / "spb.pcapng", shb + spb)
    assert_damage(path, [], len(shb), "simple packet block before any interface description block in its section")


def test_pcapng_truncated_section_header(tmp_path: Path, pcapng: bytes) -> None:
    length = struct.unpack_from("<I", pcapng, 4)[0]
    path = write(tmp_path / "shb.pcapng", pcapng[:20])
    assert_open_fails(path, 0, f"truncated pcapng block: header says {length} bytes, 20 remain")


def test_pcapng_unsupported_version(tmp_path: Path, pcapng: bytes) -> None:
    raw = bytearray(pcapng)
    struct.pack_into("<H", raw, 12, 2)
    assert_open_fails(write(tmp_path / "v2.pcapng", bytes(raw)), 0, "unsupported pcapng version 2.0")


# --- compression ----------------------------------------------------------------------------


def _prefix_length(compression: str, data: bytes) -> int:
    """How many bytes the standard decompressors recover from a cut stream."""
    if compression == "gzip":
        return len(zlib.decompressobj(wbits=31).decompress(data))
    if compression == "bz2":
        return len(bz2.BZ2Decompressor().decompress(data))
    if compression == "xz":
        return len(lzma.LZMADecompressor().decompress(data))
    return len(zstandard.ZstdDecompressor().decompressobj().decompress(data))


_COMPRESSORS = {"gzip": "gzip", "bz2": "bzip2", "xz": "xz", "zstd": "zstd"}


@pytest.mark.parametrize("compression", _COMPRESSORS)
@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_truncated_compressed_file(tmp_path: Path, compression: str, fraction: float) -> None:
    original = corpus_file("arkime__wireshark-esp.pcap")
    raw = original.read_bytes()
    packed = subprocess.run(
        [require_tool(_COMPRESSORS[compression]), "-c", str(original)], check=True, capture_output=True
    ).stdout
    cut = packed[: int(len(packed) * fraction)]
    path = write(tmp_path / f"cut.{compression}", cut)
    recovered = _prefix_length(compression, cut)
    assert recovered < len(raw)
    kept = [r for r in walk_pcap(raw).records if r.offset + 16 + r.caplen <= recovered]
    if recovered < 24:
        assert_open_fails(path, recovered, f"truncated {compression} stream")
    else:
        assert_damage(path, kept, recovered, f"truncated {compression} stream")


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    """A CRC mismatch is found after the member's data, so all of it was delivered."""
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    packed = bytearray(gzip.compress(raw))
    packed[-6] ^= 0xFF  # inside the CRC-32 of the uncompressed data
    reading = read_capture(write(tmp_path / "crc.gz", bytes(packed)))
    assert reading.error is not None
    assert reading.error.reason.startswith("corrupt gzip stream (CRC check failed")
    assert reading.error.offset == len(raw)
    assert [r.data for r in reading.records] == [r.data for r in original_records()]


_MAGIC_BYTES = {"gzip": 2, "bz2": 3, "xz": 6, "zstd": 4}


@pytest.mark.parametrize("compression", _COMPRESSORS)
def test_every_cut_of_a_compressed_stream_is_noticed(tmp_path: Path, compression: str) -> None:
    original = corpus_file("tcpdump__vxlan.pcap")
    packed = subprocess.run(
        [require_tool(_COMPRESSORS[compression]), "-c", str(original)], check=True, capture_output=True
    ).stdout
    cuts = sorted({*range(_MAGIC_BYTES[compression], 40), *range(40, len(packed), 5), len(packed) - 1})
    for cut in cuts:
        reading = read_capture(io.BytesIO(packed[:cut]))
        assert reading.error is not None, f"cut at {cut} of {len(packed)} went unnoticed"
        assert reading.error.reason == f"truncated {compression} stream", f"cut at {cut}"
        assert reading.error.offset == _prefix_length(compression, packed[:cut]), f"cut at {cut}"


def test_zstd_skippable_frames_are_passed_over(tmp_path: Path) -> None:
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    compressor = zstandard.ZstdCompressor()
    skippable = struct.pack("<II", 0x184D2A5E, 7) + b"comment"
    path = write(
        tmp_path / "skippable.zst",
        skippable + compressor.compress(raw[:500]) + skippable + compressor.compress(raw[500:]),
    )
    reading = read_capture(path)
    assert reading.error is None
    assert [r.data for r in reading.records] == [r.data for r in original_records()]
