"""Sans-IO TLS: record headers, and the ClientHello or ServerHello of one direction.

Enough to recognise an encrypted session and say how it was set up: the
record layer is followed record by record (payloads are skipped, not stored),
and the first handshake message, possibly spread over several records, is
parsed into a ``ClientHello`` (legacy version, supported_versions, SNI, ALPN)
or a ``ServerHello`` (the version chosen). GREASE values (RFC 8701) are left
out of version lists. SSLv2-style records are ``Malformed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .parser import Malformed

RECORD_HEADER = 5
MAX_RECORD = 2**14 + 2048
"""Largest record payload a TLS peer may send (TLSCiphertext, RFC 8446 section 5.2)."""
MAX_HELLO = 64 * 1024
"""Largest hello message parsed; a longer one is ``Malformed``."""
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_HANDSHAKE = 22
_CONTENT_TYPES = range(20, 25)  # change_cipher_spec, alert, handshake, application_data, heartbeat
_CLIENT_HELLO = 1
_SERVER_HELLO = 2
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43

VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def version_name(version: int) -> str:
    """``"TLS 1.3"`` for 0x0304; ``"0x7f1c"`` for a version without a name."""
    return VERSION_NAMES.get(version, f"0x{version:04x}")


def is_grease(value: int) -> bool:
    """A GREASE value (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


class TlsState(IntEnum):
    """Where a TLS parser is in the stream."""

    HEADER = 0  # expecting a record header
    PAYLOAD = 1  # inside a record's payload
    DONE = 2  # finish() was called
    ERROR = 3  # Malformed was reported: bytes are ignored


@dataclass(frozen=True)
class ClientHello:
    """A ClientHello, found in the record starting at stream offset ``offset``.

    ``versions`` is the supported_versions extension (empty without it);
    ``server_name`` the SNI host name (None without it); ``alpn`` the offered
    application protocols.
    """

    offset: int
    record_version: int
    legacy_version: int
    versions: tuple[int, ...]
    server_name: bytes | None
    alpn: tuple[bytes, ...]

    @property
    def max_version(self) -> int:
        """The highest version offered."""
        return max(self.versions, default=self.legacy_version)


@dataclass(frozen=True)
class ServerHello:
    """A ServerHello (or HelloRetryRequest): ``version`` is the one the server chose."""

    offset: int
    record_version: int
    legacy_version: int
    version: int
    cipher_suite: int
    alpn: bytes | None
    hello_retry: bool


TlsEvent = ClientHello | ServerHello | Malformed


class _Short(Exception):
    """A length field points past the end of its enclosing structure."""


class _Reader:
    """Bounds-checked reads over one structure."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, size: int) -> bytes:
        if size > self.remaining:
            raise _Short
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Reader:
        """The next length-prefixed vector, as a reader of its own."""
        return _Reader(self.take(self.uint(length_size)))


def _extensions(reader: _Reader) -> dict[int, _Reader]:
    """The extensions block at the end of a hello (absent: empty); the first of a repeated type wins."""
    found: dict[int, _Reader] = {}
    if reader.remaining == 0:
        return found
    block = reader.vector(2)
    if reader.remaining:
        raise _Short
    while block.remaining:
        kind = block.uint(2)
        found.setdefault(kind, block.vector(2))
    return found


def _server_name(extension: _Reader) -> bytes | None:
    names = extension.vector(2)
    while names.remaining:
        name_type = names.uint(1)
        name = names.take(names.uint(2))
        if name_type == 0:
            return name
    return None


def _alpn(extension: _Reader) -> tuple[bytes, ...]:
    protocols = extension.vector(2)
    found = []
    while protocols.remaining:
        found.append(protocols.take(protocols.uint(1)))
    return tuple(found)


def _parse_client_hello(offset: int, record_version: int, body: bytes) -> ClientHello:
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    reader.take(32)  # random
    reader.vector(1)  # legacy_session_id
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    extensions = _extensions(reader)
    versions: tuple[int, ...] = ()
    if _EXT_SUPPORTED_VERSIONS in extensions:
        listed = extensions[_EXT_SUPPORTED_VERSIONS].vector(1)
        values = [listed.uint(2) for _ in range(listed.remaining // 2)]
        versions = tuple(v for v in values if not is_grease(v))
    server_name = _server_name(extensions[_EXT_SERVER_NAME]) if _EXT_SERVER_NAME in extensions else None
    alpn = _alpn(extensions[_EXT_ALPN]) if _EXT_ALPN in extensions else ()
    return ClientHello(offset, record_version, legacy_version, versions, server_name, alpn)


def _parse_server_hello(offset: int, record_version: int, body: bytes) -> ServerHello:
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    random = reader.take(32)
    reader.vector(1)  # legacy_session_id_echo
    cipher_suite = reader.uint(2)
    reader.uint(1)  # legacy_compression_method
    extensions = _extensions(reader)
    version = extensions[_EXT_SUPPORTED_VERSIONS].uint(2) if _EXT_SUPPORTED_VERSIONS in extensions else legacy_version
    alpn = _alpn(extensions[_EXT_ALPN]) if _EXT_ALPN in extensions else ()
    return ServerHello(
        offset,
        record_version,
        legacy_version,
        version,
        cipher_suite,
        alpn[0] if alpn else None,
        random == HELLO_RETRY_RANDOM,
    )


class TlsParser:
    """One direction of a TLS connection: its records and its hello."""

    def __init__(self) -> None:
        self.state = TlsState.HEADER
        self.records = 0  # well-formed record headers seen so far
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._record_left = 0
        self._record_type = 0
        self._handshake = bytearray()  # handshake bytes gathered until the hello is whole
        self._hello_offset = 0  # where the record carrying the hello's first byte starts
        self._hello_record_version = 0
        self._hello_done = False

    def feed(self, data: bytes) -> list[TlsEvent]:
        """The events completed by the next bytes of the stream."""
        if self.state in (TlsState.DONE, TlsState.ERROR) or not data:
            return []
        self._buffer += data
        events: list[TlsEvent] = []
        while self._step(events):
            pass
        return events

    def gap(self, size: int) -> list[TlsEvent]:
        """``size`` bytes are missing: skipped inside a record that is not needed, fatal anywhere else."""
        if self.state in (TlsState.DONE, TlsState.ERROR) or size <= 0:
            return []
        if self.state == TlsState.PAYLOAD and size <= self._record_left and not self._gathering:
            self._offset += size
            self._record_left -= size
            if not self._record_left:
                self.state = TlsState.HEADER
            return []
        return [self._fail(self._offset + len(self._buffer), f"{size} bytes missing from the capture")]

    def finish(self) -> list[TlsEvent]:
        """The stream ended; a hello cut short is ``Malformed``."""
        events: list[TlsEvent] = []
        if self.state != TlsState.ERROR:
            if self._handshake and not self._hello_done:
                events.append(self._fail(self._hello_offset, "stream ended inside the first handshake message"))
            self.state = TlsState.DONE
        self._buffer.clear()
        return events

    @property
    def _gathering(self) -> bool:
        return self._record_type == _HANDSHAKE and not self._hello_done

    def _step(self, events: list[TlsEvent]) -> bool:
        buffer = self._buffer
        if self.state == TlsState.HEADER:
            if buffer and buffer[0] & 0x80:
                events.append(self._fail(self._offset, "SSLv2-style record header"))
                return False
            if len(buffer) < RECORD_HEADER:
                return False
            content_type, major, minor = buffer[0], buffer[1], buffer[2]
            length = int.from_bytes(buffer[3:5], "big")
            if content_type not in _CONTENT_TYPES:
                events.append(self._fail(self._offset, f"record type {content_type} is not a TLS content type"))
                return False
            if major != 3 or minor > 4:
                events.append(self._fail(self._offset, f"record version {major}.{minor} is not SSL 3.0 to TLS 1.3"))
                return False
            if length > MAX_RECORD:
                events.append(self._fail(self._offset, f"record length {length} exceeds {MAX_RECORD}"))
                return False
            if content_type == _HANDSHAKE and not self._hello_done and not self._handshake:
                self._hello_offset = self._offset
                self._hello_record_version = major << 8 | minor
            self._record_type = content_type
            self._record_left = length
            self.records += 1
            self._consume(RECORD_HEADER)
            self.state = TlsState.PAYLOAD if length else TlsState.HEADER
            return True
        if not buffer:
            return False
        size = min(len(buffer), self._record_left)
        if self._gathering:
            self._handshake += buffer[:size]
        self._consume(size)
        self._record_left -= size
        if not self._record_left:
            self.state = TlsState.HEADER
        if self._gathering:
            self._parse_handshake(events)
        return self.state != TlsState.ERROR

    def _parse_handshake(self, events: list[TlsEvent]) -> None:
        """Parse the first handshake message once it is whole."""
        handshake = self._handshake
        if len(handshake) < 4:
            return
        kind = handshake[0]
        length = int.from_bytes(handshake[1:4], "big")
        if length > MAX_HELLO:
            events.append(self._fail(self._hello_offset, f"handshake message of {length} bytes exceeds {MAX_HELLO}"))
            return
        if len(handshake) < 4 + length:
            return
        body = bytes(handshake[4 : 4 + length])
        self._hello_done = True
        self._handshake = bytearray()
        if kind not in (_CLIENT_HELLO, _SERVER_HELLO):
            events.append(self._fail(self._hello_offset, f"first handshake message has type {kind}, not a hello"))
            return
        parse = _parse_client_hello if kind == _CLIENT_HELLO else _parse_server_hello
        try:
            events.append(parse(self._hello_offset, self._hello_record_version, body))
        except _Short:
            name = "ClientHello" if kind == _CLIENT_HELLO else "ServerHello"
            events.append(self._fail(self._hello_offset, f"{name}: a length field overruns the message"))

    def _consume(self, size: int) -> None:
        del self._buffer[:size]
        self._offset += size

    def _fail(self, offset: int, reason: str) -> Malformed:
        self.state = TlsState.ERROR
        self._buffer.clear()
        self._handshake = bytearray()
        return Malformed(offset, reason)
