"""The task with tshark: ``tshark -T fields`` prints the fields of every packet, Python reads the lines.

A field that a packet holds several times (the outer and the inner IP source)
comes as a comma-separated list, in the order of the layers; ``frame.protocols``
names the layers in order, so the n-th ``ip`` of the protocol list owns the
n-th value of ``ip.src``.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from .task import VXLAN_PORTS, Answer, add_flow, classify, flow_key

FIELDS = (
    "frame.cap_len",
    "frame.protocols",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.payload",
)
PREFIX_HEX_DIGITS = 32
SKIPPED_LAYERS = frozenset({"ethertype", "vlan"})
INNER_STACKS = (["eth", "ip", "tcp"], ["eth", "ipv6", "tcp"])


def command(path: str) -> list[str]:
    tshark = shutil.which("tshark")
    if tshark is None:
        raise FileNotFoundError("tshark is not installed (apt-get install tshark)")
    fields = [arg for name in FIELDS for arg in ("-e", name)]
    return [tshark, "-n", "-r", path, "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "separator=/t", *fields]


def nth(values: str, index: int) -> str:
    """The ``index``-th value of a comma-separated field, or ``""``."""
    parts = values.split(",") if values else []
    return parts[index] if index < len(parts) else ""


def decode(columns: list[str], answer: Answer) -> None:
    """Count one packet's line into ``answer``."""
    _, protocols, sports, dports, vnis, ip_src, ip_dst, ip6_src, ip6_dst, tcp_sports, tcp_dports, payloads = columns
    if not vnis:
        return
    layers = protocols.split(":")
    vxlan_at = vxlan_seen = udp_seen = -1
    vni = -1
    for i, name in enumerate(layers):
        if name == "udp":
            udp_seen += 1
        elif name == "vxlan":
            vxlan_seen += 1
            if int(nth(dports, udp_seen) or 0) in VXLAN_PORTS or int(nth(sports, udp_seen) or 0) in VXLAN_PORTS:
                vxlan_at, vni = i, int(nth(vnis, vxlan_seen))
    if vxlan_at < 0:
        return
    answer.vni_packets[vni] = answer.vni_packets.get(vni, 0) + 1
    inner = [i for i in range(vxlan_at + 1, len(layers)) if layers[i] not in SKIPPED_LAYERS][:3]
    if [layers[i] for i in inner] not in INNER_STACKS:
        return
    ip_at, tcp_at = inner[1], inner[2]
    ip_index = layers[:ip_at].count(layers[ip_at])
    tcp_index = layers[:tcp_at].count("tcp")
    payload = nth(payloads, tcp_index)
    label = classify(bytes.fromhex(payload[:PREFIX_HEX_DIGITS])) if payload else None
    if label is None:
        return
    sources, destinations = (ip_src, ip_dst) if layers[ip_at] == "ip" else (ip6_src, ip6_dst)
    src = ipaddress.ip_address(nth(sources, ip_index)).packed
    dst = ipaddress.ip_address(nth(destinations, ip_index)).packed
    sport, dport = int(nth(tcp_sports, tcp_index)), int(nth(tcp_dports, tcp_index))
    add_flow(answer.flows, flow_key(vni, src, sport, dst, dport), label)


def run(path: str) -> Answer:
    answer = Answer()
    with subprocess.Popen(
        command(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1 << 20
    ) as tshark:
        for line in tshark.stdout:
            columns = line.rstrip("\n").split("\t")
            answer.packets += 1
            answer.captured_bytes += int(columns[0])
            decode(columns, answer)
        error = tshark.stderr.read()
    if tshark.returncode != 0:
        raise RuntimeError(f"tshark failed on {path} ({tshark.returncode}): {error.strip()}")
    return answer
