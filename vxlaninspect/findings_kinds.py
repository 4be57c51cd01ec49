"""The kinds of finding, how bad each is, and one sighting of a kind in one flow."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from .findings_redact import Evidence
from .inspect.parser import Malformed
from .report import Severity


class Kind(str, Enum):
    """What leaked; ``SEVERITY`` says how badly."""

    REQUEST = "request"  # http: a request line and Host
    RESPONSE = "response"  # http: a status line
    AUTHORIZATION = "authorization"  # http: Authorization, Proxy-Authorization or an API-key header
    COOKIE = "cookie"  # http: a Cookie header
    SET_COOKIE = "set-cookie"  # http: a Set-Cookie header
    URL_PASSWORD = "url-password"  # http: user:password@ or a secret query field in a request target
    FORM_PASSWORD = "form-password"  # http: a secret field in a form or JSON request body
    COMMAND = "command"  # resp: a command and its arguments
    REPLY = "reply"  # resp: a reply (strings and aggregates by their size only)
    AUTH = "auth"  # resp: AUTH, HELLO ... AUTH, CONFIG SET requirepass, MIGRATE ... AUTH, ACL SETUSER >password
    HANDSHAKE = "handshake"  # tls, ssh: versions, SNI, ALPN, banners
    PLAINTEXT = "plaintext"  # text: the first line of readable payload of an unknown protocol
    LOGIN = "login"  # text: a PASS, LOGIN, AUTH or AUTHENTICATE line
    MALFORMED = "malformed"  # http, resp: the stream stopped parsing as the protocol its first bytes named


SEVERITY = {
    Kind.REQUEST: Severity.DATA,
    Kind.RESPONSE: Severity.DATA,
    Kind.AUTHORIZATION: Severity.CREDENTIAL,
    Kind.COOKIE: Severity.CREDENTIAL,
    Kind.SET_COOKIE: Severity.CREDENTIAL,
    Kind.URL_PASSWORD: Severity.CREDENTIAL,
    Kind.FORM_PASSWORD: Severity.CREDENTIAL,
    Kind.COMMAND: Severity.DATA,
    Kind.REPLY: Severity.DATA,
    Kind.AUTH: Severity.CREDENTIAL,
    Kind.HANDSHAKE: Severity.METADATA,
    Kind.PLAINTEXT: Severity.DATA,
    Kind.LOGIN: Severity.CREDENTIAL,
    Kind.MALFORMED: Severity.DATA,
}


class Observation(NamedTuple):
    """One sighting in one flow: its protocol, kind, evidence string (escaped, redacted, bounded) and time.

    A tuple, as there is one per parser event.
    """

    protocol: str
    kind: Kind
    evidence: str
    ts_ns: int


def malformed(protocol: str, stream: str, event: Malformed, ts: int, evidence: Evidence) -> Observation:
    """``request stream at byte 0: invalid request method``: where and why a direction stopped parsing."""
    return Observation(
        protocol, Kind.MALFORMED, evidence.text(f"{stream} stream at byte {event.offset}: {event.reason}".encode()), ts
    )
