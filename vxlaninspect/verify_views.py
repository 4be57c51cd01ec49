"""One packet in comparable terms: from a packet-table row, and from a tshark frame.

A ``PacketView`` holds, per compared field, a short text value, or None when
that side has nothing to say (no such layer, or a header it did not decode).
Both sides name things alike: addresses as ``ipaddress`` prints them, numbers
in decimal, SPIs as ``0x`` and eight hex digits, tunnels by the names in
``schema.ENCAP_NAMES``.

Application fields say whether the payload starts a message of that protocol:
``"request"``/``"response"`` (http), ``"record"`` (tls), ``"banner"`` (ssh),
``"command"`` (resp), else ``"no"``. On tshark's side they are None when
tshark ran no dissector of that protocol on the packet (it chooses them by
port; the decoder looks at content).

tshark's layers are walked in ``frame.protocols`` order, taking each field's
next occurrence for each layer that has it, along the decoder's own path: link,
IP (extension headers), transport, tunnel, and again inside the tunnel. The
walk stops where the decoder stops: after TCP, ICMP or ESP, and after UDP
unless a tunnel follows. What follows an ICMP header (the quoted packet) is
never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from .addresses import ip_text
from .schema import ENCAP_NAMES, NO_VNI, PACKET_DTYPE, AppHint, Encap, PacketFlag, Status
from .tshark_fields import TsharkFrame

NO = "no"
"""An application field's value when the payload does not start a message of that protocol."""

_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58
_PORTED = (_TCP, _UDP)
_UDP_ENCAPSULATIONS = (Encap.ESP_UDP, Encap.IKE, Encap.NAT_KEEPALIVE)
_ICMPS = (_ICMP, _ICMPV6)
_LINK_LAYERS = frozenset({"eth", "ethertype", "vlan", "ieee8021ad", "sll", "null", "loop", "raw", "vntag", "etag"})
_IPV6_EXTENSIONS = {
    "ipv6.hopopts": "ipv6.hopopts.nxt",
    "ipv6.routing": "ipv6.routing.nxt",
    "ipv6.fraghdr": "ipv6.fraghdr.nxt",
    "ipv6.dstopts": "ipv6.dstopts.nxt",
    "ah": "ah.next_header",
}
_OVERLAYS = {"vxlan": ("vxlan", "vxlan.vni"), "geneve": ("geneve", "geneve.vni")}
_GPE = ("vxlan-gpe", "vxlan.vni")
"""tshark 4.0's VXLAN-GPE dissector fills ``vxlan.*`` but adds no layer name: UDP is followed by the inner frame."""
_FLAGS_SHIFT = {"vxlan": 8, "vxlan-gpe": 0}
"""tshark's ``vxlan.flags``: VXLAN's flags and first reserved byte as 16 bits, GPE's flags byte alone."""
_HTTP_HINTS = {AppHint.HTTP_REQUEST: "request", AppHint.HTTP_RESPONSE: "response"}


@dataclass(frozen=True)
class PacketView:
    """The compared fields of one packet (None: nothing to say)."""

    caplen: str | None = None
    wirelen: str | None = None
    outer_encap: str | None = None  # outermost tunnel (ENCAP_NAMES)
    encap: str | None = None  # innermost tunnel
    tunnels: str | None = None  # tunnel headers passed; ESP counts as one
    outer_vni: str | None = None
    vni: str | None = None
    vxlan_flags: str | None = None  # flags byte of the innermost VXLAN/GPE header, as 0x and two hex digits
    outer_src: str | None = None
    outer_dst: str | None = None
    outer_proto: str | None = None
    outer_sport: str | None = None
    outer_dport: str | None = None
    src: str | None = None
    dst: str | None = None
    proto: str | None = None
    sport: str | None = None  # ICMP: type
    dport: str | None = None  # ICMP: code
    payload_wire: str | None = None  # TCP/UDP payload bytes the innermost headers claim
    spi: str | None = None
    esp_seq: str | None = None
    truncated: str | None = None  # "yes" when the capture cut the packet short of what its headers claim
    http: str | None = None
    tls: str | None = None
    ssh: str | None = None
    resp: str | None = None


FIELD_NAMES = tuple(f.name for f in fields(PacketView))
APP_FIELDS = ("http", "tls", "ssh", "resp")


def _spi(value: int) -> str:
    return f"0x{value:08x}"


@lru_cache(maxsize=1 << 16)
def _address(text: str) -> str:
    """An address as tshark prints it, in ``ipaddress``'s form."""
    return str(ipaddress.ip_address(text))


@lru_cache(maxsize=1 << 16)
def _ip(hi: int, lo: int) -> str:
    return ip_text(hi, lo)


# -- the decoder's side -------------------------------------------------------------


def row_view(packet: np.void, ports: np.ndarray) -> PacketView:
    """What a ``PACKET_DTYPE`` row says of its packet; ``ports`` is the decoder's ``DecodeConfig.port_table()``."""
    row = dict(zip(PACKET_DTYPE.names, packet.item()))  # Python ints: much faster to read than the row's fields
    status = int(row["status"])
    flags = PacketFlag(int(row["flags"]))
    encap = int(row["encap"])
    tunnels = int(row["tunnels"])
    proto = int(row["proto"])
    ipver = int(row["ipver"])
    o_proto = int(row["o_proto"])
    sport, dport = int(row["sport"]), int(row["dport"])
    ports_decoded = _ports_decoded(row, encap, status, flags)
    # Without a tunnel the outer IP header is the innermost one; a UDP tunnel means its UDP header was read.
    outer_ports = o_proto in _PORTED and ((tunnels > 0 and o_proto == _UDP) or (tunnels == 0 and ports_decoded))
    app = int(row["app"]) if int(row["payload_off"]) else None
    outer = _outer_encap(row, encap, tunnels, ports)
    return PacketView(
        caplen=str(int(row["caplen"])),
        wirelen=str(int(row["wirelen"])),
        outer_encap=_encap_name(outer),
        encap=_encap_name(encap),
        tunnels=str(tunnels),
        outer_vni=None if int(row["outer_vni"]) == NO_VNI else str(int(row["outer_vni"])),
        vni=None if int(row["vni"]) == NO_VNI else str(int(row["vni"])),
        vxlan_flags=f"0x{int(row['vxlan_flags']):02x}" if _vxlan_read(row, encap, outer, flags) else None,
        outer_src=_ip(row["o_src_hi"], row["o_src_lo"]) if row["o_ipver"] else None,
        outer_dst=_ip(row["o_dst_hi"], row["o_dst_lo"]) if row["o_ipver"] else None,
        outer_proto=str(o_proto) if row["o_ipver"] else None,
        outer_sport=str(int(row["o_sport"])) if outer_ports else None,
        outer_dport=str(int(row["o_dport"])) if outer_ports else None,
        src=_ip(row["src_hi"], row["src_lo"]) if ipver else None,
        dst=_ip(row["dst_hi"], row["dst_lo"]) if ipver else None,
        proto=str(proto) if ipver else None,
        sport=str(sport) if ipver and ports_decoded else None,
        dport=str(dport) if ipver and ports_decoded else None,
        payload_wire=str(int(row["payload_wire"])) if app is not None and proto in _PORTED else None,
        spi=_spi(int(row["spi"])) if encap in (Encap.ESP, Encap.ESP_UDP) and _esp_decoded(status, row) else None,
        esp_seq=str(int(row["esp_seq"])) if encap in (Encap.ESP, Encap.ESP_UDP) and _esp_decoded(status, row) else None,
        truncated="yes" if status == Status.TRUNCATED or PacketFlag.PAYLOAD_TRUNCATED in flags else NO,
        http=None if app is None else _HTTP_HINTS.get(app, NO),
        tls=None if app is None else "record" if app == AppHint.TLS else NO,
        ssh=None if app is None else "banner" if app == AppHint.SSH else NO,
        resp=None if app is None else "command" if app == AppHint.RESP_COMMAND else NO,
    )


def _encap_name(encap: int) -> str:
    """The name of an ``Encap`` code; a code outside the enumeration is shown as a number, to be told apart."""
    return ENCAP_NAMES.get(encap, f"encap-{encap}")


def _outer_encap(row: Mapping[str, int], encap: int, tunnels: int, ports: np.ndarray) -> int:
    """The outermost tunnel: with several, the one the outer UDP header's ports chose (destination port first)."""
    if tunnels <= 1:
        return encap
    dport = int(row["o_dport"])
    return int(ports[dport] or ports[int(row["o_sport"])])


def _vxlan_read(row: Mapping[str, int], encap: int, outer: int, flags: PacketFlag) -> bool:
    """Whether a VXLAN or GPE header was read whole: the innermost tunnel, the outermost, or one between them.

    The decoder writes the flags byte only of a header read whole, so one
    between them (under ESP, say, or a Geneve header) shows by its flags: a
    nonzero byte, or a VXLAN header without its I flag.
    """
    overlays = (Encap.VXLAN, Encap.VXLAN_GPE)
    if encap in overlays:
        return int(row["vni"]) != NO_VNI
    if outer in overlays and int(row["outer_vni"]) != NO_VNI:
        return True
    return int(row["vxlan_flags"]) != 0 or PacketFlag.VXLAN_NO_VNI_FLAG in flags


def _ports_decoded(row: Mapping[str, int], encap: int, status: int, flags: PacketFlag) -> bool:
    """Whether the innermost TCP/UDP/ICMP header's ports (type and code) were read.

    A TCP or UDP header read whole gives the payload's offset, or carries
    ESP-in-UDP, IKE or a NAT keepalive; one read in part keeps the ports read.
    An ICMP header leaves no offset: a later fragment (FRAGMENT, no header)
    or a cut header leaves type and code zero.
    """
    proto, sport, dport = int(row["proto"]), int(row["sport"]), int(row["dport"])
    if proto in _PORTED:
        carrier = proto == _UDP and encap in _UDP_ENCAPSULATIONS
        return int(row["payload_off"]) != 0 or carrier or bool(sport or dport)
    if proto not in _ICMPS:
        return False
    if sport or dport:
        return True
    return status == Status.OK and PacketFlag.FRAGMENT not in flags


def _esp_decoded(status: int, row: Mapping[str, int]) -> bool:
    return not (status != Status.OK and int(row["spi"]) == 0 and int(row["esp_seq"]) == 0)


# -- tshark's side ---------------------------------------------------------------------


class _Occurrences:
    """Hands out the next occurrence of each field of a frame, layer by layer."""

    def __init__(self, frame: TsharkFrame) -> None:
        self._frame = frame
        self._taken: dict[str, int] = {}

    def take(self, field: str) -> str | None:
        index = self._taken.get(field, 0)
        self._taken[field] = index + 1
        values = self._frame.get(field)
        return values[index] if index < len(values) else None


@dataclass(frozen=True)
class UdpHop:
    """A UDP header tshark decoded, and the name of the layer it decoded after it (``vxlan-gpe`` for GPE)."""

    sport: int
    dport: int
    following: str


@dataclass
class _Walk:
    """tshark's layers reduced along the decoder's path."""

    encap: str = ENCAP_NAMES[Encap.NONE]
    outer_encap: str | None = None
    tunnels: int = 0
    vnis: tuple[int, ...] = ()
    vxlan_flags: str | None = None
    outer: tuple[str | None, str | None, int | None] | None = None  # src, dst, proto
    outer_ports: tuple[str | None, str | None] | None = None
    inner: tuple[str | None, str | None, int | None] | None = None
    ports: tuple[str | None, str | None] | None = None
    payload_wire: int | None = None
    spi: str | None = None
    esp_seq: str | None = None
    ip_layers: int = 0
    udp_hops: tuple[UdpHop, ...] = ()

    def ip(self, src: str | None, dst: str | None, proto: int | None) -> None:
        self.ip_layers += 1
        self.inner = (src, dst, proto)
        self.ports = self.payload_wire = None
        if self.ip_layers == 1:
            self.outer = self.inner

    def next_header(self, proto: int | None) -> None:
        assert self.inner is not None
        self.inner = (self.inner[0], self.inner[1], proto)
        if self.ip_layers == 1:
            self.outer = self.inner

    def transport(self, sport: str | None, dport: str | None, payload_wire: int | None, *, ported: bool = True) -> None:
        """A TCP or UDP header (``ported``), or an ICMP header (type and code in place of the ports)."""
        self.ports = (sport, dport)
        self.payload_wire = payload_wire
        if self.ip_layers == 1 and ported:
            self.outer_ports = self.ports

    def tunnel(self, name: str) -> None:
        self.encap = name
        self.outer_encap = self.outer_encap or name

    def overlay(self, name: str, vni: str | None) -> None:
        """A VXLAN, Geneve or GPE header: the inner fields restart, even when the header is cut short."""
        self.tunnel(name)
        self.tunnels += 1
        if vni is not None:
            self.vnis += (int(vni, 0),)
        self.inner = self.ports = self.payload_wire = None


def _number(text: str | None) -> int | None:
    return None if text is None else int(text, 0)


def _walk(frame: TsharkFrame) -> _Walk:
    layers = frame.protocols
    occurrences = _Occurrences(frame)
    take = occurrences.take
    walk = _Walk()
    state = "link"
    i = 0
    while i < len(layers):
        layer = layers[i]
        i += 1
        if state == "link":
            if layer == "ip":
                walk.ip(take("ip.src"), take("ip.dst"), _number(take("ip.proto")))
                state = "ip"
            elif layer == "ipv6":
                walk.ip(take("ipv6.src"), take("ipv6.dst"), _number(take("ipv6.nxt")))
                state = "ip"
            elif layer not in _LINK_LAYERS:
                break
        elif state == "ip":
            if layer in _IPV6_EXTENSIONS:
                walk.next_header(_number(take(_IPV6_EXTENSIONS[layer])))
            elif layer == "tcp":
                sport, dport, length = take("tcp.srcport"), take("tcp.dstport"), _number(take("tcp.len"))
                walk.transport(sport, dport, length)
                break
            elif layer == "udp":
                sport, dport, length = take("udp.srcport"), take("udp.dstport"), _number(take("udp.length"))
                walk.transport(sport, dport, None if length is None or length < 8 else length - 8)
                if sport is not None and dport is not None:
                    following = layers[i] if i < len(layers) else ""
                    following = _GPE[0] if following in ("eth", "ip", "ipv6") else following
                    walk.udp_hops += (UdpHop(int(sport), int(dport), following),)
                state = "udp"
            elif layer in ("icmp", "icmpv6"):
                walk.transport(take(f"{layer}.type"), take(f"{layer}.code"), None, ported=False)
                break
            elif layer == "esp":
                _esp(walk, take, ENCAP_NAMES[Encap.ESP])
                break
            else:
                break
        elif state == "udp":
            if layer in _OVERLAYS or layer in ("eth", "ip", "ipv6"):
                name, vni_field = _OVERLAYS.get(layer, _GPE)
                walk.overlay(name, take(vni_field))
                if name in _FLAGS_SHIFT:
                    flags = take("vxlan.flags")
                    walk.vxlan_flags = None if flags is None else f"0x{int(flags, 0) >> _FLAGS_SHIFT[name]:02x}"
                if layer not in _OVERLAYS:
                    i -= 1  # GPE: this layer is the inner frame's first
                state = "link"
            elif layer == "udpencap":  # UDP 4500: a tunnel whatever it holds, as the decoder counts it
                walk.tunnels += 1
                walk.payload_wire = None
                if frame.get("udpencap.nat_keepalive"):
                    walk.tunnel(ENCAP_NAMES[Encap.NAT_KEEPALIVE])
                state = "udpencap"
            else:
                break
        elif state == "udpencap":
            if layer == "esp":
                walk.tunnels -= 1  # counted at udpencap
                _esp(walk, take, ENCAP_NAMES[Encap.ESP_UDP])
            elif layer == "isakmp":
                walk.tunnel(ENCAP_NAMES[Encap.IKE])
            break
    return walk


def _esp(walk: _Walk, take: Callable[[str], str | None], name: str) -> None:
    walk.tunnel(name)
    walk.tunnels += 1
    walk.payload_wire = None
    spi, seq = take("esp.spi"), take("esp.sequence")
    walk.spi = None if spi is None else _spi(int(spi, 0))
    walk.esp_seq = None if seq is None else str(int(seq, 0))


def udp_hops(frame: TsharkFrame) -> tuple[UdpHop, ...]:
    """The UDP headers on the decoder's path through a tshark frame, with what tshark decoded after each."""
    return _walk(frame).udp_hops


def tshark_view(frame: TsharkFrame) -> PacketView:
    """What tshark says of a frame, in the terms of ``row_view``."""
    walk = _walk(frame)
    outer, inner = walk.outer, walk.inner

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    def address(value: str | None) -> str | None:
        return None if value is None else _address(value)

    def app(layer: str, answers: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
        if layer not in frame.protocols:
            return None
        for answer, needed in answers:
            if all(frame.get(field) for field in needed):
                return answer
        return NO

    return PacketView(
        caplen=text(_first(frame.get("frame.cap_len"))),
        wirelen=text(_first(frame.get("frame.len"))),
        outer_encap=walk.outer_encap or ENCAP_NAMES[Encap.NONE],
        encap=walk.encap,
        tunnels=str(walk.tunnels),
        outer_vni=text(walk.vnis[0]) if walk.vnis else None,
        vni=text(walk.vnis[-1]) if walk.vnis else None,
        vxlan_flags=walk.vxlan_flags,
        outer_src=address(outer[0]) if outer else None,
        outer_dst=address(outer[1]) if outer else None,
        outer_proto=text(outer[2]) if outer else None,
        outer_sport=walk.outer_ports[0] if walk.outer_ports else None,
        outer_dport=walk.outer_ports[1] if walk.outer_ports else None,
        src=address(inner[0]) if inner else None,
        dst=address(inner[1]) if inner else None,
        proto=text(inner[2]) if inner else None,
        sport=walk.ports[0] if walk.ports else None,
        dport=walk.ports[1] if walk.ports else None,
        payload_wire=text(walk.payload_wire),
        spi=walk.spi,
        esp_seq=walk.esp_seq,
        truncated="yes" if frame.get("_ws.short") else NO,
        http=app("http", (("request", ("http.request.method",)), ("response", ("http.response.code",)))),
        tls=app("tls", (("record", ("tls.record.content_type",)),)),
        ssh=app("ssh", (("banner", ("ssh.protocol",)),)),
        resp=app("resp", (("command", ("resp.array", "resp.bulk_string")),)),
    )


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None
