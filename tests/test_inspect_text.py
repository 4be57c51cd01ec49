"""Payload profiles on real bytes: a shell session in the clear, ESP ciphertext, zlib output, pcap records."""

from __future__ import annotations

import codecs
import gzip
import random
import zlib
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.text import (
    MIN_ENTROPY_BYTES,
    SAMPLE_CHARS,
    PayloadKind,
    printable_ratio,
    profile,
    shannon_entropy,
)

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import tshark_follow
except ImportError:
    from test_inspect_capture import tshark_follow


def esp_payloads(path: Path) -> list[bytes]:
    """The bytes after the SPI and sequence number of every ESP packet (IPv4 and IPv6) in a capture."""
    found = []
    with path.open("rb") as handle:
        for _, frame in dpkt.pcap.Reader(handle):
            packet = frame[14:]  # untagged Ethernet
            version = packet[0] >> 4
            if version == 4 and packet[9] == dpkt.ip.IP_PROTO_ESP:
                found.append(packet[(packet[0] & 0x0F) * 4 + 8 : int.from_bytes(packet[2:4], "big")])
            elif version == 6 and packet[6] == dpkt.ip.IP_PROTO_ESP:
                found.append(packet[40 + 8 : 40 + int.from_bytes(packet[4:6], "big")])
    return found


@pytest.mark.tshark
def test_a_shell_session_after_an_upgrade_is_text(corpus: Path, tshark: str) -> None:
    # tcp.stream 1 of the Docker capture: after the 101 response head, busybox's
    # shell prompt and `ls` output with ANSI colour sequences (tshark follow).
    _, server = tshark_follow(tshark, corpus / "zeek__docker-http-upgrade.pcap", 2)[1]
    shell = server[server.index(b"\r\n\r\n") + 4 :]
    result = profile(shell)
    assert result.kind == PayloadKind.TEXT
    assert result.sample.startswith("/ # ") and "\x1b" not in result.sample and "\\x1b[J" in result.sample
    assert result.examined == min(len(shell), 4096)


def test_esp_ciphertext_is_high_entropy(corpus: Path) -> None:
    payloads = esp_payloads(corpus / "arkime__wireshark-esp.pcap")
    assert len(payloads) == 240  # MANIFEST: 120 ESP over IPv4 + 120 over IPv6
    for payload in payloads:
        assert len(payload) >= MIN_ENTROPY_BYTES
        assert profile(payload).kind == PayloadKind.HIGH_ENTROPY


@pytest.mark.parametrize("compress", [zlib.compress, gzip.compress])
def test_compressed_captures_are_high_entropy(corpus: Path, compress) -> None:
    for name in ("zeek__docker-http-upgrade.pcap", "tcpdump__resp_1_benchmark.pcap"):
        assert profile(compress((corpus / name).read_bytes())).kind == PayloadKind.HIGH_ENTROPY


def test_pcap_records_are_structured_binary(corpus: Path) -> None:
    for name in ("tcpdump__vxlan.pcap", "zeek__redis-50-pings.pcap", "suricata-verify__decode-sll2-01.pcap"):
        assert profile((corpus / name).read_bytes()).kind == PayloadKind.BINARY


def test_utf8_text_counts_as_printable() -> None:
    text = "Grüße, 世界! Ünïcödé línes\n".encode() * 10
    assert printable_ratio(text) == 1.0
    assert profile(text).kind == PayloadKind.TEXT
    sample = profile(text).sample
    assert sample.isascii() and sample.startswith("Gr\\xc3\\xbc\\xc3\\x9fe, ")
    shown = codecs.escape_decode(sample.split("...[+")[0])[0]
    assert text.startswith(shown) and len(shown) > 20


def test_empty_and_tiny_payloads() -> None:
    assert profile(b"").kind == PayloadKind.EMPTY
    tiny = random.Random(3).randbytes(MIN_ENTROPY_BYTES - 1)
    assert profile(tiny).kind == PayloadKind.BINARY  # too few bytes to call it ciphertext
    assert shannon_entropy(bytes(range(256))) == 8.0 and shannon_entropy(b"aaaa") == 0.0


@settings(max_examples=200, deadline=None)
@given(size=st.integers(MIN_ENTROPY_BYTES, 8192), seed=st.integers(0, 2**32))
def test_random_bytes_of_any_size_are_high_entropy(size: int, seed: int) -> None:
    assert profile(random.Random(seed).randbytes(size)).kind == PayloadKind.HIGH_ENTROPY


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=5000))
def test_any_bytes_give_a_bounded_printable_profile(data: bytes) -> None:
    result = profile(data)
    assert 0.0 <= result.printable_ratio <= 1.0 and 0.0 <= result.entropy <= 8.0
    assert result.examined == min(len(data), 4096)
    assert all(0x20 <= ord(c) <= 0x7E for c in result.sample)
    assert len(result.sample) <= SAMPLE_CHARS + len("...[+99999 bytes]")
