"""What an HTTP/1.x flow leaked: requests, responses, credentials in headers, targets and bodies."""

from __future__ import annotations

import base64
import binascii
import re

from .findings_kinds import Kind, Observation, malformed
from .findings_redact import Evidence, redact_assignments, redact_target
from .findings_streams import Side
from .findings_text import events_or_text
from .inspect.escape import redact_authorization, redact_cookie
from .inspect.http import (
    EndOfMessage,
    HttpRequestParser,
    HttpResponseParser,
    Request,
    Response,
)
from .inspect.parser import Malformed

PROTOCOL = "http"
AUTHORIZATION_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token", "x-access-token"}
)
"""Headers whose whole value is a credential."""
_BODY_TYPES = (b"application/x-www-form-urlencoded", b"json", b"text/plain")
"""Content types whose body is searched for secret fields."""
_REQUEST_START = re.compile(rb"[A-Z][A-Z_-]{1,31} [!-~]")
_RESPONSE_START = re.compile(rb"HTTP/\d\.\d ")


def request_starts(data: bytes) -> bool:
    """Whether a segment begins with what looks like a request line."""
    return _REQUEST_START.match(data) is not None


def response_starts(data: bytes) -> bool:
    """Whether a segment begins with a status line."""
    return _RESPONSE_START.match(data) is not None


def http_observations(client: Side, server: Side, evidence: Evidence, hinted: bool) -> list[Observation]:
    """Observations of both directions of one HTTP connection.

    A direction that is not HTTP from its first bytes on is ``malformed`` when
    the flow's first bytes said HTTP (``hinted``) or the direction starts like
    an HTTP message; else it is looked at as text.
    """
    found: list[Observation] = []
    methods: list[str] = []
    request: Request | None = None
    for timed in events_or_text(HttpRequestParser(), client, "client", evidence, found, strict=hinted or client.aligned):
        event, ts = timed.event, timed.ts_ns
        if isinstance(event, Request):
            request = event
            methods.append(event.method)
            found.extend(_request(event, ts, evidence))
        elif isinstance(event, EndOfMessage) and request is not None:
            found.extend(_body(request, event, ts, evidence))
            request = None
        elif isinstance(event, Malformed) and timed.fed:
            found.append(malformed(PROTOCOL, "request", event, ts, evidence))
    for timed in events_or_text(HttpResponseParser(methods), server, "server", evidence, found, strict=hinted or server.aligned):
        event, ts = timed.event, timed.ts_ns
        if isinstance(event, Response):
            found.extend(_response(event, ts, evidence))
        elif isinstance(event, Malformed) and timed.fed:
            found.append(malformed(PROTOCOL, "response", event, ts, evidence))
    return found


def _decoded(value: bytes) -> bytes:
    """An Authorization value, followed by the ``user:password`` it carries when it is Basic."""
    scheme, _, credentials = value.partition(b" ")
    if scheme.lower() != b"basic":
        return value
    try:
        return value + b" (" + base64.b64decode(credentials.strip(), validate=True) + b")"
    except binascii.Error:
        return value


def _header_text(name: str, redacted: str) -> str:
    return f"{name.title()}: {redacted}"


def _request(request: Request, ts: int, evidence: Evidence) -> list[Observation]:
    show = evidence.show_secrets
    target, url_secret = redact_target(request.target, show)
    line = request.method.encode() + b" " + target + b" HTTP/" + request.version.encode()
    host = request.header("host")
    seen = [Observation(PROTOCOL, Kind.REQUEST, evidence.text(line + (b" Host: " + host if host else b"")), ts)]
    if url_secret:
        seen.append(Observation(PROTOCOL, Kind.URL_PASSWORD, evidence.text(request.method.encode() + b" " + target), ts))
    for name, value in request.headers:
        if name in AUTHORIZATION_HEADERS:
            text = (
                evidence.text(name.title().encode() + b": " + _decoded(value))
                if show
                else _header_text(name, redact_authorization(value))
            )
            seen.append(Observation(PROTOCOL, Kind.AUTHORIZATION, evidence.bound(text), ts))
        elif name == "cookie":
            text = evidence.text(b"Cookie: " + value) if show else _header_text(name, redact_cookie(value))
            seen.append(Observation(PROTOCOL, Kind.COOKIE, evidence.bound(text), ts))
    return seen


def _body(request: Request, end: EndOfMessage, ts: int, evidence: Evidence) -> list[Observation]:
    content_type = (request.header("content-type") or b"").lower()
    if not end.body_sample or not any(kind in content_type for kind in _BODY_TYPES):
        return []
    body, secret = redact_assignments(end.body_sample, evidence.show_secrets)
    if not secret:
        return []
    target, _ = redact_target(request.target, evidence.show_secrets)
    text = evidence.text(request.method.encode() + b" " + target + b" body: " + body)
    return [Observation(PROTOCOL, Kind.FORM_PASSWORD, text, ts)]


def _response(response: Response, ts: int, evidence: Evidence) -> list[Observation]:
    line = b"HTTP/" + response.version.encode() + b" " + str(response.status).encode()
    if response.reason:
        line += b" " + response.reason
    content_type = response.header("content-type")
    if content_type:
        line += b" Content-Type: " + content_type
    seen = [Observation(PROTOCOL, Kind.RESPONSE, evidence.text(line), ts)]
    for value in response.header_values("set-cookie"):
        text = evidence.text(b"Set-Cookie: " + value) if evidence.show_secrets else f"Set-Cookie: {redact_cookie(value)}"
        seen.append(Observation(PROTOCOL, Kind.SET_COOKIE, evidence.bound(text), ts))
    return seen
