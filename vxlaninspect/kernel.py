"""The compiled decoder: a ``RecordBatch`` in, one ``PACKET_DTYPE`` row per record out.

One numba pass over the batch buffer decodes every record by the rules in
``schema``: link header, VLAN tags, IP (options, extension headers, fragments),
TCP/UDP/ICMP, tunnels chosen from the port table (VXLAN, Geneve, VXLAN-GPE,
ESP, ESP-in-UDP), descending iteratively into inner frames, and the
application hint of the innermost payload. Each row starts as the undecoded
row and receives the fields as they are decoded. Nothing allocates per packet
and no input can raise: every read is checked first against the captured end
of the record (``data``) and the end that the enclosing headers claim
(``claim``). A header that does not fit in ``claim`` is MALFORMED; one that
fits in ``claim`` but not in ``data`` is TRUNCATED (as Wireshark tells
"malformed" from "packet size limited during capture").

Decoding a batch in memory waits on memory more than on work, so the first
bytes of records a few places ahead are prefetched; large batches are split
between the calling thread and helper threads that live as long as the process
(the kernel releases the GIL).

The compiled code of the kernel lives in this module on purpose: numba's
on-disk cache is invalidated by changes to the file that defines the cached
function only, so compiled helpers in another module could be served stale
from the cache. The one exception is the ``prefetch`` intrinsic, shared with
the capture walkers and not expected to change.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from numba import njit

from .config import DEFAULT_CONFIG, DecodeConfig
from .prefetch import prefetch
from .records import RecordBatch
from .schema import (
    APP_HINT_BYTES,
    IPV4_MAPPED_PREFIX,
    MAX_IPV6_EXTENSIONS,
    MAX_TUNNEL_DEPTH,
    MAX_VLAN_TAGS,
    NO_VNI,
    PACKET_DTYPE,
    AppHint,
    Encap,
    Layer,
    LinkType,
    PacketFlag,
    Status,
    empty_table,
)

MIN_RECORDS_PER_THREAD = 16384
"""Batches smaller than twice this are decoded on the calling thread alone."""
PREFETCH_AHEAD = 8
"""Records ahead whose first bytes are fetched into the cache: decoding waits on memory, not on work."""
PREFETCH_BYTES = 192
"""Bytes of each record prefetched: the headers of a tunnelled frame and the start of its payload."""

# IntEnum members become plain ints here: numba folds module globals as constants.
_OK = int(Status.OK)
_TRUNCATED = int(Status.TRUNCATED)
_MALFORMED = int(Status.MALFORMED)
_UNSUPPORTED = int(Status.UNSUPPORTED)
_TOO_DEEP = int(Status.TOO_DEEP)

_L_NONE = int(Layer.NONE)
_L_LINK = int(Layer.LINK)
_L_VLAN = int(Layer.VLAN)
_L_IPV4 = int(Layer.IPV4)
_L_IPV6 = int(Layer.IPV6)
_L_IPV6_EXT = int(Layer.IPV6_EXTENSION)
_L_UDP = int(Layer.UDP)
_L_TCP = int(Layer.TCP)
_L_ICMP = int(Layer.ICMP)
_L_VXLAN = int(Layer.VXLAN)
_L_GENEVE = int(Layer.GENEVE)
_L_GPE = int(Layer.VXLAN_GPE)
_L_ESP = int(Layer.ESP)
_L_ARP = int(Layer.ARP)
_L_INNER_ETH = int(Layer.INNER_ETHERNET)

_E_NONE = int(Encap.NONE)
_E_VXLAN = int(Encap.VXLAN)
_E_GENEVE = int(Encap.GENEVE)
_E_GPE = int(Encap.VXLAN_GPE)
_E_ESP = int(Encap.ESP)
_E_ESP_UDP = int(Encap.ESP_UDP)
_E_IKE = int(Encap.IKE)
_E_KEEPALIVE = int(Encap.NAT_KEEPALIVE)

_F_PAYLOAD_TRUNCATED = int(PacketFlag.PAYLOAD_TRUNCATED)
_F_FRAGMENT = int(PacketFlag.FRAGMENT)
_F_OUTER_FRAGMENT = int(PacketFlag.OUTER_FRAGMENT)
_F_IP_LENGTH_ZERO = int(PacketFlag.IP_LENGTH_ZERO)
_F_VXLAN_NO_VNI = int(PacketFlag.VXLAN_NO_VNI_FLAG)
_F_VXLAN_RESERVED = int(PacketFlag.VXLAN_RESERVED)
_F_INNER_NOT_ETH = int(PacketFlag.INNER_NOT_ETHERNET)
_F_NON_IP = int(PacketFlag.NON_IP)

_LT_NULL = int(LinkType.NULL)
_LT_ETHERNET = int(LinkType.ETHERNET)
_LT_RAW = int(LinkType.RAW)
_LT_LOOP = int(LinkType.LOOP)
_LT_SLL = int(LinkType.LINUX_SLL)
_LT_IPV4 = int(LinkType.IPV4)
_LT_IPV6 = int(LinkType.IPV6)
_LT_SLL2 = int(LinkType.LINUX_SLL2)

_APP_NONE = int(AppHint.NONE)
_APP_HTTP_REQUEST = int(AppHint.HTTP_REQUEST)
_APP_HTTP_RESPONSE = int(AppHint.HTTP_RESPONSE)
_APP_RESP_COMMAND = int(AppHint.RESP_COMMAND)
_APP_RESP_REPLY = int(AppHint.RESP_REPLY)
_APP_TLS = int(AppHint.TLS)
_APP_SSH = int(AppHint.SSH)
_APP_TEXT = int(AppHint.TEXT)
_APP_BINARY = int(AppHint.BINARY)

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_ARP = 0x0806
_ETH_TEB = 0x6558  # transparent Ethernet bridging: Geneve's "inner Ethernet"
_TPID_8021Q = 0x8100
_TPID_8021AD = 0x88A8
_TPID_QINQ = 0x9100

_IPPROTO_ICMP = 1
_IPPROTO_TCP = 6
_IPPROTO_UDP = 17
_IPPROTO_ESP = 50
_IPPROTO_ICMPV6 = 58
_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_DEST_OPTS = 60
_IPV6_JUMBO_OPTION = 0xC2

_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)  # Linux, OpenBSD/NetBSD, FreeBSD, macOS

_NO_CLAIM = 1 << 62
"""``claim`` when no enclosing header states a length (the frame itself, an IP length of 0)."""

# What decodes next, in the descent loop.
_NEXT_ETHERNET = 0
_NEXT_ETHERTYPE = 1  # link header already read: dispatch on `ethertype` (VLAN tags first)
_NEXT_IPV4 = 2
_NEXT_IPV6 = 3
_NEXT_DONE = 4

_IPV4_MAPPED = np.uint64(IPV4_MAPPED_PREFIX)
_U64_32 = np.uint64(32)

_HTTP_METHODS = np.frombuffer(b"GET POST PUT DELETE HEAD OPTIONS PATCH CONNECT TRACE ", dtype=np.uint8)
"""Methods of an HTTP request line, each with the space that must follow it."""
_HTTP_RESPONSE = np.frombuffer(b"HTTP/1.", dtype=np.uint8)
_SSH = np.frombuffer(b"SSH-", dtype=np.uint8)


@njit(cache=True, nogil=True)
def _byte(buf, p):
    """``buf[p]`` as an int; the index is unsigned, which spares the check for a negative one."""
    return np.int64(buf[np.uint64(p)])


@njit(cache=True, nogil=True)
def _u16(buf, p):
    return (_byte(buf, p) << 8) | _byte(buf, p + 1)


@njit(cache=True, nogil=True)
def _u24(buf, p):
    return (_byte(buf, p) << 16) | (_byte(buf, p + 1) << 8) | _byte(buf, p + 2)


@njit(cache=True, nogil=True)
def _u32(buf, p):
    return (_byte(buf, p) << 24) | (_byte(buf, p + 1) << 16) | (_byte(buf, p + 2) << 8) | _byte(buf, p + 3)


@njit(cache=True, nogil=True)
def _u64(buf, p):
    return (np.uint64(_u32(buf, p)) << _U64_32) | np.uint64(_u32(buf, p + 4))


@njit(cache=True, nogil=True)
def _app_hint(buf, p, payload_len):
    """The ``AppHint`` of the payload at ``p`` with ``payload_len`` captured bytes."""
    if payload_len <= 0:
        return _APP_NONE
    n = min(payload_len, APP_HINT_BYTES)
    end = p + n
    first = _byte(buf, p)
    if 0x43 <= first <= 0x54:  # 'C'..'T': an HTTP method and a space?
        start = 0
        while start < len(_HTTP_METHODS):
            k = 0
            while k < n and _byte(buf, p + k) == _HTTP_METHODS[start + k]:
                if _HTTP_METHODS[start + k] == 0x20:
                    return _APP_HTTP_REQUEST
                k += 1
            while _HTTP_METHODS[start] != 0x20:
                start += 1
            start += 1
    if first == 0x48 and n >= len(_HTTP_RESPONSE):  # 'H'
        k = 0
        while k < len(_HTTP_RESPONSE) and _byte(buf, p + k) == _HTTP_RESPONSE[k]:
            k += 1
        if k == len(_HTTP_RESPONSE):
            return _APP_HTTP_RESPONSE
    if first == 0x2A or first == 0x24 or first == 0x3A:  # '*' '$' ':' then digits and CR
        most = 20
        if first == 0x2A:
            most = 6
        elif first == 0x24:
            most = 10
        q = p + 1
        if q < end and _byte(buf, q) == 0x2D:  # '-'
            if first == 0x3A:
                q += 1
            elif q + 2 < end and _byte(buf, q + 1) == 0x31 and _byte(buf, q + 2) == 0x0D:  # "-1\r"
                return _APP_RESP_REPLY
        d = 0
        while q + d < end and d <= most and 0x30 <= _byte(buf, q + d) <= 0x39:
            d += 1
        if 1 <= d <= most:
            r = q + d
            if first == 0x2A and r + 2 < end and _byte(buf, r) == 0x0D and _byte(buf, r + 1) == 0x0A and _byte(buf, r + 2) == 0x24:
                return _APP_RESP_COMMAND
            if r < end and _byte(buf, r) == 0x0D:
                return _APP_RESP_REPLY
    if (first == 0x2B or first == 0x2D) and n >= 2 and 0x20 <= _byte(buf, p + 1) <= 0x7E:  # '+' '-'
        return _APP_RESP_REPLY
    if n >= 5 and 0x14 <= first <= 0x18 and _byte(buf, p + 1) == 0x03 and _byte(buf, p + 2) <= 0x04:
        return _APP_TLS
    if first == 0x53 and n >= len(_SSH):  # 'S'
        k = 0
        while k < len(_SSH) and _byte(buf, p + k) == _SSH[k]:
            k += 1
        if k == len(_SSH):
            return _APP_SSH
    for k in range(p, end):
        c = _byte(buf, k)
        if not (0x20 <= c <= 0x7E or c == 0x09 or c == 0x0A or c == 0x0D):
            return _APP_BINARY
    return _APP_TEXT


@njit(cache=True, nogil=True)
def _jumbo_length(buf, p, data):
    """The Jumbo Payload option's length in the Hop-by-Hop header at ``p`` (captured whole), or -1."""
    if p + 2 > data:
        return -1
    end = p + (_byte(buf, p + 1) + 1) * 8
    if end > data:
        return -1
    q = p + 2
    while q + 2 <= end:
        kind = _byte(buf, q)
        if kind == 0:  # Pad1 has no length byte
            q += 1
            continue
        size = _byte(buf, q + 1)
        if kind == _IPV6_JUMBO_OPTION and size == 4 and q + 6 <= end:
            return _u32(buf, q + 2)
        q += 2 + size
    return -1


@njit(cache=True, nogil=True)
def _fit(need, data, claim):
    """Status of a read ending at ``need``: OK, MALFORMED past ``claim``, TRUNCATED past ``data``."""
    if need <= data:
        return _OK
    if need > claim:
        return _MALFORMED
    return _TRUNCATED


@njit(cache=True, nogil=True)
def _decode_record(buf, start, caplen, linktype, ports, row):
    """Decode one record, ``_byte(buf, start:start + caplen)``, into ``row``, which holds the undecoded values."""
    data = min(start + caplen, len(buf))  # the captured end: no read reaches it
    claim = np.int64(_NO_CLAIM)  # the end that the enclosing headers claim
    p = start
    status = _OK
    layer = _L_NONE
    flags = 0
    ethertype = 0
    nxt = _NEXT_DONE

    # The link header.
    if linktype == _LT_ETHERNET:
        nxt = _NEXT_ETHERNET
    elif linktype == _LT_SLL or linktype == _LT_SLL2:
        size = 16 if linktype == _LT_SLL else 20
        if p + size > data:
            status = _TRUNCATED
            layer = _L_LINK
        else:
            ethertype = _u16(buf, p + 14) if linktype == _LT_SLL else _u16(buf, p)
            p += size
            nxt = _NEXT_ETHERTYPE
    elif linktype == _LT_NULL or linktype == _LT_LOOP:
        if p + 4 > data:
            status = _TRUNCATED
            layer = _L_LINK
        else:
            family = _u32(buf, p)
            if linktype == _LT_NULL:  # host byte order, that of little-endian writers
                family = ((family & 0xFF) << 24) | ((family & 0xFF00) << 8) | ((family >> 8) & 0xFF00) | (family >> 24)
            p += 4
            if family == _AF_INET:
                nxt = _NEXT_IPV4
            elif family == _AF_INET6[0] or family == _AF_INET6[1] or family == _AF_INET6[2] or family == _AF_INET6[3]:
                nxt = _NEXT_IPV6
            else:
                flags |= _F_NON_IP
    elif linktype == _LT_RAW:
        if p + 1 > data:
            status = _TRUNCATED
            layer = _L_LINK
        elif _byte(buf, p) >> 4 == 4:
            nxt = _NEXT_IPV4
        elif _byte(buf, p) >> 4 == 6:
            nxt = _NEXT_IPV6
        else:
            status = _UNSUPPORTED
            layer = _L_LINK
    elif linktype == _LT_IPV4:
        nxt = _NEXT_IPV4
    elif linktype == _LT_IPV6:
        nxt = _NEXT_IPV6
    else:
        status = _UNSUPPORTED
        layer = _L_LINK
    if nxt == _NEXT_IPV4:
        row["ethertype"] = _ETH_IPV4
    elif nxt == _NEXT_IPV6:
        row["ethertype"] = _ETH_IPV6

    ip_headers = 0  # IP headers met: the first is the outer one
    fragment = False  # the innermost IP header is a fragment
    payload = -1  # offset of the innermost TCP/UDP payload, once found
    outer = True  # still in the link frame, whose VLAN tags are recorded
    tunnels = 0
    while nxt != _NEXT_DONE:
        if nxt == _NEXT_ETHERNET:
            status = _fit(p + 14, data, claim)
            if status:
                layer = _L_LINK if outer else _L_INNER_ETH
                break
            ethertype = _u16(buf, p + 12)
            p += 14
            nxt = _NEXT_ETHERTYPE

        if nxt == _NEXT_ETHERTYPE:
            tags = 0
            while ethertype == _TPID_8021Q or ethertype == _TPID_8021AD or ethertype == _TPID_QINQ:
                if tags == MAX_VLAN_TAGS:
                    status = _UNSUPPORTED
                    break
                status = _fit(p + 4, data, claim)
                if status:
                    break
                if outer:
                    if tags == 0:
                        row["vlan"] = _u16(buf, p) & 0x0FFF
                    row["vlans"] = tags + 1
                ethertype = _u16(buf, p + 2)
                p += 4
                tags += 1
            if status:
                layer = _L_VLAN
                break
            row["ethertype"] = ethertype
            if ethertype == _ETH_IPV4:
                nxt = _NEXT_IPV4
            elif ethertype == _ETH_IPV6:
                nxt = _NEXT_IPV6
            else:
                flags |= _F_NON_IP
                if ethertype == _ETH_ARP:
                    status = _fit(p + 8, data, claim)
                    if status == _OK:
                        status = _fit(p + 8 + 2 * (_byte(buf, p + 4) + _byte(buf, p + 5)), data, claim)
                    layer = _L_ARP
                break

        outer = False
        ip_headers += 1
        if nxt == _NEXT_IPV4:
            layer = _L_IPV4
            status = _fit(p + 20, data, claim)
            if status:
                break
            header_len = (_byte(buf, p) & 0x0F) * 4
            if _byte(buf, p) >> 4 != 4 or header_len < 20:
                status = _MALFORMED
                break
            total_len = _u16(buf, p + 2)
            fragment_field = _u16(buf, p + 6)
            proto = _byte(buf, p + 9)
            src = _IPV4_MAPPED | np.uint64(_u32(buf, p + 12))
            dst = _IPV4_MAPPED | np.uint64(_u32(buf, p + 16))
            row["ipver"] = 4
            row["src_lo"] = src
            row["dst_lo"] = dst
            row["proto"] = proto
            if ip_headers == 1:
                row["o_ipver"] = 4
                row["o_src_lo"] = src
                row["o_dst_lo"] = dst
                row["o_proto"] = proto
            fragment = (fragment_field & 0x3FFF) != 0
            if total_len == 0:
                flags |= _F_IP_LENGTH_ZERO
                claim = np.int64(_NO_CLAIM)
            elif total_len < header_len or p + total_len > claim:
                status = _MALFORMED
                break
            else:
                claim = p + total_len
                data = min(data, claim)
            status = _fit(p + header_len, data, claim)
            if status or fragment_field & 0x1FFF:  # a later fragment has no transport header
                break
            p += header_len
        else:
            layer = _L_IPV6
            status = _fit(p + 40, data, claim)
            if status:
                break
            if _byte(buf, p) >> 4 != 6:
                status = _MALFORMED
                break
            payload_len = _u16(buf, p + 4)
            proto = _byte(buf, p + 6)
            row["ipver"] = 6
            row["src_hi"] = _u64(buf, p + 8)
            row["src_lo"] = _u64(buf, p + 16)
            row["dst_hi"] = _u64(buf, p + 24)
            row["dst_lo"] = _u64(buf, p + 32)
            row["proto"] = proto
            if ip_headers == 1:
                row["o_ipver"] = 6
                row["o_src_hi"] = row["src_hi"]
                row["o_src_lo"] = row["src_lo"]
                row["o_dst_hi"] = row["dst_hi"]
                row["o_dst_lo"] = row["dst_lo"]
                row["o_proto"] = proto
            fragment = False
            if payload_len == 0:
                payload_len = _jumbo_length(buf, p + 40, data) if proto == _IPV6_HOP_BY_HOP else -1
            if payload_len < 0:
                flags |= _F_IP_LENGTH_ZERO
                claim = np.int64(_NO_CLAIM)
            elif p + 40 + payload_len > claim:
                status = _MALFORMED
                break
            else:
                claim = p + 40 + payload_len
                data = min(data, claim)
            p += 40
            layer = _L_IPV6_EXT
            walked = 0
            later_fragment = False
            while (
                proto == _IPV6_HOP_BY_HOP
                or proto == _IPV6_ROUTING
                or proto == _IPV6_FRAGMENT
                or proto == _IPV6_DEST_OPTS
                or proto == _IPV6_AH
            ):
                if walked == MAX_IPV6_EXTENSIONS:
                    status = _UNSUPPORTED
                    break
                status = _fit(p + 2, data, claim)
                if status:
                    break
                size = 8
                if proto == _IPV6_AH:
                    size = (_byte(buf, p + 1) + 2) * 4
                elif proto != _IPV6_FRAGMENT:
                    size = (_byte(buf, p + 1) + 1) * 8
                status = _fit(p + size, data, claim)
                if status:
                    break
                if proto == _IPV6_FRAGMENT:
                    fragment = True
                    later_fragment = (_u16(buf, p + 2) >> 3) != 0
                proto = _byte(buf, p)
                row["proto"] = proto
                if ip_headers == 1:
                    row["o_proto"] = proto
                p += size
                walked += 1
                if later_fragment:
                    break
            if status or later_fragment:
                break

        # The transport header above the IP header just decoded.
        if proto == _IPPROTO_TCP or proto == _IPPROTO_UDP:
            layer = _L_TCP if proto == _IPPROTO_TCP else _L_UDP
            status = _fit(p + (20 if proto == _IPPROTO_TCP else 8), data, claim)
            if status:
                break
            sport = _u16(buf, p)
            dport = _u16(buf, p + 2)
            row["sport"] = sport
            row["dport"] = dport
            if ip_headers == 1:
                row["o_sport"] = sport
                row["o_dport"] = dport
            if proto == _IPPROTO_TCP:
                row["tcp_seq"] = _u32(buf, p + 4)
                row["tcp_ack"] = _u32(buf, p + 8)
                row["tcp_flags"] = _byte(buf, p + 13)
                header_len = (_byte(buf, p + 12) >> 4) * 4
                if header_len < 20:
                    status = _MALFORMED
                    break
                status = _fit(p + header_len, data, claim)
                if status == _OK:
                    payload = p + header_len
                break
            udp_len = _u16(buf, p + 4)
            if udp_len < 8 or (p + udp_len > claim and not fragment):
                status = _MALFORMED
                break
            claim = p + udp_len  # a first fragment's UDP length reaches past its IP end
            data = min(data, claim)
            p += 8
            tunnel = np.int64(ports[np.uint64(dport)])
            if tunnel == _E_NONE:
                tunnel = np.int64(ports[np.uint64(sport)])
            if tunnel == _E_NONE or p == claim:  # an empty datagram carries no tunnel, whatever its ports
                payload = p
                break
            layer = _L_ESP
            if tunnel == _E_VXLAN:
                layer = _L_VXLAN
            elif tunnel == _E_GENEVE:
                layer = _L_GENEVE
            elif tunnel == _E_GPE:
                layer = _L_GPE
            if tunnels == MAX_TUNNEL_DEPTH:
                status = _TOO_DEEP
                break
            tunnels += 1
            row["tunnels"] = tunnels
            row["encap"] = tunnel
            if tunnel == _E_ESP_UDP:
                # RFC 3948: a NAT keepalive, IKE behind the zero non-ESP marker, or ESP.
                if claim - p == 1:
                    status = _fit(p + 1, data, claim)
                    if status:
                        break
                    if _byte(buf, p) == 0xFF:
                        row["encap"] = _E_KEEPALIVE
                        break
                status = _fit(p + 4, data, claim)
                if status:
                    break
                if _u32(buf, p) == 0:
                    row["encap"] = _E_IKE
                    break
            else:
                # VXLAN, Geneve or VXLAN-GPE: from here the inner fields describe what it carries.
                row["ethertype"] = 0
                row["ipver"] = 0
                row["src_hi"] = 0
                row["src_lo"] = 0
                row["dst_hi"] = 0
                row["dst_lo"] = 0
                row["proto"] = 0
                row["sport"] = 0
                row["dport"] = 0
                if fragment:
                    flags |= _F_OUTER_FRAGMENT
                    fragment = False
                status = _fit(p + 8, data, claim)
                if status:
                    break
                vni = _u24(buf, p + 4)
                row["vni"] = vni
                if row["outer_vni"] == NO_VNI:
                    row["outer_vni"] = vni
                nxt = _NEXT_ETHERNET
                if tunnel == _E_VXLAN:
                    vxlan_flags = _byte(buf, p)
                    row["vxlan_flags"] = vxlan_flags
                    if not vxlan_flags & 0x08:
                        flags |= _F_VXLAN_NO_VNI
                    if (vxlan_flags & 0xF7) or _byte(buf, p + 1) or _byte(buf, p + 2) or _byte(buf, p + 3) or _byte(buf, p + 7):
                        flags |= _F_VXLAN_RESERVED
                    p += 8
                elif tunnel == _E_GPE:
                    row["vxlan_flags"] = _byte(buf, p)
                    next_protocol = _byte(buf, p + 3)
                    p += 8
                    if next_protocol == 1:
                        nxt = _NEXT_IPV4
                    elif next_protocol == 2:
                        nxt = _NEXT_IPV6
                    elif next_protocol != 3:
                        nxt = _NEXT_DONE
                else:
                    protocol_type = _u16(buf, p + 2)
                    end = p + 8 + (_byte(buf, p) & 0x3F) * 4
                    status = _fit(end, data, claim)
                    if status:
                        break
                    p = end
                    if protocol_type == _ETH_IPV4:
                        nxt = _NEXT_IPV4
                    elif protocol_type == _ETH_IPV6:
                        nxt = _NEXT_IPV6
                    elif protocol_type != _ETH_TEB:
                        nxt = _NEXT_DONE
                row["inner_off"] = p - start
                if nxt == _NEXT_DONE:
                    status = _UNSUPPORTED
                    break
                if nxt != _NEXT_ETHERNET:
                    flags |= _F_INNER_NOT_ETH
                    row["ethertype"] = _ETH_IPV4 if nxt == _NEXT_IPV4 else _ETH_IPV6
                continue

        if proto == _IPPROTO_ICMP or proto == _IPPROTO_ICMPV6:
            layer = _L_ICMP
            status = _fit(p + 4, data, claim)
            if status == _OK:
                row["sport"] = _byte(buf, p)
                row["dport"] = _byte(buf, p + 1)
        elif proto == _IPPROTO_ESP:
            layer = _L_ESP
            if tunnels == MAX_TUNNEL_DEPTH:
                status = _TOO_DEEP
                break
            tunnels += 1
            row["tunnels"] = tunnels
            row["encap"] = _E_ESP
        if proto == _IPPROTO_ESP or proto == _IPPROTO_UDP:
            # ESP by IP protocol, or in UDP (the one UDP path that gets here): SPI, sequence number.
            status = _fit(p + 4, data, claim)
            if status == _OK:
                row["spi"] = _u32(buf, p)
                status = _fit(p + 8, data, claim)
                if status == _OK:
                    row["esp_seq"] = _u32(buf, p + 4)
        break

    if payload >= 0:
        captured = data - payload
        row["payload_off"] = payload - start
        row["payload_len"] = captured
        if claim == _NO_CLAIM:
            row["payload_wire"] = captured
        else:
            row["payload_wire"] = claim - payload
            if captured < claim - payload:
                flags |= _F_PAYLOAD_TRUNCATED
        row["app"] = _app_hint(buf, payload, captured)
    if fragment:
        flags |= _F_FRAGMENT
    row["flags"] = flags
    row["status"] = status
    row["error_layer"] = layer if status else _L_NONE


@njit(cache=True, nogil=True)
def decode_records(buf, data_start, caplen, wirelen, ts_ns, rec_offset, linktype, ports, undecoded, out):
    """Fill ``out[i]`` (dtype ``PACKET_DTYPE``) from record ``i`` of the parallel arrays.

    Record ``i`` is ``buf[data_start[i]:][:caplen[i]]`` with link type ``linktype[i]``;
    ``ports`` is ``DecodeConfig.port_table()``; ``undecoded[0]`` is the row every
    record starts from (``schema.empty_table(1)``).
    """
    n = len(data_start)
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            ahead = data_start[i + PREFETCH_AHEAD]
            for line in range(0, PREFETCH_BYTES, 64):
                prefetch(buf, ahead + line)
        out[i] = undecoded[0]
        row = out[i]
        row["ts_ns"] = ts_ns[i]
        row["rec_offset"] = rec_offset[i]
        row["data_start"] = data_start[i]
        row["caplen"] = caplen[i]
        row["wirelen"] = wirelen[i]
        row["linktype"] = linktype[i]
        _decode_record(buf, data_start[i], caplen[i], linktype[i], ports, row)


def _thread_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _HelperThreads:
    """Threads kept for the life of the process, so that decoding a batch starts none.

    Starting threads for every batch cost as much as the second thread saved.
    A child made by ``fork`` has none of its parent's threads: it starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        os.register_at_fork(after_in_child=self._forget)

    def pool(self, size: int) -> ThreadPoolExecutor:
        """A pool of at least ``size`` threads."""
        with self._lock:
            if self._pool is None or self._size < size:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="vxlaninspect-kernel")
                self._size = size
            return self._pool

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._size = None, 0


_HELPERS = _HelperThreads()


def _readonly(array: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
    """A read-only contiguous view (a copy only if needed): one array type, so one compiled kernel."""
    view = np.ascontiguousarray(array, dtype=dtype).view()
    view.flags.writeable = False
    return view


def decode_batch(
    batch: RecordBatch,
    config: DecodeConfig = DEFAULT_CONFIG,
    *,
    threads: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode every record of ``batch``: ``len(batch)`` rows of ``schema.PACKET_DTYPE``.

    ``threads`` caps the threads that share the work (default: the CPUs this
    process may use); small batches are decoded on the calling thread. The rows
    are written into ``out`` when it is given (``len(batch)`` contiguous rows of
    that dtype, e.g. from ``RowBuffers.take``), else into a new array. Raises
    ``ValueError`` when a record lies outside ``batch.data`` or ``out`` does not fit.
    """
    n = len(batch)
    data = _readonly(batch.data, np.uint8)
    columns = (
        _readonly(batch.data_start, np.int64),
        _readonly(batch.caplen, np.uint32),
        _readonly(batch.wirelen, np.uint32),
        _readonly(batch.ts_ns, np.int64),
        _readonly(batch.rec_offset, np.int64),
        _readonly(batch.linktype, np.uint16),
    )
    starts, caplens = columns[0], columns[1]
    if n and (starts.min() < 0 or int((starts + caplens).max()) > len(data)):
        raise ValueError("a record of the batch lies outside its data buffer")
    ports = _readonly(config.port_table(), np.uint8)
    undecoded = _readonly(empty_table(1), PACKET_DTYPE)
    if out is None:
        rows = np.empty(n, dtype=PACKET_DTYPE)
    elif out.dtype != PACKET_DTYPE or out.shape != (n,) or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be {n} contiguous, writable rows of PACKET_DTYPE")
    else:
        rows = out
    workers = max(1, min(threads or _thread_count(), n // MIN_RECORDS_PER_THREAD))
    if workers == 1:
        decode_records(data, *columns, ports, undecoded, rows)
        return rows
    bounds = list(pairwise(np.linspace(0, n, workers + 1).astype(np.int64).tolist()))
    pool = _HELPERS.pool(workers - 1)
    helped = [
        pool.submit(decode_records, data, *(c[lo:hi] for c in columns), ports, undecoded, rows[lo:hi])
        for lo, hi in bounds[1:]
    ]
    lo, hi = bounds[0]
    try:
        decode_records(data, *(c[lo:hi] for c in columns), ports, undecoded, rows[lo:hi])
    finally:
        for decoded in helped:
            decoded.result()
    return rows
