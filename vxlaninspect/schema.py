"""The packet table: one row per captured packet, one column per decoded field.

This module is the contract between the decoders (the compiled kernel and the
dpkt reference) and everything downstream. Both decoders fill ``PACKET_DTYPE``
with the same meaning, field by field, as written here.

Layers and names
----------------
*outer*  the outermost IP header of the frame: for tunnelled traffic the
         underlay (node to node), for anything else the packet itself.
*inner*  the innermost decoded IP header: inside the innermost tunnel, or the
         packet itself when there is no tunnel. For ESP the innermost decodable
         header is the one carrying ESP, so inner equals outer.

Addresses are 128-bit numbers split in two ``uint64`` halves (``*_hi``,
``*_lo``), big-endian: an IPv6 address as is, an IPv4 address in its
IPv4-mapped form ``::ffff:a.b.c.d`` (``hi == 0``, ``lo == 0xffff_0000_0000 | v4``).
Absent addresses are all zero.

Decoding rules both decoders follow
-----------------------------------
* Every read is bounded by the record's captured length. A header cut short by
  the capture is ``Status.TRUNCATED``; a length or field that cannot be right is
  ``Status.MALFORMED``. ``error_layer`` names the layer where decoding stopped.
  Fields decoded before that point keep their values.
* A snaplen cut inside the application payload is not an error: ``payload_len``
  counts the captured payload bytes, ``payload_wire`` what the headers claim,
  and ``PacketFlag.PAYLOAD_TRUNCATED`` is set.
* IPv4 ``total_length`` bounds the packet (Ethernet padding is not payload).
  ``total_length == 0`` (TSO/GSO/BIG TCP frames) means "up to the captured end"
  and sets ``PacketFlag.IP_LENGTH_ZERO``; likewise an IPv6 payload length of 0
  without a jumbo option. A total length shorter than the header is MALFORMED.
* IPv4 options are skipped by IHL. IPv6 extension headers Hop-by-Hop (0),
  Routing (43), Fragment (44), Destination Options (60) and AH (51) are walked
  (at most ``MAX_IPV6_EXTENSIONS``); ``proto`` is the final next header.
* A fragment (IPv4 MF set or offset non-zero; IPv6 Fragment header) sets
  ``PacketFlag.FRAGMENT`` (``OUTER_FRAGMENT`` when it is the outer header of a
  tunnel packet). Only the first fragment (offset 0) has its transport header
  decoded; later ones stop after the IP header with status OK.
* 802.1Q / 802.1ad / QinQ tags (0x8100, 0x88a8, 0x9100) are stripped, at most
  ``MAX_VLAN_TAGS`` per Ethernet header; ``vlan`` is the first VID of the outer
  frame and ``vlans`` the number of tags on it.
* Tunnels are chosen by UDP destination port, then source port, from a port
  table (``vxlaninspect.config``): VXLAN, Geneve, VXLAN-GPE and ESP-in-UDP.
  IP protocol 50 is ESP. Decoding descends through at most ``MAX_TUNNEL_DEPTH``
  tunnels; a deeper one stops with ``Status.TOO_DEEP``.
* VXLAN: the VNI is read whatever the flag bits say; the flags byte is kept in
  ``vxlan_flags`` and ``PacketFlag.VXLAN_NO_VNI_FLAG`` / ``VXLAN_RESERVED`` note
  an I bit that is off or reserved bits that are set. The inner frame is
  Ethernet. VXLAN-GPE: next protocol 1 IPv4, 2 IPv6, 3 Ethernet; others are
  ``Status.UNSUPPORTED``. Geneve: options skipped by length; protocol type
  0x6558 Ethernet, 0x0800 IPv4, 0x86DD IPv6.
* ESP (proto 50, or UDP 4500 payload whose first four bytes are not zero):
  ``spi`` and ``esp_seq`` are read, nothing inside is decoded. UDP 4500 with a
  zero non-ESP marker is ``Encap.IKE``; a single 0xFF byte is
  ``Encap.NAT_KEEPALIVE``.
* ``app`` is the ``AppHint`` of the innermost TCP or UDP payload's first bytes
  (see ``AppHint``); ``AppHint.NONE`` when there is no payload.

Finer points, settled between the two decoders
----------------------------------------------
* Link types without an EtherType (NULL, LOOP, RAW, IPV4, IPV6) and tunnels
  that carry IP directly set ``ethertype`` to 0x0800 or 0x86DD. NULL reads the
  address family little-endian, LOOP big-endian; an unknown family is an OK,
  non-IP frame, like an unknown EtherType. A RAW version nibble other than 4 or
  6, and an unknown link type, are ``UNSUPPORTED`` at ``Layer.LINK``.
* More than ``MAX_VLAN_TAGS`` tags or ``MAX_IPV6_EXTENSIONS`` extension
  headers are ``UNSUPPORTED``. An IPv4 header length under 5 words is
  ``MALFORMED``. ARP cut short is ``TRUNCATED`` at ``Layer.ARP``; ICMP needs
  its 4 header bytes.
* A tunnel is counted in ``tunnels`` (and checked against the depth limit)
  before its header is read. Entering VXLAN, Geneve or GPE clears the inner
  fields, and a fragmented carrier becomes ``OUTER_FRAGMENT``. ESP keeps its
  carrier as the inner packet, so a fragmented ESP carrier stays ``FRAGMENT``;
  ``inner_off`` is 0 for ESP.
* UDP on an ESP-in-UDP port is always a tunnel: a single 0xFF byte is a NAT
  keepalive, four zero bytes IKE, anything else ESP; a payload too short to
  tell is ``MALFORMED`` at ``Layer.ESP``. None of them has a payload or hint.
  An ESP header cut short keeps the SPI when the SPI was captured.
* A first fragment whose UDP length runs past the fragment is not malformed:
  its payload ends with the fragment and ``PAYLOAD_TRUNCATED`` is set.
* The record's wire length is not consulted: a length the headers claim beyond
  the captured bytes is a snaplen cut.
* An IPv6 Jumbo Payload option replaces a payload length of 0 and does not set
  ``IP_LENGTH_ZERO``.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

import numpy as np

MAX_VLAN_TAGS = 4
MAX_IPV6_EXTENSIONS = 8
MAX_TUNNEL_DEPTH = 4
APP_HINT_BYTES = 64
"""How many leading payload bytes the application hint looks at."""


class LinkType(IntEnum):
    """Link-layer header types (tcpdump.org LINKTYPE_ values) that are decoded."""

    NULL = 0  # BSD loopback, 4-byte address family in host byte order
    ETHERNET = 1
    RAW = 101  # IPv4 or IPv6 by the version nibble
    LOOP = 108  # OpenBSD loopback, address family in network byte order
    LINUX_SLL = 113  # tcpdump -i any, 16-byte cooked header
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276  # tcpdump -i any since libpcap 1.10, 20-byte cooked header


class Status(IntEnum):
    """How far decoding got."""

    OK = 0
    TRUNCATED = 1  # a header is cut short by the captured length
    MALFORMED = 2  # a length or field that cannot be right
    UNSUPPORTED = 3  # a link type or next-protocol value this decoder does not follow
    TOO_DEEP = 4  # more nested tunnels than MAX_TUNNEL_DEPTH


class Layer(IntEnum):
    """Where decoding stopped, for a non-OK status."""

    NONE = 0
    LINK = 1  # Ethernet, SLL, SLL2, loopback, raw
    VLAN = 2
    IPV4 = 3
    IPV6 = 4
    IPV6_EXTENSION = 5
    UDP = 6
    TCP = 7
    ICMP = 8
    VXLAN = 9
    GENEVE = 10
    VXLAN_GPE = 11
    ESP = 12
    ARP = 13
    INNER_ETHERNET = 14


class Encap(IntEnum):
    """The innermost tunnel a packet travelled in."""

    NONE = 0  # underlay traffic, not tunnelled
    VXLAN = 1
    GENEVE = 2
    VXLAN_GPE = 3
    ESP = 4  # IP protocol 50
    ESP_UDP = 5  # ESP in UDP (RFC 3948)
    IKE = 6  # UDP 4500 with the non-ESP marker
    NAT_KEEPALIVE = 7  # UDP 4500 with the single byte 0xFF


ENCAP_NAMES = {
    Encap.NONE: "none",
    Encap.VXLAN: "vxlan",
    Encap.GENEVE: "geneve",
    Encap.VXLAN_GPE: "vxlan-gpe",
    Encap.ESP: "esp",
    Encap.ESP_UDP: "esp-udp",
    Encap.IKE: "ike",
    Encap.NAT_KEEPALIVE: "nat-keepalive",
}
"""How reports and ``verify`` name each encapsulation."""


class PacketFlag(IntFlag):
    """Facts about a packet that are not errors."""

    NONE = 0
    PAYLOAD_TRUNCATED = 0x0001  # captured payload shorter than the headers claim
    FRAGMENT = 0x0002  # the inner IP header is a fragment
    OUTER_FRAGMENT = 0x0004  # the outer IP header of a tunnel packet is a fragment
    IP_LENGTH_ZERO = 0x0008  # an IP length of 0 (TSO/GSO/BIG TCP) read as "to the end"
    VXLAN_NO_VNI_FLAG = 0x0010  # VXLAN I flag (0x08) off
    VXLAN_RESERVED = 0x0020  # VXLAN reserved bits or bytes not zero
    INNER_NOT_ETHERNET = 0x0040  # tunnel carried IP directly (Geneve/GPE)
    NON_IP = 0x0080  # the innermost frame is not IP (ARP, LLDP, ...)


class AppHint(IntEnum):
    """What the first bytes of a TCP or UDP payload look like.

    Tested in this order on the first ``min(payload_len, APP_HINT_BYTES)``
    captured payload bytes; the first that matches wins:

    1. ``HTTP_REQUEST``: an upper-case method among GET, POST, PUT, DELETE,
       HEAD, OPTIONS, PATCH, CONNECT, TRACE followed by a space.
    2. ``HTTP_RESPONSE``: starts with ``HTTP/1.``.
    3. ``RESP_COMMAND``: ``*`` then 1-6 digits then ``\\r\\n$`` (an array of
       bulk strings, which is what Redis clients send).
    4. ``RESP_REPLY``: ``+`` or ``-`` then a printable byte; or ``:`` then an
       optional ``-`` and 1-20 digits then ``\\r``; or ``$`` then ``-1`` or 1-10
       digits then ``\\r``; or ``*`` then ``-1`` or 1-6 digits then ``\\r``.
       A "printable" byte is 0x20-0x7E.
    5. ``TLS``: at least 5 bytes; byte 0 in 0x14-0x18 (a record type), byte 1
       == 0x03, byte 2 <= 0x04.
    6. ``SSH``: starts with ``SSH-``.
    7. ``TEXT``: every examined byte printable or one of ``\\t \\r \\n``.
    8. ``BINARY``: anything else.
    """

    NONE = 0
    HTTP_REQUEST = 1
    HTTP_RESPONSE = 2
    RESP_COMMAND = 3
    RESP_REPLY = 4
    TLS = 5
    SSH = 6
    TEXT = 7
    BINARY = 8


PACKET_DTYPE = np.dtype(
    [
        # record
        ("ts_ns", "<i8"),  # capture timestamp, nanoseconds since the epoch
        ("rec_offset", "<i8"),  # byte offset of the record in the (decompressed) capture
        ("data_start", "<i8"),  # index of the record's first byte in the batch buffer
        ("caplen", "<u4"),  # captured length
        ("wirelen", "<u4"),  # original length on the wire
        ("linktype", "<u2"),  # LinkType value (any pcap link type is stored)
        ("status", "u1"),  # Status
        ("error_layer", "u1"),  # Layer where a non-OK status arose
        ("flags", "<u2"),  # PacketFlag bits
        ("vlan", "<u2"),  # first 802.1Q VID of the outer frame, 0 if untagged
        ("vlans", "u1"),  # number of VLAN tags on the outer frame
        # outermost IP header (underlay)
        ("o_ipver", "u1"),  # 4, 6, or 0 when the frame carries no IP
        ("o_src_hi", "<u8"),
        ("o_src_lo", "<u8"),
        ("o_dst_hi", "<u8"),
        ("o_dst_lo", "<u8"),
        ("o_proto", "u1"),  # IP protocol after IPv6 extension headers
        ("o_sport", "<u2"),  # outer UDP/TCP ports (0 otherwise)
        ("o_dport", "<u2"),
        # tunnel
        ("encap", "u1"),  # Encap of the innermost tunnel
        ("tunnels", "u1"),  # number of tunnel headers passed (ESP counts as one)
        ("vni", "<i4"),  # VNI of the innermost VXLAN/Geneve/GPE header, -1 if none
        ("outer_vni", "<i4"),  # VNI of the outermost such header, -1 if none
        ("vxlan_flags", "u1"),  # flags byte of the innermost VXLAN/GPE header
        ("spi", "<u4"),  # ESP security parameter index
        ("esp_seq", "<u4"),  # ESP sequence number
        ("inner_off", "<u4"),  # offset of the innermost tunnelled frame from the record start, 0 if none
        # innermost packet (the flow)
        ("ethertype", "<u2"),  # EtherType of the innermost frame (0x0800, 0x86DD, 0x0806, ...)
        ("ipver", "u1"),  # 4, 6, or 0
        ("src_hi", "<u8"),
        ("src_lo", "<u8"),
        ("dst_hi", "<u8"),
        ("dst_lo", "<u8"),
        ("proto", "u1"),  # innermost IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 50 ESP)
        ("sport", "<u2"),  # TCP/UDP ports; ICMP/ICMPv6: sport = type, dport = code
        ("dport", "<u2"),
        ("tcp_flags", "u1"),
        ("tcp_seq", "<u4"),
        ("tcp_ack", "<u4"),
        ("payload_off", "<u4"),  # offset of the innermost TCP/UDP payload from the record start
        ("payload_len", "<u4"),  # captured payload bytes (padding excluded)
        ("payload_wire", "<u4"),  # payload bytes the headers claim
        ("app", "u1"),  # AppHint
    ]
)
"""One row per packet. Field meanings are in the module docstring."""

NO_VNI = -1
IPV4_MAPPED_PREFIX = 0xFFFF_0000_0000
"""``lo`` half of ``::ffff:0.0.0.0``: OR an IPv4 address into it."""


def empty_table(n: int = 0) -> np.ndarray:
    """A zeroed packet table of ``n`` rows with VNIs set to ``NO_VNI``."""
    rows = np.zeros(n, dtype=PACKET_DTYPE)
    rows["vni"] = NO_VNI
    rows["outer_vni"] = NO_VNI
    return rows
