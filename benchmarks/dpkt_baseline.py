"""The baseline decoder: the same decode work as a plain dpkt loop, one packet at a time.

Per frame: outer Ethernet, IPv4/IPv6 and UDP; VXLAN on the configured ports,
its VNI, and the inner Ethernet, IP and TCP/UDP ports and payload length; ESP's
SPI and sequence number. This is what a script written with dpkt does.
"""

from __future__ import annotations

from collections.abc import Iterable

import dpkt

IP_TYPES = (dpkt.ip.IP, dpkt.ip6.IP6)
TRANSPORTS = (dpkt.tcp.TCP, dpkt.udp.UDP)


def decode_inner(frame: bytes) -> tuple:
    """Inner Ethernet frame: (IP protocol, source, destination, ports, payload bytes) or its EtherType."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, IP_TYPES):
        return (eth.type,)
    transport = ip.data
    if isinstance(transport, TRANSPORTS):
        return (ip.p, ip.src, ip.dst, transport.sport, transport.dport, len(transport.data))
    return (ip.src, ip.dst)


def decode_frame(frame: bytes, vxlan_ports: frozenset[int]) -> tuple:
    """The fields of one Ethernet frame that the packet table holds for it."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, IP_TYPES):
        return (eth.type,)
    transport = ip.data
    if isinstance(transport, dpkt.esp.ESP):
        return (ip.src, ip.dst, transport.spi, transport.seq)
    if isinstance(transport, dpkt.udp.UDP) and transport.dport in vxlan_ports:
        vxlan = transport.data
        vni = int.from_bytes(vxlan[4:7], "big")
        return (ip.src, ip.dst, transport.sport, vni, *decode_inner(vxlan[8:]))
    if isinstance(transport, TRANSPORTS):
        return (ip.src, ip.dst, transport.sport, transport.dport, len(transport.data))
    return (ip.src, ip.dst)


def decode_frames(frames: Iterable[bytes], vxlan_ports: Iterable[int] = (4789, 8472)) -> int:
    """Decode every frame; the number of frames that did not parse (dpkt raised)."""
    ports = frozenset(vxlan_ports)
    failed = 0
    for frame in frames:
        try:
            decode_frame(frame, ports)
        except (dpkt.UnpackError, IndexError, ValueError):
            failed += 1
    return failed
