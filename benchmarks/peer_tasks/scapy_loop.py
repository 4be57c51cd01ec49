"""The task with scapy: ``PcapReader`` and scapy's layers, VXLAN bound to port 8472 as well as 4789."""

from __future__ import annotations

import socket

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Padding, bind_layers
from scapy.utils import PcapReader

from .task import VXLAN_PORTS, Answer, add_flow, classify, flow_key

bind_layers(UDP, VXLAN, dport=8472)


def is_vxlan(layer: Packet) -> bool:
    """A VXLAN layer on one of the task's ports (scapy also binds 4790, 6633 and 48879)."""
    udp = layer.underlayer
    return isinstance(udp, UDP) and (udp.dport in VXLAN_PORTS or udp.sport in VXLAN_PORTS)


def payload_bytes(tcp: TCP) -> bytes:
    """The TCP payload without the Ethernet padding scapy appends to it."""
    data = bytes(tcp.payload)
    padding = tcp.getlayer(Padding)
    return data[: len(data) - len(padding.load)] if padding is not None else data


def raw_address(ip: IP | IPv6, name: str) -> bytes:
    family = socket.AF_INET if isinstance(ip, IP) else socket.AF_INET6
    return socket.inet_pton(family, getattr(ip, name))


def decode(packet: Packet, answer: Answer) -> None:
    vxlan = None
    layer = packet.getlayer(VXLAN)
    while layer is not None and is_vxlan(layer):
        vxlan = layer
        layer = layer.payload.getlayer(VXLAN)
    if vxlan is None:
        return
    vni = vxlan.vni
    answer.vni_packets[vni] = answer.vni_packets.get(vni, 0) + 1
    inner = vxlan.payload
    if not isinstance(inner, Ether):
        return
    ip = inner.payload
    while isinstance(ip, Dot1Q):
        ip = ip.payload
    if isinstance(ip, (IP, IPv6)) and isinstance(ip.payload, TCP):
        tcp = ip.payload
        label = classify(payload_bytes(tcp)[:16])
        if label is not None:
            key = flow_key(vni, raw_address(ip, "src"), tcp.sport, raw_address(ip, "dst"), tcp.dport)
            add_flow(answer.flows, key, label)


def run(path: str) -> Answer:
    answer = Answer()
    with PcapReader(path) as reader:
        for packet in reader:
            answer.packets += 1
            answer.captured_bytes += len(packet.original)
            decode(packet, answer)
    return answer
