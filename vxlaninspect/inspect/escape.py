"""Evidence strings that are safe to print, and redaction of secrets.

Everything a capture contains is hostile until escaped: a payload may carry
terminal escape sequences (``ESC [ ...``), control characters or invalid UTF-8.
``escape`` keeps printable ASCII as is and writes every other byte as ``\\xNN``
(a backslash as ``\\\\``), so no byte of a payload reaches a terminal raw.
"""

from __future__ import annotations

DEFAULT_LIMIT = 200
"""Characters of escaped text that ``escape`` returns at most (before the suffix)."""

REDACTED = "********"
"""What a secret is replaced by; the same whatever the secret's length."""

_REDACTED_BYTES = REDACTED.encode()
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)  # bytes that stand for themselves
_ESCAPED = tuple(
    "\\\\" if byte == 0x5C else chr(byte) if 0x20 <= byte <= 0x7E else f"\\x{byte:02x}" for byte in range(256)
)


def escape(data: bytes | str, limit: int = DEFAULT_LIMIT) -> str:
    """``data`` as printable ASCII: other bytes as ``\\xNN``, at most ``limit`` characters.

    A ``str`` is escaped as its UTF-8 bytes. When ``data`` does not fit, the
    result ends with ``...[+N bytes]`` naming how many input bytes were left out.
    """
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if len(raw) <= limit and not raw.translate(None, _PLAIN):
        return raw.decode("ascii")
    pieces: list[str] = []
    used = 0
    for index, byte in enumerate(raw):
        piece = _ESCAPED[byte]
        used += len(piece)
        if used > limit:
            return "".join(pieces) + f"...[+{len(raw) - index} bytes]"
        pieces.append(piece)
    return "".join(pieces)


def redact(secret: bytes | str) -> str:
    """The fixed placeholder for a secret: reveals neither its content nor its length."""
    del secret
    return REDACTED


def redact_authorization(value: bytes, limit: int = DEFAULT_LIMIT) -> str:
    """An ``Authorization`` / ``Proxy-Authorization`` value with its credentials redacted.

    The scheme stays (``Basic ********``), so the evidence tells how the
    credentials travelled.
    """
    scheme, _, credentials = value.strip().partition(b" ")
    if not credentials.strip():
        return REDACTED
    return f"{escape(scheme, limit)} {REDACTED}"


def redact_cookie(value: bytes, limit: int = DEFAULT_LIMIT) -> str:
    """A ``Cookie`` or ``Set-Cookie`` value with every cookie value redacted, names kept.

    For ``Set-Cookie`` the attributes after the first ``;`` (``Path``,
    ``HttpOnly``, ...) are not secret but are redacted alike: a simple rule
    that never leaks.
    """
    parts = []
    for pair in value.split(b";"):
        name, equals, _ = pair.strip().partition(b"=")
        parts.append(name + b"=" + _REDACTED_BYTES if equals else name)
    return escape(b"; ".join(parts), limit)


def redact_fields(data: bytes, names: frozenset[bytes], limit: int = DEFAULT_LIMIT) -> str:
    """``name=value&...`` data (a query string or a form body), escaped, with the named fields' values redacted.

    ``names`` are lower-case; a field matches case-insensitively.
    """
    fields = []
    for field in data.split(b"&"):
        name, equals, _ = field.partition(b"=")
        if equals and name.lower() in names:
            fields.append(name + b"=" + _REDACTED_BYTES)
        else:
            fields.append(field)
    return escape(b"&".join(fields), limit)
