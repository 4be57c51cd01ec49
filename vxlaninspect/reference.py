"""The reference decoder: one packet at a time on dpkt, written to be read.

It is the executable form of the rules in ``vxlaninspect.schema``; the compiled
kernel must produce the same row, field by field. dpkt supplies the header
layouts (field names, byte order, bit fields), but its parsing rules are not the
schema's: it trims by lengths its own way, accepts short options, treats ESP as
an IPv6 extension header and decodes further layers on its own. So each header
here is read by dpkt alone (``_read``), after this module has checked its bounds
itself, and the decisions between headers are this module's.

Bounds. Each layer decodes inside an ``_Extent``: the end its container claims
(an IP total length, a UDP length; the link layer claims nothing) and the end of
the bytes actually at hand (the capture, cut further by every claim and by an IP
fragment's end). A read past the claim is ``MALFORMED``, past the bytes at hand
``TRUNCATED``. The record's wire length is not used: a claim beyond the captured
bytes is taken as a snaplen cut.

Choices the schema leaves open, made here (the kernel makes the same):

* ``ethertype`` is set for every link type: 0x0800/0x86DD when the link layer or
  tunnel names IP without an EtherType (NULL, LOOP, RAW, IPV4, IPV6, Geneve and
  VXLAN-GPE carrying IP).
* NULL reads the address family little-endian, LOOP big-endian: 2 is IPv4;
  10, 24, 28, 30 are IPv6; any other family is a non-IP frame, like an unknown
  EtherType. A RAW version nibble other than 4 or 6, and a link type not in
  ``LinkType``, are ``UNSUPPORTED`` at ``Layer.LINK``.
* A fifth VLAN tag, or a ninth IPv6 extension header, is ``UNSUPPORTED``; an ARP
  header cut short is ``TRUNCATED`` at ``Layer.ARP``; an ICMP header needs its 4
  bytes (type, code, checksum); an IPv4 header with IHL < 5 records nothing.
* A tunnel chosen by port or protocol is counted (``encap``, ``tunnels``, the
  depth check) before its header is read, so a cut header still names it.
  Entering VXLAN, Geneve or GPE clears the inner fields (they describe what the
  tunnel carries, even if that is cut off) and turns the carrier's ``FRAGMENT``
  into ``OUTER_FRAGMENT``; ESP keeps its carrier as the inner packet, and a
  fragment carrying it stays ``FRAGMENT``. ``inner_off`` follows the innermost
  VXLAN, Geneve or GPE header (ESP has no decodable frame).
* UDP 4500 is a tunnel whatever it holds: a payload of exactly one 0xFF byte is a
  NAT keepalive, four zero bytes mark IKE, anything else is ESP; a payload too
  short for the marker is ``MALFORMED`` at ``Layer.ESP``. None of the three has
  a TCP/UDP payload of its own. An ESP header cut after its SPI keeps the SPI.
* A UDP header in a first fragment may claim more than the fragment holds (the
  rest is in later fragments): its payload is cut at the fragment's end, as by
  a snaplen. An IPv6 payload length of 0 with a Hop-by-Hop jumbo option takes
  the jumbo length and is not ``IP_LENGTH_ZERO``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import dpkt
import numpy as np

from .config import DEFAULT_CONFIG, DecodeConfig
from .records import RecordBatch
from .schema import (
    APP_HINT_BYTES,
    IPV4_MAPPED_PREFIX,
    MAX_IPV6_EXTENSIONS,
    MAX_TUNNEL_DEPTH,
    MAX_VLAN_TAGS,
    NO_VNI,
    AppHint,
    Encap,
    Layer,
    LinkType,
    PacketFlag,
    Status,
    empty_table,
)

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_ARP = 0x0806
ETH_TYPE_TEB = 0x6558  # transparent Ethernet bridging: Geneve carrying Ethernet
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)

IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
IP_PROTO_ESP = 50
IP_PROTO_ICMPV6 = 58
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_AH = 51
IPV6_DEST_OPTIONS = 60
IPV6_EXTENSIONS = (IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DEST_OPTIONS)
IPV6_JUMBO_OPTION = 0xC2

NULL_FAMILY_IPV4 = (2,)
NULL_FAMILY_IPV6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
VXLAN_I_FLAG = 0x08
GPE_NEXT_PROTOCOL = {1: ETH_TYPE_IPV4, 2: ETH_TYPE_IPV6}
GPE_NEXT_ETHERNET = 3
NAT_KEEPALIVE_BYTE = 0xFF
NON_ESP_MARKER = b"\0\0\0\0"


class _VXLAN(dpkt.Packet):
    """VXLAN header (RFC 7348)."""

    __hdr__ = (("flags", "B", VXLAN_I_FLAG), ("reserved1", "3s", b"\0\0\0"), ("_vni_reserved2", "I", 0))
    __bit_fields__ = {"_vni_reserved2": (("vni", 24), ("reserved2", 8))}


class _VXLANGPE(dpkt.Packet):
    """VXLAN-GPE header (draft-ietf-nvo3-vxlan-gpe)."""

    __hdr__ = (("flags", "B", 0x0C), ("reserved1", "H", 0), ("next_proto", "B", 3), ("_vni_reserved2", "I", 0))
    __bit_fields__ = {"_vni_reserved2": (("vni", 24), ("reserved2", 8))}


class _Geneve(dpkt.Packet):
    """Geneve fixed header (RFC 8926); ``opt_len`` counts 4-byte words of options."""

    __hdr__ = (("_ver_opt_len", "B", 0), ("flags", "B", 0), ("proto", "H", ETH_TYPE_TEB), ("_vni_reserved", "I", 0))
    __bit_fields__ = {
        "_ver_opt_len": (("ver", 2), ("opt_len", 6)),
        "_vni_reserved": (("vni", 24), ("reserved", 8)),
    }


class _IPv6ExtensionStart(dpkt.Packet):
    """The two bytes every walked IPv6 extension header starts with."""

    __hdr__ = (("nxt", "B", 59), ("len", "B", 0))


class _ARP(dpkt.Packet):
    """The fixed part of an ARP header; the four addresses follow."""

    __hdr__ = (("hrd", "H", 1), ("pro", "H", ETH_TYPE_IPV4), ("hln", "B", 6), ("pln", "B", 4), ("op", "H", 1))


_Header = TypeVar("_Header", bound=dpkt.Packet)


@dataclass(frozen=True)
class _Extent:
    """Where a layer's bytes end: as claimed by the headers (None: nothing claims), and as captured."""

    claimed: int | None
    captured: int

    @property
    def end(self) -> int:
        """Where the bytes end on the wire: the claim, or the capture when nothing claims."""
        return self.captured if self.claimed is None else self.claimed

    def exceeded_by(self, end: int) -> bool:
        """True if a layer ending at ``end`` claims more than this one holds."""
        return self.claimed is not None and end > self.claimed

    def within(self, claimed: int | None) -> _Extent:
        """The extent of a layer inside this one that claims to end at ``claimed``."""
        if claimed is None:
            return _Extent(None, self.captured)
        return _Extent(claimed, min(self.captured, claimed))


class _Stop(Exception):
    """Decoding stops with ``status`` at ``layer``."""

    def __init__(self, status: Status, layer: Layer) -> None:
        super().__init__(status, layer)
        self.status = status
        self.layer = layer


_INNER_FIELDS = {
    "ethertype": 0,
    "ipver": 0,
    "src_hi": 0,
    "src_lo": 0,
    "dst_hi": 0,
    "dst_lo": 0,
    "proto": 0,
    "sport": 0,
    "dport": 0,
    "tcp_flags": 0,
    "tcp_seq": 0,
    "tcp_ack": 0,
    "payload_off": 0,
    "payload_len": 0,
    "payload_wire": 0,
    "app": AppHint.NONE,
}


class _FrameDecoder:
    """Decodes one frame into a dict of ``PACKET_DTYPE`` fields."""

    def __init__(self, frame: bytes, ports: np.ndarray) -> None:
        self.frame = frame
        self.ports = ports
        self.fields: dict[str, int] = {
            "status": Status.OK,
            "error_layer": Layer.NONE,
            "flags": PacketFlag.NONE,
            "vlan": 0,
            "vlans": 0,
            "o_ipver": 0,
            "o_src_hi": 0,
            "o_src_lo": 0,
            "o_dst_hi": 0,
            "o_dst_lo": 0,
            "o_proto": 0,
            "o_sport": 0,
            "o_dport": 0,
            "encap": Encap.NONE,
            "tunnels": 0,
            "vni": NO_VNI,
            "outer_vni": NO_VNI,
            "vxlan_flags": 0,
            "spi": 0,
            "esp_seq": 0,
            "inner_off": 0,
            **_INNER_FIELDS,
        }
        self.ip_headers = 0
        self.inner_is_fragment = False

    def decode(self, linktype: int) -> dict[str, int]:
        try:
            self._link(linktype)
        except _Stop as stop:
            self.fields["status"] = stop.status
            self.fields["error_layer"] = stop.layer
        if self.inner_is_fragment:
            self._flag(PacketFlag.FRAGMENT)
        return self.fields

    # -- bounded reads -------------------------------------------------------

    def _take(self, off: int, size: int, extent: _Extent, layer: Layer) -> bytes:
        """``size`` bytes at ``off``: MALFORMED past the claim, TRUNCATED past the capture."""
        end = off + size
        if extent.exceeded_by(end):
            raise _Stop(Status.MALFORMED, layer)
        if end > extent.captured:
            raise _Stop(Status.TRUNCATED, layer)
        return self.frame[off:end]

    def _read(self, header: type[_Header], off: int, extent: _Extent, layer: Layer) -> _Header:
        """The fixed part of ``header`` at ``off``, unpacked by dpkt and nothing after it."""
        raw = self._take(off, header.__hdr_len__, extent, layer)
        packet = header.__new__(header)
        dpkt.Packet.unpack(packet, raw)
        return packet

    def _flag(self, flag: PacketFlag) -> None:
        self.fields["flags"] |= flag

    # -- link layer ----------------------------------------------------------

    def _link(self, linktype: int) -> None:
        frame = _Extent(claimed=None, captured=len(self.frame))
        if linktype == LinkType.ETHERNET:
            self._ethernet(0, frame, Layer.LINK, outer=True)
        elif linktype == LinkType.LINUX_SLL:
            sll = self._read(dpkt.sll.SLL, 0, frame, Layer.LINK)
            self._ethertype(sll.ethtype, dpkt.sll.SLL.__hdr_len__, frame, outer=True)
        elif linktype == LinkType.LINUX_SLL2:
            sll2 = self._read(dpkt.sll2.SLL2, 0, frame, Layer.LINK)
            self._ethertype(sll2.ethtype, dpkt.sll2.SLL2.__hdr_len__, frame, outer=True)
        elif linktype in (LinkType.NULL, LinkType.LOOP):
            order = "<I" if linktype == LinkType.NULL else ">I"
            (family,) = struct.unpack(order, self._take(0, 4, frame, Layer.LINK))
            if family in NULL_FAMILY_IPV4:
                self._network(ETH_TYPE_IPV4, 4, frame)
            elif family in NULL_FAMILY_IPV6:
                self._network(ETH_TYPE_IPV6, 4, frame)
            else:
                self._flag(PacketFlag.NON_IP)
        elif linktype == LinkType.RAW:
            version = self._take(0, 1, frame, Layer.LINK)[0] >> 4
            if version == 4:
                self._network(ETH_TYPE_IPV4, 0, frame)
            elif version == 6:
                self._network(ETH_TYPE_IPV6, 0, frame)
            else:
                raise _Stop(Status.UNSUPPORTED, Layer.LINK)
        elif linktype == LinkType.IPV4:
            self._network(ETH_TYPE_IPV4, 0, frame)
        elif linktype == LinkType.IPV6:
            self._network(ETH_TYPE_IPV6, 0, frame)
        else:
            raise _Stop(Status.UNSUPPORTED, Layer.LINK)

    def _ethernet(self, off: int, extent: _Extent, layer: Layer, *, outer: bool) -> None:
        eth = self._read(dpkt.ethernet.Ethernet, off, extent, layer)
        self._ethertype(eth.type, off + dpkt.ethernet.Ethernet.__hdr_len__, extent, outer=outer)

    def _ethertype(self, ethertype: int, off: int, extent: _Extent, *, outer: bool) -> None:
        """Strip VLAN tags (recording those of the outer frame), then dispatch on the EtherType."""
        tags = 0
        while ethertype in VLAN_TPIDS:
            if tags == MAX_VLAN_TAGS:
                raise _Stop(Status.UNSUPPORTED, Layer.VLAN)
            tag = self._read(dpkt.ethernet.VLANtag8021Q, off, extent, Layer.VLAN)
            if outer:
                if tags == 0:
                    self.fields["vlan"] = tag.id
                self.fields["vlans"] = tags + 1
            tags += 1
            ethertype = tag.type
            off += dpkt.ethernet.VLANtag8021Q.__hdr_len__
        self._network(ethertype, off, extent)

    def _network(self, ethertype: int, off: int, extent: _Extent) -> None:
        self.fields["ethertype"] = ethertype
        if ethertype == ETH_TYPE_IPV4:
            self._ipv4(off, extent)
        elif ethertype == ETH_TYPE_IPV6:
            self._ipv6(off, extent)
        else:
            self._flag(PacketFlag.NON_IP)
            if ethertype == ETH_TYPE_ARP:
                arp = self._read(_ARP, off, extent, Layer.ARP)
                self._take(off, _ARP.__hdr_len__ + 2 * (arp.hln + arp.pln), extent, Layer.ARP)

    # -- IP ------------------------------------------------------------------

    def _ip_header(self, version: int, src: int, dst: int, proto: int) -> bool:
        """Record a decoded IP header as the inner one (and the outer, if first); True if it is the outer."""
        outer = self.ip_headers == 0
        self.ip_headers += 1
        for prefix in ("", "o_") if outer else ("",):
            self.fields[prefix + "ipver"] = version
            self.fields[prefix + "src_hi"], self.fields[prefix + "src_lo"] = divmod(src, 1 << 64)
            self.fields[prefix + "dst_hi"], self.fields[prefix + "dst_lo"] = divmod(dst, 1 << 64)
            self.fields[prefix + "proto"] = proto
        return outer

    def _set_proto(self, proto: int, outer: bool) -> None:
        self.fields["proto"] = proto
        if outer:
            self.fields["o_proto"] = proto

    def _ipv4(self, off: int, extent: _Extent) -> None:
        ip = self._read(dpkt.ip.IP, off, extent, Layer.IPV4)
        header_len = ip.hl * 4
        if ip.v != 4 or header_len < dpkt.ip.IP.__hdr_len__:
            raise _Stop(Status.MALFORMED, Layer.IPV4)
        mapped = IPV4_MAPPED_PREFIX
        outer = self._ip_header(4, mapped | _int(ip.src), mapped | _int(ip.dst), ip.p)
        fragment = self.inner_is_fragment = bool(ip.mf or ip.offset)
        if ip.len == 0:
            self._flag(PacketFlag.IP_LENGTH_ZERO)
            claimed = None
        elif ip.len < header_len or extent.exceeded_by(off + ip.len):
            raise _Stop(Status.MALFORMED, Layer.IPV4)
        else:
            claimed = off + ip.len
        self._take(off, header_len, extent, Layer.IPV4)
        if ip.offset == 0:
            self._transport(ip.p, off + header_len, extent.within(claimed), outer=outer, fragment=fragment)

    def _ipv6(self, off: int, extent: _Extent) -> None:
        ip6 = self._read(dpkt.ip6.IP6, off, extent, Layer.IPV6)
        if ip6.v != 6:
            raise _Stop(Status.MALFORMED, Layer.IPV6)
        outer = self._ip_header(6, _int(ip6.src), _int(ip6.dst), ip6.nxt)
        self.inner_is_fragment = False
        payload = off + dpkt.ip6.IP6.__hdr_len__
        length = ip6.plen or self._jumbo_length(ip6.nxt, payload, extent)
        if length:
            claimed: int | None = payload + length
        else:
            self._flag(PacketFlag.IP_LENGTH_ZERO)
            claimed = None
        if claimed is not None and extent.exceeded_by(claimed):
            raise _Stop(Status.MALFORMED, Layer.IPV6)
        inside = extent.within(claimed)
        proto, off, fragment, walked = ip6.nxt, payload, False, 0
        while proto in IPV6_EXTENSIONS:
            if walked == MAX_IPV6_EXTENSIONS:
                raise _Stop(Status.UNSUPPORTED, Layer.IPV6_EXTENSION)
            walked += 1
            if proto == IPV6_FRAGMENT:
                frag = self._read(dpkt.ip6.IP6FragmentHeader, off, inside, Layer.IPV6_EXTENSION)
                fragment = self.inner_is_fragment = True
                proto, off = frag.nxt, off + dpkt.ip6.IP6FragmentHeader.__hdr_len__
                self._set_proto(proto, outer)
                if frag.frag_off != 0:
                    return
            else:
                ext = self._read(_IPv6ExtensionStart, off, inside, Layer.IPV6_EXTENSION)
                size = (ext.len + 2) * 4 if proto == IPV6_AH else (ext.len + 1) * 8
                self._take(off, size, inside, Layer.IPV6_EXTENSION)
                proto, off = ext.nxt, off + size
                self._set_proto(proto, outer)
        self._transport(proto, off, inside, outer=outer, fragment=fragment)

    def _jumbo_length(self, next_header: int, off: int, extent: _Extent) -> int:
        """The Jumbo Payload length in a Hop-by-Hop header at ``off``; 0 if it has none or is not captured."""
        if next_header != IPV6_HOP_BY_HOP or off + 2 > extent.captured:
            return 0
        end = off + (self.frame[off + 1] + 1) * 8
        if end > extent.captured:
            return 0
        pos = off + 2
        while pos + 2 <= end:
            kind, size = self.frame[pos], self.frame[pos + 1]
            if kind == 0:  # Pad1 has no length byte
                pos += 1
                continue
            if kind == IPV6_JUMBO_OPTION and size == 4 and pos + 6 <= end:
                return int.from_bytes(self.frame[pos + 2 : pos + 6], "big")
            pos += 2 + size
        return 0

    # -- transport -----------------------------------------------------------

    def _transport(self, proto: int, off: int, extent: _Extent, *, outer: bool, fragment: bool) -> None:
        if proto == IP_PROTO_TCP:
            self._tcp(off, extent, outer)
        elif proto == IP_PROTO_UDP:
            self._udp(off, extent, outer, fragment)
        elif proto in (IP_PROTO_ICMP, IP_PROTO_ICMPV6):
            icmp = self._read(dpkt.icmp.ICMP, off, extent, Layer.ICMP)
            self.fields["sport"], self.fields["dport"] = icmp.type, icmp.code
        elif proto == IP_PROTO_ESP:
            self._enter_tunnel(Encap.ESP, Layer.ESP)
            self._esp(off, extent)

    def _ports(self, sport: int, dport: int, outer: bool) -> None:
        self.fields["sport"], self.fields["dport"] = sport, dport
        if outer:
            self.fields["o_sport"], self.fields["o_dport"] = sport, dport

    def _tcp(self, off: int, extent: _Extent, outer: bool) -> None:
        tcp = self._read(dpkt.tcp.TCP, off, extent, Layer.TCP)
        self._ports(tcp.sport, tcp.dport, outer)
        self.fields["tcp_flags"] = tcp.flags & 0xFF
        self.fields["tcp_seq"], self.fields["tcp_ack"] = tcp.seq, tcp.ack
        header_len = tcp.off * 4
        if header_len < dpkt.tcp.TCP.__hdr_len__:
            raise _Stop(Status.MALFORMED, Layer.TCP)
        self._take(off, header_len, extent, Layer.TCP)
        self._payload(off + header_len, extent)

    def _udp(self, off: int, extent: _Extent, outer: bool, fragment: bool) -> None:
        udp = self._read(dpkt.udp.UDP, off, extent, Layer.UDP)
        self._ports(udp.sport, udp.dport, outer)
        claimed = off + udp.ulen
        # A first fragment holds only the start of the datagram its UDP length counts.
        if udp.ulen < dpkt.udp.UDP.__hdr_len__ or (extent.exceeded_by(claimed) and not fragment):
            raise _Stop(Status.MALFORMED, Layer.UDP)
        inside = extent.within(claimed)
        payload = off + dpkt.udp.UDP.__hdr_len__
        # An empty datagram carries no tunnel, whatever its ports.
        encap = (self.ports[udp.dport] or self.ports[udp.sport]) if payload < claimed else Encap.NONE
        if encap == Encap.VXLAN:
            self._vxlan(payload, inside)
        elif encap == Encap.GENEVE:
            self._geneve(payload, inside)
        elif encap == Encap.VXLAN_GPE:
            self._vxlan_gpe(payload, inside)
        elif encap == Encap.ESP_UDP:
            self._udp_encapsulation(payload, inside)
        else:
            self._payload(payload, inside)

    def _payload(self, off: int, extent: _Extent) -> None:
        """The innermost TCP/UDP payload: from ``off`` to the claimed end, as far as captured."""
        captured = extent.captured - off
        wire = extent.end - off
        self.fields["payload_off"] = off
        self.fields["payload_len"] = captured
        self.fields["payload_wire"] = wire
        if captured < wire:
            self._flag(PacketFlag.PAYLOAD_TRUNCATED)
        self.fields["app"] = app_hint(self.frame[off : off + min(captured, APP_HINT_BYTES)])

    # -- tunnels -------------------------------------------------------------

    def _enter_tunnel(self, encap: Encap, layer: Layer) -> None:
        """Count a tunnel chosen by IP protocol or UDP port, before its header is read."""
        if self.fields["tunnels"] == MAX_TUNNEL_DEPTH:
            raise _Stop(Status.TOO_DEEP, layer)
        self.fields["tunnels"] += 1
        self.fields["encap"] = encap

    def _enter_overlay(self, encap: Encap, layer: Layer) -> None:
        """Enter a VXLAN, Geneve or GPE tunnel: from here the inner fields describe what it carries."""
        self._enter_tunnel(encap, layer)
        self.fields.update(_INNER_FIELDS)
        if self.inner_is_fragment:
            self._flag(PacketFlag.OUTER_FRAGMENT)
            self.inner_is_fragment = False

    def _vni(self, vni: int) -> None:
        self.fields["vni"] = vni
        if self.fields["outer_vni"] == NO_VNI:
            self.fields["outer_vni"] = vni

    def _vxlan(self, off: int, extent: _Extent) -> None:
        self._enter_overlay(Encap.VXLAN, Layer.VXLAN)
        vxlan = self._read(_VXLAN, off, extent, Layer.VXLAN)
        self._vni(vxlan.vni)
        self.fields["vxlan_flags"] = vxlan.flags
        if not vxlan.flags & VXLAN_I_FLAG:
            self._flag(PacketFlag.VXLAN_NO_VNI_FLAG)
        if vxlan.flags & ~VXLAN_I_FLAG or vxlan.reserved1 != b"\0\0\0" or vxlan.reserved2:
            self._flag(PacketFlag.VXLAN_RESERVED)
        inner = self.fields["inner_off"] = off + _VXLAN.__hdr_len__
        self._ethernet(inner, extent, Layer.INNER_ETHERNET, outer=False)

    def _vxlan_gpe(self, off: int, extent: _Extent) -> None:
        self._enter_overlay(Encap.VXLAN_GPE, Layer.VXLAN_GPE)
        gpe = self._read(_VXLANGPE, off, extent, Layer.VXLAN_GPE)
        self._vni(gpe.vni)
        self.fields["vxlan_flags"] = gpe.flags
        inner = self.fields["inner_off"] = off + _VXLANGPE.__hdr_len__
        if gpe.next_proto == GPE_NEXT_ETHERNET:
            self._ethernet(inner, extent, Layer.INNER_ETHERNET, outer=False)
        elif gpe.next_proto in GPE_NEXT_PROTOCOL:
            self._flag(PacketFlag.INNER_NOT_ETHERNET)
            self._network(GPE_NEXT_PROTOCOL[gpe.next_proto], inner, extent)
        else:
            raise _Stop(Status.UNSUPPORTED, Layer.VXLAN_GPE)

    def _geneve(self, off: int, extent: _Extent) -> None:
        self._enter_overlay(Encap.GENEVE, Layer.GENEVE)
        geneve = self._read(_Geneve, off, extent, Layer.GENEVE)
        self._vni(geneve.vni)
        header_len = _Geneve.__hdr_len__ + geneve.opt_len * 4
        self._take(off, header_len, extent, Layer.GENEVE)
        inner = self.fields["inner_off"] = off + header_len
        if geneve.proto == ETH_TYPE_TEB:
            self._ethernet(inner, extent, Layer.INNER_ETHERNET, outer=False)
        elif geneve.proto in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
            self._flag(PacketFlag.INNER_NOT_ETHERNET)
            self._network(geneve.proto, inner, extent)
        else:
            raise _Stop(Status.UNSUPPORTED, Layer.GENEVE)

    def _udp_encapsulation(self, off: int, extent: _Extent) -> None:
        """UDP 4500 (RFC 3948): a NAT keepalive, IKE behind the non-ESP marker, or ESP."""
        self._enter_tunnel(Encap.ESP_UDP, Layer.ESP)
        if extent.end - off == 1 and self._take(off, 1, extent, Layer.ESP)[0] == NAT_KEEPALIVE_BYTE:
            self.fields["encap"] = Encap.NAT_KEEPALIVE
        elif self._take(off, 4, extent, Layer.ESP) == NON_ESP_MARKER:
            self.fields["encap"] = Encap.IKE
        else:
            self._esp(off, extent)

    def _esp(self, off: int, extent: _Extent) -> None:
        """SPI and sequence number; the SPI is kept when the capture ends before the sequence number."""
        (self.fields["spi"],) = struct.unpack(">I", self._take(off, 4, extent, Layer.ESP))
        self.fields["esp_seq"] = self._read(dpkt.esp.ESP, off, extent, Layer.ESP).seq


def _int(address: bytes) -> int:
    return int.from_bytes(address, "big")


_HTTP_METHODS = tuple(
    method + b" " for method in (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
)
_RESP_COMMAND = re.compile(rb"\*[0-9]{1,6}\r\n\$")
_RESP_REPLY = re.compile(rb"[+-][\x20-\x7e]|:-?[0-9]{1,20}\r|\$(?:-1|[0-9]{1,10})\r|\*(?:-1|[0-9]{1,6})\r")
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"


def app_hint(payload: bytes) -> AppHint:
    """The ``AppHint`` of a payload's first captured bytes (at most ``APP_HINT_BYTES`` are looked at)."""
    head = payload[:APP_HINT_BYTES]
    if not head:
        return AppHint.NONE
    if head.startswith(_HTTP_METHODS):
        return AppHint.HTTP_REQUEST
    if head.startswith(b"HTTP/1."):
        return AppHint.HTTP_RESPONSE
    if _RESP_COMMAND.match(head):
        return AppHint.RESP_COMMAND
    if _RESP_REPLY.match(head):
        return AppHint.RESP_REPLY
    if len(head) >= 5 and 0x14 <= head[0] <= 0x18 and head[1] == 0x03 and head[2] <= 0x04:
        return AppHint.TLS
    if head.startswith(b"SSH-"):
        return AppHint.SSH
    if not head.translate(None, _TEXT_BYTES):
        return AppHint.TEXT
    return AppHint.BINARY


@lru_cache(maxsize=16)
def _port_table(config: DecodeConfig) -> np.ndarray:
    table = config.port_table()
    table.flags.writeable = False
    return table


def _decode_into(row: np.void, frame: bytes, linktype: int, ports: np.ndarray) -> None:
    if not 0 <= linktype <= 0xFFFF:
        raise ValueError(f"link type {linktype} is not a 16-bit LINKTYPE_ value")
    for name, value in _FrameDecoder(frame, ports).decode(linktype).items():
        row[name] = value
    row["linktype"] = linktype


def decode_frame(frame: bytes, linktype: int, config: DecodeConfig = DEFAULT_CONFIG) -> np.void:
    """Decode one captured frame into a ``PACKET_DTYPE`` row.

    The record fields are those of a lone frame: ``ts_ns``, ``rec_offset`` and
    ``data_start`` are 0, ``caplen`` and ``wirelen`` are ``len(frame)``. Any bytes
    decode to a row (bad input is a status, never an exception); only a
    ``linktype`` outside 0-65535 raises ``ValueError``.
    """
    frame = bytes(frame)
    rows = empty_table(1)
    _decode_into(rows[0], frame, linktype, _port_table(config))
    rows["caplen"] = rows["wirelen"] = len(frame)
    return rows[0]


def decode_batch(batch: RecordBatch, config: DecodeConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Decode every record of ``batch`` into a ``PACKET_DTYPE`` table, record fields from the batch."""
    ports = _port_table(config)
    rows = empty_table(len(batch))
    for i in range(len(batch)):
        _decode_into(rows[i], batch.record(i), int(batch.linktype[i]), ports)
    rows["ts_ns"] = batch.ts_ns
    rows["rec_offset"] = batch.rec_offset
    rows["data_start"] = batch.data_start
    rows["caplen"] = batch.caplen
    rows["wirelen"] = batch.wirelen
    return rows
