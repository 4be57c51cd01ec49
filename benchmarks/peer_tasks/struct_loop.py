"""The task in pure Python: pcap records and headers read with ``struct``, one packet at a time.

Reads classic pcap (either byte order, micro- or nanoseconds) of Ethernet or
Linux cooked (SLL) frames: what a careful script without a packet library does.
"""

from __future__ import annotations

import struct

from .task import VXLAN_PORTS, Answer, add_flow, classify, flow_key

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
TCP = 6
UDP = 17
U16 = struct.Struct("!H")
VNI = struct.Struct("!I")


def link_ethertype(frame: bytes, offset: int) -> tuple[int, int]:
    """(EtherType, offset of the network header) of an Ethernet frame starting at ``offset``; (0, 0) if cut short."""
    pos = offset + 12
    if len(frame) < pos + 2:
        return 0, 0
    (ethertype,) = U16.unpack_from(frame, pos)
    pos += 2
    while ethertype in VLAN_TYPES:
        if len(frame) < pos + 4:
            return 0, 0
        (ethertype,) = U16.unpack_from(frame, pos + 2)
        pos += 4
    return ethertype, pos


def ip_transport(frame: bytes, ethertype: int, pos: int) -> tuple[bytes, bytes, int, int, int] | None:
    """(source, destination, protocol, transport offset, end of the IP packet), or None if not IP or cut short."""
    if ethertype == ETH_IPV4:
        if len(frame) < pos + 20:
            return None
        header = (frame[pos] & 0x0F) * 4
        (total,) = U16.unpack_from(frame, pos + 2)
        fragment = U16.unpack_from(frame, pos + 6)[0] & 0x1FFF
        if header < 20 or fragment:
            return None
        end = min(len(frame), pos + total) if total else len(frame)
        return frame[pos + 12 : pos + 16], frame[pos + 16 : pos + 20], frame[pos + 9], pos + header, end
    if ethertype == ETH_IPV6:
        if len(frame) < pos + 40:
            return None
        (length,) = U16.unpack_from(frame, pos + 4)
        end = min(len(frame), pos + 40 + length) if length else len(frame)
        return frame[pos + 8 : pos + 24], frame[pos + 24 : pos + 40], frame[pos + 6], pos + 40, end
    return None


def decode(frame: bytes, linktype: int, answer: Answer) -> None:
    """Count one frame into ``answer``."""
    if linktype == LINKTYPE_ETHERNET:
        ethertype, pos = link_ethertype(frame, 0)
    elif linktype == LINKTYPE_LINUX_SLL and len(frame) >= 16:
        ethertype, pos = U16.unpack_from(frame, 14)[0], 16
    else:
        return
    vni = -1
    while True:
        packet = ip_transport(frame, ethertype, pos)
        if packet is None:
            break
        src, dst, proto, pos, end = packet
        if proto == UDP and end >= pos + 16:
            sport, dport = struct.unpack_from("!HH", frame, pos)
            if dport in VXLAN_PORTS or sport in VXLAN_PORTS:
                vni = VNI.unpack_from(frame, pos + 12)[0] >> 8
                ethertype, pos = link_ethertype(frame, pos + 16)
                continue
        if vni >= 0 and proto == TCP and end >= pos + 20:
            sport, dport = struct.unpack_from("!HH", frame, pos)
            payload_start = pos + (frame[pos + 12] >> 4) * 4
            label = classify(frame[payload_start : min(end, payload_start + 16)]) if payload_start < end else None
            if label is not None:
                add_flow(answer.flows, flow_key(vni, src, sport, dst, dport), label)
        break
    if vni >= 0:
        answer.vni_packets[vni] = answer.vni_packets.get(vni, 0) + 1


def run(path: str) -> Answer:
    answer = Answer()
    with open(path, "rb") as capture:
        header = capture.read(24)
        order = PCAP_MAGICS.get(header[:4])
        if order is None:
            raise ValueError(f"{path}: not a classic pcap file (magic {header[:4].hex()})")
        linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
        record = struct.Struct(order + "IIII")
        while True:
            head = capture.read(16)
            if len(head) < 16:
                break
            caplen = record.unpack(head)[2]
            frame = capture.read(caplen)
            answer.packets += 1
            answer.captured_bytes += len(frame)
            decode(frame, linktype, answer)
    return answer
