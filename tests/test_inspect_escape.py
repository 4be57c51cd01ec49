"""Escaping evidence for a terminal, and redaction: Python's own escape decoder is the oracle."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.escape import (
    DEFAULT_LIMIT,
    REDACTED,
    escape,
    redact,
    redact_authorization,
    redact_cookie,
    redact_fields,
)

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import connections
except ImportError:
    from test_inspect_capture import connections


def unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("ascii"))[0]


def test_every_byte_value_round_trips_and_only_printable_ascii_stays_raw() -> None:
    for value in range(256):
        text = escape(bytes([value]))
        assert unescape(text) == bytes([value])
        if 0x20 <= value <= 0x7E and value != 0x5C:
            assert text == chr(value)
        else:
            assert text == ("\\\\" if value == 0x5C else f"\\x{value:02x}")
    assert escape(b"\x1b") == "\\x1b" and escape(b"\\") == "\\\\" and escape(b"\n") == "\\x0a"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400), limit=st.integers(4, 300))
def test_escaped_text_is_printable_bounded_and_decodes_to_a_prefix(data: bytes, limit: int) -> None:
    text = escape(data, limit)
    shown, marker, rest = text.partition("...[+")
    assert all(0x20 <= ord(c) <= 0x7E for c in text)
    assert len(shown) <= limit
    decoded = unescape(shown)
    if marker:
        assert rest == f"{len(data) - len(decoded)} bytes]"
        assert data.startswith(decoded) and len(decoded) < len(data)
    else:
        assert decoded == data


def test_strings_are_escaped_as_utf8() -> None:
    assert escape("naïve\u202e") == "na\\xc3\\xafve\\xe2\\x80\\xae"  # no right-to-left override reaches the terminal


def test_terminal_sequences_from_a_real_shell_session_are_neutralised(corpus: Path) -> None:
    attach = connections(corpus / "zeek__docker-http-upgrade.pcap")[1]
    raw = attach.data(attach.node1)
    assert b"\x1b[" in raw  # busybox's coloured `ls` output
    text = escape(raw, 10_000)
    assert "\x1b" not in text and "\r" not in text and unescape(text) == raw


def test_default_limit_bounds_long_input() -> None:
    text = escape(b"A" * 10_000)
    assert text == "A" * DEFAULT_LIMIT + f"...[+{10_000 - DEFAULT_LIMIT} bytes]"


@pytest.mark.parametrize("secret", [b"", b"x", b"hunter2", "pässwörd", b"a" * 500])
def test_redact_hides_content_and_length(secret) -> None:
    assert redact(secret) == REDACTED


def test_redact_authorization_keeps_the_scheme() -> None:
    # RFC 7617 section 2: Aladdin:open sesame
    assert redact_authorization(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==") == f"Basic {REDACTED}"
    assert redact_authorization(b"Bearer \x1b[2Jtoken") == f"Bearer {REDACTED}"
    assert redact_authorization(b"opaque-token") == REDACTED


def test_redact_cookie_keeps_names() -> None:
    # RFC 6265 section 3.1 examples
    assert redact_cookie(b"SID=31d4d96e407aad42; lang=en-US") == f"SID={REDACTED}; lang={REDACTED}"
    assert (
        redact_cookie(b"SID=31d4d96e407aad42; Path=/; Secure; HttpOnly")
        == f"SID={REDACTED}; Path={REDACTED}; Secure; HttpOnly"
    )


def test_redact_fields_in_a_form_body() -> None:
    body = b"user=bob&Password=hunter2&token=abc&next=%2Fhome"
    names = frozenset({b"password", b"token"})
    assert redact_fields(body, names) == f"user=bob&Password={REDACTED}&token={REDACTED}&next=%2Fhome"
