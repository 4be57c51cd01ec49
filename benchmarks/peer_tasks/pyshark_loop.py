"""The task with pyshark: Wireshark's dissection of every packet, handed to Python one packet at a time."""

from __future__ import annotations

import ipaddress

import pyshark
from pyshark.packet.layers.xml_layer import XmlLayer
from pyshark.packet.packet import Packet

from .task import VXLAN_PORTS, Answer, add_flow, classify, flow_key

PREFIX_HEX_DIGITS = 32
"""Payload bytes looked at (as hex digits): the task's patterns are shorter."""


def payload_prefix(tcp: XmlLayer) -> bytes:
    """First bytes of a TCP layer's payload (``aa:bb:...`` in Wireshark's PDML), or nothing."""
    text = tcp.get_field("payload")
    if not text:
        return b""
    return bytes.fromhex(text.replace(":", "")[:PREFIX_HEX_DIGITS])


def decode(packet: Packet, answer: Answer) -> None:
    layers = packet.layers
    names = [layer.layer_name for layer in layers]
    vxlan_at = -1
    for i, name in enumerate(names):
        if name == "vxlan" and i > 0 and names[i - 1] == "udp":
            udp = layers[i - 1]
            if int(udp.dstport) in VXLAN_PORTS or int(udp.srcport) in VXLAN_PORTS:
                vxlan_at = i
    if vxlan_at < 0:
        return
    vni = int(layers[vxlan_at].vni)
    answer.vni_packets[vni] = answer.vni_packets.get(vni, 0) + 1
    inner = [i for i in range(vxlan_at + 1, len(names)) if names[i] != "vlan"][:3]
    if [names[i] for i in inner] not in (["eth", "ip", "tcp"], ["eth", "ipv6", "tcp"]):
        return
    ip, tcp = layers[inner[1]], layers[inner[2]]
    label = classify(payload_prefix(tcp))
    if label is not None:
        src = ipaddress.ip_address(ip.src).packed
        dst = ipaddress.ip_address(ip.dst).packed
        add_flow(answer.flows, flow_key(vni, src, int(tcp.srcport), dst, int(tcp.dstport)), label)


def run(path: str) -> Answer:
    answer = Answer()
    capture = pyshark.FileCapture(path, keep_packets=False, decode_as={"udp.port==8472": "vxlan"})
    try:
        for packet in capture:
            answer.packets += 1
            answer.captured_bytes += int(packet.captured_length)
            decode(packet, answer)
    finally:
        capture.close()
    return answer
