"""Why vxlaninspect and tshark may differ on a packet by design: the known reasons, and the rules that find them.

Each rule looks at one differing field of one packet, with both views, the
decoder's row and tshark's frame. A rule names a reason only when the packet
shows the cause (a status and where it arose, a flag, a port pair, an error
tshark reports itself), and only for the fields that cause can change;
anything else stays a disagreement.

Where decoding stopped matters: a difference in a layer before the one where
the decoder stopped is never explained by the stop. ``fields_from_error``
says which fields lie at or after that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from .schema import Encap, Layer, LinkType, PacketFlag, Status
from .tshark_fields import TSHARK_TUNNEL_PORTS, TsharkFrame
from .verify_views import APP_FIELDS, NO, PacketView, udp_hops


class Reason(Enum):
    """Why the decoder and tshark differ on a field, where they differ by design."""

    CUT_HEADER = "cut-header"
    CUT_WITHOUT_SNAPLEN = "cut-without-snaplen"
    MALFORMED_HEADER = "malformed-header"
    NOT_FOLLOWED = "not-followed"
    IPV6_OPTIONS = "ipv6-options"
    IP_LENGTH_ZERO = "ip-length-zero"
    SHORT_ICMP = "short-icmp"
    TLS_PARTIAL_RECORD = "tls-partial-record"
    PORT_PRECEDENCE = "port-precedence"
    TUNNEL_DEPTH = "tunnel-depth"
    FRAGMENT_PAYLOAD = "fragment-payload"
    NULL_LINUX_INET6 = "null-linux-inet6"
    NOT_DISSECTED = "not-dissected"

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    Reason.CUT_HEADER: (
        "a header cut short by the end of the captured bytes: vxlaninspect stops at it (TRUNCATED), "
        "tshark shows the fields that fit"
    ),
    Reason.CUT_WITHOUT_SNAPLEN: (
        "a frame that ends before its headers say, though its wire length is its captured length: "
        "vxlaninspect reads only captured lengths and calls it cut (TRUNCATED or PAYLOAD_TRUNCATED), or "
        "reads the tunnel header that was captured; tshark calls it malformed and bounds the payload by the "
        "wire length, which leaves a UDP length too long for it and no tunnel"
    ),
    Reason.MALFORMED_HEADER: (
        "a header that does not fit the length its enclosing header claims, or states an impossible "
        "length: both call the packet broken (vxlaninspect MALFORMED; tshark an error, a read past the end, or "
        "a warning for an IPv6 payload length or a UDP length) but show different parts of it from there on"
    ),
    Reason.NOT_FOLLOWED: (
        "a layer vxlaninspect does not follow (more VLAN tags or IPv6 extension headers than it walks, an "
        "unknown link type or tunnel payload: UNSUPPORTED); tshark goes on"
    ),
    Reason.IPV6_OPTIONS: (
        "an IPv6 extension header with malformed options: vxlaninspect skips extension headers by their "
        "length, tshark parses the options and stops there"
    ),
    Reason.IP_LENGTH_ZERO: (
        "an IP length of 0 (BIG TCP/GSO/TSO frames): vxlaninspect reads to the captured end (IP_LENGTH_ZERO), "
        "tshark 4.0 cannot decode past an IPv6 payload length of 0"
    ),
    Reason.SHORT_ICMP: (
        "an ICMP message shorter than 8 bytes: vxlaninspect reads its type and code from the first 4, "
        "tshark calls it malformed (or, in a first fragment, unreassembled)"
    ),
    Reason.TLS_PARTIAL_RECORD: (
        "a TLS record that does not end in the segment: vxlaninspect knows TLS by the record header, "
        "tshark (reading each segment alone) shows a record only when the whole of it is there"
    ),
    Reason.PORT_PRECEDENCE: (
        "both UDP ports name a dissector: vxlaninspect takes the destination port's first, tshark the "
        "other's (the lower port, or the one it was told with -d)"
    ),
    Reason.TUNNEL_DEPTH: "more nested tunnels than vxlaninspect follows (TOO_DEEP); tshark has no depth limit",
    Reason.FRAGMENT_PAYLOAD: (
        "an IP fragment: vxlaninspect takes the payload length its headers claim (for a first fragment the "
        "whole datagram, so the payload is marked cut, PAYLOAD_TRUNCATED); tshark bounds it by the fragment, "
        "gives no TCP length for a fragment and does not mark it cut; nor does it check a UDP length "
        "anywhere inside a fragment, which vxlaninspect calls malformed when it passes its IP payload"
    ),
    Reason.NULL_LINUX_INET6: (
        "BSD loopback (NULL) with address family 10, Linux's AF_INET6: vxlaninspect reads IPv6, "
        "tshark knows only the BSD values 24, 28, 30"
    ),
    Reason.NOT_DISSECTED: (
        "tshark chooses application dissectors by port and ran none for this protocol on the packet; "
        "vxlaninspect recognises the payload by content"
    ),
}

# The compared fields, in the order of the layers they come from.
_OUTER_IP = frozenset({"outer_src", "outer_dst", "outer_proto"})
_OUTER_TRANSPORT = frozenset({"outer_sport", "outer_dport"})
_TUNNEL = frozenset({"outer_encap", "encap", "tunnels", "outer_vni", "vni", "vxlan_flags", "spi", "esp_seq"})
_INNER = frozenset({"src", "dst", "proto", "sport", "dport", "payload_wire", "truncated", *APP_FIELDS})
_BEYOND_OUTER_TRANSPORT = _TUNNEL | _INNER
"""Fields that the choice made at the outer UDP header (which tunnel, if any) decides."""
_AFTER_NEXT_HEADER = (_OUTER_TRANSPORT | _BEYOND_OUTER_TRANSPORT | {"outer_proto"}) - {"src", "dst"}
"""Fields that an IPv6 header's (final) next header decides (``explain`` adds the innermost addresses
when the decoder followed a tunnel past it)."""
_LENGTH_FIELDS = ("truncated", "payload_wire")
_PORTS = ("sport", "dport")
_ICMPS = (1, 58)
_TUNNEL_LAYER = {Encap.VXLAN: "vxlan", Encap.GENEVE: "geneve", Encap.VXLAN_GPE: "vxlan-gpe", Encap.ESP_UDP: "udpencap"}
"""The layer tshark decodes after a UDP header whose port announces each tunnel."""
_LINK_LAYERS = (Layer.LINK, Layer.VLAN)
_IP_LAYERS = (Layer.IPV4, Layer.IPV6, Layer.IPV6_EXTENSION, Layer.ARP)
_TRANSPORT_LAYERS = (Layer.UDP, Layer.TCP, Layer.ICMP)
_IPV6_EXTENSION_LAYERS = frozenset({"ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr", "ipv6.dstopts", "ah"})


@dataclass(frozen=True)
class PacketPair:
    """One packet as both sides see it."""

    row: np.void  # the decoder's PACKET_DTYPE row
    ours: PacketView
    theirs: PacketView
    frame: TsharkFrame
    ports: np.ndarray  # the decoder's port table (DecodeConfig.port_table())


def fields_from_error(row: np.void) -> frozenset[str]:
    """The fields of the layer where the decoder stopped and of every layer after it (none when it did not stop)."""
    if int(row["status"]) == Status.OK:
        return frozenset()
    layer, tunnelled = int(row["error_layer"]), int(row["tunnels"]) > 0
    if layer in _LINK_LAYERS:
        return _OUTER_IP | _OUTER_TRANSPORT | _BEYOND_OUTER_TRANSPORT
    if not tunnelled and layer in _IP_LAYERS:
        return _OUTER_IP | _OUTER_TRANSPORT | _BEYOND_OUTER_TRANSPORT
    if not tunnelled and layer in _TRANSPORT_LAYERS:
        return _OUTER_TRANSPORT | _BEYOND_OUTER_TRANSPORT
    return _BEYOND_OUTER_TRANSPORT


def explain(field: str, pair: PacketPair) -> Reason | None:
    """The known reason for a difference on ``field``, or None when it is a disagreement."""
    row, frame = pair.row, pair.frame
    ours, theirs = getattr(pair.ours, field), getattr(pair.theirs, field)
    status = int(row["status"])
    flags = PacketFlag(int(row["flags"]))
    after_stop = field in fields_from_error(row)
    if int(row["linktype"]) == LinkType.NULL and theirs is None and pair.theirs.outer_src is None:
        return Reason.NULL_LINUX_INET6
    if field in _BEYOND_OUTER_TRANSPORT:
        if status == Status.TOO_DEEP:
            return Reason.TUNNEL_DEPTH
        if _port_precedence(pair):
            return Reason.PORT_PRECEDENCE
    if status == Status.UNSUPPORTED and after_stop:
        return Reason.NOT_FOLLOWED
    if PacketFlag.IP_LENGTH_ZERO in flags and (theirs is None or field in _BEYOND_OUTER_TRANSPORT) and frame.has_error:
        return Reason.IP_LENGTH_ZERO
    if field in _PORTS and int(row["proto"]) in _ICMPS and theirs is None and (frame.has_error or frame.get("_ws.unreassembled")):
        return Reason.SHORT_ICMP
    fragment = flags & (PacketFlag.FRAGMENT | PacketFlag.OUTER_FRAGMENT)
    if fragment and field in _LENGTH_FIELDS:
        return Reason.FRAGMENT_PAYLOAD
    udp_length = status == Status.MALFORMED and int(row["error_layer"]) == Layer.UDP
    if fragment and udp_length and after_stop and not frame.has_error:
        return Reason.FRAGMENT_PAYLOAD
    cut = status == Status.TRUNCATED or PacketFlag.PAYLOAD_TRUNCATED in flags
    whole = int(row["caplen"]) == int(row["wirelen"])
    if cut and field in _LENGTH_FIELDS and whole:
        return Reason.CUT_WITHOUT_SNAPLEN
    if whole and field in _BEYOND_OUTER_TRANSPORT and _udp_length_past_the_frame(row, pair.theirs, frame):
        return Reason.CUT_WITHOUT_SNAPLEN
    if status == Status.TRUNCATED and after_stop:
        return Reason.CUT_HEADER
    # tshark only warns of a bad IPv6 payload length or UDP length, and reads on
    warned_length = int(row["error_layer"]) in (Layer.IPV6, Layer.UDP) and frame.has_warning
    read_past = frame.get("_ws.short") or frame.get("_ws.unreassembled")  # tshark read past the bytes it had
    if status == Status.MALFORMED and after_stop and (frame.has_error or read_past or warned_length):
        return Reason.MALFORMED_HEADER
    after_next_header = field in _AFTER_NEXT_HEADER or (field in ("src", "dst") and int(row["tunnels"]) > 0)
    if after_next_header and frame.protocols[-1:] and frame.protocols[-1] in _IPV6_EXTENSION_LAYERS:
        return Reason.IPV6_OPTIONS if frame.has_error or read_past else None
    if field in APP_FIELDS and theirs is None and ours not in (None, NO):
        return Reason.NOT_DISSECTED
    if field == "tls" and ours == "record" and theirs == NO:
        return Reason.TLS_PARTIAL_RECORD
    return None


def _udp_length_past_the_frame(row: np.void, theirs: PacketView, frame: TsharkFrame) -> bool:
    """Whether the decoder followed a UDP tunnel where tshark, having bounded the IP payload by the
    frame (a warning), found the UDP length too long for it (an error) and stopped at UDP."""
    stopped_at_udp = frame.protocols[-1:] == ("udp",) and theirs.tunnels == "0"
    return stopped_at_udp and int(row["tunnels"]) > 0 and frame.has_warning and frame.has_error


def _port_precedence(pair: PacketPair) -> bool:
    """Whether, at a UDP header whose ports both name a dissector, tshark took the other port's."""
    table = pair.ports
    for hop in udp_hops(pair.frame):
        chosen, other = (hop.dport, hop.sport) if table[hop.dport] else (hop.sport, hop.dport)
        tunnel = int(table[chosen])
        if not tunnel or hop.following == _TUNNEL_LAYER[Encap(tunnel)]:
            continue
        if table[other] or other in TSHARK_TUNNEL_PORTS or hop.following not in ("", "data"):
            return True
        if hop.following == "" and other < chosen and not pair.frame.has_error:
            return True  # the lower port's dissector, which tshark tries first, took the payload silently
    return False
