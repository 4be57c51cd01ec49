"""Deterministic randomness: the same label gives the same bytes on any Python version."""

from __future__ import annotations

import hashlib

_ALPHANUMERIC = "0123456789abcdefghijklmnopqrstuvwxyz"


class Entropy:
    """A SHA-256 counter-mode stream named by a label; derive sub-streams with ``child``."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._counter = 0

    def child(self, label: str) -> Entropy:
        return Entropy(f"{self._label.decode()}/{label}")

    def bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._label + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return bytes(out[:n])

    def below(self, bound: int) -> int:
        """An integer in ``[0, bound)``."""
        return int.from_bytes(self.bytes(8), "big") % bound

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        return low + self.below(high - low + 1)

    def hex(self, digits: int) -> str:
        return self.bytes((digits + 1) // 2).hex()[:digits]

    def swarm_id(self) -> str:
        """A 25-character lower-case ID as Swarm gives nodes, networks, services and tasks."""
        return "".join(_ALPHANUMERIC[b % 36] for b in self.bytes(25))
