"""Frames on a node's underlay: VXLAN as Linux sends it, ESP as Docker's encrypted overlay sends it, TCP inside.

Every frame is recorded as the capturing node's ``eth0`` sees it: frames that
stay inside one node never reach the list.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass

import dpkt

from .entropy import Entropy

VXLAN_PORT = 4789
VXLAN_FLAG_VNI = 0x08
ESP_PROTO = 50
EPHEMERAL_PORTS = (32768, 60999)
"""Linux ``ip_local_port_range``: the source ports of VXLAN packets and of client sockets."""
VXLAN_OVERHEAD = 50
ESP_OVERHEAD = 26
"""Docker's ``pktExpansion``: SPI 4 + sequence 4 + IV 8 + pad length 1 + next header 1 + ICV 8."""
ICV_BYTES = 8  # rfc4106(gcm(aes)) with ICVLen 64, as Docker programs its SAs
IV_BYTES = 8
BROADCAST = b"\xff" * 6
ROUND_TRIP_US = 210
"""Node to node and back on the underlay: what a reply from the far node waits for, seen from the near one."""


def ipv4_bytes(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


def docker_mac(ip: str) -> bytes:
    """The MAC Docker gives a container interface: 02:42 then the IPv4 address."""
    return b"\x02\x42" + ipv4_bytes(ip)


def overlay_mss(encrypted: bool, link_mtu: int = 1500) -> int:
    """TCP MSS inside an overlay: Docker shrinks the container MTU for VXLAN, and again for ESP."""
    mtu = link_mtu - VXLAN_OVERHEAD
    if encrypted:
        mtu -= ESP_OVERHEAD
        mtu -= mtu % 4
    return mtu - 40


def docker_spi(src: str, dst: str, key_tag: int) -> int:
    """The SPI Docker derives for one direction of a node pair: FNV-1a over src, key tag, dst.

    As libnetwork's ``buildSPI``: the addresses are Go ``net.IP`` values in their
    16-byte form.
    """
    digest = 0x811C9DC5
    for byte in _ip16(src) + key_tag.to_bytes(4, "big") + _ip16(dst):
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return digest


def _ip16(ip: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{ip}").packed


@dataclass(frozen=True)
class Node:
    """A Swarm node as its underlay sees it."""

    name: str
    ip: str
    mac: bytes


@dataclass(frozen=True)
class Interface:
    """A container's interface on an overlay network."""

    ip: str
    node: Node

    @property
    def mac(self) -> bytes:
        return docker_mac(self.ip)


@dataclass(frozen=True)
class Frame:
    ts_ns: int
    data: bytes


class Clock:
    """Capture time in integer nanoseconds since the epoch."""

    def __init__(self, start_ns: int) -> None:
        self.now_ns = start_ns

    def advance_us(self, microseconds: float) -> None:
        self.now_ns += round(microseconds * 1000)


@dataclass
class _SecurityAssociation:
    spi: int
    salt: int
    keystream: Entropy
    seq: int = 0


class Underlay:
    """What one node's ``eth0`` records: ARP, VXLAN and ESP between Swarm nodes."""

    def __init__(self, capture_node: Node, clock: Clock, entropy: Entropy) -> None:
        self.capture_node = capture_node
        self.clock = clock
        self.frames: list[Frame] = []
        self._entropy = entropy
        self._ip_ids: dict[tuple[str, str], int] = {}
        self._key_tags: dict[tuple[str, str], int] = {}
        self._sas: dict[int, _SecurityAssociation] = {}
        self._last_sender: Node | None = None
        self._jitter = entropy.child("jitter")

    def react(self, sender: Node, processing_us: float) -> None:
        """Let the time pass before ``sender`` answers the last frame: its processing, plus the
        round trip when the last frame left the capturing node and ``sender`` is the far one."""
        far = sender != self.capture_node and self._last_sender == self.capture_node
        jitter_us = self._jitter.below(1000) / 1000
        self.clock.advance_us(processing_us + (ROUND_TRIP_US if far else 0) + jitter_us)

    def use_key(self, src: Node, dst: Node, key_tag: int) -> None:
        """Make ``key_tag`` the primary key ``src`` encrypts with towards ``dst`` (a key rotation)."""
        self._key_tags[(src.ip, dst.ip)] = key_tag

    def arp(self, requester: Node, target: Node) -> None:
        """``requester`` resolves ``target``'s MAC: a broadcast request and a padded unicast reply."""
        request = dpkt.arp.ARP(
            op=dpkt.arp.ARP_OP_REQUEST,
            sha=requester.mac,
            spa=ipv4_bytes(requester.ip),
            tha=bytes(6),
            tpa=ipv4_bytes(target.ip),
        )
        self._record(
            dpkt.ethernet.Ethernet(dst=BROADCAST, src=requester.mac, type=dpkt.ethernet.ETH_TYPE_ARP, data=request),
            requester,
        )
        self.clock.advance_us(ROUND_TRIP_US - 23)
        reply = dpkt.arp.ARP(
            op=dpkt.arp.ARP_OP_REPLY,
            sha=target.mac,
            spa=ipv4_bytes(target.ip),
            tha=requester.mac,
            tpa=ipv4_bytes(requester.ip),
        )
        frame = bytes(
            dpkt.ethernet.Ethernet(dst=requester.mac, src=target.mac, type=dpkt.ethernet.ETH_TYPE_ARP, data=reply)
        )
        self._record(frame + bytes(60 - len(frame)), target)  # the sender's NIC pads to the Ethernet minimum

    def carry(self, inner: bytes, src: Node, dst: Node, vni: int, encrypted: bool) -> None:
        """Send Ethernet frame ``inner`` from node ``src`` to ``dst`` in VXLAN ``vni``, in ESP if ``encrypted``."""
        if src == dst or self.capture_node not in (src, dst):
            return
        vxlan = struct.pack(">BxxxI", VXLAN_FLAG_VNI, vni << 8) + inner
        datagram = dpkt.udp.UDP(sport=self._source_port(src, inner), dport=VXLAN_PORT, ulen=8 + len(vxlan), data=vxlan)
        if encrypted:
            payload, proto = self._esp(src, dst, _udp_bytes(datagram, src, dst)), ESP_PROTO
        else:
            payload, proto = datagram, dpkt.ip.IP_PROTO_UDP
        self._record(
            dpkt.ethernet.Ethernet(
                dst=dst.mac, src=src.mac, type=dpkt.ethernet.ETH_TYPE_IP, data=self._ip(src, dst, proto, payload)
            ),
            src,
        )

    def _ip(self, src: Node, dst: Node, proto: int, payload: dpkt.Packet | bytes) -> dpkt.ip.IP:
        key = (src.ip, dst.ip)
        if key not in self._ip_ids:
            self._ip_ids[key] = self._entropy.child(f"ip-id/{src.ip}/{dst.ip}").below(1 << 16)
        self._ip_ids[key] = (self._ip_ids[key] + 1) & 0xFFFF
        return dpkt.ip.IP(
            src=ipv4_bytes(src.ip),
            dst=ipv4_bytes(dst.ip),
            p=proto,
            ttl=64,
            id=self._ip_ids[key],
            len=20 + len(payload),
            data=payload,
        )

    def _source_port(self, sender: Node, inner: bytes) -> int:
        """As Linux's ``udp_flow_src_port``: the inner flow's hash, scaled into the ephemeral range.

        The flow hash is symmetric and keyed per node (Linux's boot-time
        ``hashrnd``), so one inner flow gets one port per sending node.
        """
        ip = dpkt.ethernet.Ethernet(inner).data
        ends = sorted([(ip.src, ip.data.sport), (ip.dst, ip.data.dport)])
        material = sender.ip.encode() + b"".join(a + p.to_bytes(2, "big") for a, p in ends) + bytes([ip.p])
        flow_hash = int.from_bytes(hashlib.blake2s(material, digest_size=4).digest(), "big")
        flow_hash = (flow_hash ^ (flow_hash << 16)) & 0xFFFFFFFF
        low, high = EPHEMERAL_PORTS
        return ((flow_hash * (high - low)) >> 32) + low

    def _esp(self, src: Node, dst: Node, datagram: bytes) -> bytes:
        """Transport-mode ESP as Linux builds it for ``rfc4106(gcm(aes))`` with an 8-byte ICV.

        The ciphertext is the datagram and its trailer XORed with a keystream
        (counter mode, as GCM is); the IV is the sequence number XORed with a
        per-SA salt, as the kernel's ``seqiv`` makes it.
        """
        spi = docker_spi(src.ip, dst.ip, self._key_tags[(src.ip, dst.ip)])
        if spi not in self._sas:
            entropy = self._entropy.child(f"sa/{spi:08x}")
            self._sas[spi] = _SecurityAssociation(
                spi, int.from_bytes(entropy.bytes(IV_BYTES), "big"), entropy.child("keystream")
            )
        sa = self._sas[spi]
        sa.seq += 1
        pad = -(len(datagram) + 2) % 4
        plaintext = datagram + bytes(range(1, pad + 1)) + bytes([pad, dpkt.ip.IP_PROTO_UDP])
        header = struct.pack(">II", spi, sa.seq) + (sa.salt ^ sa.seq).to_bytes(IV_BYTES, "big")
        ciphertext = bytes(a ^ b for a, b in zip(plaintext, sa.keystream.bytes(len(plaintext)), strict=True))
        icv = hashlib.sha256(header + ciphertext).digest()[:ICV_BYTES]
        return header + ciphertext + icv

    def _record(self, frame: dpkt.Packet | bytes, sender: Node) -> None:
        self.frames.append(Frame(self.clock.now_ns, bytes(frame)))
        self._last_sender = sender


def _udp_bytes(datagram: dpkt.udp.UDP, src: Node, dst: Node) -> bytes:
    """The datagram with its checksum, computed over the pseudo-header as before encryption."""
    packet = dpkt.ip.IP(
        src=ipv4_bytes(src.ip),
        dst=ipv4_bytes(dst.ip),
        p=dpkt.ip.IP_PROTO_UDP,
        len=28 + len(datagram.data),
        data=datagram,
    )
    return bytes(packet)[20:]


@dataclass(frozen=True)
class OverlayLink:
    """One overlay network on the wire: its VNI, and whether its VXLAN goes out in ESP."""

    underlay: Underlay
    vni: int
    encrypted: bool

    def send(self, inner: bytes, src: Node, dst: Node) -> None:
        self.underlay.carry(inner, src, dst, self.vni, self.encrypted)


@dataclass
class _TcpSide:
    interface: Interface
    port: int
    seq: int
    ts_offset: int
    ip_id: int
    window: int
    peer_tsval: int = 0


class TcpConversation:
    """A TCP connection between two containers as Linux runs it: options, timestamps, windows, FINs."""

    WINDOW_SCALE = 7

    def __init__(
        self, link: OverlayLink, client: Interface, server: Interface, server_port: int, entropy: Entropy, *, mss: int
    ) -> None:
        self.link = link
        self.mss = mss
        self.client = _TcpSide(
            client,
            entropy.between(*EPHEMERAL_PORTS),
            entropy.below(1 << 32),
            entropy.below(1 << 32),
            entropy.below(1 << 16),
            502,
        )
        self.server = _TcpSide(
            server, server_port, entropy.below(1 << 32), entropy.below(1 << 32), entropy.below(1 << 16), 509
        )

    def open(self) -> None:
        """The three-way handshake, with the options Linux puts on a SYN and a SYN-ACK."""
        syn_window = (65535 // self.mss) * self.mss
        self._react(self.client, 0)
        self._segment(self.client, dpkt.tcp.TH_SYN, syn_window, syn=True)
        effective = self.mss - 12  # the MSS less the timestamp option both sides agreed on
        self._react(self.server, 19)
        self._segment(
            self.server, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, (65535 // effective) * effective, syn=True, ip_id=0
        )
        self._react(self.client, 11)
        self._segment(self.client, dpkt.tcp.TH_ACK)

    def send(self, sender: str, data: bytes, processing_us: float) -> None:
        """``sender`` ("client" or "server") sends ``data`` in MSS-sized segments, PSH on the last."""
        side = self._side(sender)
        self._react(side, processing_us)
        chunks = [data[i : i + self.mss - 12] for i in range(0, len(data), self.mss - 12)]
        for number, chunk in enumerate(chunks):
            last = number == len(chunks) - 1
            self._segment(side, dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if last else 0), payload=chunk)
            if not last:
                self.link.underlay.clock.advance_us(12)

    def ack(self, sender: str, processing_us: float) -> None:
        """A pure ACK from ``sender``."""
        side = self._side(sender)
        self._react(side, processing_us)
        self._segment(side, dpkt.tcp.TH_ACK)

    def close(self, sender: str, processing_us: float) -> None:
        """``sender`` sends its FIN."""
        side = self._side(sender)
        self._react(side, processing_us)
        self._segment(side, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)

    def _side(self, name: str) -> _TcpSide:
        return {"client": self.client, "server": self.server}[name]

    def _react(self, side: _TcpSide, processing_us: float) -> None:
        self.link.underlay.react(side.interface.node, processing_us)

    def _segment(
        self,
        side: _TcpSide,
        flags: int,
        window: int | None = None,
        *,
        payload: bytes = b"",
        syn: bool = False,
        ip_id: int | None = None,
    ) -> None:
        peer = self.server if side is self.client else self.client
        tsval = (side.ts_offset + self.link.underlay.clock.now_ns // 1_000_000) & 0xFFFFFFFF
        if syn:
            options = (
                struct.pack(">BBH", 2, 4, self.mss)
                + b"\x04\x02"
                + struct.pack(">BBII", 8, 10, tsval, side.peer_tsval)
                + b"\x01"
                + struct.pack(">BBB", 3, 3, self.WINDOW_SCALE)
            )
        else:
            options = b"\x01\x01" + struct.pack(">BBII", 8, 10, tsval, side.peer_tsval)
        ack = peer.seq if flags & dpkt.tcp.TH_ACK else 0
        segment = dpkt.tcp.TCP(
            sport=side.port,
            dport=peer.port,
            seq=side.seq,
            ack=ack,
            flags=flags,
            win=window or side.window,
            opts=options,
            data=payload,
        )
        segment.off = (20 + len(options)) // 4
        if ip_id is None:
            side.ip_id = (side.ip_id + 1) & 0xFFFF
        packet = dpkt.ip.IP(
            src=ipv4_bytes(side.interface.ip),
            dst=ipv4_bytes(peer.interface.ip),
            p=dpkt.ip.IP_PROTO_TCP,
            ttl=64,
            id=side.ip_id if ip_id is None else ip_id,
            df=1,
            len=20 + len(segment),
            data=segment,
        )
        frame = dpkt.ethernet.Ethernet(
            dst=peer.interface.mac, src=side.interface.mac, type=dpkt.ethernet.ETH_TYPE_IP, data=packet
        )
        side.seq = (side.seq + len(payload) + bool(syn) + bool(flags & dpkt.tcp.TH_FIN)) & 0xFFFFFFFF
        peer.peer_tsval = tsval
        self.link.send(bytes(frame), side.interface.node, peer.interface.node)
