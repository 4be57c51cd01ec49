"""The traffic model of the synthetic captures: template frames, built once with dpkt.

A four-node Docker Swarm. Three cleartext overlay networks (VXLAN on UDP 4789,
VNIs 4096-4098) carry HTTP, Redis (RESP) and TLS services; an encrypted overlay
is seen only as IPsec ESP between node pairs, one SPI per direction; the
underlay carries swarm control traffic (raft over TLS on 2377, memberlist gossip
on 7946 over TCP and UDP), ARP and ICMP.

A template that carries an overlay flow records where its client address and
port are, so the generator can give every record its own flow by rewriting a few
bytes, without building a packet per record.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import dpkt
import numpy as np

VXLAN_PORT = 4789
MTU = 1500
OVERLAY_MTU = MTU - 50
"""Docker's overlay MTU: the underlay MTU less the VXLAN encapsulation."""
ETH_HEADER = 14
IP_HEADER = 20
TCP_TIMESTAMPS = b"\x01\x01\x08\x0a\x00\x1b\x4c\x2d\x7e\x10\x00\x05"
TCP_SYN_OPTIONS = b"\x02\x04\x05\x82\x04\x02\x08\x0a\x00\x1b\x4c\x2d\x00\x00\x00\x00\x01\x03\x03\x07"
TCP_HEADER = 20 + len(TCP_TIMESTAMPS)
OVERLAY_MSS = OVERLAY_MTU - IP_HEADER - TCP_HEADER
UNDERLAY_MSS = MTU - IP_HEADER - TCP_HEADER
MIN_FRAME = 60

CLIENT_PORT_FIRST = 32768
CLIENT_PORTS = 28232
"""Linux's default ephemeral port range, 32768-60999."""
CLIENT_HOST_FIRST = 2
CLIENT_HOSTS = 98
"""Clients are hosts .2-.99 of a network's /24; servers sit above them."""
FLOWS_PER_SERVICE = CLIENT_PORTS * CLIENT_HOSTS

INNER_FRAME = ETH_HEADER + IP_HEADER + 8 + 8
"""Offset of the inner Ethernet frame in a VXLAN frame."""
INNER_IP = INNER_FRAME + ETH_HEADER
INNER_TCP = INNER_IP + IP_HEADER
OUTER_UDP_SPORT = ETH_HEADER + IP_HEADER
ESP_SEQ = ETH_HEADER + IP_HEADER + 4

NODE_IPS = ("192.168.56.11", "192.168.56.12", "192.168.56.13", "192.168.56.14")


class Category(IntEnum):
    """What a record is, as the requested mix counts it."""

    VXLAN = 0
    ESP = 1
    UNDERLAY = 2


@dataclass(frozen=True)
class Service:
    """An overlay service: its network (VNI and /24) and where its server and clients run."""

    name: str
    vni: int
    subnet: str  # first three octets of the network's /24
    server_host: int
    port: int
    protocol: str  # http, resp or tls
    client_node: int
    server_node: int


SERVICES = (
    Service("web", 4096, "10.0.0", 200, 80, "http", 0, 1),  # the ingress routing mesh
    Service("api", 4097, "10.0.1", 200, 8080, "http", 1, 2),
    Service("cache", 4097, "10.0.1", 201, 6379, "resp", 1, 3),
    Service("sessions", 4098, "10.0.2", 200, 6379, "resp", 2, 3),
    Service("auth", 4098, "10.0.2", 201, 443, "tls", 0, 2),
)
ARP_ICMP_NETWORK = SERVICES[1]

SECURITY_ASSOCIATIONS = (
    (0, 1, 0xC5A1_0F01),
    (1, 0, 0x7D20_33E2),
    (0, 2, 0x1B9E_6A03),
    (2, 0, 0x9F04_D1C4),
    (1, 3, 0x4E77_28A5),
    (3, 1, 0xE2C3_5B06),
)
"""(source node, destination node, SPI) of the encrypted overlay's ESP tunnels."""


@dataclass(frozen=True)
class FlowFields:
    """Offsets of the bytes that tell one overlay flow of a service from another."""

    service: int  # index into SERVICES
    client_ip: int  # last octet of the inner client IPv4 address
    client_mac: int  # last byte of the inner client MAC (Docker derives it from the IP)
    client_port: int
    ip_checksum: int  # inner IPv4 header checksum
    tcp_checksum: int
    outer_sport: int  # outer UDP source port, which Linux derives from the inner flow


@dataclass(frozen=True)
class Template:
    """One frame of the model and how often it occurs within its category."""

    name: str
    frame: bytes
    category: Category
    weight: float
    vni: int = -1  # the VNI of a VXLAN frame
    flow: FlowFields | None = None
    sa: int = -1  # index into SECURITY_ASSOCIATIONS for ESP frames
    esp_seq: int = -1  # offset of the ESP sequence number


@dataclass(frozen=True)
class Segment:
    """A TCP segment of a service's conversation."""

    name: str
    from_client: bool
    flags: int
    payload: bytes
    weight: float


def ip4(address: str) -> bytes:
    return socket.inet_aton(address)


def node_mac(node: int) -> bytes:
    return bytes((0x52, 0x54, 0x00, 0x00, 0x00, 0x11 + node))


def container_mac(address: str) -> bytes:
    return b"\x02\x42" + ip4(address)


def ethernet(src: bytes, dst: bytes, ethertype: int, payload: bytes) -> bytes:
    frame = dst + src + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, MIN_FRAME - len(frame)))


def tcp_packet(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes, ip_id: int) -> bytes:
    """IPv4 + TCP with timestamps (or SYN options), checksums computed."""
    opts = TCP_SYN_OPTIONS if flags & dpkt.tcp.TH_SYN else TCP_TIMESTAMPS
    tcp = dpkt.tcp.TCP(
        sport=sport,
        dport=dport,
        seq=0x1F3A_0000 + ip_id,
        ack=0x6B21_0000,
        flags=flags,
        win=502,
        opts=opts,
        data=payload,
    )
    tcp.off = (20 + len(opts)) // 4
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_TCP, ttl=64, id=ip_id, df=1, data=tcp)
    return bytes(ip)


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, checksum: bool) -> bytes:
    """IPv4 + UDP; the UDP checksum is left 0 when ``checksum`` is false (as Linux sends VXLAN)."""
    udp = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp if checksum else bytes(udp))
    return bytes(ip)


def vxlan_frame(vni: int, src_node: int, dst_node: int, inner: bytes) -> bytes:
    """Ethernet/IPv4/UDP 4789/VXLAN around an inner Ethernet frame."""
    vxlan = struct.pack("!B3xI", 0x08, vni << 8) + inner
    outer = udp_packet(NODE_IPS[src_node], NODE_IPS[dst_node], CLIENT_PORT_FIRST, VXLAN_PORT, vxlan, checksum=False)
    return ethernet(node_mac(src_node), node_mac(dst_node), dpkt.ethernet.ETH_TYPE_IP, outer)


def json_body(length: int) -> bytes:
    item = b'{"sku": "A-1001", "qty": 2, "price": 19.99, "warehouse": "eu-west-1"}, '
    body = b'{"order": 4711, "status": "shipped", "items": [' + item * (length // len(item) + 1)
    return body[:length]


def resp_command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def http_segments(service: Service) -> tuple[Segment, ...]:
    host = b"%s:%d" % (service.name.encode(), service.port)
    get = (
        b"GET /api/v1/orders?customer=4711&page=2 HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"User-Agent: python-requests/2.31.0\r\nAccept-Encoding: gzip, deflate\r\nAccept: application/json\r\n"
        b"Connection: keep-alive\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0NzExIn0.c2lnbmF0dXJl\r\n\r\n"
    )
    login = b'{"username": "alice", "password": "correct horse battery staple", "remember": true}'
    post = (
        b"POST /api/v1/login HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(login)
    ) + login
    head = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Type: application/json\r\n"
        b"Content-Length: 9120\r\nConnection: keep-alive\r\n\r\n"
    )
    return (
        Segment("syn", True, dpkt.tcp.TH_SYN, b"", 1),
        Segment("syn-ack", False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, b"", 1),
        Segment("ack", True, dpkt.tcp.TH_ACK, b"", 8),
        Segment("get", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, get, 3),
        Segment("post-login", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, post, 1),
        Segment("response-head", False, dpkt.tcp.TH_ACK, head + json_body(480), 4),
        Segment("response-body", False, dpkt.tcp.TH_ACK, json_body(OVERLAY_MSS), 8),
        Segment("response-tail", False, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, json_body(700), 3),
        Segment("server-ack", False, dpkt.tcp.TH_ACK, b"", 2),
        Segment("fin", True, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b"", 1),
    )


def resp_segments(service: Service) -> tuple[Segment, ...]:
    key = b"session:8f14e45fceea167a"
    value = json_body(1200)
    return (
        Segment("syn", True, dpkt.tcp.TH_SYN, b"", 0.5),
        Segment("syn-ack", False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, b"", 0.5),
        Segment("auth", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, resp_command(b"AUTH", b"S3cr3t-redis-passw0rd"), 1),
        Segment("set", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, resp_command(b"SET", key, json_body(400)), 3),
        Segment("get", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, resp_command(b"GET", key), 6),
        Segment("ok", False, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, b"+OK\r\n", 4),
        Segment("bulk", False, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, b"$%d\r\n%s\r\n" % (len(value), value), 5),
        Segment("ack", True, dpkt.tcp.TH_ACK, b"", 4),
        Segment("server-ack", False, dpkt.tcp.TH_ACK, b"", 2),
    )


def tls_record(length: int, rng: np.random.Generator) -> bytes:
    """A TLS 1.2/1.3 application-data record of ``length`` bytes in all, random ciphertext."""
    return b"\x17\x03\x03" + struct.pack("!H", length - 5) + rng.bytes(length - 5)


def tls_segments(rng: np.random.Generator) -> tuple[Segment, ...]:
    return (
        Segment("ack", True, dpkt.tcp.TH_ACK, b"", 6),
        Segment("client-data", True, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, tls_record(310, rng), 3),
        Segment("server-data", False, dpkt.tcp.TH_ACK, tls_record(OVERLAY_MSS, rng), 8),
        Segment("server-tail", False, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, tls_record(420, rng), 2),
        Segment("server-ack", False, dpkt.tcp.TH_ACK, b"", 2),
    )


def service_templates(index: int, service: Service, rng: np.random.Generator) -> Iterator[Template]:
    """The overlay frames of one service, both directions, for its first client."""
    if service.protocol == "http":
        segments = http_segments(service)
    elif service.protocol == "resp":
        segments = resp_segments(service)
    else:
        segments = tls_segments(rng)
    client = f"{service.subnet}.{CLIENT_HOST_FIRST}"
    server = f"{service.subnet}.{service.server_host}"
    for number, segment in enumerate(segments):
        if segment.from_client:
            ends = (client, server, CLIENT_PORT_FIRST, service.port, service.client_node, service.server_node)
        else:
            ends = (server, client, service.port, CLIENT_PORT_FIRST, service.server_node, service.client_node)
        src, dst, sport, dport, src_node, dst_node = ends
        packet = tcp_packet(src, dst, sport, dport, segment.flags, segment.payload, ip_id=0x4000 + number)
        inner = ethernet(container_mac(src), container_mac(dst), dpkt.ethernet.ETH_TYPE_IP, packet)
        side = 0 if segment.from_client else 1  # the client is the source, or the destination
        flow = FlowFields(
            service=index,
            client_ip=INNER_IP + 15 + 4 * side,
            client_mac=INNER_FRAME + 11 - 6 * side,
            client_port=INNER_TCP + 2 * side,
            ip_checksum=INNER_IP + 10,
            tcp_checksum=INNER_TCP + 16,
            outer_sport=OUTER_UDP_SPORT,
        )
        frame = vxlan_frame(service.vni, src_node, dst_node, inner)
        yield Template(
            f"{service.name}/{segment.name}", frame, Category.VXLAN, segment.weight, vni=service.vni, flow=flow
        )


def arp(src_ip: str, dst_ip: str, src_mac: bytes, dst_mac: bytes, op: int) -> bytes:
    """An ARP request (op 1, broadcast) or reply (op 2) as a padded Ethernet frame."""
    target_mac = bytes(6) if op == dpkt.arp.ARP_OP_REQUEST else dst_mac
    packet = dpkt.arp.ARP(op=op, sha=src_mac, spa=ip4(src_ip), tha=target_mac, tpa=ip4(dst_ip))
    eth_dst = b"\xff" * 6 if op == dpkt.arp.ARP_OP_REQUEST else dst_mac
    return ethernet(src_mac, eth_dst, dpkt.ethernet.ETH_TYPE_ARP, bytes(packet))


def icmp_echo(src: str, dst: str, src_mac: bytes, dst_mac: bytes, echo_type: int) -> bytes:
    """A 98-byte ping (``echo_type`` 8 request, 0 reply) as ``ping`` sends it."""
    echo = dpkt.icmp.ICMP.Echo(id=0x1C2B, seq=7, data=bytes(range(16, 72)))
    icmp = dpkt.icmp.ICMP(type=echo_type, code=0, data=echo)
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_ICMP, ttl=64, df=1, data=icmp)
    return ethernet(src_mac, dst_mac, dpkt.ethernet.ETH_TYPE_IP, bytes(ip))


def overlay_control_templates() -> Iterator[Template]:
    """ARP and ping inside one overlay network: cleartext VXLAN without a flow to vary."""
    net = ARP_ICMP_NETWORK
    a, b = f"{net.subnet}.{CLIENT_HOST_FIRST}", f"{net.subnet}.{net.server_host}"
    mac_a, mac_b = container_mac(a), container_mac(b)
    frames = (
        ("arp-request", arp(a, b, mac_a, mac_b, dpkt.arp.ARP_OP_REQUEST), net.client_node, net.server_node),
        ("arp-reply", arp(b, a, mac_b, mac_a, dpkt.arp.ARP_OP_REPLY), net.server_node, net.client_node),
        ("ping", icmp_echo(a, b, mac_a, mac_b, dpkt.icmp.ICMP_ECHO), net.client_node, net.server_node),
        ("pong", icmp_echo(b, a, mac_b, mac_a, dpkt.icmp.ICMP_ECHOREPLY), net.server_node, net.client_node),
    )
    for name, inner, src_node, dst_node in frames:
        frame = vxlan_frame(net.vni, src_node, dst_node, inner)
        yield Template(f"overlay/{name}", frame, Category.VXLAN, 0.5, vni=net.vni)


def esp_templates(rng: np.random.Generator) -> Iterator[Template]:
    """ESP in transport mode between node pairs: small, medium and full frames per SA."""
    for index, (src, dst, spi) in enumerate(SECURITY_ASSOCIATIONS):
        for frame_len, weight in ((150, 4.0), (650, 2.0), (MTU + ETH_HEADER, 4.0)):
            body = rng.bytes(frame_len - ETH_HEADER - IP_HEADER - 8)  # IV, ciphertext, ICV
            ip = dpkt.ip.IP(
                src=ip4(NODE_IPS[src]),
                dst=ip4(NODE_IPS[dst]),
                p=dpkt.ip.IP_PROTO_ESP,
                ttl=64,
                data=struct.pack("!II", spi, 1) + body,
            )
            frame = ethernet(node_mac(src), node_mac(dst), dpkt.ethernet.ETH_TYPE_IP, bytes(ip))
            yield Template(f"esp/{spi:08x}/{frame_len}", frame, Category.ESP, weight, sa=index, esp_seq=ESP_SEQ)


def underlay_templates(rng: np.random.Generator) -> Iterator[Template]:
    """Swarm control traffic between nodes, ARP and ping on the underlay."""
    n0, n1, n2 = NODE_IPS[:3]
    m0, m1, m2 = node_mac(0), node_mac(1), node_mac(2)
    tcp, ipv4 = dpkt.tcp, dpkt.ethernet.ETH_TYPE_IP
    push = tcp.TH_PUSH | tcp.TH_ACK
    gossip = b"\x02" + json_body(140)
    frames = (
        ("raft-append", ethernet(m0, m1, ipv4, tcp_packet(n0, n1, 41234, 2377, push, tls_record(180, rng), 1)), 2.0),
        ("raft-ack", ethernet(m1, m0, ipv4, tcp_packet(n1, n0, 2377, 41234, tcp.TH_ACK, b"", 2)), 2.0),
        (
            "raft-snapshot",
            ethernet(m1, m0, ipv4, tcp_packet(n1, n0, 2377, 41234, tcp.TH_ACK, tls_record(UNDERLAY_MSS, rng), 3)),
            1.0,
        ),
        ("memberlist-push-pull", ethernet(m2, m0, ipv4, tcp_packet(n2, n0, 51862, 7946, push, rng.bytes(900), 4)), 0.5),
        ("gossip-1-2", ethernet(m0, m1, ipv4, udp_packet(n0, n1, 7946, 7946, gossip, checksum=True)), 1.5),
        ("gossip-2-1", ethernet(m1, m0, ipv4, udp_packet(n1, n0, 7946, 7946, gossip, checksum=True)), 1.5),
        ("ping", icmp_echo(n0, n2, m0, m2, dpkt.icmp.ICMP_ECHO), 0.5),
        ("pong", icmp_echo(n2, n0, m2, m0, dpkt.icmp.ICMP_ECHOREPLY), 0.5),
        ("arp-request", arp(n0, n1, m0, m1, dpkt.arp.ARP_OP_REQUEST), 1.0),
        ("arp-reply", arp(n1, n0, m1, m0, dpkt.arp.ARP_OP_REPLY), 1.0),
    )
    for name, frame, weight in frames:
        yield Template(f"underlay/{name}", frame, Category.UNDERLAY, weight)


def build_templates(rng: np.random.Generator) -> tuple[Template, ...]:
    """Every template frame of the model; random bytes (ciphertext) come from ``rng``."""
    templates: list[Template] = []
    for index, service in enumerate(SERVICES):
        templates.extend(service_templates(index, service, rng))
    templates.extend(overlay_control_templates())
    templates.extend(esp_templates(rng))
    templates.extend(underlay_templates(rng))
    return tuple(templates)
