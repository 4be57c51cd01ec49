"""What an encrypted flow still shows: its TLS or SSH handshake (metadata only).

One ``handshake`` observation per flow. A direction that turns out not to be
TLS (or SSH) from its first bytes on is looked at as unknown text instead,
whatever its first bytes suggested: a garbled handshake leaks nothing.
"""

from __future__ import annotations

from .findings_kinds import Kind, Observation
from .findings_redact import Evidence
from .findings_streams import Side, Timed
from .findings_text import events_or_text
from .inspect.escape import escape
from .inspect.ssh import SshBanner, SshParser
from .inspect.tls import ClientHello, ServerHello, TlsParser, version_name


def _first(timed: list[Timed], kind: type) -> tuple[object, int] | None:
    return next(((t.event, t.ts_ns) for t in timed if isinstance(t.event, kind)), None)


def tls_observations(client: Side, server: Side, evidence: Evidence, hinted: bool) -> list[Observation]:
    """``TLS 1.3 SNI example.com ALPN h2``: the version agreed (else the highest offered), SNI and ALPN."""
    found: list[Observation] = []
    sides = (
        events_or_text(TlsParser(), client, "client", evidence, found, strict=False),
        events_or_text(TlsParser(), server, "server", evidence, found, strict=False),
    )
    hello = _first(sides[0], ClientHello)
    answer = _first(sides[1], ServerHello)
    if hello is None and answer is None:
        return found
    parts = []
    if answer is not None:
        parts.append(version_name(answer[0].version))
    elif hello is not None:
        parts.append(f"ClientHello offering {version_name(hello[0].max_version)}")
    if hello is not None and hello[0].server_name is not None:
        parts.append(f"SNI {escape(hello[0].server_name, 80)}")
    if answer is not None and answer[0].alpn:
        parts.append(f"ALPN {escape(answer[0].alpn, 40)}")
    elif hello is not None and hello[0].alpn:
        parts.append(f"ALPN offered {escape(b','.join(hello[0].alpn), 60)}")
    ts = min(seen[1] for seen in (hello, answer) if seen is not None)
    found.append(Observation("tls", Kind.HANDSHAKE, evidence.bound(" ".join(parts)), ts))
    return found


def ssh_observations(client: Side, server: Side, evidence: Evidence, hinted: bool) -> list[Observation]:
    """``client SSH-2.0-OpenSSH_9.6, server SSH-2.0-OpenSSH_8.9p1``: the identification lines."""
    found: list[Observation] = []
    sides = (
        events_or_text(SshParser(), client, "client", evidence, found, strict=False),
        events_or_text(SshParser(), server, "server", evidence, found, strict=False),
    )
    banners = [(label, _first(timed, SshBanner)) for label, timed in zip(("client", "server"), sides)]
    shown = [(label, seen) for label, seen in banners if seen is not None]
    if shown:
        text = ", ".join(f"{label} {escape(seen[0].line, 80)}" for label, seen in shown)
        found.append(Observation("ssh", Kind.HANDSHAKE, evidence.bound(text), min(seen[1] for _, seen in shown)))
    return found
