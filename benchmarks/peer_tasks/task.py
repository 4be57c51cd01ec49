"""The task every tool performs, and the one form its answer is compared in.

Over a capture: count the packets of each VXLAN network (VNI), and find the
inner TCP flows, per VNI, that carry HTTP or RESP (Redis) payload.

* A VXLAN packet is a UDP datagram whose destination port, or else whose
  source port, is one of ``VXLAN_PORTS``; its VNI is that of the innermost
  such VXLAN header, and its inner packet the IP packet in the inner Ethernet
  frame (after any 802.1Q tags).
* A flow is (VNI, the unordered pair of inner TCP endpoints).
* A TCP payload is HTTP when it starts with an HTTP/1 method and a space, or
  with ``HTTP/1.``; it is RESP when it starts with ``*``, 1 to 6 digits and
  ``\\r\\n$`` (an array of bulk strings: a Redis command). These are
  vxlaninspect's ``AppHint`` rules ``HTTP_REQUEST``, ``HTTP_RESPONSE`` and
  ``RESP_COMMAND``.
* A flow is labelled ``http`` when any of its payloads is HTTP, else ``resp``
  when any is RESP; flows with neither are not part of the answer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

VXLAN_PORTS = frozenset({4789, 8472})
HTTP = "http"
RESP = "resp"
LABELS = (HTTP, RESP)
IPV4_MAPPED = b"\x00" * 10 + b"\xff\xff"
PROTOCOL_START = re.compile(
    rb"(?P<http>(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE) |HTTP/1\.)|(?P<resp>\*[0-9]{1,6}\r\n\$)"
)
"""HTTP request line or status line, or a RESP array of bulk strings, at the start of a payload."""

FlowKey = tuple[int, bytes, int, bytes, int]
"""(VNI, address, port, address, port): addresses as 4 or 16 bytes, endpoints ordered by ``flow_key``."""


def classify(payload: bytes) -> str | None:
    """``"http"``, ``"resp"`` or None for the first bytes of a TCP payload."""
    match = PROTOCOL_START.match(payload)
    if match is None:
        return None
    return HTTP if match.lastgroup == "http" else RESP


def add_flow(flows: dict[FlowKey, str], key: FlowKey, label: str) -> None:
    """Record ``label`` for a flow; HTTP outranks RESP."""
    if label == HTTP or key not in flows:
        flows[key] = label


@dataclass
class Answer:
    """What a tool found: every record counted, packets per VNI, labelled flows."""

    packets: int = 0
    captured_bytes: int = 0
    vni_packets: dict[int, int] = field(default_factory=dict)
    flows: dict[FlowKey, str] = field(default_factory=dict)


def ip16(address: bytes) -> bytes:
    """An address as 16 bytes: IPv4 in its IPv4-mapped form."""
    return IPV4_MAPPED + address if len(address) == 4 else address


def endpoint_text(address: bytes, port: int) -> str:
    if len(address) == 16 and address.startswith(IPV4_MAPPED):
        address = address[12:]
    if len(address) == 4:
        return f"{ipaddress.IPv4Address(address)}:{port}"
    return f"[{ipaddress.IPv6Address(address)}]:{port}"


def flow_key(vni: int, address_a: bytes, port_a: int, address_b: bytes, port_b: int) -> FlowKey:
    """A flow's key with its endpoints in a fixed order, whichever direction the packet went."""
    if (address_a, port_a) <= (address_b, port_b):
        return (vni, address_a, port_a, address_b, port_b)
    return (vni, address_b, port_b, address_a, port_a)


def flow_name(key: FlowKey) -> str:
    """``"4097 10.0.1.2:32768 10.0.1.201:6379"``: endpoints in byte order of their 16-byte form."""
    vni, address_a, port_a, address_b, port_b = key
    ends = sorted(((ip16(address_a), port_a), (ip16(address_b), port_b)))
    return f"{vni} {endpoint_text(*ends[0])} {endpoint_text(*ends[1])}"


@dataclass(frozen=True)
class CanonicalAnswer:
    """An answer in the form every tool's is compared in."""

    packets: int
    captured_bytes: int
    vni_packets: dict[int, int]
    flow_lines: frozenset[str]

    @classmethod
    def of(cls, answer: Answer) -> CanonicalAnswer:
        labels: dict[str, str] = {}
        for key, label in answer.flows.items():
            name = flow_name(key)
            if label == HTTP or name not in labels:
                labels[name] = label
        lines = frozenset(f"{label} {name}" for name, label in labels.items())
        return cls(answer.packets, answer.captured_bytes, dict(sorted(answer.vni_packets.items())), lines)

    def flows_of(self, label: str) -> int:
        return sum(1 for line in self.flow_lines if line.startswith(label + " "))

    def digest(self) -> str:
        """SHA-256 of the sorted flow lines: equal answers have equal digests."""
        return hashlib.sha256("\n".join(sorted(self.flow_lines)).encode()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "captured_bytes": self.captured_bytes,
            "vni_packets": {str(vni): count for vni, count in self.vni_packets.items()},
            "flows": {label: self.flows_of(label) for label in LABELS},
            "flows_sha256": self.digest(),
        }
