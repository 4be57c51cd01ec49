"""The task as a plain dpkt loop: ``dpkt.pcap.Reader`` and dpkt's protocol classes, one packet at a time."""

from __future__ import annotations

import dpkt

from .task import VXLAN_PORTS, Answer, add_flow, classify, flow_key

IP_TYPES = (dpkt.ip.IP, dpkt.ip6.IP6)


def decode(frame: bytes, link: type, answer: Answer) -> None:
    """Count one frame into ``answer``."""
    vni = -1
    try:
        ip = link(frame).data
        while isinstance(ip, IP_TYPES):
            transport = ip.data
            if isinstance(transport, dpkt.udp.UDP) and (
                transport.dport in VXLAN_PORTS or transport.sport in VXLAN_PORTS
            ):
                vxlan = transport.data
                if len(vxlan) < 8:
                    break
                vni = int.from_bytes(vxlan[4:7], "big")
                link = dpkt.ethernet.Ethernet
                ip = link(vxlan[8:]).data
                continue
            if vni >= 0 and isinstance(transport, dpkt.tcp.TCP) and transport.data:
                label = classify(transport.data[:16])
                if label is not None:
                    add_flow(answer.flows, flow_key(vni, ip.src, transport.sport, ip.dst, transport.dport), label)
            break
    except (dpkt.UnpackError, IndexError, ValueError):
        pass
    if vni >= 0:
        answer.vni_packets[vni] = answer.vni_packets.get(vni, 0) + 1


def run(path: str) -> Answer:
    answer = Answer()
    with open(path, "rb") as capture:
        reader = dpkt.pcap.Reader(capture)
        link = dpkt.sll.SLL if reader.datalink() == dpkt.pcap.DLT_LINUX_SLL else dpkt.ethernet.Ethernet
        for _, frame in reader:
            answer.packets += 1
            answer.captured_bytes += len(frame)
            decode(frame, link, answer)
    return answer
