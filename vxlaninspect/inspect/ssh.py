"""Sans-IO SSH: the identification line (banner) that opens each direction.

RFC 4253 section 4.2: ``SSH-protoversion-softwareversion SP comments CR LF``,
at most 255 bytes, possibly preceded (server side) by other lines that do not
start with ``SSH-``. A bare LF ending is accepted, as OpenSSH does. Once the
banner is read the binary packet protocol follows and is not looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .escape import escape
from .parser import Malformed

MAX_LINE = 255
"""Longest identification line, CR LF included (RFC 4253)."""
MAX_PREAMBLE_LINES = 32
"""Lines other than the banner accepted before it."""
_PRINTABLE = bytes(range(0x21, 0x7F))
_VERSION = b"0123456789."


class SshState(IntEnum):
    """Where an SSH parser is in the stream."""

    BANNER = 0  # expecting the identification line
    PACKETS = 1  # after the banner: binary packets, ignored
    DONE = 2  # finish() was called
    ERROR = 3  # Malformed was reported: bytes are ignored


@dataclass(frozen=True)
class SshBanner:
    """The identification line starting at stream offset ``offset``."""

    offset: int
    protocol: str  # "2.0"
    software: bytes  # b"OpenSSH_9.6"
    comments: bytes

    @property
    def line(self) -> bytes:
        """The identification line without its line end."""
        comments = b" " + self.comments if self.comments else b""
        return b"SSH-" + self.protocol.encode("ascii") + b"-" + self.software + comments


SshEvent = SshBanner | Malformed


class SshParser:
    """One direction of an SSH connection, up to its banner."""

    def __init__(self) -> None:
        self.state = SshState.BANNER
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._preamble = 0  # lines seen before the banner

    def feed(self, data: bytes) -> list[SshEvent]:
        """The banner, once its line is whole."""
        if self.state != SshState.BANNER or not data:
            return []
        self._buffer += data
        events: list[SshEvent] = []
        while self.state == SshState.BANNER and self._step(events):
            pass
        return events

    def gap(self, size: int) -> list[SshEvent]:
        """``size`` bytes are missing: harmless after the banner, fatal before it."""
        if self.state != SshState.BANNER or size <= 0:
            return []
        return [
            self._fail(self._offset + len(self._buffer), f"{size} bytes missing from the capture before the banner")
        ]

    def finish(self) -> list[SshEvent]:
        """The stream ended; without a whole banner that is ``Malformed`` (if anything was sent)."""
        events: list[SshEvent] = []
        if self.state == SshState.BANNER and self._buffer:
            events.append(self._fail(self._offset, "stream ended before the identification line was whole"))
        if self.state != SshState.ERROR:
            self.state = SshState.DONE
        self._buffer.clear()
        return events

    def _step(self, events: list[SshEvent]) -> bool:
        newline = self._buffer.find(b"\n", 0, MAX_LINE)
        if newline < 0:
            if len(self._buffer) >= MAX_LINE:
                events.append(self._fail(self._offset, f"line longer than {MAX_LINE} bytes before the banner"))
            return False
        start = self._offset
        line = bytes(self._buffer[:newline]).removesuffix(b"\r")
        del self._buffer[: newline + 1]
        self._offset += newline + 1
        if not line.startswith(b"SSH-"):
            self._preamble += 1
            if self._preamble > MAX_PREAMBLE_LINES or b"\0" in line:
                events.append(self._fail(start, "no SSH identification line"))
                return False
            return True
        identification, _, comments = line.partition(b" ")
        protocol, dash, software = identification[4:].partition(b"-")
        if not dash or not protocol or protocol.translate(None, _VERSION) or not software:
            events.append(self._fail(start, f"invalid identification line {escape(line, 80)}"))
            return False
        if software.translate(None, _PRINTABLE):
            events.append(self._fail(start, "non-printable byte in the software version"))
            return False
        events.append(SshBanner(start, protocol.decode("ascii"), software, comments))
        self.state = SshState.PACKETS
        self._buffer.clear()
        return False

    def _fail(self, offset: int, reason: str) -> Malformed:
        self.state = SshState.ERROR
        self._buffer.clear()
        return Malformed(offset, reason)
