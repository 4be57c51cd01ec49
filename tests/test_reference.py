"""The reference decoder: the corpus as its MANIFEST describes it, and every rule of the schema on dpkt-built packets."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, corpus_captures
from vxlaninspect.config import DecodeConfig
from vxlaninspect.records import RecordBatch
from vxlaninspect.reference import app_hint, decode_batch, decode_frame
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

# -- reading captures ---------------------------------------------------------


def read_pcap(path: Path) -> tuple[int, list[bytes]]:
    """The link type and captured frames of a pcap file.

    The link type field's upper bits carry FCS information (esp_truncated.pcap has
    0x40000001), so only its low 16 bits name the link type.
    """
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink() & 0xFFFF, [bytes(buf) for _, buf in reader]


def decode_capture(name: str, config: DecodeConfig | None = None) -> np.ndarray:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus capture {name} not found")
    linktype, frames = read_pcap(path)
    kwargs = {} if config is None else {"config": config}
    return np.array([decode_frame(frame, linktype, **kwargs) for frame in frames], dtype=PACKET_DTYPE)


def v4(address: str) -> tuple[int, int]:
    return 0, IPV4_MAPPED_PREFIX | int(ipaddress.IPv4Address(address))


def v6(address: str) -> tuple[int, int]:
    return divmod(int(ipaddress.IPv6Address(address)), 1 << 64)


def src(row) -> tuple[int, int]:
    return int(row["src_hi"]), int(row["src_lo"])


def dst(row) -> tuple[int, int]:
    return int(row["dst_hi"]), int(row["dst_lo"])


def has(row, flag: PacketFlag) -> bool:
    return bool(int(row["flags"]) & flag)


def payload(row, frame: bytes) -> bytes:
    start = int(row["payload_off"])
    return frame[start : start + int(row["payload_len"])]


# -- the corpus, as MANIFEST.md describes it ----------------------------------


@pytest.mark.parametrize("path", corpus_captures(), ids=lambda p: p.name)
def test_every_corpus_capture_decodes_each_record(path):
    linktype, frames = read_pcap(path)
    rows = [decode_frame(frame, linktype) for frame in frames]
    assert len(rows) == len(frames) > 0
    cut_short = [i for i, row in enumerate(rows) if row["status"] != Status.OK]
    # Only the fuzzed esp_truncated.pcap has a header cut by its snaplen.
    assert cut_short == ([0] if path.name == "tcpdump__esp_truncated.pcap" else [])


@pytest.mark.parametrize("name, dport", [("tcpdump__vxlan.pcap", 4789), ("tcpdump__vxlan_port_8472.pcap", 8472)])
def test_tcpdump_vxlan_vni_100_carrying_arp_and_icmp_echo(corpus, name, dport):
    rows = decode_capture(name)
    assert len(rows) == 10
    assert set(rows["encap"]) == {Encap.VXLAN} and set(rows["vni"]) == {100} and set(rows["outer_vni"]) == {100}
    assert set(rows["vxlan_flags"]) == {0x08} and set(rows["o_dport"]) == {dport} and set(rows["tunnels"]) == {1}
    arp = rows[rows["ethertype"] == 0x0806]
    icmp = rows[rows["proto"] == 1]
    assert len(arp) == 2 and all(has(r, PacketFlag.NON_IP) and r["ipver"] == 0 and src(r) == (0, 0) for r in arp)
    assert len(icmp) == 8 and sorted(Counter(icmp["sport"]).items()) == [(0, 4), (8, 4)]  # echo reply / request
    assert set(icmp["dport"]) == {0} and set(icmp["o_proto"]) == {17}


def test_port_8472_is_vxlan_only_while_configured(corpus):
    rows = decode_capture("tcpdump__vxlan_port_8472.pcap", DecodeConfig(vxlan_ports=(4789,)))
    assert set(rows["encap"]) == {Encap.NONE} and set(rows["vni"]) == {NO_VNI}
    assert set(rows["proto"]) == {17} and set(rows["dport"]) == {8472} and set(rows["app"]) == {AppHint.BINARY}


def test_aws_traffic_mirror_vni_5569041_with_ssh_dns_ntp(corpus):
    rows = decode_capture("suricata-verify__vxlan-decoder-03_aws-mirror.pcap")
    assert len(rows) == 100 and set(rows["vni"]) == {5569041} and set(rows["vxlan_flags"]) == {0x08}
    assert set(rows["o_dport"]) == {4789} and len(set(rows["o_sport"])) > 1
    tcp = rows[rows["proto"] == 6]
    assert len(tcp) == 82 and all(22 in (r["sport"], r["dport"]) for r in tcp)
    udp = rows[rows["proto"] == 17]
    assert Counter(min(int(r["sport"]), int(r["dport"])) for r in udp) == {53: 16, 123: 2}
    assert AppHint.SSH in set(tcp["app"])


def test_vxlan_flags_0xff_and_reserved_bytes_still_give_vni_11(corpus):
    linktype, frames = read_pcap(CORPUS / "suricata-verify__vxlan-non-zero-reserved-fields.pcap")
    rows = [decode_frame(frame, linktype) for frame in frames]
    assert len(rows) == 10
    for row in rows:
        assert row["vni"] == 11 and row["vxlan_flags"] == 0xFF and row["o_sport"] == 49152
        assert has(row, PacketFlag.VXLAN_RESERVED) and not has(row, PacketFlag.VXLAN_NO_VNI_FLAG)
    assert Counter(80 == r["dport"] for r in rows) == {True: 5, False: 5}
    apps = Counter(AppHint(r["app"]) for r in rows)
    assert apps[AppHint.HTTP_REQUEST] == 1 and apps[AppHint.HTTP_RESPONSE] == 1
    (request,) = [payload(r, f) for r, f in zip(rows, frames) if r["app"] == AppHint.HTTP_REQUEST]
    assert request.startswith(b"GET ")


@pytest.mark.parametrize(
    "name, inner_src, inner_dst, payload_bytes",
    [
        ("tcpdump__gso-ipv6-vxlan-ipv4.pcap", v4("192.168.1.2"), v4("192.168.1.1"), 6890),
        ("tcpdump__gso-ipv6-vxlan-ipv6.pcap", v6("fd00::2"), v6("fd00::1"), 4074),
    ],
)
def test_gso_super_frame_over_ipv6_vni_5001(corpus, name, inner_src, inner_dst, payload_bytes):
    (row,) = decode_capture(name)
    assert row["status"] == Status.OK and row["o_ipver"] == 6 and row["o_dport"] == 4789 and row["vni"] == 5001
    assert src(row) == inner_src and dst(row) == inner_dst and row["proto"] == 6
    assert row["payload_len"] == row["payload_wire"] == payload_bytes
    assert row["flags"] == PacketFlag.NONE


def test_geneve_carrying_ip_then_vxlan_4242_with_truncated_dns(corpus):
    rows = decode_capture("zeek__geneve-vxlan-dns-truncated.pcap")
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == Status.OK and row["tunnels"] == 2 and row["encap"] == Encap.VXLAN
        assert row["outer_vni"] == 0x1092 and row["vni"] == 4242
        assert has(row, PacketFlag.INNER_NOT_ETHERNET) and has(row, PacketFlag.PAYLOAD_TRUNCATED)
        assert row["proto"] == 17 and 53 in (row["sport"], row["dport"])
        assert row["payload_len"] < row["payload_wire"] and row["caplen"] == 176
        assert row["o_src_lo"] == row["o_dst_lo"] == v4("127.0.0.1")[1]


def test_esp_proto_50_sunrise_sunset_spi_and_sequence(corpus):
    rows = decode_capture("tcpdump__02-sunrise-sunset-esp.pcap")
    assert len(rows) == 8 and set(rows["encap"]) == {Encap.ESP} and set(rows["proto"]) == {50}
    assert set(rows["spi"]) == {0x12345678} and list(rows["esp_seq"]) == list(range(1, 9))
    assert {src(r) for r in rows} == {v4("192.1.2.23")} and {dst(r) for r in rows} == {v4("192.1.2.45")}
    assert set(rows["vni"]) == {NO_VNI} and set(rows["app"]) == {AppHint.NONE}


def test_wireshark_esp_sample_ipv4_and_ipv6_sixteen_spis(corpus):
    rows = decode_capture("arkime__wireshark-esp.pcap")
    assert len(rows) == 240 and set(rows["encap"]) == {Encap.ESP} and set(rows["tunnels"]) == {1}
    assert Counter(rows["ipver"]) == {4: 120, 6: 120}
    spis = set(int(s) for s in rows["spi"])
    assert len(spis) == 16 and all(0x6E <= s <= 0x7B or 0x0A <= s <= 0x17 for s in spis)


def test_esp_in_udp_4500(corpus):
    rows = decode_capture("tcpdump__espudp1.pcap")
    assert len(rows) == 8 and set(rows["encap"]) == {Encap.ESP_UDP} and set(rows["spi"]) == {0x12345678}
    assert set(rows["sport"]) == set(rows["dport"]) == {4500} and set(rows["proto"]) == {17}
    assert set(rows["payload_len"]) == {0} and set(rows["app"]) == {AppHint.NONE}


def test_esp_truncated_4500_to_8472_takes_the_destination_port(corpus):
    (row,) = decode_capture("tcpdump__esp_truncated.pcap")
    assert row["caplen"] == 46 and (row["o_sport"], row["o_dport"]) == (4500, 8472)
    assert (row["status"], row["error_layer"]) == (Status.TRUNCATED, Layer.VXLAN)
    assert row["encap"] == Encap.VXLAN and row["vni"] == NO_VNI and row["ipver"] == 0  # nothing read inside
    assert row["o_ipver"] == 4 and has(row, PacketFlag.OUTER_FRAGMENT) and not has(row, PacketFlag.FRAGMENT)

    (as_esp,) = decode_capture("tcpdump__esp_truncated.pcap", DecodeConfig(vxlan_ports=(4789,)))
    assert (as_esp["status"], as_esp["error_layer"]) == (Status.TRUNCATED, Layer.ESP)
    assert as_esp["encap"] == Encap.ESP_UDP and as_esp["spi"] != 0 and as_esp["esp_seq"] == 0
    assert (as_esp["sport"], as_esp["dport"]) == (4500, 8472) and has(as_esp, PacketFlag.FRAGMENT)


@pytest.mark.parametrize("name, packets", [("tcpdump__resp_1_benchmark.pcap", 150), ("tcpdump__resp_3_malicious.pcap", 163)])
def test_redis_over_linux_cooked_sll(corpus, name, packets):
    rows = decode_capture(name)
    assert len(rows) == packets and set(rows["linktype"]) == {LinkType.LINUX_SLL}
    assert set(rows["proto"]) == {6} and all(6379 in (r["sport"], r["dport"]) for r in rows)
    assert {src(r) for r in rows} == {v4("127.0.0.1")} and set(rows["ethertype"]) == {0x0800}
    apps = set(rows["app"])
    assert AppHint.RESP_COMMAND in apps and AppHint.RESP_REPLY in apps


def test_redis_benchmark_has_15_connections_starting_with_inline_ping(corpus):
    linktype, frames = read_pcap(CORPUS / "tcpdump__resp_1_benchmark.pcap")
    rows = [decode_frame(frame, linktype) for frame in frames]
    clients = {r["sport"] for r in rows if r["dport"] == 6379}
    assert len(clients) == 15
    first = next(payload(r, f) for r, f in zip(rows, frames) if r["payload_len"] and r["dport"] == 6379)
    assert first == b"PING\r\n" and app_hint(first) == AppHint.TEXT


def test_redis_50_pings_one_connection_with_auth(corpus):
    linktype, frames = read_pcap(CORPUS / "zeek__redis-50-pings.pcap")
    rows = [decode_frame(frame, linktype) for frame in frames]
    assert len(rows) == 116 and linktype == LinkType.ETHERNET
    assert len({(r["sport"], r["dport"]) for r in rows}) == 2  # one connection, both directions
    sent = [payload(r, f) for r, f in zip(rows, frames) if r["dport"] == 6379 and r["payload_len"]]
    assert all(app_hint(p) == AppHint.RESP_COMMAND for p in sent)
    assert b"AUTH" in sent[0] and sum(b"PING" in p for p in sent) == 50
    replies = [payload(r, f) for r, f in zip(rows, frames) if r["sport"] == 6379 and r["payload_len"]]
    assert replies.count(b"+PONG\r\n") == 50


def test_docker_engine_api_http_on_2375(corpus):
    linktype, frames = read_pcap(CORPUS / "zeek__docker-http-upgrade.pcap")
    rows = [decode_frame(frame, linktype) for frame in frames]
    assert len(rows) == 200 and all(2375 in (r["sport"], r["dport"]) for r in rows)
    requests = [payload(r, f) for r, f in zip(rows, frames) if r["app"] == AppHint.HTTP_REQUEST]
    responses = [payload(r, f) for r, f in zip(rows, frames) if r["app"] == AppHint.HTTP_RESPONSE]
    assert any(p.startswith(b"HEAD /_ping ") for p in requests)
    assert any(p.startswith(b"HTTP/1.1 101 ") for p in responses)


def test_sll2_tcp_handshake_and_get(corpus):
    linktype, frames = read_pcap(CORPUS / "suricata-verify__decode-sll2-01.pcap")
    rows = [decode_frame(frame, linktype) for frame in frames]
    assert linktype == LinkType.LINUX_SLL2 and len(rows) == 5
    server = (v4("192.168.1.21"), 80)
    assert all(server in ((src(r), r["sport"]), (dst(r), r["dport"])) for r in rows)
    assert [r["tcp_flags"] for r in rows[:2]] == [dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK]
    (get,) = [(r, f) for r, f in zip(rows, frames) if r["app"] == AppHint.HTTP_REQUEST]
    assert payload(*get).startswith(b"GET /testing ")


def test_decode_batch_takes_record_fields_from_the_batch(corpus):
    linktype, frames = read_pcap(CORPUS / "zeek__geneve-vxlan-dns-truncated.pcap")
    data = np.frombuffer(b"\xee" * 3 + b"".join(frames), dtype=np.uint8)
    starts = np.cumsum([3] + [len(f) for f in frames[:-1]])
    batch = RecordBatch(
        data=data,
        data_start=starts.astype(np.int64),
        caplen=np.array([len(f) for f in frames], dtype=np.uint32),
        wirelen=np.array([182, 202], dtype=np.uint32),
        ts_ns=np.array([1_000, 2_000], dtype=np.int64),
        linktype=np.full(len(frames), linktype, dtype=np.uint16),
        rec_offset=np.array([24, 24 + 16 + 176], dtype=np.int64),
    )
    rows = decode_batch(batch)
    assert rows.dtype == PACKET_DTYPE
    for name in ("data_start", "caplen", "wirelen", "ts_ns", "linktype", "rec_offset"):
        assert list(rows[name]) == list(getattr(batch, name))
    for row, frame in zip(rows, frames):
        alone = decode_frame(frame, linktype)
        decoded = [n for n in PACKET_DTYPE.names if n not in ("data_start", "wirelen", "ts_ns", "rec_offset")]
        assert all(row[n] == alone[n] for n in decoded)


# -- building packets ---------------------------------------------------------

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"


def ether(data: bytes, ethertype: int = 0x0800) -> bytes:
    """An Ethernet header by dpkt, then ``data`` as is (dpkt would re-parse and re-pack a payload given to it)."""
    return bytes(dpkt.ethernet.Ethernet(dst=MAC_B, src=MAC_A, type=ethertype)) + data


def vlan_ether(data: bytes, tags: list[tuple[int, int]], ethertype: int = 0x0800) -> bytes:
    """An Ethernet header with ``tags`` as (TPID, VID) pairs, written out by hand."""
    return MAC_B + MAC_A + b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in tags) + struct.pack(">H", ethertype) + data


def ipv4(data: bytes, proto: int, src: str = "10.0.0.1", dst: str = "10.0.0.2", **fields) -> bytes:
    packet = dpkt.ip.IP(src=ipaddress.IPv4Address(src).packed, dst=ipaddress.IPv4Address(dst).packed, p=proto, data=data, **fields)
    return bytes(packet)


def ipv6(data: bytes, nxt: int, src: str = "2001:db8::1", dst: str = "2001:db8::2", plen: int | None = None) -> bytes:
    packet = dpkt.ip6.IP6(
        src=ipaddress.IPv6Address(src).packed, dst=ipaddress.IPv6Address(dst).packed, nxt=nxt, hlim=64,
        plen=len(data) if plen is None else plen, data=data,
    )
    return bytes(packet)


def udp(data: bytes, sport: int, dport: int) -> bytes:
    return bytes(dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data))


def tcp(data: bytes, sport: int = 40000, dport: int = 80, **fields) -> bytes:
    return bytes(dpkt.tcp.TCP(sport=sport, dport=dport, seq=1000, ack=2000, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=data, **fields))


def vxlan(vni: int, flags: int = 0x08, reserved: bytes = b"\0\0\0", last: int = 0) -> bytes:
    """VXLAN (RFC 7348): flags, 3 reserved bytes, VNI, 1 reserved byte."""
    return struct.pack(">B3s3sB", flags, reserved, vni.to_bytes(3, "big"), last)


def geneve(vni: int, protocol: int, options: bytes = b"") -> bytes:
    """Geneve (RFC 8926): version 0 and option length in words, flags, protocol type, VNI, reserved."""
    return struct.pack(">BBH3sB", len(options) // 4, 0, protocol, vni.to_bytes(3, "big"), 0) + options


def gpe(vni: int, next_protocol: int, flags: int = 0x0C) -> bytes:
    """VXLAN-GPE: flags, 2 reserved bytes, next protocol, VNI, reserved."""
    return struct.pack(">BHB3sB", flags, 0, next_protocol, vni.to_bytes(3, "big"), 0)


def ipv6_option_header(nxt: int, body: bytes = b"\x01\x04\0\0\0\0") -> bytes:
    """Hop-by-Hop, Destination Options or Routing: next header, length in 8-byte units beyond the first 8."""
    assert (2 + len(body)) % 8 == 0
    return bytes([nxt, (2 + len(body)) // 8 - 1]) + body


def ipv6_fragment_header(nxt: int, offset: int = 0, more: bool = True) -> bytes:
    return struct.pack(">BBHI", nxt, 0, offset << 3 | more, 0x1234)


def ah_header(nxt: int) -> bytes:
    """AH: payload length in 4-byte words minus 2; SPI, sequence and a 12-byte ICV."""
    return struct.pack(">BBHII", nxt, 4, 0, 0x100, 1) + b"\xaa" * 12


HTTP_GET = b"GET / HTTP/1.1\r\nHost: db\r\n\r\n"


def inner_http(src: str = "172.17.0.2", dst: str = "172.17.0.3") -> bytes:
    return ether(ipv4(tcp(HTTP_GET), 6, src, dst))


def vxlan_frame(inner: bytes, vni: int = 4096, sport: int = 49152, dport: int = 4789, **vxlan_fields) -> bytes:
    return ether(ipv4(udp(vxlan(vni, **vxlan_fields) + inner, sport, dport), 17, "192.168.0.1", "192.168.0.2"))


def patched(frame: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(frame)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def stopped(row) -> tuple[Status, Layer]:
    return Status(row["status"]), Layer(row["error_layer"])


# -- link layers --------------------------------------------------------------

IP_PACKET = ipv4(tcp(HTTP_GET), 6)
IP6_PACKET = ipv6(tcp(HTTP_GET), 6)


@pytest.mark.parametrize(
    "linktype, header, packet",
    [
        (LinkType.ETHERNET, MAC_B + MAC_A + b"\x08\x00", IP_PACKET),
        (LinkType.LINUX_SLL, bytes(dpkt.sll.SLL(type=0, hrd=1, hlen=6, hdr=MAC_A + b"\0\0", ethtype=0x0800)), IP_PACKET),
        (LinkType.LINUX_SLL2, bytes(dpkt.sll2.SLL2(ethtype=0x86DD, intindex=3, hrd=1, type=4, hlen=6, hdr=MAC_A + b"\0\0")), IP6_PACKET),
        (LinkType.NULL, struct.pack("<I", 2), IP_PACKET),
        *[(LinkType.NULL, struct.pack("<I", family), IP6_PACKET) for family in (10, 24, 28, 30)],
        (LinkType.LOOP, struct.pack(">I", 2), IP_PACKET),
        (LinkType.LOOP, struct.pack(">I", 24), IP6_PACKET),
        (LinkType.RAW, b"", IP_PACKET),
        (LinkType.RAW, b"", IP6_PACKET),
        (LinkType.IPV4, b"", IP_PACKET),
        (LinkType.IPV6, b"", IP6_PACKET),
    ],
)
def test_each_link_type_reaches_the_http_request(linktype, header, packet):
    row = decode_frame(header + packet, linktype)
    version = 4 if packet is IP_PACKET else 6
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert row["linktype"] == linktype and row["ipver"] == row["o_ipver"] == version
    assert row["ethertype"] == (0x0800 if version == 4 else 0x86DD)
    assert (row["sport"], row["dport"], row["app"]) == (40000, 80, AppHint.HTTP_REQUEST)
    assert row["payload_off"] == len(header) + len(packet) - len(HTTP_GET)
    assert row["caplen"] == row["wirelen"] == len(header) + len(packet)


@pytest.mark.parametrize(
    "linktype, frame",
    [
        (LinkType.RAW, b"\x50" + IP_PACKET[1:]),
        (105, IP_PACKET),  # IEEE 802.11 is not decoded
        (0xFFFF, IP_PACKET),
    ],
)
def test_unknown_link_types_and_families_are_unsupported(linktype, frame):
    row = decode_frame(frame, linktype)
    assert stopped(row) == (Status.UNSUPPORTED, Layer.LINK) and row["o_ipver"] == 0 and row["linktype"] == linktype


@pytest.mark.parametrize(
    "linktype, family",
    [
        (LinkType.NULL, struct.pack(">I", 2)),  # big-endian family under host (little-endian) order
        (LinkType.NULL, struct.pack("<I", 7)),
        (LinkType.LOOP, struct.pack("<I", 2)),
    ],
)
def test_other_loopback_families_are_non_ip_frames(linktype, family):
    row = decode_frame(family + IP_PACKET, linktype)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.NON_IP)
    assert row["o_ipver"] == row["ipver"] == row["ethertype"] == 0


def test_link_type_beyond_16_bits_is_refused():
    with pytest.raises(ValueError, match="link type"):
        decode_frame(IP_PACKET, 1 << 16)


def test_any_bytes_like_frame_is_accepted():
    frame = ether(IP_PACKET)
    expected = decode_frame(frame, LinkType.ETHERNET)
    for variant in (bytearray(frame), memoryview(frame), np.frombuffer(frame, dtype=np.uint8)):
        assert decode_frame(variant, LinkType.ETHERNET).tobytes() == expected.tobytes()


@pytest.mark.parametrize("ethertype", [0x0806, 0x88CC, 0x0004])
def test_non_ip_frames_are_ok_and_flagged(ethertype):
    arp = bytes(dpkt.arp.ARP(sha=MAC_A, spa=b"\x0a\0\0\x01", tha=b"\0" * 6, tpa=b"\x0a\0\0\x02"))
    row = decode_frame(ether(arp, ethertype), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["ethertype"] == ethertype
    assert has(row, PacketFlag.NON_IP) and row["ipver"] == row["o_ipver"] == 0


def test_arp_cut_short_is_truncated_at_arp():
    arp = bytes(dpkt.arp.ARP(sha=MAC_A, spa=b"\x0a\0\0\x01", tha=b"\0" * 6, tpa=b"\x0a\0\0\x02"))
    assert stopped(decode_frame(ether(arp, 0x0806)[:14 + 27], LinkType.ETHERNET)) == (Status.TRUNCATED, Layer.ARP)
    assert stopped(decode_frame(ether(arp, 0x0806)[:14 + 7], LinkType.ETHERNET)) == (Status.TRUNCATED, Layer.ARP)


# -- VLAN ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [[(0x8100, 100)], [(0x88A8, 200), (0x8100, 100)], [(0x9100, 7), (0x8100, 8)], [(0x8100, n) for n in range(1, MAX_VLAN_TAGS + 1)]],
)
def test_vlan_tags_are_stripped_and_the_first_vid_kept(tags):
    row = decode_frame(vlan_ether(IP_PACKET, tags), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert row["vlan"] == tags[0][1] and row["vlans"] == len(tags) and row["dport"] == 80


def test_a_fifth_vlan_tag_is_not_followed():
    row = decode_frame(vlan_ether(IP_PACKET, [(0x8100, n) for n in range(1, MAX_VLAN_TAGS + 2)]), LinkType.ETHERNET)
    assert stopped(row) == (Status.UNSUPPORTED, Layer.VLAN) and row["vlans"] == MAX_VLAN_TAGS and row["vlan"] == 1


def test_vlan_tag_cut_short_is_truncated_at_vlan():
    frame = vlan_ether(IP_PACKET, [(0x88A8, 5), (0x8100, 6)])
    row = decode_frame(frame[:14 + 4 + 2], LinkType.ETHERNET)
    assert stopped(row) == (Status.TRUNCATED, Layer.VLAN) and row["vlans"] == 1 and row["vlan"] == 5


def test_vlan_tags_of_an_inner_frame_are_stripped_but_not_counted():
    inner = vlan_ether(ipv4(tcp(HTTP_GET), 6, "172.17.0.2", "172.17.0.3"), [(0x8100, 42)])
    frame = vxlan_frame(inner)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["vlans"] == 0 and row["vlan"] == 0
    assert row["app"] == AppHint.HTTP_REQUEST and payload(row, frame) == HTTP_GET


# -- truncation at every layer ------------------------------------------------


def expected_cut(cut: int, layers: list[tuple[int, Layer]], total: int) -> tuple[Status, Layer, bool]:
    """Status, layer and payload-truncated flag for a frame cut at ``cut``, from where each header ends."""
    for end, layer in layers:
        if cut < end:
            return Status.TRUNCATED, layer, False
    return Status.OK, Layer.NONE, cut < total


def assert_every_cut(frame: bytes, linktype: int, layers: list[tuple[int, Layer]]) -> None:
    for cut in range(len(frame) + 1):
        row = decode_frame(frame[:cut], linktype)
        status, layer, payload_cut = expected_cut(cut, layers, len(frame))
        assert stopped(row) == (status, layer), cut
        assert has(row, PacketFlag.PAYLOAD_TRUNCATED) == payload_cut, cut
        if status == Status.OK:
            assert row["payload_len"] == cut - layers[-1][0] and row["payload_wire"] == len(HTTP_GET)


def test_vxlan_frame_cut_at_every_byte():
    frame = vxlan_frame(inner_http())
    layers = [(14, Layer.LINK), (34, Layer.IPV4), (42, Layer.UDP), (50, Layer.VXLAN),
              (64, Layer.INNER_ETHERNET), (84, Layer.IPV4), (104, Layer.TCP)]
    assert len(frame) == 104 + len(HTTP_GET)
    assert_every_cut(frame, LinkType.ETHERNET, layers)


def test_geneve_with_options_cut_at_every_byte():
    inner = ipv4(udp(HTTP_GET, 5353, 9999), 17, "172.17.0.2", "172.17.0.3")
    frame = ether(ipv4(udp(geneve(77, 0x0800, b"\x01" * 8) + inner, 50000, 6081), 17))
    layers = [(14, Layer.LINK), (34, Layer.IPV4), (42, Layer.UDP), (58, Layer.GENEVE), (78, Layer.IPV4), (86, Layer.UDP)]
    assert_every_cut(frame, LinkType.ETHERNET, layers)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert row["vni"] == 77 and row["encap"] == Encap.GENEVE and row["inner_off"] == 58 and row["ethertype"] == 0x0800


def test_ipv6_with_extension_headers_cut_at_every_byte():
    chain = ipv6_option_header(60) + ipv6_option_header(44) + ipv6_fragment_header(17, 0, more=False)
    frame = ether(ipv6(chain + udp(HTTP_GET, 5353, 9999), 0), 0x86DD)
    layers = [(14, Layer.LINK), (54, Layer.IPV6), (78, Layer.IPV6_EXTENSION), (86, Layer.UDP)]
    assert_every_cut(frame, LinkType.ETHERNET, layers)


def test_sll2_cut_at_every_byte():
    header = bytes(dpkt.sll2.SLL2(ethtype=0x0800, intindex=1, hrd=772, type=0, hlen=6, hdr=b"\0" * 8))
    frame = header + ipv4(tcp(HTTP_GET), 6)
    assert_every_cut(frame, LinkType.LINUX_SLL2, [(20, Layer.LINK), (40, Layer.IPV4), (60, Layer.TCP)])


def test_payload_cut_keeps_status_ok_and_hints_on_the_captured_bytes():
    frame = vxlan_frame(inner_http())
    row = decode_frame(frame[:104 + 4], LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["app"] == AppHint.HTTP_REQUEST
    assert (row["payload_len"], row["payload_wire"]) == (4, len(HTTP_GET))
    row = decode_frame(frame[:104 + 3], LinkType.ETHERNET)
    assert row["app"] == AppHint.TEXT  # "GET" without its space is not yet a request


def test_fields_decoded_before_a_cut_keep_their_values():
    row = decode_frame(vxlan_frame(inner_http(), vni=5000)[:70], LinkType.ETHERNET)
    assert stopped(row) == (Status.TRUNCATED, Layer.IPV4)
    assert row["vni"] == 5000 and row["encap"] == Encap.VXLAN and row["ethertype"] == 0x0800
    assert row["o_src_lo"] == v4("192.168.0.1")[1] and row["ipver"] == 0 and row["inner_off"] == 50


# -- lengths ------------------------------------------------------------------


def test_ethernet_padding_is_not_payload():
    frame = ether(ipv4(tcp(b""), 6)) + b"\xde\xad" * 3
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["payload_len"] == row["payload_wire"] == 0
    assert row["app"] == AppHint.NONE and not has(row, PacketFlag.PAYLOAD_TRUNCATED)


def test_udp_length_shorter_than_ip_payload_bounds_the_payload():
    frame = patched(ether(ipv4(udp(b"abcdef", 1000, 2000), 17)), 14 + 20 + 4, ">H", 8 + 2)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert (row["payload_len"], row["payload_wire"]) == (2, 2) and payload(row, frame) == b"ab"


@pytest.mark.parametrize(
    "offset, fmt, value, layer",
    [
        (14 + 2, ">H", 19, Layer.IPV4),  # total length shorter than the header
        (14 + 0, ">B", 0x44, Layer.IPV4),  # IHL 4
        (14 + 0, ">B", 0x65, Layer.IPV4),  # version 6 under EtherType IPv4
        (14 + 20 + 4, ">H", 7, Layer.UDP),  # UDP length shorter than its header
        (14 + 20 + 4, ">H", 8 + 8 + 71, Layer.UDP),  # UDP length beyond the IP payload
        (50 + 14 + 2, ">H", 8 + 8 + 71, Layer.IPV4),  # inner IP length beyond the UDP datagram
        (84 + 12, ">B", 0x40, Layer.TCP),  # TCP data offset 4
        (84 + 12, ">B", 0xF0, Layer.TCP),  # TCP data offset 60 bytes, beyond the IP length
    ],
)
def test_lengths_that_cannot_be_right_are_malformed(offset, fmt, value, layer):
    frame = vxlan_frame(ether(ipv4(tcp(b"x" * 7), 6)))
    assert len(frame) == 14 + 20 + 8 + 8 + 14 + 20 + 20 + 7
    row = decode_frame(patched(frame, offset, fmt, value), LinkType.ETHERNET)
    assert stopped(row) == (Status.MALFORMED, layer)


def test_ipv6_lengths_that_cannot_be_right_are_malformed():
    inner = ether(ipv6(udp(b"data", 1, 2), 17), 0x86DD)
    frame = vxlan_frame(inner)
    row = decode_frame(patched(frame, 50 + 14 + 4, ">H", 200), LinkType.ETHERNET)
    assert stopped(row) == (Status.MALFORMED, Layer.IPV6)
    too_long_option = ether(ipv6(bytes([17, 3]) + b"\0" * 6 + udp(b"data", 1, 2), 0), 0x86DD)
    assert stopped(decode_frame(too_long_option, LinkType.ETHERNET)) == (Status.MALFORMED, Layer.IPV6_EXTENSION)


def test_ipv4_options_are_skipped_by_ihl():
    options = b"\x94\x04\x00\x00" + b"\x01" * 36  # router alert, then NOPs up to IHL 15
    frame = ether(ipv4(tcp(HTTP_GET), 6, hl=15, opts=options))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["dport"] == 80 and row["payload_off"] == 14 + 60 + 20
    assert stopped(decode_frame(frame[:14 + 59], LinkType.ETHERNET)) == (Status.TRUNCATED, Layer.IPV4)


def test_ipv4_length_zero_runs_to_the_captured_end():
    frame = patched(ether(ipv4(tcp(b"z" * 3000), 6)), 14 + 2, ">H", 0)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.IP_LENGTH_ZERO)
    assert row["payload_len"] == row["payload_wire"] == 3000 and not has(row, PacketFlag.PAYLOAD_TRUNCATED)
    cut = decode_frame(frame[:14 + 20 + 10], LinkType.ETHERNET)
    assert stopped(cut) == (Status.TRUNCATED, Layer.TCP)


def test_ipv6_payload_length_zero_without_and_with_jumbo_option():
    body = tcp(b"j" * 100)
    bare = ether(ipv6(body, 6, plen=0), 0x86DD)
    row = decode_frame(bare, LinkType.ETHERNET)
    assert has(row, PacketFlag.IP_LENGTH_ZERO) and row["payload_len"] == row["payload_wire"] == 100
    jumbo_length = 8 + 20 + 100 + 70_000  # more than was captured: the rest is beyond the snaplen
    hop_by_hop = bytes([6, 0, 0xC2, 4]) + jumbo_length.to_bytes(4, "big")
    jumbo = ether(ipv6(hop_by_hop + body, 0, plen=0), 0x86DD)
    row = decode_frame(jumbo, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and not has(row, PacketFlag.IP_LENGTH_ZERO)
    assert (row["payload_len"], row["payload_wire"]) == (100, 70_100) and has(row, PacketFlag.PAYLOAD_TRUNCATED)


def test_ipv6_version_mismatch_is_malformed():
    frame = patched(ether(IP6_PACKET, 0x86DD), 14, ">B", 0x45)
    assert stopped(decode_frame(frame, LinkType.ETHERNET)) == (Status.MALFORMED, Layer.IPV6)


@pytest.mark.parametrize(
    "options, jumbo",
    [
        (b"\x00\x01\x01\x00\xc2\x04" + (16 + 20 + 500).to_bytes(4, "big") + b"\x00" * 4, True),  # Pad1, PadN, jumbo, Pad1s
        (b"\x01\x04\x00\x00\x00\x00", False),  # PadN only
        (b"\xc2\x02\x00\x00\x01\x00", False),  # option 0xC2 with a wrong length is no jumbo option
        (b"\xc2\x04\x00\x00\x00\x00", False),  # a jumbo length of 0 is no length either
    ],
)
def test_jumbo_option_is_found_among_other_options(options, jumbo):
    hop_by_hop = bytes([6, (2 + len(options)) // 8 - 1]) + options
    frame = ether(ipv6(hop_by_hop + tcp(b""), 0, plen=0), 0x86DD)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.IP_LENGTH_ZERO) != jumbo
    assert row["payload_wire"] == (500 if jumbo else 0) and has(row, PacketFlag.PAYLOAD_TRUNCATED) == jumbo


# -- fragments ----------------------------------------------------------------


def test_first_ipv4_fragment_decodes_its_transport_header():
    frame = ether(ipv4(udp(b"a" * 100, 1000, 53)[:60], 17, mf=1))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.FRAGMENT)
    assert row["dport"] == 53 and (row["payload_len"], row["payload_wire"]) == (52, 100)


def test_later_ipv4_fragment_stops_after_the_ip_header():
    row = decode_frame(ether(ipv4(b"\x00\x35" + b"a" * 50, 17, offset=100)), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.FRAGMENT)
    assert row["proto"] == 17 and (row["sport"], row["dport"], row["payload_len"]) == (0, 0, 0)


@pytest.mark.parametrize("offset, ports", [(0, (1000, 53)), (10, (0, 0))])
def test_ipv6_fragment_header(offset, ports):
    frame = ether(ipv6(ipv6_fragment_header(17, offset) + udp(b"q" * 20, 1000, 53), 44), 0x86DD)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and has(row, PacketFlag.FRAGMENT)
    assert row["proto"] == row["o_proto"] == 17 and (row["sport"], row["dport"]) == ports


def test_fragmented_underlay_of_a_tunnel_is_an_outer_fragment():
    datagram = udp(vxlan(4096) + inner_http(), 49152, 4789)
    frame = ether(ipv4(datagram[:8 + 8 + 14 + 20 + 20], 17, mf=1))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["vni"] == 4096
    assert has(row, PacketFlag.OUTER_FRAGMENT) and not has(row, PacketFlag.FRAGMENT)
    assert row["payload_len"] == 0 and row["payload_wire"] == len(HTTP_GET) and has(row, PacketFlag.PAYLOAD_TRUNCATED)
    cut_in_header = decode_frame(ether(ipv4(datagram[:8 + 8 + 14 + 10], 17, mf=1)), LinkType.ETHERNET)
    assert stopped(cut_in_header) == (Status.TRUNCATED, Layer.IPV4)


def test_esp_over_a_fragment_is_an_inner_fragment():
    row = decode_frame(ether(ipv4(struct.pack(">II", 9, 1) + b"c" * 40, 50, mf=1)), LinkType.ETHERNET)
    assert has(row, PacketFlag.FRAGMENT) and not has(row, PacketFlag.OUTER_FRAGMENT) and row["spi"] == 9


# -- IPv6 extension headers ---------------------------------------------------


def test_ipv6_extension_headers_are_walked_to_the_transport():
    chain = ipv6_option_header(43) + ipv6_option_header(51, b"\x01\x04\0\0\0\0" + b"\0" * 8) + ah_header(60)
    chain += ipv6_option_header(6)
    frame = ether(ipv6(chain + tcp(HTTP_GET), 0), 0x86DD)
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["proto"] == row["o_proto"] == 6
    assert row["app"] == AppHint.HTTP_REQUEST and row["payload_off"] == 14 + 40 + len(chain) + 20


@pytest.mark.parametrize("count, status", [(MAX_IPV6_EXTENSIONS, Status.OK), (MAX_IPV6_EXTENSIONS + 1, Status.UNSUPPORTED)])
def test_at_most_max_ipv6_extensions_are_walked(count, status):
    chain = b"".join(ipv6_option_header(60) for _ in range(count - 1)) + ipv6_option_header(17)
    row = decode_frame(ether(ipv6(chain + udp(b"x", 1, 2), 60), 0x86DD), LinkType.ETHERNET)
    assert stopped(row) == (status, Layer.NONE if status == Status.OK else Layer.IPV6_EXTENSION)
    assert row["proto"] == (17 if status == Status.OK else 60)


# -- ICMP ---------------------------------------------------------------------


def test_icmp_type_and_code_fill_the_ports():
    echo = bytes(dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"ping")))
    row = decode_frame(ether(ipv4(echo, 1)), LinkType.ETHERNET)
    assert (row["proto"], row["sport"], row["dport"], row["o_sport"]) == (1, 8, 0, 0)
    unreachable = bytes(dpkt.icmp6.ICMP6(type=1, code=4, data=b"\0" * 4))
    row = decode_frame(ether(ipv6(unreachable, 58), 0x86DD), LinkType.ETHERNET)
    assert (row["proto"], row["sport"], row["dport"], row["payload_len"]) == (58, 1, 4, 0)
    assert stopped(decode_frame(ether(ipv4(echo, 1))[:14 + 20 + 3], LinkType.ETHERNET)) == (Status.TRUNCATED, Layer.ICMP)


# -- tunnels ------------------------------------------------------------------


def test_vxlan_vni_is_read_whatever_the_flags():
    row = decode_frame(vxlan_frame(inner_http(), vni=0xABCDEF, flags=0x00), LinkType.ETHERNET)
    assert row["vni"] == 0xABCDEF and row["vxlan_flags"] == 0 and has(row, PacketFlag.VXLAN_NO_VNI_FLAG)
    assert not has(row, PacketFlag.VXLAN_RESERVED)
    for fields in ({"flags": 0x88}, {"reserved": b"\0\x01\0"}, {"last": 1}):
        row = decode_frame(vxlan_frame(inner_http(), **fields), LinkType.ETHERNET)
        assert has(row, PacketFlag.VXLAN_RESERVED) and row["app"] == AppHint.HTTP_REQUEST, fields


def test_vxlan_inner_packet_and_underlay_are_both_kept():
    row = decode_frame(vxlan_frame(inner_http(), vni=4097), LinkType.ETHERNET)
    assert (row["o_ipver"], row["o_proto"], row["o_sport"], row["o_dport"]) == (4, 17, 49152, 4789)
    assert (int(row["o_src_hi"]), int(row["o_src_lo"])) == v4("192.168.0.1")
    assert src(row) == v4("172.17.0.2") and dst(row) == v4("172.17.0.3")
    assert (row["proto"], row["sport"], row["dport"], row["tcp_seq"], row["tcp_ack"]) == (6, 40000, 80, 1000, 2000)
    assert row["tcp_flags"] == dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH and row["inner_off"] == 50


def test_vxlan_carrying_arp_clears_the_inner_packet():
    arp = bytes(dpkt.arp.ARP(sha=MAC_A, spa=b"\x0a\0\0\x01", tha=b"\0" * 6, tpa=b"\x0a\0\0\x02"))
    row = decode_frame(vxlan_frame(ether(arp, 0x0806)), LinkType.ETHERNET)
    assert has(row, PacketFlag.NON_IP) and row["ethertype"] == 0x0806
    assert (row["ipver"], row["proto"], row["sport"], row["dport"]) == (0, 0, 0, 0) and src(row) == (0, 0)
    assert row["o_dport"] == 4789 and row["vni"] == 4096


@pytest.mark.parametrize(
    "protocol, inner, flag, ethertype",
    [
        (0x6558, inner_http(), False, 0x0800),
        (0x0800, ipv4(tcp(HTTP_GET), 6), True, 0x0800),
        (0x86DD, ipv6(tcp(HTTP_GET), 6), True, 0x86DD),
    ],
)
def test_geneve_protocol_types(protocol, inner, flag, ethertype):
    frame = ether(ipv4(udp(geneve(0x1092, protocol, b"\x00\x01\x02\x01" + b"\xff" * 4) + inner, 1, 6081), 17))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["encap"] == Encap.GENEVE and row["vni"] == 0x1092
    assert has(row, PacketFlag.INNER_NOT_ETHERNET) == flag and row["ethertype"] == ethertype
    assert row["app"] == AppHint.HTTP_REQUEST and row["vxlan_flags"] == 0


def test_geneve_unknown_protocol_type_is_unsupported():
    frame = ether(ipv4(udp(geneve(5, 0x8847) + b"\0" * 20, 1, 6081), 17))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.UNSUPPORTED, Layer.GENEVE) and row["vni"] == 5


@pytest.mark.parametrize(
    "next_protocol, inner, flag",
    [(3, inner_http(), False), (1, ipv4(tcp(HTTP_GET), 6), True), (2, ipv6(tcp(HTTP_GET), 6), True)],
)
def test_vxlan_gpe_next_protocols(next_protocol, inner, flag):
    frame = ether(ipv4(udp(gpe(321, next_protocol) + inner, 1, 4790), 17))
    row = decode_frame(frame, LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["encap"] == Encap.VXLAN_GPE
    assert row["vni"] == 321 and row["vxlan_flags"] == 0x0C and has(row, PacketFlag.INNER_NOT_ETHERNET) == flag
    assert row["app"] == AppHint.HTTP_REQUEST


def test_vxlan_gpe_other_next_protocol_is_unsupported():
    row = decode_frame(ether(ipv4(udp(gpe(9, 4) + b"\0" * 30, 1, 4790), 17)), LinkType.ETHERNET)
    assert stopped(row) == (Status.UNSUPPORTED, Layer.VXLAN_GPE) and row["vni"] == 9


@pytest.mark.parametrize(
    "sport, dport, encap",
    [(4789, 6081, Encap.GENEVE), (6081, 4789, Encap.VXLAN), (4789, 33333, Encap.VXLAN), (33333, 4790, Encap.VXLAN_GPE)],
)
def test_tunnel_is_chosen_by_destination_port_then_source_port(sport, dport, encap):
    body = {Encap.VXLAN: vxlan(1), Encap.GENEVE: geneve(1, 0x6558), Encap.VXLAN_GPE: gpe(1, 3)}[encap]
    row = decode_frame(ether(ipv4(udp(body + inner_http(), sport, dport), 17)), LinkType.ETHERNET)
    assert row["encap"] == encap and row["app"] == AppHint.HTTP_REQUEST


def test_configured_ports_replace_the_defaults():
    frame = vxlan_frame(inner_http(), dport=7777)
    assert decode_frame(frame, LinkType.ETHERNET)["encap"] == Encap.NONE
    row = decode_frame(frame, LinkType.ETHERNET, DecodeConfig(vxlan_ports=(7777,)))
    assert row["encap"] == Encap.VXLAN and row["app"] == AppHint.HTTP_REQUEST


def nested(depth: int) -> bytes:
    """VXLAN in VXLAN ``depth`` times, VNIs 1 (outermost) to ``depth``, around an HTTP request."""
    frame = inner_http()
    for vni in range(depth, 0, -1):
        frame = vxlan_frame(frame, vni=vni)
    return frame


def test_nested_tunnels_up_to_max_depth():
    row = decode_frame(nested(MAX_TUNNEL_DEPTH), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE) and row["tunnels"] == MAX_TUNNEL_DEPTH
    assert row["outer_vni"] == 1 and row["vni"] == MAX_TUNNEL_DEPTH and row["app"] == AppHint.HTTP_REQUEST
    assert row["inner_off"] == MAX_TUNNEL_DEPTH * 50


def test_one_tunnel_deeper_is_too_deep():
    row = decode_frame(nested(MAX_TUNNEL_DEPTH + 1), LinkType.ETHERNET)
    assert stopped(row) == (Status.TOO_DEEP, Layer.VXLAN) and row["tunnels"] == MAX_TUNNEL_DEPTH
    assert row["vni"] == MAX_TUNNEL_DEPTH and row["dport"] == 4789 and row["payload_len"] == 0


def test_esp_proto_50_in_ipv4_and_ipv6():
    body = struct.pack(">II", 0xC0FFEE, 77) + b"\x5a" * 32
    for frame in (ether(ipv4(body, 50)), ether(ipv6(body, 50), 0x86DD)):
        row = decode_frame(frame, LinkType.ETHERNET)
        assert stopped(row) == (Status.OK, Layer.NONE) and row["encap"] == Encap.ESP and row["tunnels"] == 1
        assert (row["spi"], row["esp_seq"], row["proto"]) == (0xC0FFEE, 77, 50)
        assert row["app"] == AppHint.NONE and row["inner_off"] == 0
    cut = decode_frame(ether(ipv4(body, 50))[:14 + 20 + 6], LinkType.ETHERNET)
    assert stopped(cut) == (Status.TRUNCATED, Layer.ESP) and cut["spi"] == 0xC0FFEE and cut["esp_seq"] == 0


def test_esp_inside_vxlan_is_attributed_to_the_vni():
    inner = ether(ipv4(struct.pack(">II", 0x99, 3) + b"\0" * 16, 50, "10.1.0.1", "10.1.0.2"))
    row = decode_frame(vxlan_frame(inner, vni=4100), LinkType.ETHERNET)
    assert row["encap"] == Encap.ESP and row["tunnels"] == 2 and row["vni"] == 4100 and row["spi"] == 0x99
    assert src(row) == v4("10.1.0.1") and row["proto"] == 50


@pytest.mark.parametrize(
    "body, encap, spi",
    [
        (struct.pack(">II", 0x1234, 5) + b"\x11" * 24, Encap.ESP_UDP, 0x1234),
        (b"\0\0\0\0" + b"\x9a" * 28, Encap.IKE, 0),
        (b"\xff", Encap.NAT_KEEPALIVE, 0),
    ],
)
def test_udp_4500_esp_ike_and_keepalive(body, encap, spi):
    row = decode_frame(ether(ipv4(udp(body, 4500, 4500), 17)), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert (row["encap"], row["tunnels"], row["spi"]) == (encap, 1, spi)
    assert (row["sport"], row["dport"], row["payload_len"], row["app"]) == (4500, 4500, 0, AppHint.NONE)


@pytest.mark.parametrize("body", [b"\xfe", b"\xff\xff", b"ab\n"])
def test_udp_4500_payload_too_short_for_the_marker_is_malformed(body):
    row = decode_frame(ether(ipv4(udp(body, 4500, 4500), 17)), LinkType.ETHERNET)
    assert stopped(row) == (Status.MALFORMED, Layer.ESP) and row["encap"] == Encap.ESP_UDP


@pytest.mark.parametrize("port", [4500, 4789, 6081, 4790])
def test_an_empty_datagram_on_a_tunnel_port_is_plain_udp(port):
    row = decode_frame(ether(ipv4(udp(b"", 50000, port), 17)), LinkType.ETHERNET)
    assert stopped(row) == (Status.OK, Layer.NONE)
    assert (row["encap"], row["tunnels"], row["dport"], row["payload_len"]) == (Encap.NONE, 0, port, 0)


def test_udp_4500_cut_short_is_truncated_at_esp():
    frame = ether(ipv4(udp(struct.pack(">II", 0x1234, 5), 4500, 4500), 17))
    for cut in (0, 3, 7):
        row = decode_frame(frame[:14 + 20 + 8 + cut], LinkType.ETHERNET)
        assert stopped(row) == (Status.TRUNCATED, Layer.ESP) and row["encap"] == Encap.ESP_UDP
        assert row["spi"] == (0x1234 if cut >= 4 else 0)


# -- application hints --------------------------------------------------------


@pytest.mark.parametrize(
    "data, hint",
    [
        (b"", AppHint.NONE),
        *[(method + b" /x HTTP/1.1\r\n", AppHint.HTTP_REQUEST)
          for method in (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")],
        (b"get / HTTP/1.1\r\n", AppHint.TEXT),
        (b"GETS / HTTP/1.1", AppHint.TEXT),
        (b"GET", AppHint.TEXT),
        (b"HTTP/1.1 200 OK\r\n", AppHint.HTTP_RESPONSE),
        (b"HTTP/1.", AppHint.HTTP_RESPONSE),
        (b"HTTP/2 200\r\n", AppHint.TEXT),
        (b"*2\r\n$4\r\nAUTH\r\n", AppHint.RESP_COMMAND),
        (b"*123456\r\n$", AppHint.RESP_COMMAND),
        (b"*1234567\r\n$", AppHint.TEXT),
        (b"*2\r\n:1\r\n:2\r\n", AppHint.RESP_REPLY),
        (b"*-1\r\n", AppHint.RESP_REPLY),
        (b"*\r\n", AppHint.TEXT),
        (b"+PONG\r\n", AppHint.RESP_REPLY),
        (b"-ERR unknown\r\n", AppHint.RESP_REPLY),
        (b"+", AppHint.TEXT),
        (b"+\x01", AppHint.BINARY),
        (b"-\r\n", AppHint.TEXT),
        (b":1000\r\n", AppHint.RESP_REPLY),
        (b":-5\r\n", AppHint.RESP_REPLY),
        (b":" + b"9" * 20 + b"\r\n", AppHint.RESP_REPLY),
        (b":" + b"9" * 21 + b"\r\n", AppHint.TEXT),
        (b":12", AppHint.TEXT),
        (b"$-1\r\n", AppHint.RESP_REPLY),
        (b"$5\r\nhello\r\n", AppHint.RESP_REPLY),
        (b"$" + b"1" * 10 + b"\r", AppHint.RESP_REPLY),
        (b"$" + b"1" * 11 + b"\r", AppHint.TEXT),
        (b"$-2\r\n", AppHint.TEXT),
        (b"\x16\x03\x01\x02\x00\x01", AppHint.TLS),
        (b"\x17\x03\x03\x00\x20", AppHint.TLS),
        (b"\x14\x03\x04\x00\x01", AppHint.TLS),
        (b"\x16\x03\x01\x02", AppHint.BINARY),
        (b"\x16\x03\x05\x00\x01", AppHint.BINARY),
        (b"\x19\x03\x01\x00\x01", AppHint.BINARY),
        (b"\x16\x02\x01\x00\x01", AppHint.BINARY),
        (b"SSH-2.0-OpenSSH_9.6\r\n", AppHint.SSH),
        (b"SSH", AppHint.TEXT),
        (b"hello\tworld\r\n", AppHint.TEXT),
        (b"caf\xc3\xa9", AppHint.BINARY),
        (b"a" * 64 + b"\x00", AppHint.TEXT),
        (b"a" * 63 + b"\x00", AppHint.BINARY),
    ],
)
def test_app_hint_rules_in_order(data, hint):
    assert app_hint(data) == hint


@pytest.mark.parametrize("data, hint", [(b"+OK\r\n", AppHint.RESP_REPLY), (b"SSH-2.0-x\r\n", AppHint.SSH), (b"\x00\x01", AppHint.BINARY)])
def test_app_hint_of_the_innermost_payload(data, hint):
    row = decode_frame(vxlan_frame(ether(ipv4(udp(data, 6379, 5000), 17))), LinkType.ETHERNET)
    assert row["app"] == hint and payload(row, vxlan_frame(ether(ipv4(udp(data, 6379, 5000), 17)))) == data


# -- hostile input ------------------------------------------------------------

LINK_TYPES = [*LinkType, 105, 0xFFFF]

TEMPLATES = [
    (vxlan_frame(inner_http()), LinkType.ETHERNET),
    (nested(3), LinkType.ETHERNET),
    (ether(ipv4(udp(geneve(7, 0x0800, b"\x01" * 8) + ipv4(tcp(HTTP_GET), 6), 1, 6081), 17)), LinkType.ETHERNET),
    (ether(ipv4(udp(gpe(8, 2) + ipv6(tcp(HTTP_GET), 6), 1, 4790), 17)), LinkType.ETHERNET),
    (ether(ipv6(ipv6_option_header(44) + ipv6_fragment_header(51) + ah_header(17) + udp(b"+OK\r\n", 1, 4500), 0), 0x86DD), LinkType.ETHERNET),
    (vlan_ether(ipv4(udp(struct.pack(">II", 1, 2) + b"x" * 20, 4500, 4500), 17), [(0x88A8, 1), (0x8100, 2)]), LinkType.ETHERNET),
    (bytes(dpkt.sll.SLL(ethtype=0x0800)) + ipv4(tcp(b"*1\r\n$4\r\nPING\r\n", 5000, 6379), 6), LinkType.LINUX_SLL),
    (struct.pack("<I", 30) + ipv6(udp(vxlan(3) + inner_http(), 1, 4789), 17), LinkType.NULL),
]


def assert_sane(row, frame: bytes) -> None:
    status, layer = stopped(row)
    assert (status == Status.OK) == (layer == Layer.NONE)
    assert row["caplen"] == row["wirelen"] == len(frame)
    assert row["encap"] in set(Encap) and row["app"] in set(AppHint)
    assert int(row["flags"]) & ~int(sum(PacketFlag)) == 0
    assert int(row["payload_off"]) + int(row["payload_len"]) <= len(frame) and int(row["inner_off"]) <= len(frame)
    assert row["payload_len"] <= row["payload_wire"] and (row["payload_len"] == 0) == (row["app"] == AppHint.NONE)
    assert row["tunnels"] <= MAX_TUNNEL_DEPTH and row["vlans"] <= MAX_VLAN_TAGS
    assert (row["vni"] == NO_VNI) == (row["outer_vni"] == NO_VNI)
    assert row["ipver"] in (0, 4, 6) and row["o_ipver"] in (0, 4, 6)


@settings(max_examples=400, deadline=None)
@given(frame=st.binary(max_size=160), linktype=st.sampled_from(LINK_TYPES))
def test_random_bytes_under_any_link_type_never_raise(frame, linktype):
    assert_sane(decode_frame(frame, linktype), frame)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.sampled_from(TEMPLATES),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 400),
)
def test_damaged_tunnel_frames_never_raise(template, edits, cut):
    frame, linktype = template
    damaged = bytearray(frame[: max(cut, 1)] if cut < len(frame) else frame)
    for index, value in edits:
        if index < len(damaged):
            damaged[index] = value
    assert_sane(decode_frame(bytes(damaged), linktype), bytes(damaged))
