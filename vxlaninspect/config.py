"""Decoder configuration: which UDP ports carry which tunnel.

Ports are configuration, not code: the kernel dispatches UDP payloads through a
65536-entry table built here, so a new port or tunnel type is a table entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import Encap

VXLAN_PORTS = (4789, 8472)
"""IANA's VXLAN port, and the Linux kernel and flannel default."""
GENEVE_PORTS = (6081,)
VXLAN_GPE_PORTS = (4790,)
ESP_UDP_PORTS = (4500,)


def _check_ports(name: str, ports: tuple[int, ...]) -> tuple[int, ...]:
    for port in ports:
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"{name}: {port!r} is not a UDP port (1-65535)")
    return tuple(ports)


@dataclass(frozen=True)
class DecodeConfig:
    """UDP ports per tunnel type; a port listed under two types goes to the one named first here."""

    vxlan_ports: tuple[int, ...] = VXLAN_PORTS
    geneve_ports: tuple[int, ...] = GENEVE_PORTS
    gpe_ports: tuple[int, ...] = VXLAN_GPE_PORTS
    esp_udp_ports: tuple[int, ...] = ESP_UDP_PORTS

    def __post_init__(self) -> None:
        for name in ("vxlan_ports", "geneve_ports", "gpe_ports", "esp_udp_ports"):
            object.__setattr__(self, name, _check_ports(name, tuple(getattr(self, name))))

    def port_table(self) -> np.ndarray:
        """``uint8[65536]``: the ``Encap`` each UDP port announces (``Encap.NONE`` if none)."""
        table = np.zeros(65536, dtype=np.uint8)
        for ports, encap in (
            (self.esp_udp_ports, Encap.ESP_UDP),
            (self.gpe_ports, Encap.VXLAN_GPE),
            (self.geneve_ports, Encap.GENEVE),
            (self.vxlan_ports, Encap.VXLAN),
        ):
            table[list(ports)] = encap
        return table


DEFAULT_CONFIG = DecodeConfig()
