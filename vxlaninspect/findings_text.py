"""What a flow of an unknown protocol leaked: readable text, and login lines in it.

A direction whose first bytes are text (``inspect.text.profile``) is a
``plaintext`` finding showing its first line; a client line that starts
(after an optional tag, as in IMAP) with ``PASS``, ``LOGIN``, ``AUTH``,
``AUTHENTICATE`` or ``AUTHINFO`` is a ``login`` finding with everything after
that word redacted. Secret ``name=value`` pairs and ``Authorization:`` or
``Cookie:`` lines are redacted in any line shown.
"""

from __future__ import annotations

import re

from .findings_kinds import Kind, Observation
from .findings_redact import REDACTED_BYTES, Evidence, redact_text
from .findings_streams import Side, Timed, failed_at_start, run
from .inspect.parser import Parser
from .inspect.text import SAMPLE_BYTES, PayloadKind, profile

PROTOCOL = "text"
MAX_LINES = 64
"""Lines of a direction's first bytes searched for logins."""
_LOGIN = re.compile(rb"[ \t]*(?:[A-Za-z0-9.*_-]{1,16}[ \t]+)?(?:PASS|LOGIN|AUTHENTICATE|AUTHINFO|AUTH)(?=[ \t]+\S)")


def text_observations(side: Side, stream: str, evidence: Evidence, *, logins: bool = False) -> list[Observation]:
    """A ``plaintext`` observation when the direction starts with text; ``login`` ones too if ``logins``."""
    head = side.head(SAMPLE_BYTES)
    if not side.deliveries or profile(head).kind != PayloadKind.TEXT:
        return []
    ts = side.deliveries[0].ts_ns
    lines = [line.rstrip(b"\r") for line in head.split(b"\n", MAX_LINES)[:MAX_LINES]]
    first = next((line.strip() for line in lines if line.strip()), b"")
    found = [Observation(PROTOCOL, Kind.PLAINTEXT, evidence.text(stream.encode() + b": " + _shown(first, evidence)), ts)]
    if logins:
        found.extend(
            Observation(PROTOCOL, Kind.LOGIN, evidence.text(_shown(line.strip(), evidence)), ts)
            for line in lines
            if _LOGIN.match(line)
        )
    return found


def _shown(line: bytes, evidence: Evidence) -> bytes:
    """A line as evidence: a login's secret part and secret assignments redacted unless secrets are shown."""
    if evidence.show_secrets:
        return line
    login = _LOGIN.match(line)
    if login:
        return line[: login.end()].strip() + b" " + REDACTED_BYTES
    return redact_text(line)[0]


def events_or_text(
    parser: Parser, side: Side, stream: str, evidence: Evidence, found: list[Observation], *, strict: bool
) -> list[Timed]:
    """The events of ``parser`` over one direction.

    If the parser cannot make sense of the first bytes and not ``strict``, the
    direction is not that protocol: its text observations go to ``found``
    instead (``login`` ones for the client) and there are no events.
    """
    timed = run(parser, side)
    if strict or not failed_at_start(timed):
        return timed
    found.extend(text_observations(side, stream, evidence, logins=stream == "client"))
    return []
