"""The compiled decoder: the corpus as its MANIFEST describes it, and each rule of the schema on built packets."""

from __future__ import annotations

import io
import ipaddress
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import dpkt
import numpy as np
import pytest

from tests.conftest import CORPUS, REPO, corpus_captures
from vxlaninspect.config import DEFAULT_CONFIG, DecodeConfig
from vxlaninspect.kernel import MIN_RECORDS_PER_THREAD, decode_batch
from vxlaninspect.records import RecordBatch
from vxlaninspect.schema import (
    IPV4_MAPPED_PREFIX,
    MAX_IPV6_EXTENSIONS,
    MAX_TUNNEL_DEPTH,
    MAX_VLAN_TAGS,
    NO_VNI,
    PACKET_DTYPE,
    AppHint,
    Encap,
    Layer,
    LinkType,
    PacketFlag,
    Status,
)

# -- batches and captures -----------------------------------------------------


def batch_of(frames: Sequence[bytes], linktypes: int | Sequence[int]) -> RecordBatch:
    """A batch holding ``frames`` back to back in one buffer, with made-up times and offsets."""
    caplen = np.array([len(frame) for frame in frames], dtype=np.uint32)
    data_start = np.zeros(len(frames), dtype=np.int64)
    data_start[1:] = np.cumsum(caplen[:-1], dtype=np.int64)
    linktype = np.broadcast_to(np.asarray(linktypes, dtype=np.uint16), (len(frames),)).copy()
    return RecordBatch(
        data=np.frombuffer(b"".join(frames), dtype=np.uint8),
        data_start=data_start,
        caplen=caplen,
        wirelen=caplen + 7,
        ts_ns=np.arange(len(frames), dtype=np.int64) * 1000 + 5,
        linktype=linktype,
        rec_offset=data_start * 2 + 24,
    )


def read_pcap(path: Path) -> tuple[int, list[bytes]]:
    """The link type (low 16 bits: the rest carries FCS information) and the frames of a pcap file."""
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink() & 0xFFFF, [bytes(buf) for _, buf in reader]


def decode_capture(name: str, config: DecodeConfig = DEFAULT_CONFIG) -> np.ndarray:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus capture {name} not found")
    linktype, frames = read_pcap(path)
    return decode_batch(batch_of(frames, linktype), config)


def decode(frame: bytes, linktype: int = LinkType.ETHERNET, config: DecodeConfig = DEFAULT_CONFIG) -> np.void:
    return decode_batch(batch_of([frame], linktype), config)[0]


def addr(text: str) -> tuple[int, int]:
    """An address as (hi, lo) halves, IPv4 in its IPv4-mapped form."""
    ip = ipaddress.ip_address(text)
    value = int(ip) | (IPV4_MAPPED_PREFIX if ip.version == 4 else 0)
    return value >> 64, value & ((1 << 64) - 1)


def src(row: np.void, prefix: str = "") -> tuple[int, int]:
    return int(row[prefix + "src_hi"]), int(row[prefix + "src_lo"])


def dst(row: np.void, prefix: str = "") -> tuple[int, int]:
    return int(row[prefix + "dst_hi"]), int(row[prefix + "dst_lo"])


def has(row: np.void, flag: PacketFlag) -> bool:
    return bool(int(row["flags"]) & flag)


def stopped(row: np.void) -> tuple[Status, Layer]:
    return Status(int(row["status"])), Layer(int(row["error_layer"]))


# -- packet builders (RFC layouts; checksums are not checked by the decoder) ----

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")


def ether(payload: bytes, ethertype: int = 0x0800, tags: Sequence[tuple[int, int]] = ()) -> bytes:
    head = MAC_B + MAC_A + b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags)
    return head + struct.pack("!H", ethertype) + payload


def ipv4(
    payload: bytes,
    proto: int,
    source: str = "10.0.0.1",
    dest: str = "10.0.0.2",
    *,
    total_len: int | None = None,
    options: bytes = b"",
    frag: int = 0,
    version: int = 4,
    ihl: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4 if ihl is None else ihl
    length = 20 + len(options) + len(payload) if total_len is None else total_len
    header = struct.pack(
        "!BBHHHBBH4s4s",
        version << 4 | ihl,
        0,
        length,
        7,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(dest).packed,
    )
    return header + options + payload


def ipv6(payload: bytes, nxt: int, source: str = "2001:db8::1", dest: str = "2001:db8::2", *, plen=None) -> bytes:
    length = len(payload) if plen is None else plen
    header = struct.pack("!IHBB", 6 << 28, length, nxt, 64)
    return header + ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(dest).packed + payload


def ipv6_ext(nxt: int, size: int = 8) -> bytes:
    """A Hop-by-Hop, Routing or Destination Options header of ``size`` bytes (padded with PadN)."""
    return struct.pack("!BBBB", nxt, size // 8 - 1, 1, size - 4) + bytes(size - 4)


def udp(payload: bytes, sport: int, dport: int, *, length: int | None = None) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def tcp(payload: bytes, sport: int = 40000, dport: int = 80, *, offset: int = 5, options: bytes = b"") -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, seq=0x01020304, ack=0x0A0B0C0D, flags=0x18, opts=options)
    segment.off = offset
    return bytes(segment)[: 20 + len(options)] + payload


def vxlan(inner: bytes, vni: int, flags: int = 0x08) -> bytes:
    return struct.pack("!B3sI", flags, b"\0\0\0", vni << 8) + inner


def geneve(inner: bytes, vni: int, protocol: int = 0x6558, options: bytes = b"") -> bytes:
    return struct.pack("!BBHI", len(options) // 4, 0, protocol, vni << 8) + options + inner


def gpe(inner: bytes, vni: int, next_protocol: int) -> bytes:
    return struct.pack("!BHBI", 0x0C, 0, next_protocol, vni << 8) + inner


def underlay(udp_payload: bytes, dport: int = 4789, sport: int = 51000) -> bytes:
    """An Ethernet/IPv4/UDP frame between two nodes."""
    return ether(ipv4(udp(udp_payload, sport, dport), 17, "192.168.0.1", "192.168.0.2"))


HTTP_GET = b"GET /api HTTP/1.1\r\nHost: svc\r\n\r\n"
INNER_TCP = ether(ipv4(tcp(HTTP_GET), 6, "10.0.9.3", "10.0.9.4"))


def vxlan_frame(vni: int = 4097, inner: bytes = INNER_TCP, dport: int = 4789) -> bytes:
    return underlay(vxlan(inner, vni), dport)


# -- the corpus ------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_captures(), ids=lambda p: p.name)
def test_every_corpus_capture_decodes_with_record_fields_from_the_batch(path):
    linktype, frames = read_pcap(path)
    batch = batch_of(frames, linktype)
    rows = decode_batch(batch)
    assert rows.dtype == PACKET_DTYPE and len(rows) == len(frames)
    for name in ("ts_ns", "rec_offset", "data_start", "caplen", "wirelen", "linktype"):
        assert np.array_equal(rows[name], getattr(batch, name)), name
    assert set(rows["status"]) <= {Status.OK, Status.TRUNCATED}


@pytest.mark.parametrize(("name", "port"), [("tcpdump__vxlan.pcap", 4789), ("tcpdump__vxlan_port_8472.pcap", 8472)])
def test_tcpdump_vxlan_vni_100_carrying_two_arp_and_eight_icmp_echo(name, port):
    rows = decode_capture(name)
    assert len(rows) == 10
    assert set(rows["status"]) == {Status.OK}
    assert set(rows["encap"]) == {Encap.VXLAN} and set(rows["vni"]) == {100} and set(rows["vxlan_flags"]) == {0x08}
    assert set(rows["o_dport"]) == {port} and set(rows["tunnels"]) == {1}
    arp = rows[rows["ethertype"] == 0x0806]
    assert len(arp) == 2 and all(has(r, PacketFlag.NON_IP) for r in arp) and set(arp["ipver"]) == {0}
    icmp = rows[rows["proto"] == 1]
    assert len(icmp) == 8 and set(icmp["sport"]) == {0, 8} and set(icmp["dport"]) == {0}
    assert set(rows["inner_off"]) == {14 + 20 + 8 + 8}


def test_port_8472_is_vxlan_only_while_configured():
    rows = decode_capture("tcpdump__vxlan_port_8472.pcap", DecodeConfig(vxlan_ports=(4789,)))
    assert set(rows["encap"]) == {Encap.NONE} and set(rows["o_dport"]) == {8472} and set(rows["vni"]) == {NO_VNI}


def test_aws_traffic_mirror_vni_5569041_with_ssh_dns_ntp():
    rows = decode_capture("suricata-verify__vxlan-decoder-03_aws-mirror.pcap")
    assert len(rows) == 100 and set(rows["status"]) == {Status.OK}
    assert set(rows["vni"]) == {5569041} and set(rows["vxlan_flags"]) == {0x08}
    ports = np.minimum(rows["sport"], rows["dport"])
    assert Counter(zip(rows["proto"].tolist(), ports.tolist())) == {(6, 22): 82, (17, 53): 16, (17, 123): 2}
    ssh = rows[(rows["proto"] == 6) & (rows["payload_len"] > 0)]
    assert AppHint.SSH in set(ssh["app"]) and Counter(ssh["app"].tolist()).most_common(1)[0][0] == AppHint.BINARY


def test_vxlan_flags_0xff_and_reserved_bytes_still_give_vni_11_and_http():
    rows = decode_capture("suricata-verify__vxlan-non-zero-reserved-fields.pcap")
    assert len(rows) == 10 and set(rows["vni"]) == {11} and set(rows["vxlan_flags"]) == {0xFF}
    assert all(has(r, PacketFlag.VXLAN_RESERVED) and not has(r, PacketFlag.VXLAN_NO_VNI_FLAG) for r in rows)
    assert set(rows["o_sport"]) == {49152}
    assert Counter(rows["app"].tolist())[AppHint.HTTP_REQUEST] == 1
    assert Counter(rows["app"].tolist())[AppHint.HTTP_RESPONSE] == 1


@pytest.mark.parametrize(
    ("name", "inner_src", "inner_dst", "payload_bytes"),
    [
        ("tcpdump__gso-ipv6-vxlan-ipv4.pcap", None, None, 6890),
        ("tcpdump__gso-ipv6-vxlan-ipv6.pcap", "fd00::2", "fd00::1", 4074),
    ],
)
def test_gso_super_frame_over_ipv6_vni_5001(name, inner_src, inner_dst, payload_bytes):
    (row,) = decode_capture(name)
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert row["o_ipver"] == 6 and row["vni"] == 5001 and row["encap"] == Encap.VXLAN and row["proto"] == 6
    assert row["payload_len"] == row["payload_wire"] == payload_bytes
    assert row["ipver"] == (4 if inner_src is None else 6)
    if inner_src is not None:
        assert src(row) == addr(inner_src) and dst(row) == addr(inner_dst)


def test_geneve_carrying_ip_then_vxlan_4242_with_snaplen_cut_dns():
    rows = decode_capture("zeek__geneve-vxlan-dns-truncated.pcap")
    assert len(rows) == 2 and set(rows["status"]) == {Status.OK}
    assert set(rows["outer_vni"]) == {0x1092} and set(rows["vni"]) == {4242} and set(rows["tunnels"]) == {2}
    assert set(rows["encap"]) == {Encap.VXLAN} and set(rows["caplen"]) == {176}
    for row in rows:
        assert has(row, PacketFlag.INNER_NOT_ETHERNET) and has(row, PacketFlag.PAYLOAD_TRUNCATED)
        assert row["proto"] == 17 and 53 in (row["sport"], row["dport"])
        assert row["payload_len"] < row["payload_wire"]


def test_esp_proto_50_spi_0x12345678_sequence_1_to_8():
    rows = decode_capture("tcpdump__02-sunrise-sunset-esp.pcap")
    assert set(rows["encap"]) == {Encap.ESP} and set(rows["spi"]) == {0x12345678}
    assert rows["esp_seq"].tolist() == list(range(1, 9)) and set(rows["proto"]) == {50}
    assert {src(r) for r in rows} | {dst(r) for r in rows} == {addr("192.1.2.23"), addr("192.1.2.45")}
    assert all(src(r, "o_") == src(r) for r in rows)


def test_wireshark_esp_sample_ipv4_and_ipv6_sixteen_spis():
    rows = decode_capture("arkime__wireshark-esp.pcap")
    assert len(rows) == 240 and set(rows["encap"]) == {Encap.ESP} and set(rows["status"]) == {Status.OK}
    assert Counter(rows["o_ipver"].tolist()) == {4: 120, 6: 120}
    spis = set(rows["spi"].tolist())
    assert len(spis) == 16 and spis <= set(range(0x6E, 0x7C)) | set(range(0x0A, 0x18))


def test_esp_in_udp_4500():
    rows = decode_capture("tcpdump__espudp1.pcap")
    assert len(rows) == 8 and set(rows["encap"]) == {Encap.ESP_UDP} and set(rows["spi"]) == {0x12345678}
    assert set(rows["o_sport"]) == {4500} and set(rows["o_dport"]) == {4500} and set(rows["proto"]) == {17}


def test_esp_truncated_fuzz_packet_stops_in_the_tunnel_its_destination_port_names():
    (row,) = decode_capture("tcpdump__esp_truncated.pcap")
    # UDP 4500 -> 8472: the destination port is looked up first, so it is VXLAN; snaplen 46 cuts its header.
    assert row["caplen"] == 46 and (row["o_sport"], row["o_dport"]) == (4500, 8472)
    assert stopped(row) == (Status.TRUNCATED, Layer.VXLAN) and row["encap"] == Encap.VXLAN
    assert has(row, PacketFlag.OUTER_FRAGMENT) and row["vni"] == NO_VNI


@pytest.mark.parametrize("name", ["tcpdump__resp_1_benchmark.pcap", "tcpdump__resp_3_malicious.pcap"])
def test_redis_over_linux_cooked_sll(name):
    rows = decode_capture(name)
    assert set(rows["linktype"]) == {LinkType.LINUX_SLL} and set(rows["status"]) == {Status.OK}
    assert set(rows["ethertype"]) == {0x0800} and {src(r) for r in rows} == {addr("127.0.0.1")}
    to_redis = rows[(rows["dport"] == 6379) & (rows["payload_len"] > 0)]
    from_redis = rows[(rows["sport"] == 6379) & (rows["payload_len"] > 0)]
    assert AppHint.RESP_COMMAND in set(to_redis["app"]) and AppHint.RESP_REPLY in set(from_redis["app"])


def test_redis_py_fifty_pings_get_fifty_pong_replies():
    rows = decode_capture("zeek__redis-50-pings.pcap")
    replies = rows[(rows["sport"] == 6379) & (rows["app"] == AppHint.RESP_REPLY)]
    assert len(replies) >= 50
    commands = rows[(rows["dport"] == 6379) & (rows["payload_len"] > 0)]
    assert set(commands["app"]) == {AppHint.RESP_COMMAND}


def test_docker_engine_api_plain_http_on_2375():
    rows = decode_capture("zeek__docker-http-upgrade.pcap")
    assert set(rows["encap"]) == {Encap.NONE} and 2375 in set(rows["dport"])
    requests = rows[rows["app"] == AppHint.HTTP_REQUEST]
    responses = rows[rows["app"] == AppHint.HTTP_RESPONSE]
    assert len(requests) > 0 and set(requests["dport"]) == {2375}
    assert len(responses) > 0 and set(responses["sport"]) == {2375}


def test_linux_cooked_sll2_handshake_and_http_get():
    rows = decode_capture("suricata-verify__decode-sll2-01.pcap")
    assert len(rows) == 5 and set(rows["status"]) == {Status.OK} and set(rows["ethertype"]) == {0x0800}
    assert {dst(r) for r in rows if r["dport"] == 80} == {addr("192.168.1.21")}
    assert Counter(rows["app"].tolist())[AppHint.HTTP_REQUEST] == 1


# -- link layers --------------------------------------------------------------------

IP_PACKET = ipv4(udp(b"hello", 5353, 53), 17)
IP6_PACKET = ipv6(udp(b"hello", 5353, 53), 17)


@pytest.mark.parametrize(
    ("linktype", "frame", "ipver"),
    [
        (LinkType.ETHERNET, ether(IP_PACKET), 4),
        (LinkType.NULL, struct.pack("<I", 2) + IP_PACKET, 4),
        (LinkType.NULL, struct.pack("<I", 24) + IP6_PACKET, 6),
        (LinkType.NULL, struct.pack("<I", 30) + IP6_PACKET, 6),
        (LinkType.LOOP, struct.pack(">I", 2) + IP_PACKET, 4),
        (LinkType.LOOP, struct.pack(">I", 10) + IP6_PACKET, 6),
        (LinkType.RAW, IP_PACKET, 4),
        (LinkType.RAW, IP6_PACKET, 6),
        (LinkType.IPV4, IP_PACKET, 4),
        (LinkType.IPV6, IP6_PACKET, 6),
        (LinkType.LINUX_SLL, struct.pack("!HHH8sH", 0, 1, 6, MAC_A, 0x0800) + IP_PACKET, 4),
        (LinkType.LINUX_SLL2, struct.pack("!HHIHBB8s", 0x86DD, 0, 3, 1, 0, 6, MAC_A) + IP6_PACKET, 6),
    ],
)
def test_each_link_type_reaches_the_udp_payload(linktype, frame, ipver):
    row = decode(frame, linktype)
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert row["ipver"] == row["o_ipver"] == ipver and row["ethertype"] == (0x0800 if ipver == 4 else 0x86DD)
    assert (row["sport"], row["dport"], row["payload_len"]) == (5353, 53, 5)
    assert frame[row["payload_off"] :][: row["payload_len"]] == b"hello"


def test_unknown_link_type_and_raw_version_nibble_are_unsupported():
    assert stopped(decode(IP_PACKET, 147)) == (Status.UNSUPPORTED, Layer.LINK)
    assert stopped(decode(b"\x50" + IP_PACKET[1:], LinkType.RAW)) == (Status.UNSUPPORTED, Layer.LINK)


def test_loopback_family_that_is_not_ip_is_a_non_ip_frame():
    row = decode(struct.pack("<I", 7) + IP_PACKET, LinkType.NULL)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.NON_IP) and row["ipver"] == 0


def test_null_reads_the_family_little_endian():
    row = decode(struct.pack(">I", 2) + IP_PACKET, LinkType.NULL)
    assert has(row, PacketFlag.NON_IP) and row["ipver"] == 0


# -- Ethernet, VLAN, ARP ------------------------------------------------------------


def test_single_vlan_tag():
    row = decode(ether(IP_PACKET, tags=[(0x8100, 0x2000 | 42)]))
    assert (row["vlan"], row["vlans"], row["ipver"]) == (42, 1, 4) and row["payload_len"] == 5


def test_qinq_records_the_first_vid_and_counts_tags():
    row = decode(ether(IP_PACKET, tags=[(0x88A8, 100), (0x8100, 200), (0x9100, 300)]))
    assert (row["vlan"], row["vlans"], row["ethertype"]) == (100, 3, 0x0800) and stopped(row)[0] == Status.OK


def test_more_vlan_tags_than_the_limit_are_unsupported():
    row = decode(ether(IP_PACKET, tags=[(0x8100, n) for n in range(1, MAX_VLAN_TAGS + 2)]))
    assert stopped(row) == (Status.UNSUPPORTED, Layer.VLAN) and row["vlans"] == MAX_VLAN_TAGS


def test_inner_vlan_tags_are_stripped_but_not_recorded():
    row = decode(vxlan_frame(inner=ether(ipv4(tcp(HTTP_GET), 6), tags=[(0x8100, 7)])))
    assert (row["vlan"], row["vlans"]) == (0, 0) and row["app"] == AppHint.HTTP_REQUEST


def test_arp_is_a_non_ip_frame_and_cut_arp_is_truncated():
    arp = bytes(dpkt.arp.ARP(sha=MAC_A, spa=b"\x0a\0\0\x01", tha=bytes(6), tpa=b"\x0a\0\0\x02"))
    row = decode(ether(arp, 0x0806))
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.NON_IP) and row["ethertype"] == 0x0806
    assert stopped(decode(ether(arp[:20], 0x0806))) == (Status.TRUNCATED, Layer.ARP)


def test_lldp_is_a_non_ip_frame():
    row = decode(ether(b"\x02\x07\x04" + bytes(20), 0x88CC))
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.NON_IP) and row["ethertype"] == 0x88CC


# -- IPv4 ----------------------------------------------------------------------------


def test_ethernet_padding_is_not_payload():
    frame = ether(ipv4(udp(b"ab", 1000, 2000), 17)) + bytes(16)
    row = decode(frame)
    assert (row["payload_len"], row["payload_wire"]) == (2, 2) and not has(row, PacketFlag.PAYLOAD_TRUNCATED)


def test_ipv4_options_are_skipped_by_ihl():
    options = b"\x94\x04\x00\x00" + b"\x01\x01\x01\x00"  # Router Alert, NOPs, EOL
    row = decode(ether(ipv4(tcp(HTTP_GET), 6, options=options)))
    assert (row["sport"], row["dport"], row["app"]) == (40000, 80, AppHint.HTTP_REQUEST)
    assert row["payload_off"] == 14 + 28 + 20


def test_ip_length_zero_reads_to_the_captured_end():
    row = decode(ether(ipv4(tcp(HTTP_GET), 6, total_len=0)))
    assert has(row, PacketFlag.IP_LENGTH_ZERO) and stopped(row)[0] == Status.OK
    assert row["payload_len"] == row["payload_wire"] == len(HTTP_GET)


def test_snaplen_cut_payload_is_flagged_not_an_error():
    frame = ether(ipv4(tcp(HTTP_GET), 6))
    row = decode(frame[:-10])
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.PAYLOAD_TRUNCATED)
    assert (row["payload_len"], row["payload_wire"]) == (len(HTTP_GET) - 10, len(HTTP_GET))


def test_first_fragment_has_its_transport_decoded_later_ones_do_not():
    first = decode(ether(ipv4(udp(b"x" * 32, 1000, 2000), 17, frag=0x2000)))  # MF, offset 0
    assert has(first, PacketFlag.FRAGMENT) and (first["sport"], first["dport"]) == (1000, 2000)
    later = decode(ether(ipv4(b"y" * 24, 17, frag=0x0003)))
    assert has(later, PacketFlag.FRAGMENT) and stopped(later)[0] == Status.OK
    assert (later["sport"], later["dport"], later["proto"]) == (0, 0, 17)


def test_first_fragment_udp_length_may_reach_past_the_fragment():
    row = decode(ether(ipv4(udp(b"x" * 32, 1000, 2000, length=1400), 17, frag=0x2000)))
    assert stopped(row)[0] == Status.OK and has(row, PacketFlag.PAYLOAD_TRUNCATED)
    assert (row["payload_len"], row["payload_wire"]) == (32, 1392)


def test_fragmented_underlay_of_a_vxlan_packet_is_an_outer_fragment():
    row = decode(ether(ipv4(udp(vxlan(INNER_TCP, 9), 51000, 4789), 17, frag=0x2000)))
    assert has(row, PacketFlag.OUTER_FRAGMENT) and not has(row, PacketFlag.FRAGMENT) and row["vni"] == 9


@pytest.mark.parametrize(
    ("packet", "layer"),
    [
        (ipv4(tcp(b""), 6, total_len=12), Layer.IPV4),  # total length shorter than the header
        (ipv4(tcp(b""), 6, ihl=4), Layer.IPV4),
        (ipv4(tcp(b""), 6, version=5), Layer.IPV4),
        (ipv4(tcp(b""), 6, total_len=30), Layer.TCP),  # TCP header past the IP length
        (ipv4(tcp(b"", offset=4), 6), Layer.TCP),
        (ipv4(udp(b"abc", 1, 2, length=4), 17), Layer.UDP),
        (ipv4(udp(b"abc", 1, 2, length=40), 17), Layer.UDP),  # past the IP payload, not a fragment
        (ipv4(udp(b"\xfe", 4500, 4500), 17), Layer.ESP),  # too short for the non-ESP marker
        (ipv4(udp(b"\x00\x00\x00\x01\x00\x00", 51000, 4789), 17), Layer.VXLAN),
        (ipv6(tcp(b""), 6, plen=10), Layer.TCP),
        (ipv6(ipv6_ext(6, 16)[:8], 0), Layer.IPV6_EXTENSION),
    ],
    ids=lambda value: value.name if isinstance(value, Layer) else "",
)
def test_lengths_that_cannot_be_right_are_malformed(packet, layer):
    ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    assert stopped(decode(ether(packet, ethertype))) == (Status.MALFORMED, layer)


def test_inner_ip_longer_than_its_udp_datagram_is_malformed():
    inner = ether(ipv4(tcp(HTTP_GET), 6, total_len=1400))
    assert stopped(decode(vxlan_frame(inner=inner))) == (Status.MALFORMED, Layer.IPV4)


# -- IPv6 ----------------------------------------------------------------------------


def test_ipv6_extension_headers_are_walked_to_the_transport():
    authentication = struct.pack("!BBHII", 6, 1, 0, 0x1000, 1)  # AH: 12 bytes, length field (12 / 4) - 2
    chain = ipv6_ext(43) + ipv6_ext(60) + ipv6_ext(51, 16) + authentication + tcp(HTTP_GET)  # HBH, RH, DO, AH
    row = decode(ether(ipv6(chain, 0), 0x86DD))
    assert stopped(row)[0] == Status.OK and row["proto"] == row["o_proto"] == 6
    assert row["app"] == AppHint.HTTP_REQUEST and src(row) == addr("2001:db8::1")


def test_more_ipv6_extension_headers_than_the_limit_are_unsupported():
    chain = b"".join(ipv6_ext(60) for _ in range(MAX_IPV6_EXTENSIONS + 1))
    row = decode(ether(ipv6(chain + tcp(b""), 60), 0x86DD))
    assert stopped(row) == (Status.UNSUPPORTED, Layer.IPV6_EXTENSION)


@pytest.mark.parametrize(("offset_field", "decoded"), [(0x0001, True), (0x0008, False)])
def test_ipv6_fragment_header(offset_field, decoded):
    fragment = struct.pack("!BBHI", 17, 0, offset_field, 99)
    row = decode(ether(ipv6(fragment + udp(b"abc", 7, 9), 44), 0x86DD))
    assert has(row, PacketFlag.FRAGMENT) and stopped(row)[0] == Status.OK and row["proto"] == 17
    assert (row["sport"], row["dport"]) == ((7, 9) if decoded else (0, 0))


def test_ipv6_payload_length_zero_with_and_without_jumbo_option():
    plain = decode(ether(ipv6(tcp(HTTP_GET), 6, plen=0), 0x86DD))
    assert has(plain, PacketFlag.IP_LENGTH_ZERO) and plain["payload_len"] == len(HTTP_GET)
    body = tcp(HTTP_GET)
    hop_by_hop = struct.pack("!BBBBI", 6, 0, 0xC2, 4, 8 + len(body))
    jumbo = decode(ether(ipv6(hop_by_hop + body, 0, plen=0), 0x86DD))
    assert not has(jumbo, PacketFlag.IP_LENGTH_ZERO) and jumbo["payload_wire"] == len(HTTP_GET)


# -- ICMP -------------------------------------------------------------------------------


def test_icmp_and_icmpv6_type_and_code_as_ports():
    row = decode(ether(ipv4(bytes(dpkt.icmp.ICMP(type=3, code=13, data=b"\0" * 4)), 1)))
    assert (row["proto"], row["sport"], row["dport"]) == (1, 3, 13)
    row = decode(ether(ipv6(bytes([128, 0, 0, 0]) + bytes(4), 58), 0x86DD))
    assert (row["proto"], row["sport"], row["dport"]) == (58, 128, 0)
    assert stopped(decode(ether(ipv4(b"\x08\x00", 1)))) == (Status.MALFORMED, Layer.ICMP)


# -- truncation at every layer ---------------------------------------------------------

# Ethernet 14 | IPv4 20 | UDP 8 | VXLAN 8 | inner Ethernet 14 | inner IPv4 20 | inner TCP 20 | payload
TRUNCATION_POINTS = [
    (10, Layer.LINK),
    (14 + 19, Layer.IPV4),
    (34 + 7, Layer.UDP),
    (42 + 7, Layer.VXLAN),
    (50 + 13, Layer.INNER_ETHERNET),
    (64 + 19, Layer.IPV4),
    (84 + 19, Layer.TCP),
]


@pytest.mark.parametrize(("cut", "layer"), TRUNCATION_POINTS)
def test_a_vxlan_frame_cut_in_each_header_is_truncated_there(cut, layer):
    row = decode(vxlan_frame(vni=77)[:cut])
    assert stopped(row) == (Status.TRUNCATED, layer)
    if cut > 42:
        assert row["encap"] == Encap.VXLAN and row["tunnels"] == 1
    if cut >= 50:
        assert row["vni"] == 77


def test_cut_tcp_options_keep_the_ports():
    frame = ether(ipv4(tcp(HTTP_GET, offset=8, options=bytes(12)), 6))
    row = decode(frame[: 14 + 20 + 24])
    assert stopped(row) == (Status.TRUNCATED, Layer.TCP) and (row["sport"], row["dport"]) == (40000, 80)


# -- tunnels ---------------------------------------------------------------------------------


def test_vxlan_inner_flow_and_outer_underlay():
    row = decode(vxlan_frame(vni=4097))
    assert (row["encap"], row["tunnels"], row["vni"], row["outer_vni"]) == (Encap.VXLAN, 1, 4097, 4097)
    assert src(row, "o_") == addr("192.168.0.1") and dst(row, "o_") == addr("192.168.0.2")
    assert src(row) == addr("10.0.9.3") and dst(row) == addr("10.0.9.4")
    assert (row["o_sport"], row["o_dport"], row["sport"], row["dport"]) == (51000, 4789, 40000, 80)
    assert (row["tcp_seq"], row["tcp_ack"], row["tcp_flags"]) == (0x01020304, 0x0A0B0C0D, 0x18)
    assert row["inner_off"] == 50 and row["app"] == AppHint.HTTP_REQUEST


def test_vxlan_without_the_i_flag_still_gives_its_vni():
    row = decode(underlay(vxlan(INNER_TCP, 300, flags=0x00)))
    assert row["vni"] == 300 and has(row, PacketFlag.VXLAN_NO_VNI_FLAG) and not has(row, PacketFlag.VXLAN_RESERVED)


def test_source_port_chooses_the_tunnel_when_the_destination_port_does_not():
    row = decode(ether(ipv4(udp(vxlan(INNER_TCP, 5), 4789, 33333), 17)))
    assert row["encap"] == Encap.VXLAN and row["vni"] == 5


def test_configured_vxlan_port():
    frame = vxlan_frame(vni=12, dport=7777)
    assert decode(frame)["encap"] == Encap.NONE
    assert decode(frame, config=DecodeConfig(vxlan_ports=(7777,)))["vni"] == 12


def test_geneve_with_options_carrying_ipv4():
    options = struct.pack("!HBB", 0x0102, 0x80, 1) + bytes(4)
    inner = ipv4(tcp(HTTP_GET), 6, "10.1.0.1", "10.1.0.2")
    row = decode(underlay(geneve(inner, 0xABCDE, 0x0800, options), 6081))
    assert (row["encap"], row["vni"], row["ethertype"], row["ipver"]) == (Encap.GENEVE, 0xABCDE, 0x0800, 4)
    assert has(row, PacketFlag.INNER_NOT_ETHERNET) and row["inner_off"] == 42 + 8 + len(options)
    assert src(row) == addr("10.1.0.1") and row["app"] == AppHint.HTTP_REQUEST


def test_geneve_unknown_protocol_is_unsupported():
    assert stopped(decode(underlay(geneve(b"x" * 20, 1, 0x8847), 6081))) == (Status.UNSUPPORTED, Layer.GENEVE)


@pytest.mark.parametrize(
    ("next_protocol", "inner", "ethertype", "ipver"),
    [
        (1, ipv4(tcp(HTTP_GET), 6), 0x0800, 4),
        (2, ipv6(tcp(HTTP_GET), 6), 0x86DD, 6),
        (3, INNER_TCP, 0x0800, 4),
    ],
)
def test_vxlan_gpe_next_protocols(next_protocol, inner, ethertype, ipver):
    row = decode(underlay(gpe(inner, 4242, next_protocol), 4790))
    assert (row["encap"], row["vni"], row["vxlan_flags"]) == (Encap.VXLAN_GPE, 4242, 0x0C)
    assert (row["ethertype"], row["ipver"], row["app"]) == (ethertype, ipver, AppHint.HTTP_REQUEST)
    assert has(row, PacketFlag.INNER_NOT_ETHERNET) == (next_protocol != 3)


def test_vxlan_gpe_nsh_is_unsupported():
    assert stopped(decode(underlay(gpe(bytes(24), 1, 4), 4790))) == (Status.UNSUPPORTED, Layer.VXLAN_GPE)


def test_vxlan_in_vxlan():
    inner = ether(ipv4(udp(vxlan(INNER_TCP, 222), 50001, 4789), 17, "172.16.0.1", "172.16.0.2"))
    row = decode(vxlan_frame(vni=111, inner=inner))
    assert (row["tunnels"], row["outer_vni"], row["vni"]) == (2, 111, 222)
    assert src(row) == addr("10.0.9.3") and src(row, "o_") == addr("192.168.0.1")
    assert row["inner_off"] == 50 + 50


def test_tunnels_deeper_than_the_limit_stop_too_deep():
    frame = INNER_TCP
    for depth in range(MAX_TUNNEL_DEPTH + 1):
        frame = ether(ipv4(udp(vxlan(frame, depth + 1), 50000, 4789), 17))
    row = decode(frame)
    assert stopped(row) == (Status.TOO_DEEP, Layer.VXLAN) and row["tunnels"] == MAX_TUNNEL_DEPTH
    assert (row["outer_vni"], row["vni"]) == (MAX_TUNNEL_DEPTH + 1, 2)


def test_esp_by_protocol_and_in_udp():
    esp = struct.pack("!II", 0xC0FFEE01, 77) + bytes(32)
    row = decode(ether(ipv4(esp, 50, "192.168.0.1", "192.168.0.2")))
    assert (row["encap"], row["tunnels"], row["spi"], row["esp_seq"], row["proto"]) == (
        Encap.ESP,
        1,
        0xC0FFEE01,
        77,
        50,
    )
    assert src(row) == src(row, "o_") == addr("192.168.0.1") and row["app"] == AppHint.NONE
    row = decode(underlay(esp, 4500, 4500))
    assert (row["encap"], row["spi"], row["esp_seq"], row["proto"]) == (Encap.ESP_UDP, 0xC0FFEE01, 77, 17)
    row = decode(ether(ipv4(esp[:6], 50)))
    assert stopped(row) == (Status.MALFORMED, Layer.ESP) and row["spi"] == 0xC0FFEE01


def test_ike_and_nat_keepalive_on_4500():
    assert decode(underlay(bytes(4) + b"\x21\x20\x22\x08" + bytes(20), 4500))["encap"] == Encap.IKE
    row = decode(underlay(b"\xff", 4500))
    assert row["encap"] == Encap.NAT_KEEPALIVE and stopped(row)[0] == Status.OK
    assert stopped(decode(underlay(b"\xfe", 4500))) == (Status.MALFORMED, Layer.ESP)


# -- application hints --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        (b"GET / HTTP/1.1\r\n", AppHint.HTTP_REQUEST),
        (b"OPTIONS * HTTP/1.1\r\n", AppHint.HTTP_REQUEST),
        (b"CONNECT host:443 HTTP/1.1\r\n", AppHint.HTTP_REQUEST),
        (b"get / HTTP/1.1\r\n", AppHint.TEXT),  # methods are upper case
        (b"GETX / HTTP/1.1\r\n", AppHint.TEXT),
        (b"GET", AppHint.TEXT),  # no space after the method
        (b"HTTP/1.1 200 OK\r\n", AppHint.HTTP_RESPONSE),
        (b"HTTP/2 200\r\n", AppHint.TEXT),
        (b"*3\r\n$3\r\nSET\r\n", AppHint.RESP_COMMAND),
        (b"*123456\r\n$", AppHint.RESP_COMMAND),
        (b"*1234567\r\n$", AppHint.TEXT),  # seven digits
        (b"*2\r\n:1\r\n", AppHint.RESP_REPLY),  # an array, not of bulk strings
        (b"*-1\r\n", AppHint.RESP_REPLY),
        (b"+PONG\r\n", AppHint.RESP_REPLY),
        (b"-ERR unknown\r\n", AppHint.RESP_REPLY),
        (b"+\r\n", AppHint.TEXT),  # '+' then a byte that is not printable
        (b"+", AppHint.TEXT),
        (b":-42\r\n", AppHint.RESP_REPLY),
        (b":" + b"1" * 20 + b"\r\n", AppHint.RESP_REPLY),
        (b":" + b"1" * 21 + b"\r\n", AppHint.TEXT),
        (b"$-1\r\n", AppHint.RESP_REPLY),
        (b"$0\r\n\r\n", AppHint.RESP_REPLY),
        (b"$12345678901\r\n", AppHint.TEXT),
        (b"$-2\r\n", AppHint.TEXT),
        (b"\x16\x03\x01\x02\x00\x01", AppHint.TLS),
        (b"\x17\x03\x03\x00\x20", AppHint.TLS),
        (b"\x16\x03\x05\x00\x20", AppHint.BINARY),  # byte 2 above 4
        (b"\x16\x03\x01\x00", AppHint.BINARY),  # fewer than 5 bytes
        (b"SSH-2.0-OpenSSH_9.6\r\n", AppHint.SSH),
        (b"hello\tworld\r\n", AppHint.TEXT),
        (b"hello\x00", AppHint.BINARY),
        (b"A" * 64 + b"\x00", AppHint.TEXT),  # only the first 64 bytes are examined
        (b"\xff", AppHint.BINARY),
    ],
    ids=repr,
)
def test_app_hint(payload, hint):
    row = decode(ether(ipv4(tcp(payload, 5000, 6000), 6)))
    assert AppHint(int(row["app"])) == hint and row["payload_len"] == len(payload)


def test_no_payload_no_hint():
    assert decode(ether(ipv4(tcp(b""), 6)))["app"] == AppHint.NONE


# -- the batch wrapper ---------------------------------------------------------------


def test_threads_split_the_batch_without_changing_a_row():
    frames = [vxlan_frame(vni=n % 5000)[: 20 + n % 120] for n in range(2 * MIN_RECORDS_PER_THREAD + 123)]
    batch = batch_of(frames, LinkType.ETHERNET)
    assert np.array_equal(decode_batch(batch, threads=2), decode_batch(batch, threads=1))


def test_helper_threads_are_kept_and_write_into_the_given_table():
    frames = [vxlan_frame(vni=n % 5000)[: 20 + n % 120] for n in range(3 * MIN_RECORDS_PER_THREAD + 7)]
    batch = batch_of(frames, LinkType.ETHERNET)
    alone = decode_batch(batch, threads=1)
    helpers = []
    for _ in range(5):
        out = np.empty(len(batch), dtype=PACKET_DTYPE)
        assert decode_batch(batch, threads=2, out=out) is out
        assert np.array_equal(out, alone)
        helpers.append({t.ident for t in threading.enumerate() if t.name.startswith("vxlaninspect-kernel")})
    assert len(helpers[0]) >= 1 and all(h == helpers[0] for h in helpers)  # the same threads every time
    assert np.array_equal(decode_batch(batch, threads=3), alone)  # the pool grows when asked for more


def test_a_forked_child_decodes_on_threads_of_its_own():
    """The parent's helper threads do not exist in a child made by fork: waiting on them would hang."""
    frames = [vxlan_frame(vni=n % 5000)[: 20 + n % 120] for n in range(2 * MIN_RECORDS_PER_THREAD + 123)]
    batch = batch_of(frames, LinkType.ETHERNET)
    expected = decode_batch(batch, threads=2)  # the parent now has helper threads
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        rows = decode_batch(batch, threads=2)
        os.write(writer, b"same" if np.array_equal(rows, expected) else b"diff")
        os._exit(0)
    os.close(writer)
    try:
        finished, deadline = False, time.monotonic() + 60
        while not finished and time.monotonic() < deadline:
            finished = os.waitpid(child, os.WNOHANG)[0] == child
            time.sleep(0 if finished else 0.05)
        if not finished:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        assert finished, "the child hung decoding on threads"
        assert os.read(reader, 4) == b"same"
    finally:
        os.close(reader)


def test_empty_batch():
    rows = decode_batch(batch_of([], LinkType.ETHERNET))
    assert rows.dtype == PACKET_DTYPE and len(rows) == 0


def test_record_outside_the_buffer_is_refused():
    batch = batch_of([vxlan_frame()], LinkType.ETHERNET)
    bad = RecordBatch(
        batch.data[:-1], batch.data_start, batch.caplen, batch.wirelen, batch.ts_ns, batch.linktype, batch.rec_offset
    )
    with pytest.raises(ValueError, match="outside"):
        decode_batch(bad)


# -- memory safety ---------------------------------------------------------------------

BOUNDS_CHECK_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from tests.conftest import corpus_captures
    from tests.test_kernel import read_pcap, vxlan_frame
    from vxlaninspect.config import DEFAULT_CONFIG
    from vxlaninspect.kernel import decode_records
    from vxlaninspect.schema import LinkType, empty_table

    ports = DEFAULT_CONFIG.port_table()
    undecoded, row = empty_table(1), empty_table(1)
    one = np.zeros(1, dtype=np.int64)
    records = 0
    samples = [(LinkType.ETHERNET, [vxlan_frame()])] + [read_pcap(path) for path in corpus_captures()]
    for linktype, frames in samples:
        for frame in frames:
            for cut in range(len(frame) + 1):
                # each cut alone in a buffer of its own size: a read past its end is an IndexError
                buf = np.frombuffer(frame[:cut], dtype=np.uint8)
                caplen = np.array([cut], dtype=np.uint32)
                for lt in (linktype, LinkType.RAW):
                    decode_records(buf, one * 0, caplen, caplen, one, one, np.array([lt], np.uint16), ports, undecoded, row)
                    records += 1
    print(records)
    """
)


@pytest.mark.slow
def test_no_read_past_any_record_under_numba_boundscheck(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", BOUNDS_CHECK_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 1000


CACHE_SCRIPT = textwrap.dedent(
    """
    from tests.test_kernel import batch_of, vxlan_frame
    from vxlaninspect.kernel import decode_batch, decode_records

    decode_batch(batch_of([vxlan_frame()], 1))
    print(len(decode_records.stats.cache_hits), len(decode_records.stats.cache_misses))
    """
)


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_kernel_from_the_cache(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", CACHE_SCRIPT],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        for _ in range(2)
    ]
    assert [run.stdout.split() for run in runs] == [["0", "1"], ["1", "0"]], runs[-1].stderr[-2000:]


def sample_frames() -> list[tuple[int, list[bytes]]]:
    """The corpus captures, and a VXLAN frame cut every few bytes."""
    return [(LinkType.ETHERNET, [vxlan_frame()[:n] for n in range(0, 120, 7)])] + [
        read_pcap(p) for p in corpus_captures()
    ]


PLAIN_PYTHON_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tests.test_kernel import batch_of, sample_frames
    from vxlaninspect.kernel import decode_batch

    for linktype, frames in sample_frames():
        np.save(sys.stdout.buffer, decode_batch(batch_of(frames, linktype)), allow_pickle=False)
    """
)


def test_numba_disable_jit_runs_the_same_decoder_as_plain_python():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run(
        [sys.executable, "-c", PLAIN_PYTHON_SCRIPT], cwd=REPO, env=env, capture_output=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    stream = io.BytesIO(run.stdout)
    for linktype, frames in sample_frames():
        assert np.array_equal(np.load(stream, allow_pickle=False), decode_batch(batch_of(frames, linktype)))
