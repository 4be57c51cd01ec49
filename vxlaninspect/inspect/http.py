"""Sans-IO HTTP/1.x: the requests, or the responses, of one connection.

``HttpRequestParser`` reads the client's direction, ``HttpResponseParser`` the
server's. Both are fed bytes in stream order and return events:

* ``Request`` / ``Response``: a message head (start line and headers);
* ``EndOfMessage``: the end of its body, with the body's first bytes (an
  interim 1xx response has none: the final response follows it);
* ``ProtocolSwitch``: the rest of the stream is another protocol (101
  Switching Protocols, a CONNECT tunnel, the HTTP/2 prior-knowledge preface);
* ``Malformed``: the stream is not HTTP from there on; the parser stops.

Bodies are framed as RFC 9112 section 6 says: chunked, Content-Length, or (for
responses) until the connection closes; responses to HEAD, 1xx, 204 and 304
have none, so the response parser is told the request methods in order
(``HttpResponseParser(methods)`` or ``expect(method)``; a response with no
method known is taken to answer a GET). Bare LF line ends and obsolete header
line folding are accepted. Bodies are skipped, not stored: only their first
``body_sample`` bytes are kept. A message head longer than ``max_head`` bytes
is ``Malformed``.

After a request carrying ``Upgrade`` (or a CONNECT) the server may switch
protocols, which the client's direction alone cannot tell: if the next bytes
are not a request line the request parser reports a ``ProtocolSwitch``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from .parser import Malformed

DEFAULT_MAX_HEAD = 32 * 1024
"""Bytes a message head (start line, headers, blank line) may take at most."""
DEFAULT_BODY_SAMPLE = 1024
"""Leading body bytes kept in ``EndOfMessage.body_sample``."""
MAX_CHUNK_LINE = 1024
_MAX_LENGTH_DIGITS = 18
_MAX_METHOD = 32

_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TARGET = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"


class HttpState(IntEnum):
    """Where a parser is in the stream."""

    HEAD = 0  # expecting a message head
    BODY = 1  # inside a body of known length
    CHUNK_SIZE = 2  # expecting a chunk-size line
    CHUNK_DATA = 3
    CHUNK_END = 4  # expecting the CRLF after a chunk's data
    TRAILERS = 5  # expecting the trailer section of a chunked body
    UNTIL_CLOSE = 6  # a response body that ends with the connection
    MIGHT_SWITCH = 7  # after an Upgrade or CONNECT request: another protocol may follow
    SWITCHED = 8  # another protocol follows: bytes are ignored
    DONE = 9  # finish() was called
    ERROR = 10  # Malformed was reported: bytes are ignored


class _Headers:
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> bytes | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def header_values(self, name: str) -> tuple[bytes, ...]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return tuple(value for key, value in self.headers if key == name)


@dataclass(frozen=True)
class Request(_Headers):
    """A request head. ``headers`` are (lower-case name, value) pairs in order."""

    offset: int
    method: str
    target: bytes
    version: str  # "1.1"
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Response(_Headers):
    """A response head (1xx interim responses included)."""

    offset: int
    version: str
    status: int
    reason: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class EndOfMessage:
    """The body of the last message ended at stream offset ``offset``.

    ``body_length`` counts body bytes after chunked decoding, bytes lost in
    gaps included; ``body_sample`` holds the first of them, up to the sample
    limit and not past a gap. ``complete`` is False when the stream ended
    inside the body.
    """

    offset: int
    body_length: int
    body_sample: bytes
    complete: bool


@dataclass(frozen=True)
class ProtocolSwitch:
    """From stream offset ``offset`` on, the connection carries another protocol.

    ``protocol`` is the ``Upgrade`` header's value (``b"h2c"`` for the HTTP/2
    preface; empty for a CONNECT tunnel).
    """

    offset: int
    protocol: bytes


HttpEvent = Request | Response | EndOfMessage | ProtocolSwitch | Malformed


def _version(raw: bytes) -> str | None:
    """``"1.1"`` for ``b"HTTP/1.1"``; None when ``raw`` is not an HTTP version."""
    if len(raw) == 8 and raw.startswith(b"HTTP/") and raw[5:6].isdigit() and raw[6:7] == b"." and raw[7:8].isdigit():
        return raw[5:].decode("ascii")
    return None


def _could_start_version(raw: bytes) -> bool:
    """``raw`` is a prefix of some ``HTTP/d.d``, possibly followed by CR."""
    for index, byte in enumerate(raw):
        expected = b"HTTP/"[index : index + 1] if index < 5 else None
        if expected is not None:
            ok = byte == expected[0]
        elif index in (5, 7):
            ok = 0x30 <= byte <= 0x39
        elif index == 6:
            ok = byte == 0x2E
        else:
            ok = index == 8 and byte == 0x0D
        if not ok:
            return False
    return True


def _request_line_verdict(buffer: bytearray, limit: int) -> bool | None:
    """Whether ``buffer`` starts with a request line of at most ``limit`` bytes: True, False, or None while undecided."""
    newline = buffer.find(b"\n", 0, limit)
    if newline < 0 and len(buffer) >= limit:
        return False
    whole = newline >= 0
    line = bytes(buffer[:newline]).removesuffix(b"\r") if whole else bytes(buffer)
    method, space, rest = line.partition(b" ")
    if method.translate(None, _TOKEN) or len(method) > _MAX_METHOD or (space and not method):
        return False
    if not space:
        return None if not whole else False
    target, space, version = rest.partition(b" ")
    if target.translate(None, _TARGET) or (space and not target):
        return False
    if not space:
        return None if not whole else False
    if whole:
        return _version(version) is not None
    return None if _could_start_version(version) else False


def _content_length(values: tuple[bytes, ...]) -> int | None | str:
    """The Content-Length, None when absent, or a reason why it is invalid."""
    if not values:
        return None
    items = {item.strip(b" \t") for value in values for item in value.split(b",")}
    if len(items) != 1:
        return "conflicting Content-Length values"
    item = items.pop()
    if not item or item.translate(None, _DIGITS) or len(item) > _MAX_LENGTH_DIGITS:
        return f"invalid Content-Length {item[:40]!r}"
    return int(item)


def _ends_chunked(values: tuple[bytes, ...]) -> bool | None:
    """None without Transfer-Encoding; else whether its last coding is chunked."""
    codings = [c.strip(b" \t").lower() for value in values for c in value.split(b",") if c.strip(b" \t")]
    if not codings:
        return None
    return codings[-1] == b"chunked"


class _HttpParser(ABC):
    """What request and response parsing share: heads, bodies, chunks, gaps."""

    def __init__(self, *, max_head: int = DEFAULT_MAX_HEAD, body_sample: int = DEFAULT_BODY_SAMPLE) -> None:
        self.max_head = max_head
        self.body_sample = body_sample
        self.state = HttpState.HEAD
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._scanned = 0  # the search for the end of a head resumes here
        self._remaining = 0  # bytes left in the body or chunk
        self._body_length = 0
        self._sample = bytearray()
        self._sampling = True
        self._switch_protocol = b""  # what an accepted upgrade would switch to

    # -- public interface ---------------------------------------------------

    def feed(self, data: bytes) -> list[HttpEvent]:
        """The events completed by the next bytes of the stream."""
        if self.state in (HttpState.SWITCHED, HttpState.DONE, HttpState.ERROR) or not data:
            return []
        self._buffer += data
        events: list[HttpEvent] = []
        while self._step(events):
            pass
        return events

    def gap(self, size: int) -> list[HttpEvent]:
        """``size`` bytes are missing here: skipped inside a body, fatal anywhere else."""
        state = self.state
        if state in (HttpState.SWITCHED, HttpState.DONE, HttpState.ERROR) or size <= 0:
            return []
        if state == HttpState.UNTIL_CLOSE or (
            state in (HttpState.BODY, HttpState.CHUNK_DATA) and size <= self._remaining
        ):
            self._sampling = False
            self._body_length += size
            self._offset += size
            if state == HttpState.UNTIL_CLOSE:
                return []
            self._remaining -= size
            events: list[HttpEvent] = []
            if self._remaining == 0:
                if state == HttpState.BODY:
                    self._end_message(events)
                else:
                    self.state = HttpState.CHUNK_END
            return events
        return [self._fail(self._offset + len(self._buffer), f"{size} bytes missing from the capture ({state.name})")]

    def finish(self) -> list[HttpEvent]:
        """The stream ended: a body read until close is complete, any other is not."""
        state = self.state
        events: list[HttpEvent] = []
        if state == HttpState.UNTIL_CLOSE:
            self._end_message(events)
        elif state in (
            HttpState.BODY,
            HttpState.CHUNK_SIZE,
            HttpState.CHUNK_DATA,
            HttpState.CHUNK_END,
            HttpState.TRAILERS,
        ):
            events.append(self._end_of_message(complete=False))
        elif state == HttpState.HEAD and self._buffer.strip(b"\r\n"):
            events.append(self._fail(self._offset, f"stream ended inside a message head ({len(self._buffer)} bytes)"))
        elif state == HttpState.MIGHT_SWITCH and self._buffer:
            events.append(ProtocolSwitch(self._offset, self._switch_protocol))
            self._switch()
        if self.state not in (HttpState.ERROR, HttpState.SWITCHED):
            self.state = HttpState.DONE
        self._buffer.clear()
        return events

    # -- the state machine --------------------------------------------------

    def _step(self, events: list[HttpEvent]) -> bool:
        """Make one step of progress on the buffer; False when more bytes are needed."""
        state = self.state
        if state == HttpState.HEAD:
            return self._step_head(events)
        if state in (HttpState.BODY, HttpState.CHUNK_DATA, HttpState.UNTIL_CLOSE):
            return self._step_body(events)
        if state == HttpState.CHUNK_SIZE:
            return self._step_chunk_size(events)
        if state == HttpState.CHUNK_END:
            return self._step_chunk_end(events)
        if state == HttpState.TRAILERS:
            return self._step_trailers(events)
        if state == HttpState.MIGHT_SWITCH:
            return self._step_might_switch(events)
        return False

    def _step_head(self, events: list[HttpEvent]) -> bool:
        buffer = self._buffer
        blank = 0  # empty lines before a message are ignored (RFC 9112 section 2.2)
        while True:
            if buffer.startswith(b"\r\n", blank):
                blank += 2
            elif buffer.startswith(b"\n", blank):
                blank += 1
            else:
                break
        if blank:
            self._consume(blank)
        if not buffer or buffer == b"\r":
            return False
        end = self._head_end()
        if end < 0:
            if len(buffer) > self.max_head:
                events.append(self._fail(self._offset, f"message head longer than {self.max_head} bytes"))
            return False
        if end > self.max_head:
            events.append(self._fail(self._offset, f"message head longer than {self.max_head} bytes"))
            return False
        start = self._offset
        head = bytes(buffer[:end])
        self._consume(end)
        self._scanned = 0
        self._begin_message(start, head, events)
        return self.state not in (HttpState.ERROR, HttpState.SWITCHED)

    def _head_end(self) -> int:
        """Index just past the blank line ending the head in the buffer, or -1."""
        buffer = self._buffer
        index = buffer.find(b"\n", self._scanned)
        while index >= 0:
            after = bytes(buffer[index + 1 : index + 3])
            if after.startswith(b"\n"):
                return index + 2
            if after == b"\r\n":
                return index + 3
            if after in (b"", b"\r"):
                self._scanned = index
                return -1
            index = buffer.find(b"\n", index + 1)
        self._scanned = len(buffer)
        return -1

    def _step_body(self, events: list[HttpEvent]) -> bool:
        buffer = self._buffer
        if not buffer:
            return False
        until_close = self.state == HttpState.UNTIL_CLOSE
        size = len(buffer) if until_close else min(len(buffer), self._remaining)
        room = self.body_sample - len(self._sample)
        if self._sampling and room > 0:
            self._sample += buffer[: min(size, room)]
        self._body_length += size
        self._consume(size)
        if until_close:
            return False
        self._remaining -= size
        if self._remaining:
            return False
        if self.state == HttpState.BODY:
            self._end_message(events)
        else:
            self.state = HttpState.CHUNK_END
        return True

    def _step_chunk_size(self, events: list[HttpEvent]) -> bool:
        newline = self._buffer.find(b"\n", 0, MAX_CHUNK_LINE)
        if newline < 0:
            if len(self._buffer) >= MAX_CHUNK_LINE:
                events.append(self._fail(self._offset, f"chunk-size line longer than {MAX_CHUNK_LINE} bytes"))
            return False
        line = bytes(self._buffer[:newline]).removesuffix(b"\r")
        size = line.partition(b";")[0].strip(b" \t")
        if not size or size.translate(None, _HEX) or len(size) > 16:
            events.append(self._fail(self._offset, f"invalid chunk size {size[:40]!r}"))
            return False
        self._consume(newline + 1)
        self._remaining = int(size, 16)
        self.state = HttpState.CHUNK_DATA if self._remaining else HttpState.TRAILERS
        return True

    def _step_chunk_end(self, events: list[HttpEvent]) -> bool:
        buffer = self._buffer
        if buffer.startswith((b"\r\n", b"\n")):
            self._consume(2 if buffer[0] == 0x0D else 1)
            self.state = HttpState.CHUNK_SIZE
            return True
        if buffer and buffer != b"\r":
            events.append(self._fail(self._offset, "chunk data not followed by CRLF"))
        return False

    def _step_trailers(self, events: list[HttpEvent]) -> bool:
        buffer = self._buffer
        if buffer.startswith((b"\r\n", b"\n")):
            end = 2 if buffer[0] == 0x0D else 1
        else:
            if not buffer or buffer == b"\r":
                return False
            end = self._head_end()
            if end < 0 or end > self.max_head:
                if end > self.max_head or len(buffer) > self.max_head:
                    events.append(self._fail(self._offset, f"trailer section longer than {self.max_head} bytes"))
                return False
        self._consume(end)
        self._scanned = 0
        self._end_message(events)
        return True

    def _step_might_switch(self, events: list[HttpEvent]) -> bool:
        verdict = _request_line_verdict(self._buffer, self.max_head)
        if verdict is None:
            return False
        if verdict:
            self.state = HttpState.HEAD
            return True
        events.append(ProtocolSwitch(self._offset, self._switch_protocol))
        self._switch()
        return False

    # -- helpers ------------------------------------------------------------

    @abstractmethod
    def _begin_message(self, start: int, head: bytes, events: list[HttpEvent]) -> None:
        """Parse the message head ``head`` found at stream offset ``start`` and enter its body."""

    def _after_message(self) -> HttpState:
        """The state once a message's body has ended."""
        return HttpState.HEAD

    def _parse_head(self, start: int, head: bytes) -> tuple[bytes, tuple[tuple[str, bytes], ...]] | Malformed:
        """The start line and headers of ``head``, or why they are malformed."""
        lines = head.split(b"\n")[:-2]  # the head ends with an empty line
        first = lines[0].removesuffix(b"\r")
        headers: list[tuple[str, bytes]] = []
        offset = start + len(lines[0]) + 1
        for raw in lines[1:]:
            line = raw.removesuffix(b"\r")
            if line[:1] in (b" ", b"\t"):
                if not headers:
                    return Malformed(offset, "continuation line before the first header")
                folded_name, folded = headers[-1]
                headers[-1] = (folded_name, (folded + b" " + line.strip(b" \t")).strip(b" \t"))
            else:
                name, colon, raw_value = line.partition(b":")
                if not colon:
                    return Malformed(offset, "header line without a colon")
                if not name or name.translate(None, _TOKEN):
                    return Malformed(offset, "invalid header name")
                value = raw_value.strip(b" \t")
                if b"\r" in value or b"\0" in value:
                    return Malformed(offset, "CR or NUL in a header value")
                headers.append((name.decode("ascii").lower(), value))
            offset += len(raw) + 1
        return first, tuple(headers)

    def _start_body(self, chunked: bool, length: int | None) -> None:
        """Enter the body state for a chunked body, or one of ``length`` bytes (None: until close)."""
        self._body_length = 0
        self._sample = bytearray()
        self._sampling = True
        if chunked:
            self.state = HttpState.CHUNK_SIZE
        elif length is None:
            self.state = HttpState.UNTIL_CLOSE
        else:
            self._remaining = length
            self.state = HttpState.BODY

    def _end_of_message(self, *, complete: bool) -> EndOfMessage:
        return EndOfMessage(self._offset, self._body_length, bytes(self._sample), complete)

    def _end_message(self, events: list[HttpEvent]) -> None:
        events.append(self._end_of_message(complete=True))
        self.state = self._after_message()

    def _consume(self, size: int) -> None:
        del self._buffer[:size]
        self._offset += size

    def _switch(self) -> None:
        self.state = HttpState.SWITCHED
        self._buffer.clear()

    def _fail(self, offset: int, reason: str) -> Malformed:
        self.state = HttpState.ERROR
        self._buffer.clear()
        return Malformed(offset, reason)


class HttpRequestParser(_HttpParser):
    """The client's direction: requests, one after another (pipelining included)."""

    def __init__(self, *, max_head: int = DEFAULT_MAX_HEAD, body_sample: int = DEFAULT_BODY_SAMPLE) -> None:
        super().__init__(max_head=max_head, body_sample=body_sample)
        self._might_switch = False

    def _begin_message(self, start: int, head: bytes, events: list[HttpEvent]) -> None:
        parsed = self._parse_head(start, head)
        if isinstance(parsed, Malformed):
            events.append(self._fail(parsed.offset, parsed.reason))
            return
        line, headers = parsed
        parts = line.split(b" ")
        if len(parts) != 3:
            events.append(self._fail(start, "request line is not 'METHOD target HTTP/x.y'"))
            return
        method, target, raw_version = parts
        version = _version(raw_version)
        if not method or method.translate(None, _TOKEN):
            events.append(self._fail(start, "invalid request method"))
            return
        if not target or target.translate(None, _TARGET):
            events.append(self._fail(start, "invalid request target"))
            return
        if version is None:
            events.append(self._fail(start, f"invalid HTTP version {raw_version[:20]!r}"))
            return
        if method == b"PRI" and target == b"*" and version == "2.0":
            events.append(ProtocolSwitch(start, b"h2c"))
            self._switch()
            return
        request = Request(start, method.decode("ascii"), target, version, headers)
        events.append(request)
        upgrade = request.header("upgrade")
        self._might_switch = upgrade is not None or request.method == "CONNECT"
        self._switch_protocol = upgrade or b""
        chunked = _ends_chunked(request.header_values("transfer-encoding"))
        length = _content_length(request.header_values("content-length"))
        if chunked is False:
            events.append(self._fail(start, "request Transfer-Encoding does not end with chunked"))
        elif chunked:
            self._start_body(True, None)
        elif isinstance(length, str):
            events.append(self._fail(start, length))
        else:
            self._start_body(False, length or 0)
            if self._remaining == 0:
                self._end_message(events)

    def _after_message(self) -> HttpState:
        return HttpState.MIGHT_SWITCH if self._might_switch else HttpState.HEAD


class HttpResponseParser(_HttpParser):
    """The server's direction: responses, matched in order to the request methods it is told."""

    def __init__(
        self,
        methods: Iterable[str] = (),
        *,
        max_head: int = DEFAULT_MAX_HEAD,
        body_sample: int = DEFAULT_BODY_SAMPLE,
    ) -> None:
        super().__init__(max_head=max_head, body_sample=body_sample)
        self._methods: deque[str] = deque(method.upper() for method in methods)

    def expect(self, method: str) -> None:
        """A request with ``method`` was sent: the next unanswered response answers it."""
        self._methods.append(method.upper())

    def _begin_message(self, start: int, head: bytes, events: list[HttpEvent]) -> None:
        parsed = self._parse_head(start, head)
        if isinstance(parsed, Malformed):
            events.append(self._fail(parsed.offset, parsed.reason))
            return
        line, headers = parsed
        raw_version, _, rest = line.partition(b" ")
        version = _version(raw_version)
        code = rest[:3]
        if version is None or len(code) != 3 or code.translate(None, _DIGITS) or rest[3:4] not in (b"", b" "):
            events.append(self._fail(start, "status line is not 'HTTP/x.y NNN reason'"))
            return
        status = int(code)
        response = Response(start, version, status, rest[4:], headers)
        events.append(response)
        if 100 <= status < 200 and status != 101:
            return  # interim: the final response follows
        method = self._methods.popleft() if self._methods else "GET"
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            events.append(ProtocolSwitch(self._offset, response.header("upgrade") or b""))
            self._switch()
            return
        if method == "HEAD" or status in (204, 304):
            self._start_body(False, 0)
            self._end_message(events)
            return
        chunked = _ends_chunked(response.header_values("transfer-encoding"))
        length = _content_length(response.header_values("content-length"))
        if chunked is None and isinstance(length, str):
            events.append(self._fail(start, length))
            return
        self._start_body(bool(chunked), length if chunked is None and not isinstance(length, str) else None)
        if self.state == HttpState.BODY and self._remaining == 0:
            self._end_message(events)
