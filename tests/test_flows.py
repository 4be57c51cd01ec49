"""Flows: grouping checked against tshark's conversation statistics, bounds, and kept payloads."""

from __future__ import annotations

import ipaddress
import re
import struct
import subprocess
from pathlib import Path

import dpkt
import numpy as np
import pytest

from benchmarks.generate import generate
from tests.conftest import CORPUS, SAMPLES
from vxlaninspect.addresses import split_endpoint
from vxlaninspect.decoding import decode
from vxlaninspect import flows as flows_module
from vxlaninspect.flows import SEGMENT_OVERHEAD, Direction, FlowTable
from vxlaninspect.scanning import Limits, scan

TUNNEL_PORTS = {4789, 8472, 6081, 4790}
CONVERSATION = re.compile(
    r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+) (bytes|kB|MB)\s+(\d+)\s+(\d+) (bytes|kB|MB)\s+(\d+)\s+(\d+) (bytes|kB|MB)"
)

# Captures with TCP/UDP flows, and the display filter that selects each VNI's packets (None: not tunnelled).
TSHARK_CAPTURES = [
    (SAMPLES / "lab-capture" / "capture.pcap", {4096: "vxlan.vni==4096", 4097: "vxlan.vni==4097"}),
    (SAMPLES / "swarm-plaintext" / "capture.pcap", {4096: "vxlan.vni==4096", 4097: "vxlan.vni==4097"}),
    (SAMPLES / "misconfigured" / "capture.pcap", {4100: "vxlan.vni==4100", 4101: "vxlan.vni==4101"}),
    (CORPUS / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap", {5569041: "vxlan.vni==5569041"}),
    (CORPUS / "suricata-verify__vxlan-non-zero-reserved-fields.pcap", {11: "vxlan.vni==11"}),
    (CORPUS / "tcpdump__gso-ipv6-vxlan-ipv4.pcap", {5001: "vxlan.vni==5001"}),
    (CORPUS / "tcpdump__gso-ipv6-vxlan-ipv6.pcap", {5001: "vxlan.vni==5001"}),
    (CORPUS / "zeek__geneve-vxlan-dns-truncated.pcap", {4242: "vxlan.vni==4242"}),
    (CORPUS / "tcpdump__resp_1_benchmark.pcap", {None: ""}),
    (CORPUS / "tcpdump__resp_3_malicious.pcap", {None: ""}),
    (CORPUS / "zeek__redis-50-pings.pcap", {None: ""}),
    (CORPUS / "zeek__docker-http-upgrade.pcap", {None: ""}),
    (CORPUS / "suricata-verify__decode-sll2-01.pcap", {None: ""}),
]


def _endpoint(text: str) -> tuple[str, int]:
    address, port = text.rsplit(":", 1)
    return str(ipaddress.ip_address(address)), int(port)


def tshark_conversations(tshark: str, path: Path, display_filter: str) -> dict[tuple, dict]:
    """tshark's TCP and UDP conversations: {(transport, endpoint, endpoint): {endpoint: (frames, bytes or None)}}.

    Conversations of the tunnels themselves (VXLAN, Geneve ports) are left out.
    """
    stats = []
    for transport in ("tcp", "udp"):
        stats += ["-z", f"conv,{transport}" + (f",{display_filter}" if display_filter else "")]
    output = subprocess.run([tshark, "-n", "-r", str(path), "-q", *stats], capture_output=True, text=True, check=True)
    conversations: dict[tuple, dict] = {}
    transport = None
    for line in output.stdout.splitlines():
        if line.startswith(("TCP Conversations", "UDP Conversations")):
            transport = line[:3].lower()
        match = CONVERSATION.match(line)
        if not match:
            continue
        a, b = _endpoint(match[1]), _endpoint(match[2])
        if transport == "udp" and {a[1], b[1]} & TUNNEL_PORTS:
            continue
        to_a = (int(match[3]), int(match[4]) if match[5] == "bytes" else None)
        to_b = (int(match[6]), int(match[7]) if match[8] == "bytes" else None)
        conversations[(transport, *sorted([a, b]))] = {a: to_b, b: to_a}
    return conversations


def our_conversations(path: Path) -> dict[int | None, dict[tuple, dict]]:
    """Our TCP and UDP flows per VNI, shaped as ``tshark_conversations`` shapes tshark's."""
    per_vni: dict[int | None, dict[tuple, dict]] = {}
    for flow in scan(path).flows:
        if flow.transport not in ("tcp", "udp"):
            continue
        a, b = split_endpoint(flow.a), split_endpoint(flow.b)
        key = (flow.transport, *sorted([a, b]))
        assert key not in per_vni.get(flow.vni, {}), f"two flows {key} in VNI {flow.vni} of one node pair"
        per_vni.setdefault(flow.vni, {})[key] = {
            a: (flow.sent_packets[0], flow.sent_bytes[0]),
            b: (flow.sent_packets[1], flow.sent_bytes[1]),
        }
    return per_vni


@pytest.mark.tshark
@pytest.mark.parametrize(
    "path, filters",
    TSHARK_CAPTURES,
    ids=[p.name if p.parent == CORPUS else p.parent.name for p, _ in TSHARK_CAPTURES],
)
def test_flows_per_vni_agree_with_tshark_conversations(tshark: str, path: Path, filters: dict) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    ours = our_conversations(path)
    assert set(ours) == set(filters), "flows were found in other VNIs than tshark's"
    for vni, display_filter in filters.items():
        theirs = tshark_conversations(tshark, path, display_filter)
        assert theirs, f"tshark found no conversation in VNI {vni}: the comparison would prove nothing"
        assert set(ours[vni]) == set(theirs), f"VNI {vni}"
        for key, sent in theirs.items():
            for endpoint, (frames, size) in sent.items():
                assert ours[vni][key][endpoint][0] == frames, (vni, key, endpoint)
                if size is not None:
                    assert ours[vni][key][endpoint][1] == size, (vni, key, endpoint)


def _with_vni(frame: bytes, vni: int) -> bytes:
    """An Ethernet/IPv4/UDP/VXLAN frame with its VNI replaced (the checksum of VXLAN's UDP is zero)."""
    vxlan = 14 + (frame[14] & 0x0F) * 4 + 8
    assert frame[vxlan] & 0x08 and struct.unpack("!H", frame[vxlan - 4 : vxlan - 2])[0] > 0
    return frame[: vxlan + 4] + vni.to_bytes(3, "big") + frame[vxlan + 7 :]


def pcap_records(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The file header and each record's (header, data) of a little-endian pcap."""
    raw = path.read_bytes()
    assert raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "expects a little-endian pcap"
    records, offset = [], 24
    while offset < len(raw):
        header = raw[offset : offset + 16]
        caplen = struct.unpack("<I", header[8:12])[0]
        records.append((header, raw[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return raw[:24], records


@pytest.mark.tshark
@pytest.mark.parametrize("other", [12, 0xFFFFFF])
def test_one_inner_tuple_in_two_vnis_is_two_flows(tshark: str, corpus: Path, tmp_path: Path, other: int) -> None:
    source = corpus / "suricata-verify__vxlan-non-zero-reserved-fields.pcap"
    header, records = pcap_records(source)
    doubled = tmp_path / "two-vnis.pcap"
    with open(doubled, "wb") as out:
        out.write(header)
        for record_header, frame in records:
            out.write(record_header + frame)
            out.write(record_header + _with_vni(frame, other))
    ours = our_conversations(doubled)
    assert set(ours) == {11, other}
    assert ours[11] == ours[other]
    for vni in (11, other):
        assert ours[vni] == {
            key: {e: (frames, size) for e, (frames, size) in sent.items()}
            for key, sent in tshark_conversations(tshark, doubled, f"vxlan.vni=={vni}").items()
        }
    whole = tshark_conversations(tshark, doubled, "")
    assert len(whole) == 1, "tshark, which ignores VNIs, sees one conversation"


def test_eviction_keeps_the_most_recently_seen_flows_and_counts_the_rest() -> None:
    path = SAMPLES / "lab-capture" / "capture.pcap"
    full = scan(path)
    bounded = scan(path, limits=Limits(max_flows=3))
    assert len(full.flows) == 11
    assert len(bounded.flows) == 3
    assert bounded.stats.evicted_flows == len(full.flows) - 3
    latest = sorted(full.flows, key=lambda f: f.last_ts)[-3:]
    assert {f.key for f in bounded.flows} == {f.key for f in latest}
    assert {(f.key, f.packets, f.bytes) for f in bounded.flows} <= {(f.key, f.packets, f.bytes) for f in full.flows}
    assert [(n.vni, n.flows) for n in bounded.networks] == [(n.vni, n.flows) for n in full.networks]
    assert sum(n.evicted_flows for n in bounded.networks) == bounded.stats.evicted_flows
    assert any("least recently seen" in w for w in bounded.warnings)
    assert not full.warnings
    again = scan(path, limits=Limits(max_flows=3))
    assert again.flows == bounded.flows, "each table hashes at random, yet which flows it keeps does not vary"


def _lost_flows(table: FlowTable) -> int:
    """Flows held that probing from their home slot would not find."""
    rows = table._table
    mask = len(rows) - 1
    lost = 0
    for slot in np.flatnonzero(rows[:, flows_module._SERIAL] != flows_module._EMPTY).tolist():
        key = tuple(np.uint64(word) for word in flows_module._row_key(rows, slot))
        home = flows_module._home(key, table._factors, table._shift)
        lost += flows_module._probe(rows, key, home, mask) != slot
    return lost


def test_flows_held_through_evictions_stay_found(tmp_path: Path) -> None:
    """Eviction frees slots inside runs of the open-addressing table: every flow kept must still be
    found by probing from its home slot, after every chunk."""
    path = tmp_path / "many-flows.pcap"
    generate(path, size=4 << 20, flows=600, seed=3)
    table = FlowTable(max_flows=32)
    for decoded in decode(path, chunk_bytes=1 << 16):
        table.add(decoded.rows)
        assert _lost_flows(table) == 0
    assert table.evicted_total > 1000  # flows come back after their eviction, again and again
    flows, _ = table.render()
    assert len(table) == len(flows) <= 32


def _ipv6_flows_capture(path: Path, flows: int, rounds: int) -> None:
    """A capture of ``flows`` TCP flows between IPv6 hosts, each sending one packet per round."""
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for r in range(rounds):
            for n in range(flows):
                tcp = dpkt.tcp.TCP(sport=40000 + n % 20000, dport=6379, flags=dpkt.tcp.TH_ACK, data=b"PING\r\n")
                ip = dpkt.ip6.IP6(
                    src=ipaddress.IPv6Address(f"fd00::{n + 1:x}").packed,
                    dst=ipaddress.IPv6Address("fd00::ffff").packed,
                    nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp, plen=len(tcp),
                )  # fmt: skip
                frame = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip)
                writer.writepkt(bytes(frame), ts=r * flows + n)


@pytest.mark.parametrize("max_flows", [32, 4096])
def test_ipv6_flows_stay_found_as_the_table_grows_and_evicts(tmp_path: Path, max_flows: int) -> None:
    """Flows whose keys have high address words are moved by growth (4096: the table grows from
    1024 flows) and by eviction (32): probing must find each of them again, with all its packets."""
    path = tmp_path / "ipv6-flows.pcap"
    _ipv6_flows_capture(path, flows=3000, rounds=2)
    table = FlowTable(max_flows=max_flows)
    for decoded in decode(path, chunk_bytes=1 << 16):
        table.add(decoded.rows)
        assert _lost_flows(table) == 0
    flows, _ = table.render()
    assert len(flows) == min(3000, max_flows)
    assert all(flow.a.startswith("[fd00::") for flow in flows)
    # Visited in turn, a flow beyond the bound is evicted before its second packet comes.
    assert {flow.packets for flow in flows} == {2 if max_flows >= 3000 else 1}


def tshark_payloads(tshark: str, path: Path) -> dict[tuple, bytes]:
    """Every TCP payload in capture order, joined per (VNI, sender, receiver)."""
    fields = ["vxlan.vni", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.payload"]
    output = subprocess.run(
        [tshark, "-n", "-r", str(path), "-Y", "tcp.len > 0", "-T", "fields", *(x for f in fields for x in ("-e", f))],
        capture_output=True,
        text=True,
        check=True,
    )
    joined: dict[tuple, bytes] = {}
    for line in output.stdout.splitlines():
        vni, src, sport, dst, dport, payload = line.split("\t")
        src, dst = src.split(",")[-1], dst.split(",")[-1]  # the inner header's, after the underlay's
        key = (int(vni), f"{src}:{sport}", f"{dst}:{dport}")
        joined[key] = joined.get(key, b"") + bytes.fromhex(payload.replace(":", ""))
    return joined


def _kept(path: Path, **bounds: int):
    table = FlowTable(**bounds)
    for chunk in decode(path, chunk_bytes=4096):  # many chunks: the bounds must hold across them
        table.add(chunk.rows, chunk.data)
    return table.render()


@pytest.mark.tshark
@pytest.mark.parametrize("per_direction", [16, 1 << 16])
def test_kept_payloads_are_the_first_bytes_of_each_direction(tshark: str, per_direction: int) -> None:
    path = SAMPLES / "swarm-plaintext" / "capture.pcap"
    expected = tshark_payloads(tshark, path)
    _, payloads = _kept(path, payload_per_direction=per_direction)
    seen = {}
    for flow in payloads.flows():
        for direction, (src, dst) in (
            (Direction.CLIENT_TO_SERVER, (flow.client, flow.server)),
            (Direction.SERVER_TO_CLIENT, (flow.server, flow.client)),
        ):
            segments = payloads.segments(flow, direction)
            if segments:
                seen[(flow.vni, src, dst)] = b"".join(s.data for s in segments)
                assert [s.ts_ns for s in segments] == sorted(s.ts_ns for s in segments)
    assert seen == {key: data[:per_direction] for key, data in expected.items()}
    assert any(len(data) > per_direction for data in expected.values()) == (per_direction == 16), "bound not exercised"


def test_kept_payloads_stop_at_the_total_budget() -> None:
    path = SAMPLES / "swarm-plaintext" / "capture.pcap"
    _, unbounded = _kept(path)
    flows, payloads = _kept(path, payload_total=1000)
    segments = sum(len(payloads.segments(f, d)) for f in flows for d in Direction)
    assert 0 < payloads.kept_bytes < unbounded.kept_bytes
    assert 1000 - SEGMENT_OVERHEAD <= payloads.kept_bytes + segments * SEGMENT_OVERHEAD <= 1000
    for flow in flows:
        for direction in Direction:
            kept = b"".join(s.data for s in payloads.segments(flow, direction))
            assert b"".join(s.data for s in unbounded.segments(flow, direction)).startswith(kept)


def test_roles_come_from_the_handshake_else_from_the_ports(corpus: Path) -> None:
    flows = scan(corpus / "tcpdump__resp_3_malicious.pcap").flows
    # The capture starts mid-stream: flows without a SYN still have the Redis port as their server.
    assert {split_endpoint(f.server)[1] for f in flows} == {6379}
    assert any(not f.handshake for f in flows) and any(f.handshake for f in flows)
