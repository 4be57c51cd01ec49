"""Findings: what leaked in cleartext, where, and how badly.

``Inspection`` is the inspection stage of a scan (``scan(..., inspect=Inspection())``):
for every flow with kept payload it reassembles each direction (TCP through
the bounded reassembly, datagrams as they came), runs the parser its
protocol calls for (``http``, ``resp``, ``tls``, ``ssh``; any other payload
is looked at as text) and returns one ``Finding`` per (network, service,
server, protocol, kind), with how often it was seen, when first and last,
from which clients, and up to ``MAX_EVIDENCE`` evidence strings.

Kinds and their severity:

==============  ==========  =====================================================
kind            severity    evidence
==============  ==========  =====================================================
request         data        ``GET /login HTTP/1.1 Host: host01``
response        data        ``HTTP/1.1 200 OK Content-Type: text/html``
authorization   credential  ``Authorization: Basic ********`` (any scheme; also
                            Proxy-Authorization, X-Api-Key, X-Auth-Token, ...;
                            shown, Basic credentials are decoded too)
cookie          credential  ``Cookie: sid=********``
set-cookie      credential  ``Set-Cookie: sid=********; Path=********``
url-password    credential  ``GET http://bob:********@host/`` or ``?password=********``
form-password   credential  ``POST /login body: user=bob&password=********`` (form
                            or JSON body with a secret field)
command         data        ``HINCRBY ip 10.0.0.2 1`` (arguments bounded)
reply           data        ``+OK``, ``(integer) 3``, ``(array of 2)``
auth            credential  ``AUTH ********``, ``HELLO 3 AUTH default ********``,
                            ``CONFIG SET requirepass ********``, MIGRATE, ACL SETUSER
handshake       metadata    ``TLS 1.3 SNI example.com ALPN h2``,
                            ``client SSH-2.0-OpenSSH_9.6, server SSH-2.0-...``
plaintext       data        ``client: USER bob`` (first line of unknown text)
login           credential  ``PASS ********``, ``a1 LOGIN ********``
malformed       data        ``request stream at byte 0: invalid request method``
==============  ==========  =====================================================

Evidence is escaped (``inspect.escape``: printable ASCII only, so no payload
byte can drive a terminal), at most ``max_evidence_chars`` characters, and
secrets in it are replaced by ``********`` unless ``show_secrets``. Bytes
missing from the capture (gaps, the payload bound, the end of the capture)
never make a ``malformed`` finding: only bytes that were seen and do not parse.
Findings of traffic outside any overlay have ``vni`` and ``network`` None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .addresses import split_endpoint
from .findings_handshake import ssh_observations, tls_observations
from .findings_http import http_observations, request_starts, response_starts
from .findings_kinds import SEVERITY, Kind, Observation
from .findings_redact import Evidence
from .findings_resp import command_starts, reply_starts, resp_observations
from .findings_streams import Side, Starts, reassemble
from .findings_text import text_observations
from .flow import Flow
from .flows import Direction, FlowPayloads
from .inspect.reassembly import DEFAULT_LIMIT
from .networks import NetworkInfo, networks
from .report import MAX_EVIDENCE, Finding
from .scanning import declarations
from .topology import Topology
from .well_known import well_known_service

__all__ = ["SEVERITY", "Inspection", "Kind"]

Analyzer = Callable[[Side, Side, Evidence, bool], list[Observation]]


@dataclass(frozen=True)
class _Protocol:
    """A protocol this stage parses: how its client and server segments start, and its analyzer."""

    client_starts: Starts | None
    server_starts: Starts | None
    analyze: Analyzer


_PROTOCOLS = {
    "http": _Protocol(request_starts, response_starts, http_observations),
    "resp": _Protocol(command_starts, reply_starts, resp_observations),
    "tls": _Protocol(None, None, tls_observations),
    "ssh": _Protocol(None, None, ssh_observations),
}
PROTOCOL_OF_SERVICE = {
    "http": "http",
    "docker": "http",
    "redis": "resp",
    "https": "tls",
    "docker-tls": "tls",
    "kubernetes-api": "tls",
    "ssh": "ssh",
}
"""The protocol to try on a flow whose first bytes named none, by the well-known service of its server port."""


def _text(client: Side, server: Side, evidence: Evidence, hinted: bool) -> list[Observation]:
    return text_observations(client, "client", evidence, logins=True) + text_observations(server, "server", evidence)


_TEXT = _Protocol(None, None, _text)


def protocol_of(flow: Flow) -> tuple[_Protocol, bool]:
    """The protocol to parse a flow as, and whether its first bytes named it (else its server port did)."""
    hinted = _PROTOCOLS.get(flow.protocol or "")
    if hinted is not None:
        return hinted, True
    port = flow.server_port
    service = well_known_service(port, flow.transport) if port is not None else None
    return _PROTOCOLS.get(PROTOCOL_OF_SERVICE.get(service or ""), _TEXT), False


def observe(flow: Flow, payloads: FlowPayloads, evidence: Evidence, limit: int = DEFAULT_LIMIT) -> list[Observation]:
    """Everything one flow's kept payload shows."""
    protocol, hinted = protocol_of(flow)
    client = reassemble(payloads.segments(flow, Direction.CLIENT_TO_SERVER), flow.transport, protocol.client_starts, limit)
    server = reassemble(payloads.segments(flow, Direction.SERVER_TO_CLIENT), flow.transport, protocol.server_starts, limit)
    return protocol.analyze(client, server, evidence, hinted)


class _Tally:
    """The sightings of one finding so far."""

    __slots__ = ("clients", "count", "evidence", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None
        self.last: int | None = None
        self.clients: set[str] = set()
        self.evidence: dict[str, None] = {}

    def add(self, observation: Observation, client: str) -> None:
        ts = observation.ts_ns
        self.count += 1
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)
        self.clients.add(client)
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence[observation.evidence] = None


@dataclass(frozen=True)
class Inspection:
    """The inspection stage: flows and their kept payloads in, findings out. Picklable, so it travels to workers.

    ``networks`` names the VNIs as the Report does (``for_topology`` takes
    them from Docker metadata); ``stream_limit`` bounds the bytes reassembled
    per flow direction.
    """

    show_secrets: bool = False
    max_evidence_chars: int = 120
    networks: tuple[NetworkInfo, ...] = ()
    stream_limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.max_evidence_chars < 16:
            raise ValueError(f"max_evidence_chars must be at least 16, not {self.max_evidence_chars}")
        if not 0 < self.stream_limit < 1 << 31:
            raise ValueError(f"stream_limit must be between 1 and 2**31 - 1, not {self.stream_limit}")
        object.__setattr__(self, "networks", tuple(self.networks))

    @classmethod
    def for_topology(cls, topology: Topology, *, show_secrets: bool = False, max_evidence_chars: int = 120) -> Inspection:
        """An inspection naming networks as a scan with ``topology`` names them in its Report."""
        infos, _ = declarations(topology, ())
        return cls(show_secrets=show_secrets, max_evidence_chars=max_evidence_chars, networks=infos)

    def __call__(self, flows: Sequence[Flow], payloads: FlowPayloads) -> list[Finding]:
        evidence = Evidence(self.show_secrets, self.max_evidence_chars)
        tallies: dict[tuple, _Tally] = {}
        inspected = list(payloads.flows())
        names = self._network_names({flow.vni for flow in inspected if flow.vni is not None})
        for flow in inspected:
            network = names.get(flow.vni) if flow.vni is not None else None
            client = split_endpoint(flow.client)[0]
            service, server = flow.service, flow.server
            for observation in observe(flow, payloads, evidence, self.stream_limit):
                key = (flow.vni, network, service, server, observation.protocol, observation.kind)
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = _Tally()
                tally.add(observation, client)
        return [_finding(key, tally) for key, tally in tallies.items()]

    def _network_names(self, vnis: Iterable[int]) -> dict[int, str]:
        known = {info.vni: info for info in self.networks}
        rows = networks([known.get(vni, NetworkInfo(vni)) for vni in vnis], (), {}, ())
        return {row.vni: row.name for row in rows}


def _finding(key: tuple, tally: _Tally) -> Finding:
    vni, network, service, server, protocol, kind = key
    return Finding(
        vni=vni,
        network=network,
        service=service,
        server=server,
        clients=tuple(tally.clients),
        protocol=protocol,
        kind=kind.value,
        severity=SEVERITY[kind],
        evidence=tuple(tally.evidence),
        count=tally.count,
        first_ts=tally.first,
        last_ts=tally.last,
    )
