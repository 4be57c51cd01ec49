"""Is an unknown payload readable text, structured binary, or compressed/encrypted?

``profile(data)`` looks at the first ``SAMPLE_BYTES`` bytes of a stream:

* **text** when at least ``TEXT_RATIO`` of them are printable: printable
  ASCII, part of a valid UTF-8 sequence, or a control character terminals
  use (tab, CR, LF, BEL, BS, VT, FF, ESC: an interactive shell session with
  colours is text). An unknown cleartext protocol is still reported as
  plaintext, with a sample of its first line.
* **high entropy** (compressed or encrypted) when it is not text, at least
  ``MIN_ENTROPY_BYTES`` bytes were examined, and their Shannon entropy reaches
  ``ENTROPY_FRACTION`` of the most a sample of that size can have
  (``log2(min(n, 256))`` bits per byte). Random data of any size measures 0.88
  to 1.0 of that maximum; text and protocol headers much less.
* **binary** otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .escape import escape

SAMPLE_BYTES = 4096
TEXT_RATIO = 0.95
ENTROPY_FRACTION = 0.85
MIN_ENTROPY_BYTES = 64
SAMPLE_CHARS = 80
"""Escaped characters of the first line kept in ``PayloadProfile.sample``."""

_TERMINAL_CONTROLS = (0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B)
_CONTROL = bytes(b for b in range(0x20) if b not in _TERMINAL_CONTROLS) + b"\x7f"


class PayloadKind(IntEnum):
    EMPTY = 0
    TEXT = 1
    BINARY = 2
    HIGH_ENTROPY = 3  # compressed or encrypted


@dataclass(frozen=True)
class PayloadProfile:
    """What the first ``examined`` bytes of a payload look like.

    ``printable_ratio`` is the share of printable bytes, ``entropy`` the
    Shannon entropy in bits per byte, ``sample`` the first non-blank line,
    escaped and at most ``SAMPLE_CHARS`` characters long.
    """

    kind: PayloadKind
    examined: int
    printable_ratio: float
    entropy: float
    sample: str


def printable_ratio(data: bytes) -> float:
    """Share of ``data`` that is printable ASCII, terminal control or valid UTF-8 beyond ASCII (1.0 when empty)."""
    if not data:
        return 1.0
    controls = len(data) - len(data.translate(None, _CONTROL))
    invalid = 0
    if not data.isascii():
        valid = data.decode("utf-8", "surrogateescape").encode("utf-8", "ignore")
        invalid = len(data) - len(valid)
    return 1.0 - (controls + invalid) / len(data)


def shannon_entropy(data: bytes) -> float:
    """Shannon entropy of the byte values of ``data``, in bits per byte (0.0 when empty)."""
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    shares = counts[counts > 0] / len(data)
    return float(-(shares * np.log2(shares)).sum())


def first_line(data: bytes, limit: int = SAMPLE_CHARS) -> str:
    """The first line of ``data`` that is not blank, stripped and escaped."""
    for line in data.split(b"\n"):
        line = line.strip()
        if line:
            return escape(line, limit)
    return ""


def profile(data: bytes, sample_bytes: int = SAMPLE_BYTES) -> PayloadProfile:
    """Classify the first ``sample_bytes`` bytes of ``data``."""
    head = bytes(data[:sample_bytes])
    if not head:
        return PayloadProfile(PayloadKind.EMPTY, 0, 1.0, 0.0, "")
    ratio = printable_ratio(head)
    entropy = shannon_entropy(head)
    if ratio >= TEXT_RATIO:
        kind = PayloadKind.TEXT
    elif len(head) >= MIN_ENTROPY_BYTES and entropy >= ENTROPY_FRACTION * math.log2(min(len(head), 256)):
        kind = PayloadKind.HIGH_ENTROPY
    else:
        kind = PayloadKind.BINARY
    return PayloadProfile(kind, len(head), ratio, entropy, first_line(head))
