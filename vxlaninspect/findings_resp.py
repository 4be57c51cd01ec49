"""What a Redis (RESP) flow leaked: commands with their keys and bounded values, passwords, replies.

Commands that carry a password are ``auth`` findings with the password
redacted: ``AUTH [user] pass``, ``HELLO ... AUTH user pass``, ``CONFIG SET``
of ``requirepass`` / ``masterauth``, ``MIGRATE ... AUTH pass`` /
``AUTH2 user pass`` and ``ACL SETUSER`` rules that set a password (``>pass``,
``<pass``, ``#hash``, ``!hash``). Replies are shown as redis-cli prints
them, but strings and aggregates only by their size, so a reply never shows
a stored secret (``CONFIG GET requirepass``).
"""

from __future__ import annotations

import re

from .findings_kinds import Kind, Observation, malformed
from .findings_redact import REDACTED_BYTES, Evidence
from .findings_streams import Side
from .findings_text import events_or_text
from .inspect.escape import escape
from .inspect.parser import Malformed
from .inspect.resp import Command, Reply, ReplyKind, RespCommandParser, RespReplyParser

PROTOCOL = "resp"
ARG_CHARS = 40
"""Escaped characters shown of each argument."""
CONFIG_SECRETS = frozenset({b"requirepass", b"masterauth", b"tls-key-file-pass", b"tls-client-key-file-pass"})
_ACL_SECRET_RULES = b"><#!"
_SIZED = (ReplyKind.BULK_STRING, ReplyKind.VERBATIM, ReplyKind.BLOB_ERROR)
_COMMAND_START = re.compile(rb"\*\d|[A-Za-z]+[ \r\n]")
_REPLY_START = re.compile(rb"[-+:$*_,#!=(%~>|]")


def command_starts(data: bytes) -> bool:
    """Whether a segment begins like a command (an array, or an inline word)."""
    return _COMMAND_START.match(data) is not None


def reply_starts(data: bytes) -> bool:
    """Whether a segment begins with a RESP type byte."""
    return _REPLY_START.match(data) is not None


def secret_arguments(command: Command) -> dict[int, bytes]:
    """Indexes of ``command.args`` that hold a password, each with what to show instead."""
    name, args = command.name, command.args
    upper = [arg.upper() for arg in args]
    if name == "AUTH" and args:
        return {len(args) - 1: REDACTED_BYTES}
    if name == "HELLO" and b"AUTH" in upper:
        return _after(upper.index(b"AUTH") + 2, args)
    if name == "CONFIG" and upper[:1] == [b"SET"]:
        return {k + 1: REDACTED_BYTES for k in range(1, len(args) - 1, 2) if args[k].lower() in CONFIG_SECRETS}
    if name == "MIGRATE":
        secrets: dict[int, bytes] = {}
        for k, word in enumerate(upper):
            if word == b"AUTH":
                secrets.update(_after(k + 1, args))
            elif word == b"AUTH2":
                secrets.update(_after(k + 2, args))
        return secrets
    if name == "ACL" and upper[:1] == [b"SETUSER"]:
        return {k: arg[:1] + REDACTED_BYTES for k, arg in enumerate(args) if k > 1 and arg[:1] and arg[0] in _ACL_SECRET_RULES}
    return {}


def _after(index: int, args: tuple[bytes, ...]) -> dict[int, bytes]:
    return {index: REDACTED_BYTES} if index < len(args) else {}


def _argument(arg: bytes) -> str:
    text = escape(arg, ARG_CHARS)
    return text if arg and all(0x21 <= b <= 0x7E and b != 0x22 for b in arg) else f'"{text}"'


def command_text(command: Command, secrets: dict[int, bytes], evidence: Evidence) -> str:
    """``HINCRBY ip 10.0.0.2 1``: the name and each argument, escaped and bounded, secrets replaced."""
    parts = [command.name]
    for k, arg in enumerate(command.args):
        parts.append(_argument(arg) if k not in secrets or evidence.show_secrets else secrets[k].decode())
    hidden = command.arg_count - len(command.args)
    if hidden > 0:
        parts.append(f"...[+{hidden} args]")
    return evidence.bound(" ".join(parts))


def reply_text(reply: Reply) -> str:
    """A reply as redis-cli shows it; a string or aggregate by its kind and size only."""
    if reply.kind in _SIZED:
        return f"({reply.kind.name.lower().replace('_', ' ')}, {reply.size} bytes)"
    return reply.summary


def resp_observations(client: Side, server: Side, evidence: Evidence, hinted: bool) -> list[Observation]:
    """Observations of both directions of one Redis connection.

    A direction that is not RESP from its first bytes on is ``malformed`` when
    the flow's first bytes said RESP (``hinted``) or the direction starts like
    a RESP message; else it is looked at as text.
    """
    found: list[Observation] = []
    for timed in events_or_text(RespCommandParser(), client, "client", evidence, found, strict=hinted or client.aligned):
        event, ts = timed.event, timed.ts_ns
        if isinstance(event, Command):
            secrets = secret_arguments(event)
            kind = Kind.AUTH if secrets else Kind.COMMAND
            found.append(Observation(PROTOCOL, kind, command_text(event, secrets, evidence), ts))
        elif isinstance(event, Malformed) and timed.fed:
            found.append(malformed(PROTOCOL, "command", event, ts, evidence))
    for timed in events_or_text(RespReplyParser(), server, "server", evidence, found, strict=hinted or server.aligned):
        event, ts = timed.event, timed.ts_ns
        if isinstance(event, Reply):
            found.append(Observation(PROTOCOL, Kind.REPLY, evidence.bound(reply_text(event)), ts))
        elif isinstance(event, Malformed) and timed.fed:
            found.append(malformed(PROTOCOL, "reply", event, ts, evidence))
    return found
