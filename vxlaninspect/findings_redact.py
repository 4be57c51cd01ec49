"""Secrets in payload text: where they are, and evidence strings with them redacted.

Redaction works on raw bytes, before anything is escaped, so an escape
sequence can never hide a secret from it; ``Evidence.text`` then escapes and
bounds the result. A value counts as secret when its name looks like one
(``password``, ``db_password``, ``newPassword``, ``pwd``, ``api_key``,
``apiKey``, ``access_token``, ``secret``, ``credentials``, ...), in
``name=value`` fields (query strings, form bodies, text) and in JSON
(``"name": "value"``); a quoted value cut short by the end of a sample is
redacted to its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .inspect.escape import REDACTED, escape

REDACTED_BYTES = REDACTED.encode()

_SECRET_NAME = re.compile(
    rb"(?:^|(?<=[^A-Za-z])|(?<=[a-z])(?=[A-Z]))"  # a word of its own, also in camelCase
    rb"(?i:pass(?:wd|word|phrase)?|pwd|secrets?|tokens?|api[_-]?key|credentials?)"
    rb"(?![a-z])"
)
_ASSIGNMENT = re.compile(
    rb"""(["']?)([A-Za-z0-9_.%-]{1,64})\1(\s*[=:]\s*)"""  # name, quoted or not, then = or :
    rb"""("(?:[^"\\]|\\.)*(?:"|\\?\Z)|'(?:[^'\\]|\\.)*(?:'|\\?\Z)|[^\s&;,}\]"']*)"""  # quoted (maybe cut short) or bare value
)
_HEADER_LINE = re.compile(rb"(?im)^([ \t]*(?:proxy-authorization|authorization|cookie|set-cookie)[ \t]*:[ \t]*)[^\r\n]*")
_USERINFO = re.compile(rb"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


def is_secret_name(name: bytes) -> bool:
    """Whether a field named ``name`` (URL-encoded or not) holds a secret."""
    return _SECRET_NAME.search(unquote_to_bytes(name)) is not None


def redact_assignments(data: bytes, show: bool = False) -> tuple[bytes, bool]:
    """``data`` with the values of secret ``name=value`` / ``"name": value`` pairs redacted, and whether there were any.

    With ``show`` the data is returned unchanged (the flag still tells).
    """
    found = False

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal found
        if not match.group(4) or not is_secret_name(match.group(2)):
            return match.group(0)
        found = True
        return match.group(0) if show else match.group(0)[: match.start(4) - match.start(0)] + REDACTED_BYTES

    redacted = _ASSIGNMENT.sub(replace, data)
    return (data if show else redacted), found


def redact_text(data: bytes, show: bool = False) -> tuple[bytes, bool]:
    """Free text with secret assignments and ``Authorization:`` / ``Cookie:`` lines redacted, and whether there were any."""
    redacted, found = redact_assignments(data, show)
    if _HEADER_LINE.search(redacted):
        found = True
        if not show:
            redacted = _HEADER_LINE.sub(lambda m: m.group(1) + REDACTED_BYTES, redacted)
    return redacted, found


def redact_target(target: bytes, show: bool = False) -> tuple[bytes, bool]:
    """A request target with a URL password (``user:pass@``) and secret query or fragment fields redacted, and whether it had any."""
    found = False
    match = _USERINFO.match(target)
    if match and b":" in match.group(2):
        found = True
        if not show:
            user = match.group(2).partition(b":")[0]
            target = match.group(1) + user + b":" + REDACTED_BYTES + b"@" + target[match.end() :]
    path, question, query = target.partition(b"?")
    if not question:
        return target, found
    query, hash_mark, fragment = query.partition(b"#")
    query, in_query = redact_assignments(query, show)
    fragment, in_fragment = redact_assignments(fragment, show)  # where OAuth puts access_token
    return path + b"?" + query + hash_mark + fragment, found or in_query or in_fragment


@dataclass(frozen=True)
class Evidence:
    """How evidence strings are written: secrets shown or not, and their length bound."""

    show_secrets: bool
    max_chars: int

    def text(self, raw: bytes) -> str:
        """``raw`` (already redacted) escaped and cut to ``max_chars`` characters."""
        return self.bound(escape(raw, self.max_chars))

    def bound(self, text: str) -> str:
        """Escaped text cut to ``max_chars`` characters, ending in ``...`` when cut."""
        if len(text) <= self.max_chars:
            return text
        return text[: max(self.max_chars - 3, 0)] + "..."
