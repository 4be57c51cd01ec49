"""The compiled kernel and the dpkt reference decoder agree, field by field, on real, cut and mutated packets."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import corpus_captures
from tests.test_kernel import (
    HTTP_GET,
    INNER_TCP,
    MAC_A,
    batch_of,
    ether,
    geneve,
    gpe,
    ipv4,
    ipv6,
    ipv6_ext,
    read_pcap,
    tcp,
    udp,
    underlay,
    vxlan,
    vxlan_frame,
)
from vxlaninspect import reference
from vxlaninspect.config import DEFAULT_CONFIG, DecodeConfig
from vxlaninspect.kernel import decode_batch
from vxlaninspect.schema import PACKET_DTYPE, LinkType


def assert_agree(
    frames: Sequence[bytes], linktypes: int | Sequence[int], config: DecodeConfig = DEFAULT_CONFIG
) -> None:
    """Every field of every row the same; else the first disagreement, with the frame in hex."""
    batch = batch_of(frames, linktypes)
    kernel_rows = decode_batch(batch, config)
    reference_rows = reference.decode_batch(batch, config)
    for name in PACKET_DTYPE.names:
        differ = np.flatnonzero(kernel_rows[name] != reference_rows[name])
        if len(differ):
            i = differ[0]
            pytest.fail(
                f"{name} differs on {len(differ)} records; first: record {i}, link type {batch.linktype[i]}, "
                f"kernel {kernel_rows[name][i]}, reference {reference_rows[name][i]}, frame {frames[i].hex()}"
            )


@pytest.mark.parametrize("path", corpus_captures(), ids=lambda p: p.name)
def test_corpus_records_and_every_truncation_of_them(path):
    linktype, frames = read_pcap(path)
    assert_agree([frame[:cut] for frame in frames for cut in range(len(frame) + 1)], linktype)


def test_corpus_under_other_port_tables():
    config = DecodeConfig(vxlan_ports=(4789,), geneve_ports=(8472,), gpe_ports=(6081,), esp_udp_ports=(53, 4789))
    for path in corpus_captures():
        linktype, frames = read_pcap(path)
        assert_agree(frames, linktype, config)


# -- generated packets ------------------------------------------------------------------

ESP = struct.pack("!II", 0x0000BEEF, 3) + bytes(24)
TEMPLATES: list[tuple[int, bytes]] = [
    (LinkType.ETHERNET, vxlan_frame()),
    (LinkType.ETHERNET, ether(ipv4(tcp(HTTP_GET), 6, options=b"\x01\x01\x01\x00"), tags=[(0x8100, 5), (0x88A8, 6)])),
    (LinkType.ETHERNET, underlay(geneve(ipv4(udp(b"q" * 12, 53, 5353), 17), 99, 0x0800, bytes(8)), 6081)),
    (LinkType.ETHERNET, underlay(gpe(ipv6(tcp(b"+OK\r\n"), 6), 7, 2), 4790)),
    (LinkType.ETHERNET, underlay(vxlan(ether(ipv4(udp(vxlan(INNER_TCP, 2), 1, 8472), 17)), 1))),
    (LinkType.ETHERNET, ether(ipv4(ESP, 50))),
    (LinkType.ETHERNET, underlay(ESP, 4500, 4500)),
    (LinkType.ETHERNET, underlay(bytes(4) + b"ike" * 8, 4500)),
    (LinkType.ETHERNET, underlay(b"\xff", 4500)),
    (LinkType.ETHERNET, ether(ipv4(udp(b"frag" * 8, 9, 4789, length=900), 17, frag=0x2000))),
    (
        LinkType.ETHERNET,
        ether(ipv6(ipv6_ext(44) + struct.pack("!BBHI", 6, 0, 1, 5) + tcp(b"*1\r\n$4\r\nPING\r\n"), 0), 0x86DD),
    ),
    (
        LinkType.ETHERNET,
        ether(ipv6(struct.pack("!BBBBI", 17, 0, 0xC2, 4, 16) + udp(b"jumbo!!!", 1, 2), 0, plen=0), 0x86DD),
    ),
    (LinkType.ETHERNET, ether(ipv4(bytes([8, 0, 0, 0]) + b"ping", 1, total_len=0))),
    (LinkType.ETHERNET, ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + MAC_A + bytes(14), 0x0806)),
    (LinkType.LINUX_SLL, struct.pack("!HHH8sH", 0, 772, 6, MAC_A, 0x0800) + ipv4(tcp(b"$-1\r\n", 6379), 6)),
    (LinkType.LINUX_SLL2, struct.pack("!HHIHBB8s", 0x86DD, 0, 1, 1, 4, 6, MAC_A) + ipv6(udp(b"x", 4789, 4789), 17)),
    (LinkType.NULL, struct.pack("<I", 30) + ipv6(tcp(b"SSH-2.0-x\r\n"), 6)),
    (LinkType.LOOP, struct.pack(">I", 2) + ipv4(tcp(b"\x16\x03\x01\x00\x05hello"), 6)),
    (LinkType.RAW, ipv4(udp(b"hi", 1, 2), 17)),
    (LinkType.IPV4, ipv4(udp(vxlan(INNER_TCP, 3), 1, 4789), 17)),
    (LinkType.IPV6, ipv6(udp(geneve(INNER_TCP, 4), 1, 6081), 17)),
]
CORPUS_FRAMES = [
    (linktype, frame)
    for path in corpus_captures()
    for linktype, frames in [read_pcap(path)]
    for frame in frames
    if len(frame) <= 400
]
LINK_TYPES = [int(linktype) for linktype in LinkType] + [147]
DIFFERENTIAL = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, samples: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
    """A sample with bytes replaced, 16-bit fields (lengths, ports, types) overwritten, then cut."""
    linktype, frame = draw(st.sampled_from(samples))
    data = bytearray(frame)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data) - 2))
        data[at : at + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    cut = draw(st.integers(0, len(data)))
    return linktype, bytes(data[: cut if draw(st.booleans()) else len(data)])


@DIFFERENTIAL
@given(st.binary(max_size=160), st.sampled_from(LINK_TYPES))
def test_random_bytes_under_each_link_type(frame, linktype):
    assert_agree([frame], linktype)


@DIFFERENTIAL
@given(mutated(TEMPLATES))
def test_mutated_built_packets(sample):
    linktype, frame = sample
    assert_agree([frame], linktype)


@pytest.mark.skipif(not CORPUS_FRAMES, reason="capture corpus not found")
@DIFFERENTIAL
@given(st.data())
def test_mutated_corpus_packets(data):
    linktype, frame = data.draw(mutated(CORPUS_FRAMES))
    assert_agree([frame], linktype)


@DIFFERENTIAL
@given(mutated(TEMPLATES), st.sampled_from(LINK_TYPES))
def test_built_packets_under_the_wrong_link_type(sample, linktype):
    assert_agree([sample[1]], linktype)
