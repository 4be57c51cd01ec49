"""Sans-IO Redis serialization protocol (RESP2 and RESP3).

``RespCommandParser`` reads the client's direction the way a Redis server
does (``processMultibulkBuffer`` / ``processInlineBuffer`` in Redis 7): a
stream starting with ``*`` is an array of bulk strings; anything else is an
inline command split like ``sdssplitargs`` (quotes, ``\\xNN`` escapes); empty
inline lines and arrays of length <= 0 are skipped, the two bytes after a
bulk string are skipped unchecked, and a line holding a NUL byte never ends
(the server searches it with ``strchr``), exactly as the server does. What
the server would answer with ``-ERR Protocol error: ...`` is ``Malformed``
with the same reason.

``RespReplyParser`` reads the server's direction: every RESP2 and RESP3 reply
type (``+ - : $ *`` and ``_ , # ! = ( % ~ > |``), nested aggregates and
attributes. Streamed RESP3 strings and aggregates (``$?``, ``*?``), which Redis
never sends, are ``Malformed``.

Nothing is allocated from a length the peer announces: bulk payloads are
counted and only their first bytes kept, aggregates are counted, nesting is
bounded and so are the number and size of arguments kept per command.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .escape import escape
from .parser import Malformed

DEFAULT_MAX_ARGS = 64
"""Arguments kept per command (after the name); the rest are counted."""
DEFAULT_MAX_ARG_BYTES = 256
"""Leading bytes kept of each argument."""
DEFAULT_MAX_VALUE = 128
"""Leading bytes kept of a reply's value."""
DEFAULT_MAX_DEPTH = 32
"""Aggregates a reply may nest."""
MAX_LINE = 64 * 1024
"""Longest line (inline command, type line), as Redis' PROTO_INLINE_MAX_SIZE."""
MAX_BULK = 512 * 1024 * 1024
"""Longest bulk string a Redis server accepts (proto-max-bulk-len)."""
MAX_MULTIBULK = 2**31 - 1
_NAME_LIMIT = 64
_INT64 = (-(2**63), 2**63 - 1)
_DIGITS = b"0123456789"
_C_SPACE = b" \t\n\v\f\r"  # C isspace()
_HEX = b"0123456789abcdefABCDEF"
_INLINE_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}


class RespState(IntEnum):
    """Where a RESP parser is in the stream."""

    LINE = 0  # expecting a line: a command, a bulk-string header, or a reply type line
    BULK = 1  # inside a bulk string's payload
    BULK_END = 2  # expecting the CRLF after a bulk string
    DONE = 3  # finish() was called
    ERROR = 4  # Malformed was reported: bytes are ignored


class ReplyKind(IntEnum):
    """RESP reply types."""

    SIMPLE_STRING = 0  # +
    ERROR = 1  # -
    INTEGER = 2  # :
    BULK_STRING = 3  # $
    ARRAY = 4  # *
    NULL = 5  # _ (and RESP2's $-1, *-1)
    DOUBLE = 6  # ,
    BOOLEAN = 7  # #
    BLOB_ERROR = 8  # !
    VERBATIM = 9  # =
    BIG_NUMBER = 10  # (
    MAP = 11  # %
    SET = 12  # ~
    PUSH = 13  # >


@dataclass(frozen=True)
class Command:
    """A command a client sent.

    ``name`` is the first argument upper-cased and escaped (printable ASCII);
    ``args`` the following arguments, at most ``max_args`` of them and at most
    ``max_arg_bytes`` each; ``arg_count`` how many followed the name;
    ``truncated`` says an argument was cut, left out or lost in a gap.
    ``complete`` is False when the stream ended inside the command.
    """

    offset: int
    name: str
    args: tuple[bytes, ...]
    arg_count: int
    truncated: bool
    inline: bool
    complete: bool = True


@dataclass(frozen=True)
class Reply:
    """A reply (or RESP3 push) a server sent.

    ``value`` holds the first bytes of a scalar (empty for nulls and
    aggregates); ``size`` is a string's length in bytes, an aggregate's element
    count (pairs for a map), 0 otherwise. ``attributed``: an RESP3 attribute
    came before it. ``complete`` is False when the stream ended inside it.
    """

    offset: int
    kind: ReplyKind
    value: bytes
    size: int
    attributed: bool = False
    complete: bool = True

    @property
    def summary(self) -> str:
        """A short printable rendering, in the manner of redis-cli."""
        kind = self.kind
        text = escape(self.value, 64)
        if kind == ReplyKind.SIMPLE_STRING:
            return text
        if kind in (ReplyKind.ERROR, ReplyKind.BLOB_ERROR):
            return f"(error) {text}"
        if kind in (ReplyKind.BULK_STRING, ReplyKind.VERBATIM):
            more = f" ({self.size} bytes)" if self.size > len(self.value) else ""
            return f'"{text}"{more}'
        if kind == ReplyKind.NULL:
            return "(nil)"
        if kind == ReplyKind.BOOLEAN:
            return "(true)" if self.value == b"t" else "(false)"
        if kind in (ReplyKind.INTEGER, ReplyKind.DOUBLE, ReplyKind.BIG_NUMBER):
            return f"({kind.name.lower().replace('_', ' ')}) {text}"
        return f"({kind.name.lower()} of {self.size})"


RespEvent = Command | Reply | Malformed


def string_to_int(raw: bytes) -> int | None:
    """Redis' ``string2ll``: a signed 64-bit decimal without leading zeros, '+' or spaces; else None."""
    if not raw or len(raw) >= 21:
        return None
    if raw == b"0":
        return 0
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits or digits[:1] == b"0" or digits.translate(None, _DIGITS):
        return None
    value = -int(digits) if digits is not raw else int(digits)
    return value if _INT64[0] <= value <= _INT64[1] else None


def split_inline(line: bytes) -> list[bytes] | None:
    """Redis' ``sdssplitargs``: the arguments of an inline command, or None for unbalanced quotes."""
    line = line.split(b"\0", 1)[0]  # a C string ends at NUL
    size = len(line)
    args: list[bytes] = []
    i = 0
    while True:
        while i < size and line[i] in _C_SPACE:
            i += 1
        if i >= size:
            return args
        current = bytearray()
        quote = 0  # the open quote character, 0 outside quotes
        while True:
            char = line[i] if i < size else 0
            after = line[i + 1] if i + 1 < size else 0
            if quote == 0x22:  # "
                if char == 0x5C and after == 0x78 and i + 3 < size and line[i + 2] in _HEX and line[i + 3] in _HEX:
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif char == 0x5C and after:
                    i += 1
                    current.append(_INLINE_ESCAPES.get(after, after))
                elif char == 0x22:
                    if after and after not in _C_SPACE:
                        return None
                    i += 1
                    break
                elif not char:
                    return None
                else:
                    current.append(char)
            elif quote == 0x27:  # '
                if char == 0x5C and after == 0x27:
                    i += 1
                    current.append(0x27)
                elif char == 0x27:
                    if after and after not in _C_SPACE:
                        return None
                    i += 1
                    break
                elif not char:
                    return None
                else:
                    current.append(char)
            elif char in (0x20, 0x0A, 0x0D, 0x09, 0):
                break
            elif char in (0x22, 0x27):
                quote = char
            else:
                current.append(char)
            i += 1
        args.append(bytes(current))


class _RespParser:
    """Buffering and bookkeeping shared by both directions."""

    def __init__(self) -> None:
        self.state = RespState.LINE
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._bulk_left = 0  # payload bytes of the current bulk string still to come
        self._announced = 0  # payload size of the current bulk string
        self._sample = bytearray()  # its first bytes
        self._sampling = True  # False once a gap broke the sample

    def feed(self, data: bytes) -> list[RespEvent]:
        """The commands (or replies) completed by the next bytes of the stream."""
        if self.state in (RespState.DONE, RespState.ERROR) or not data:
            return []
        self._buffer += data
        events: list[RespEvent] = []
        while self._step(events):
            pass
        return events

    def gap(self, size: int) -> list[RespEvent]:
        """``size`` bytes are missing: skipped inside a bulk string, fatal anywhere else."""
        if self.state in (RespState.DONE, RespState.ERROR) or size <= 0:
            return []
        if self._skip_gap(size):
            return []
        return [self._fail(self._offset + len(self._buffer), f"{size} bytes missing from the capture")]

    def _step(self, events: list[RespEvent]) -> bool:
        """Parse what the buffer holds next; whether to go on."""
        raise NotImplementedError

    def _take_bulk(self, keep: int) -> bool:
        """Consume buffered payload of the current bulk string, keeping up to ``keep`` leading bytes."""
        size = min(len(self._buffer), self._bulk_left)
        room = keep - len(self._sample)
        if self._sampling and room > 0:
            self._sample += self._buffer[: min(size, room)]
        self._consume(size)
        self._bulk_left -= size
        if self._bulk_left:
            return False
        self.state = RespState.BULK_END
        return True

    def _skip_gap(self, size: int) -> bool:
        """Skip ``size`` missing bytes if they fall inside a bulk payload."""
        if self.state != RespState.BULK or size > self._bulk_left:
            return False
        self._offset += size
        self._bulk_left -= size
        self._sampling = False
        if not self._bulk_left:
            self.state = RespState.BULK_END
        return True

    def _start_bulk(self, size: int) -> None:
        self._announced = size
        self._bulk_left = size
        self._sample = bytearray()
        self._sampling = True
        self.state = RespState.BULK if size else RespState.BULK_END

    def _consume(self, size: int) -> None:
        del self._buffer[:size]
        self._offset += size

    def _fail(self, offset: int, reason: str) -> Malformed:
        self.state = RespState.ERROR
        self._buffer.clear()
        return Malformed(offset, reason)


class RespCommandParser(_RespParser):
    """The client's direction: commands, one after another (pipelines included)."""

    def __init__(self, *, max_args: int = DEFAULT_MAX_ARGS, max_arg_bytes: int = DEFAULT_MAX_ARG_BYTES) -> None:
        super().__init__()
        self.max_args = max_args
        self.max_arg_bytes = max_arg_bytes
        self._start = 0  # offset of the command being read
        self._args: list[bytes] = []
        self._count = 0  # arguments read so far, the name included
        self._expected = 0  # arguments the array announced
        self._truncated = False

    def finish(self) -> list[RespEvent]:
        """The stream ended: a command cut short is reported with ``complete=False``."""
        events: list[RespEvent] = []
        if self.state != RespState.ERROR:
            if self._expected and (self._args or self.state != RespState.LINE):
                if self.state != RespState.LINE:
                    self._end_argument(lossy=self.state == RespState.BULK or not self._sampling)
                events.append(self._command(inline=False, complete=False))
            self.state = RespState.DONE
        self._buffer.clear()
        return events

    def _step(self, events: list[RespEvent]) -> bool:
        """One line, or one argument (header, payload and line end) as far as the buffer goes."""
        if self.state == RespState.LINE:
            if not self._buffer:
                return False
            if not self._expected:
                if self._buffer[0] == 0x2A:  # *
                    return self._step_array_header(events)
                return self._step_inline(events)
            if not self._step_bulk_header(events):
                return False
        if self.state == RespState.BULK and not self._take_bulk(self.max_arg_bytes):
            return False
        if len(self._buffer) < 2:
            return False
        self._consume(2)  # Redis skips these two bytes without looking at them
        self._end_argument(lossy=not self._sampling)
        if self._count == self._expected:
            events.append(self._command(inline=False, complete=True))
            self._expected = 0
        self.state = RespState.LINE
        return True

    def _line_end(self, terminator: bytes, what: str, events: list[RespEvent]) -> int:
        """Index of ``terminator`` with at least one byte after it for CR; -1 to wait or on error.

        Redis looks for it with ``strchr``, which stops at a NUL byte: a line
        with a NUL never ends, until it is too big.
        """
        nul = self._buffer.find(b"\0", 0, MAX_LINE + 1)
        index = self._buffer.find(terminator, 0, nul if nul >= 0 else MAX_LINE + 1)
        if index < 0:
            if len(self._buffer) > MAX_LINE:
                events.append(self._fail(self._offset, f"Protocol error: too big {what}"))
            return -1
        if terminator == b"\r" and index + 1 >= len(self._buffer):
            return -1
        return index

    def _step_array_header(self, events: list[RespEvent]) -> bool:
        end = self._line_end(b"\r", "mbulk count string", events)
        if end < 0:
            return False
        count = string_to_int(bytes(self._buffer[1:end]))
        if count is None or count > MAX_MULTIBULK:
            events.append(self._fail(self._offset, "Protocol error: invalid multibulk length"))
            return False
        start = self._offset
        self._consume(end + 2)
        if count > 0:
            self._start = start
            self._args = []
            self._count = 0
            self._expected = count
            self._truncated = False
        return True

    def _step_bulk_header(self, events: list[RespEvent]) -> bool:
        end = self._line_end(b"\r", "bulk count string", events)
        if end < 0:
            return False
        if self._buffer[0] != 0x24:  # $
            events.append(
                self._fail(self._offset, f"Protocol error: expected '$', got '{escape(bytes(self._buffer[:1]))}'")
            )
            return False
        size = string_to_int(bytes(self._buffer[1:end]))
        if size is None or size < 0 or size > MAX_BULK:
            events.append(self._fail(self._offset, "Protocol error: invalid bulk length"))
            return False
        self._consume(end + 2)
        self._start_bulk(size)
        return True

    def _step_inline(self, events: list[RespEvent]) -> bool:
        end = self._line_end(b"\n", "inline request", events)
        if end < 0:
            return False
        start = self._offset
        line = bytes(self._buffer[:end]).removesuffix(b"\r")
        self._consume(end + 1)
        args = split_inline(line)
        if args is None:
            events.append(self._fail(start, "Protocol error: unbalanced quotes in request"))
            return False
        if args:
            self._start = start
            self._args = [arg[: self.max_arg_bytes] for arg in args[: self.max_args + 1]]
            self._count = len(args)
            self._truncated = len(args) > self.max_args + 1 or any(len(arg) > self.max_arg_bytes for arg in args)
            events.append(self._command(inline=True, complete=True))
        return True

    def _end_argument(self, *, lossy: bool) -> None:
        self._count += 1
        if len(self._args) <= self.max_args:
            self._args.append(bytes(self._sample))
        else:
            self._truncated = True
        if lossy or self._announced > self.max_arg_bytes:
            self._truncated = True

    def _command(self, *, inline: bool, complete: bool) -> Command:
        name = escape(self._args[0].upper(), _NAME_LIMIT) if self._args else ""
        return Command(
            self._start,
            name,
            tuple(self._args[1:]),
            max(self._count - 1, 0),
            self._truncated,
            inline,
            complete,
        )


_LINE_TYPES = {
    0x2B: ReplyKind.SIMPLE_STRING,
    0x2D: ReplyKind.ERROR,
    0x3A: ReplyKind.INTEGER,
    0x5F: ReplyKind.NULL,
    0x2C: ReplyKind.DOUBLE,
    0x23: ReplyKind.BOOLEAN,
    0x28: ReplyKind.BIG_NUMBER,
}
_STRING_TYPES = {0x24: ReplyKind.BULK_STRING, 0x21: ReplyKind.BLOB_ERROR, 0x3D: ReplyKind.VERBATIM}
_AGGREGATE_TYPES = {0x2A: ReplyKind.ARRAY, 0x25: ReplyKind.MAP, 0x7E: ReplyKind.SET, 0x3E: ReplyKind.PUSH}
_ATTRIBUTE = 0x7C  # |
_BULK_NULL = 0x24  # $-1
_ARRAY_NULL = 0x2A  # *-1
_DOUBLE_WORDS = (b"inf", b"-inf", b"+inf", b"nan", b"-nan")
_DOUBLE_CHARS = b"0123456789+-.eE"


def _signed_digits(raw: bytes) -> bool:
    digits = raw[1:] if raw[:1] in (b"+", b"-") else raw
    return bool(digits) and not digits.translate(None, _DIGITS)


def _line_problem(kind: ReplyKind, line: bytes) -> str | None:
    """Why ``line`` is not a valid value of the one-line reply type ``kind``; None if it is."""
    if kind == ReplyKind.INTEGER:
        ok = _signed_digits(line) and len(line) <= 20 and _INT64[0] <= int(line) <= _INT64[1]
    elif kind == ReplyKind.NULL:
        ok = not line
    elif kind == ReplyKind.BOOLEAN:
        ok = line in (b"t", b"f")
    elif kind == ReplyKind.BIG_NUMBER:
        ok = _signed_digits(line)
    elif kind == ReplyKind.DOUBLE:
        ok = line.lower() in _DOUBLE_WORDS or _is_float(line)
    else:
        ok = True
    return None if ok else f"invalid {kind.name.lower()} {escape(line, 40)}"


def _is_float(raw: bytes) -> bool:
    if not raw or raw.translate(None, _DOUBLE_CHARS):
        return False
    try:
        float(raw)
    except ValueError:
        return False
    return True


class RespReplyParser(_RespParser):
    """The server's direction: replies and RESP3 pushes, one event per top-level value."""

    def __init__(self, *, max_value: int = DEFAULT_MAX_VALUE, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        super().__init__()
        self.max_value = max_value
        self.max_depth = max_depth
        self._stack: list[list[int]] = []  # open aggregates: [elements left, 1 if an attribute]
        self._top: tuple[int, ReplyKind, int] | None = None  # offset, kind, size of the reply being read
        self._attributed = False
        self._string_kind = ReplyKind.BULK_STRING

    def finish(self) -> list[RespEvent]:
        """The stream ended: a reply cut short is reported with ``complete=False``."""
        events: list[RespEvent] = []
        if self.state != RespState.ERROR:
            if self._top is not None:
                offset, kind, size = self._top
                inside_string = not self._stack and self.state != RespState.LINE
                value = bytes(self._sample) if inside_string else b""
                events.append(Reply(offset, kind, value, size, self._attributed, complete=False))
            self.state = RespState.DONE
        self._buffer.clear()
        return events

    def _step(self, events: list[RespEvent]) -> bool:
        """One type line, or one string (header, payload and CRLF) as far as the buffer goes."""
        buffer = self._buffer
        if self.state == RespState.LINE:
            if not buffer:
                return False
            end = buffer.find(b"\r\n", 0, MAX_LINE + 1)
            if end < 0:
                if len(buffer) > MAX_LINE:
                    events.append(self._fail(self._offset, f"reply line longer than {MAX_LINE} bytes"))
                return False
            marker = buffer[0]
            line = bytes(buffer[1:end])
            start = self._offset
            self._consume(end + 2)
            if not self._header(marker, line, start, events) or self.state == RespState.LINE:
                return self.state == RespState.LINE
        if self.state == RespState.BULK and not self._take_bulk(self.max_value):
            return False
        if not buffer.startswith(b"\r\n"):
            if len(buffer) >= 2 or (buffer and buffer[0] != 0x0D):
                events.append(self._fail(self._offset, "string not followed by CRLF"))
            return False
        self._consume(2)
        self.state = RespState.LINE
        value = bytes(self._sample)
        if self._string_kind == ReplyKind.VERBATIM and (self._announced < 4 or value[3:4] != b":"):
            events.append(self._fail(self._offset, "verbatim string without a 'xxx:' format prefix"))
            return False
        self._value_done(value, events)
        return True

    def _header(self, marker: int, line: bytes, start: int, events: list[RespEvent]) -> bool:
        """Act on one type line: a whole value, or the start of a string or aggregate."""
        kind = _LINE_TYPES.get(marker)
        if kind is not None:
            problem = _line_problem(kind, line)
            if problem is not None:
                events.append(self._fail(start, problem))
                return False
            sized = kind in (ReplyKind.SIMPLE_STRING, ReplyKind.ERROR)
            self._open(start, kind, len(line) if sized else 0)
            self._value_done(line[: self.max_value], events)
            return True
        kind = _STRING_TYPES.get(marker) or _AGGREGATE_TYPES.get(marker)
        if kind is None and marker != _ATTRIBUTE:
            events.append(self._fail(start, f"unknown reply type '{escape(bytes([marker]))}'"))
            return False
        if line == b"?":
            events.append(self._fail(start, "streamed RESP3 strings and aggregates are not supported"))
            return False
        count = string_to_int(line)
        if count == -1 and marker in (_BULK_NULL, _ARRAY_NULL):
            self._open(start, ReplyKind.NULL, 0)
            self._value_done(b"", events)
            return True
        name = kind.name.lower() if kind is not None else "attribute"
        if count is None or count < 0:
            events.append(self._fail(start, f"invalid {name} length {escape(line, 40)}"))
            return False
        if kind is not None and marker in _STRING_TYPES:
            self._open(start, kind, count)
            self._string_kind = kind
            self._start_bulk(count)
            return True
        if kind is not None:
            self._open(start, kind, count)
        if count == 0:
            if kind is None:
                self._attributed = self._attributed or not self._stack
            else:
                self._value_done(b"", events)
            return True
        if len(self._stack) >= self.max_depth:
            events.append(self._fail(start, f"aggregates nested deeper than {self.max_depth}"))
            return False
        pairs = kind in (None, ReplyKind.MAP)
        self._stack.append([count * 2 if pairs else count, int(kind is None)])
        return True

    def _open(self, start: int, kind: ReplyKind, size: int) -> None:
        """A value starts at ``start``: remember it if it is a top-level reply."""
        if not self._stack:
            self._top = (start, kind, size)

    def _value_done(self, value: bytes, events: list[RespEvent]) -> None:
        """A value ended: count it in its aggregate, and emit the reply once the top level is whole."""
        while self._stack:
            frame = self._stack[-1]
            frame[0] -= 1
            if frame[0]:
                return
            self._stack.pop()
            if frame[1]:  # an attribute ended; it is not an element of its parent
                self._attributed = self._attributed or not self._stack
                return
            value = b""
        assert self._top is not None
        offset, kind, size = self._top
        events.append(Reply(offset, kind, value, size, self._attributed))
        self._top = None
        self._attributed = False
