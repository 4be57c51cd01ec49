"""TCP segments and reassembled streams from corpus captures, for the inspect tests.

The packet decoder is not used here on purpose: segments are cut out with dpkt
(Ethernet, Linux SLL and SLL2; VXLAN on UDP 4789 stripped), so the inspect
tests depend on nothing but dpkt. The helpers are checked against tshark.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import pytest

from vxlaninspect.inspect.reassembly import Data, Stream

Endpoint = tuple[str, int]

_LINK_DECODERS = {
    dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet,
    dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL,
    276: dpkt.sll2.SLL2,
}
VXLAN_PORT = 4789


@dataclass(frozen=True)
class Segment:
    src: Endpoint
    dst: Endpoint
    seq: int
    flags: int
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & dpkt.tcp.TH_SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & dpkt.tcp.TH_FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & dpkt.tcp.TH_RST)


@dataclass
class Connection:
    """Both directions of one TCP connection; ``node0`` sent the first packet (as in tshark)."""

    node0: Endpoint
    node1: Endpoint
    streams: dict[Endpoint, Stream] = field(default_factory=dict)

    def chunks(self, source: Endpoint) -> list:
        """Every chunk of the direction sent by ``source``, after ``finish()``."""
        stream = self.streams[source]
        stream.finish()
        return stream.take()

    def data(self, source: Endpoint) -> bytes:
        """The bytes sent by ``source``; fails when the direction has a gap."""
        chunks = self.chunks(source)
        assert all(isinstance(chunk, Data) for chunk in chunks), f"gap in the stream from {source}"
        return b"".join(chunk.data for chunk in chunks)


def _endpoint(address: bytes, port: int) -> Endpoint:
    family = socket.AF_INET if len(address) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, address), port


def _ip_packet(frame):
    """The innermost IP packet of a frame, through one VXLAN tunnel if there is one."""
    ip = frame.data
    if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return None
    udp = ip.data
    if isinstance(udp, dpkt.udp.UDP) and udp.dport == VXLAN_PORT:
        return _ip_packet(dpkt.ethernet.Ethernet(bytes(udp.data)[8:]))
    return ip


def tcp_segments(path: Path) -> list[Segment]:
    """Every TCP segment of a pcap file, in capture order."""
    segments = []
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        decode = _LINK_DECODERS[reader.datalink()]
        for _, frame in reader:
            ip = _ip_packet(decode(frame))
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            segments.append(
                Segment(_endpoint(ip.src, tcp.sport), _endpoint(ip.dst, tcp.dport), tcp.seq, tcp.flags, bytes(tcp.data))
            )
    return segments


def connections(path: Path, **stream_options) -> list[Connection]:
    """The TCP connections of a capture in order of first packet (tshark's ``tcp.stream``), reassembled."""
    found: dict[frozenset[Endpoint], Connection] = {}
    for segment in tcp_segments(path):
        key = frozenset((segment.src, segment.dst))
        connection = found.setdefault(key, Connection(segment.src, segment.dst))
        stream = connection.streams.setdefault(segment.src, Stream(**stream_options))
        connection.streams.setdefault(segment.dst, Stream(**stream_options))
        stream.add(segment.seq, segment.payload, syn=segment.syn, fin=segment.fin, rst=segment.rst)
    return list(found.values())


def tshark_follow(tshark: str, path: Path, count: int) -> list[tuple[bytes, bytes]]:
    """Per TCP stream 0..count-1: the bytes node 0 and node 1 sent, as tshark's ``follow,tcp,raw`` shows them."""
    command = [tshark, "-r", str(path), "-q"]
    for index in range(count):
        command += ["-z", f"follow,tcp,raw,{index}"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    found: dict[int, tuple[bytes, bytes]] = {}
    for block in output.split("Follow: tcp,raw")[1:]:
        index = int(block.split("tcp.stream eq ", 1)[1].split()[0])
        sent: tuple[list[bytes], list[bytes]] = ([], [])
        for line in block.split("Node 1:", 1)[1].splitlines()[1:]:
            if line.startswith("="):
                break
            if line.strip():
                sent[1 if line.startswith("\t") else 0].append(bytes.fromhex(line.strip()))
        found[index] = (b"".join(sent[0]), b"".join(sent[1]))
    return [found[index] for index in range(count)]


def tshark_fields(tshark: str, path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """Rows of ``-T fields`` output for the packets matching ``display_filter``."""
    command = [tshark, "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


CAPTURES_WITH_TCP = (
    "zeek__docker-http-upgrade.pcap",
    "zeek__redis-50-pings.pcap",
    "tcpdump__resp_1_benchmark.pcap",
    "tcpdump__resp_3_malicious.pcap",
    "suricata-verify__vxlan-non-zero-reserved-fields.pcap",
    "suricata-verify__decode-sll2-01.pcap",
    "suricata-verify__vxlan-decoder-03_aws-mirror.pcap",
)


@pytest.mark.tshark
@pytest.mark.parametrize("name", CAPTURES_WITH_TCP)
def test_segments_match_tshark(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / name
    expected = [
        (int(seq), int(length), int(flags, 16))
        for seq, length, flags in tshark_fields(tshark, path, "tcp", "tcp.seq_raw", "tcp.len", "tcp.flags")
    ]
    found = [(s.seq, len(s.payload), s.flags) for s in tcp_segments(path)]
    assert found == expected
