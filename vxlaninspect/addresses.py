"""Addresses as the packet table stores them (two ``uint64`` halves) and as reports print them.

An IPv4 address is stored in its IPv4-mapped form ``::ffff:a.b.c.d`` and printed
dotted (``10.0.1.5``); anything else is printed as IPv6 (``fd00::1``). An
endpoint with a port is ``"ip:port"``, or ``"[v6]:port"`` for IPv6; an endpoint
of a transport without ports (ICMP) is the bare address.
"""

from __future__ import annotations

import ipaddress

from .schema import IPV4_MAPPED_PREFIX

_V4_MASK = 0xFFFF_FFFF
_V4_MAPPED_HIGH = IPV4_MAPPED_PREFIX >> 32


def ip_address(hi: int, lo: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address whose 128 bits are ``hi`` (upper half) and ``lo``."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and lo >> 32 == _V4_MAPPED_HIGH:
        return ipaddress.IPv4Address(lo & _V4_MASK)
    return ipaddress.IPv6Address((hi << 64) | lo)


def ip_text(hi: int, lo: int) -> str:
    """``"10.0.1.5"`` or ``"fd00::1"``."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and lo >> 32 == _V4_MAPPED_HIGH:
        return f"{(lo >> 24) & 255}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def ip_words(text: str) -> tuple[int, int]:
    """The ``(hi, lo)`` halves of an address written as text; raises ``ValueError`` if it is not one."""
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return 0, IPV4_MAPPED_PREFIX | int(address)
    value = int(address)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def endpoint_text(hi: int, lo: int, port: int | None) -> str:
    """``"10.0.1.5:80"``, ``"[fd00::1]:80"``, or the bare address when ``port`` is None."""
    return join_endpoint(ip_text(hi, lo), port)


def join_endpoint(ip: str, port: int | None) -> str:
    """``"10.0.1.5:80"`` or ``"[fd00::1]:80"`` from an address written as text; the address when ``port`` is None."""
    if port is None:
        return ip
    if ":" in ip:
        return f"[{ip}]:{int(port)}"
    return f"{ip}:{int(port)}"


def split_endpoint(text: str) -> tuple[str, int | None]:
    """(address text, port or None) of an endpoint this module wrote; nothing is checked."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return address, int(port)
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return address, int(port)
    return text, None


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """Split ``"ip:port"``, ``"[v6]:port"`` or a bare address into (address text, port or None).

    Raises ``ValueError`` for anything else.
    """
    if text.startswith("["):
        address, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"not an endpoint: {text!r}")
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
    else:
        address, port = text, ""
    ipaddress.ip_address(address)
    if not port:
        return address, None
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"not a port in {text!r}")
    return address, int(port)


def endpoint_order(text: str) -> tuple[int, int, int]:
    """A sort key for endpoints that agrees with the packet table's numeric order (address, then port)."""
    address, port = parse_endpoint(text)
    hi, lo = ip_words(address)
    return hi, lo, port or 0
