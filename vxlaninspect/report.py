"""The Report: everything a scan found, mergeable, and its JSON form (``vxlaninspect.report/1``).

A Report keeps counts, not conclusions: networks, services, roles and verdicts
are derived from the counts when asked for, so ``a + b`` (one rule: sum counts,
take the earliest first and latest last times, unite sets) gives the Report of
the whole however the traffic was split between ``a`` and ``b``. ``to_dict`` and
``from_dict`` round-trip through JSON; ``report.schema.json`` beside this
module is the JSON Schema of ``to_dict()``.

Times are integers (nanoseconds since the epoch) in Python, and ISO 8601 UTC
strings with nanoseconds (``"2024-05-01T12:00:00.123456789Z"``) in JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any

from .addresses import endpoint_order
from .flow import Flow
from .flow_columns import EMPTY_FLOWS, FlowColumns
from .merging import pick_known
from .networks import Network, NetworkInfo, Service, networks, services
from .schema import AppHint
from .tunnels import SpiTraffic, Tunnel, VniTraffic

SCHEMA = "vxlaninspect.report/1"
MAX_EVIDENCE = 8
"""Evidence strings a finding keeps: the first ones, in order, without repeats."""

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ts_text(ns: int | None) -> str | None:
    """``"2024-05-01T12:00:00.123456789Z"`` for nanoseconds since the epoch."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, _NS)
    return f"{_second_text(seconds)}.{fraction:09d}Z"


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def ts_value(text: str | None) -> int | None:
    """The nanoseconds since the epoch that ``ts_text`` wrote as ``text``."""
    if text is None:
        return None
    whole, _, fraction = text.rstrip("Z").partition(".")
    return _second_value(whole) * _NS + int(fraction.ljust(9, "0")[:9] or 0)


@lru_cache(maxsize=4096)
def _second_value(text: str) -> int:
    """Seconds since the epoch of ``"2024-05-01T12:00:00"`` (UTC): the inverse of ``_second_text``."""
    moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return (moment - _EPOCH).days * 86400 + (moment - _EPOCH).seconds


class Severity(str, Enum):
    """How bad a finding is, worst first."""

    CREDENTIAL = "credential"
    DATA = "data"
    METADATA = "metadata"


_SEVERITY_RANK = {s: k for k, s in enumerate(Severity)}


@dataclass(frozen=True)
class Finding:
    """Something that leaked: what, from which server, to which clients, how badly."""

    vni: int | None
    network: str | None
    service: str | None
    server: str  # "ip:port"
    clients: tuple[str, ...]  # client addresses, sorted
    protocol: str
    kind: str
    severity: Severity
    evidence: tuple[str, ...]  # short, escaped, secrets redacted; at most MAX_EVIDENCE
    count: int
    first_ts: int | None
    last_ts: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "clients", tuple(sorted(set(self.clients))))
        object.__setattr__(self, "evidence", tuple(dict.fromkeys(self.evidence))[:MAX_EVIDENCE])

    @property
    def key(self) -> tuple:
        return (self.vni, self.network, self.service, self.server, self.protocol, self.kind, self.severity)

    def __add__(self, other: Finding) -> Finding:
        if other.key != self.key:
            raise ValueError(f"cannot add two different findings: {self.key} and {other.key}")
        return Finding(
            vni=self.vni,
            network=self.network,
            service=self.service,
            server=self.server,
            clients=self.clients + other.clients,
            protocol=self.protocol,
            kind=self.kind,
            severity=self.severity,
            evidence=self.evidence + other.evidence,
            count=self.count + other.count,
            first_ts=pick_known(min, self.first_ts, other.first_ts),
            last_ts=pick_known(max, self.last_ts, other.last_ts),
        )


@dataclass(frozen=True)
class CaptureInfo:
    """One capture file as read: its format, size, time span, and the error that stopped it, if any."""

    path: str
    format: str | None  # "pcap", "pcapng", ...; None when it could not be opened
    compression: str | None
    linktypes: tuple[int, ...]
    packets: int
    bytes: int
    first_ts: int | None
    last_ts: int | None
    error: str | None = None  # why reading stopped early; what came before it is counted
    error_offset: int | None = None  # byte of the (decompressed) capture where it stopped


@dataclass(frozen=True)
class Stats:
    """Packet counts over all captures."""

    packets: int = 0
    bytes: int = 0  # on the wire
    vxlan_packets: int = 0  # VXLAN and VXLAN-GPE
    geneve_packets: int = 0
    esp_packets: int = 0  # ESP and ESP in UDP
    ike_packets: int = 0  # IKE and NAT keepalives on UDP 4500
    underlay_packets: int = 0  # not tunnelled
    non_ip_packets: int = 0  # innermost frame not IP (ARP, ...)
    decode_errors: int = 0  # malformed, or nested too deep
    unsupported: int = 0  # a link type or protocol not decoded
    truncated: int = 0  # a header cut short by the snap length
    payload_truncated: int = 0  # payload cut short by the snap length (not an error)
    fragments: int = 0
    evicted_flows: int = 0
    untracked_tunnel_packets: int = 0  # beyond the tunnel table's bound
    inspected_bytes: int = 0  # payload bytes kept for inspection
    seconds: float = field(default=0.0, compare=False)  # time spent scanning

    def __add__(self, other: Stats) -> Stats:
        return Stats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def _merge(xs: Iterable, ys: Iterable, key: Callable) -> dict:
    merged = {}
    for item in (*xs, *ys):
        k = key(item)
        merged[k] = merged[k] + item if k in merged else item
    return merged


def _finding_order(f: Finding) -> tuple:
    """Worst first, then by every field of the key (None before any text)."""
    return (
        _SEVERITY_RANK[f.severity], f.vni is None, f.vni or 0, f.server, f.kind, f.protocol,
        f.network is not None, f.network or "", f.service is not None, f.service or "",
    )  # fmt: skip


@dataclass(frozen=True)
class Report:
    """What a scan found. Collections are kept sorted, so equal Reports compare equal."""

    captures: tuple[CaptureInfo, ...] = ()
    stats: Stats = Stats()
    network_info: tuple[NetworkInfo, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()
    flows: FlowColumns = EMPTY_FLOWS  # any iterable of ``Flow`` is taken, and held as ``FlowColumns``
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = (n for n in self.network_info if n != NetworkInfo(n.vni))  # a bare VNI adds nothing to its traffic
        canonical = {
            "network_info": sorted(known, key=lambda n: n.vni),
            "tunnels": sorted(self.tunnels, key=lambda t: t.key),
            "findings": sorted(self.findings, key=_finding_order),
            "warnings": dict.fromkeys(self.warnings),
        }
        for name, items in canonical.items():
            object.__setattr__(self, name, tuple(items))
        if not isinstance(self.flows, FlowColumns):
            object.__setattr__(self, "flows", FlowColumns.from_flows(self.flows))

    def __add__(self, other: Report) -> Report:
        return Report(
            captures=self.captures + other.captures,
            stats=self.stats + other.stats,
            network_info=tuple(_merge(self.network_info, other.network_info, lambda n: n.vni).values()),
            tunnels=tuple(_merge(self.tunnels, other.tunnels, lambda t: t.key).values()),
            flows=self.flows + other.flows,
            findings=tuple(_merge(self.findings, other.findings, lambda f: f.key).values()),
            warnings=self.warnings + other.warnings,
        )

    @cached_property
    def services(self) -> tuple[Service, ...]:
        return services(self.flows)

    @cached_property
    def networks(self) -> tuple[Network, ...]:
        return networks(self.network_info, self.tunnels, self.flows.count_by_vni(), self.services)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: plain dicts, lists, strings, numbers, booleans and None."""
        return {
            "schema": SCHEMA,
            "captures": [_capture_dict(c) for c in self.captures],
            "stats": {f.name: getattr(self.stats, f.name) for f in fields(self.stats)},
            "networks": [_network_dict(n) for n in self.networks],
            "tunnels": [_tunnel_dict(t) for t in self.tunnels],
            "services": [_service_dict(s) for s in self.services],
            "flows": [_flow_dict(f) for f in self.flows],
            "findings": [_finding_dict(f) for f in self.findings],
            "warnings": list(self.warnings),
        }

    def to_json(self, **dumps_options: Any) -> str:
        return json.dumps(self.to_dict(), **dumps_options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The Report whose ``to_dict()`` is ``data``; raises ``ValueError`` for another schema."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report: schema is {data.get('schema')!r}")
        return cls(
            captures=tuple(_capture_from(c) for c in data["captures"]),
            stats=Stats(**data["stats"]),
            network_info=tuple(_network_info_from(n) for n in data["networks"]),
            tunnels=tuple(_tunnel_from(t) for t in data["tunnels"]),
            flows=tuple(_flow_from(f) for f in data["flows"]),
            findings=tuple(_finding_from(f) for f in data["findings"]),
            warnings=tuple(data.get("warnings", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``Report.to_dict()``."""
    return json.loads(resources.files(__package__).joinpath("report.schema.json").read_text())


def _capture_dict(c: CaptureInfo) -> dict[str, Any]:
    return {
        "path": c.path,
        "format": c.format,
        "compression": c.compression,
        "linktypes": list(c.linktypes),
        "packets": c.packets,
        "bytes": c.bytes,
        "first_ts": ts_text(c.first_ts),
        "last_ts": ts_text(c.last_ts),
        "error": c.error,
        "error_offset": c.error_offset,
    }


def _capture_from(d: dict[str, Any]) -> CaptureInfo:
    return CaptureInfo(
        path=d["path"],
        format=d["format"],
        compression=d["compression"],
        linktypes=tuple(d["linktypes"]),
        packets=d["packets"],
        bytes=d["bytes"],
        first_ts=ts_value(d["first_ts"]),
        last_ts=ts_value(d["last_ts"]),
        error=d["error"],
        error_offset=d["error_offset"],
    )


def _network_dict(n: Network) -> dict[str, Any]:
    return {
        "vni": n.vni,
        "name": n.name,
        "subnet": n.subnet,
        "subnets": list(n.subnets),
        "declared_encrypted": n.declared_encrypted,
        "expected_encrypted": n.expected_encrypted,
        "verdict": n.verdict.value,
        "packets": n.packets,
        "bytes": n.bytes,
        "payload_packets": n.payload_packets,
        "payload_bytes": n.payload_bytes,
        "flows": n.flows,
        "evicted_flows": n.evicted_flows,
        "services": list(n.services),
        "spis": list(n.spis),
        "rotations": n.rotations,
        "first_ts": ts_text(n.first_ts),
        "last_ts": ts_text(n.last_ts),
    }


def _network_info_from(d: dict[str, Any]) -> NetworkInfo:
    vni = d["vni"]
    return NetworkInfo(
        vni=vni,
        name=None if d["name"] == f"vni-{vni}" else d["name"],
        subnets=tuple(d["subnets"]),
        declared_encrypted=d["declared_encrypted"],
        expected_encrypted=d["expected_encrypted"],
        evicted_flows=d["evicted_flows"],
    )


def _tunnel_dict(t: Tunnel) -> dict[str, Any]:
    return {
        "src": t.src,
        "dst": t.dst,
        "src_node": t.src_node,
        "dst_node": t.dst_node,
        "encap": t.encap,
        "vnis": list(t.vnis),
        "spis": list(t.spis),
        "packets": t.packets,
        "bytes": t.bytes,
        "first_ts": ts_text(t.first_ts),
        "last_ts": ts_text(t.last_ts),
        "vni_traffic": [
            {
                "vni": v.vni,
                "packets": v.packets,
                "bytes": v.bytes,
                "payload_packets": v.payload_packets,
                "payload_bytes": v.payload_bytes,
                "first_ts": ts_text(v.first_ts),
                "last_ts": ts_text(v.last_ts),
            }
            for v in t.vni_traffic
        ],
        "spi_traffic": [
            {
                "spi": s.spi,
                "packets": s.packets,
                "bytes": s.bytes,
                "first_ts": ts_text(s.first_ts),
                "last_ts": ts_text(s.last_ts),
            }
            for s in t.spi_traffic
        ],
        "rotations": [{"ts": ts_text(r.ts), "spi": r.spi} for r in t.rotations],
    }


def _tunnel_from(d: dict[str, Any]) -> Tunnel:
    return Tunnel(
        src=d["src"],
        dst=d["dst"],
        encap=d["encap"],
        src_node=d["src_node"],
        dst_node=d["dst_node"],
        packets=d["packets"],
        bytes=d["bytes"],
        first_ts=ts_value(d["first_ts"]),
        last_ts=ts_value(d["last_ts"]),
        vni_traffic=tuple(
            VniTraffic(
                v["vni"],
                v["packets"],
                v["bytes"],
                v["payload_packets"],
                v["payload_bytes"],
                ts_value(v["first_ts"]),
                ts_value(v["last_ts"]),
            )
            for v in d["vni_traffic"]
        ),
        spi_traffic=tuple(
            SpiTraffic(s["spi"], s["packets"], s["bytes"], ts_value(s["first_ts"]), ts_value(s["last_ts"]))
            for s in d["spi_traffic"]
        ),
    )


def _service_dict(s: Service) -> dict[str, Any]:
    return {
        "vni": s.vni,
        "ip": s.ip,
        "port": s.port,
        "transport": s.transport,
        "name": s.name,
        "protocol": s.protocol,
        "leaked": s.leaked,
        "flows": s.flows,
        "clients": s.clients,
        "packets": s.packets,
        "bytes": s.bytes,
        "payload_bytes": s.payload_bytes,
        "first_ts": ts_text(s.first_ts),
        "last_ts": ts_text(s.last_ts),
    }


_HINT_NAMES = tuple(
    tuple(hint.name.lower() for hint in AppHint if hint and bits & (1 << int(hint))) for bits in range(1 << (max(AppHint) + 1))
)


def _hint_names(bits: int) -> list[str]:
    return list(_HINT_NAMES[bits])


def _hint_bits(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << int(AppHint[name.upper()])
    return bits


def _flow_dict(f: Flow) -> dict[str, Any]:
    c = f.client_side
    s = 1 - c
    return {
        "vni": f.vni,
        "underlay": list(f.underlay) if f.underlay else None,
        "client": f.client,
        "server": f.server,
        "transport": f.transport,
        "protocol": f.protocol,
        "service": f.service,
        "packets": f.packets,
        "bytes": f.bytes,
        "payload_bytes": f.payload_bytes,
        "first_ts": ts_text(f.first_ts),
        "last_ts": ts_text(f.last_ts),
        "handshake": f.handshake,
        "client_packets": f.sent_packets[c],
        "server_packets": f.sent_packets[s],
        "client_bytes": f.sent_bytes[c],
        "server_bytes": f.sent_bytes[s],
        "client_payload_bytes": f.sent_payload[c],
        "server_payload_bytes": f.sent_payload[s],
        "client_syn": ts_text(f.syn_ts[c]),
        "server_syn": ts_text(f.syn_ts[s]),
        "client_synack": f.synack[c],
        "server_synack": f.synack[s],
        "client_hints": _hint_names(f.hints[c]),
        "server_hints": _hint_names(f.hints[s]),
        "client_name": f.names[c],
        "server_name": f.names[s],
        "inspected_protocol": f.inspected,
    }


def _flow_from(d: dict[str, Any]) -> Flow:
    if d["client"] == d["server"]:  # packets of such a flow all count as sent by side a
        client_first = d["client_packets"] >= d["server_packets"]
    else:
        client_first = endpoint_order(d["client"]) < endpoint_order(d["server"])
    sides = ("client", "server") if client_first else ("server", "client")

    def pair(suffix: str, convert: Callable = lambda x: x) -> tuple:
        return tuple(convert(d[f"{side}_{suffix}"]) for side in sides)

    return Flow(
        vni=d["vni"],
        underlay=tuple(d["underlay"]) if d["underlay"] else None,
        transport=d["transport"],
        a=d[sides[0]],
        b=d[sides[1]],
        first_ts=ts_value(d["first_ts"]),
        last_ts=ts_value(d["last_ts"]),
        sent_packets=pair("packets"),
        sent_bytes=pair("bytes"),
        sent_payload=pair("payload_bytes"),
        syn_ts=pair("syn", ts_value),
        synack=pair("synack"),
        hints=pair("hints", _hint_bits),
        names=pair("name"),
        inspected=d["inspected_protocol"],
    )


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "vni": f.vni,
        "network": f.network,
        "service": f.service,
        "server": f.server,
        "clients": list(f.clients),
        "protocol": f.protocol,
        "kind": f.kind,
        "severity": f.severity.value,
        "evidence": list(f.evidence),
        "count": f.count,
        "first_ts": ts_text(f.first_ts),
        "last_ts": ts_text(f.last_ts),
    }


def _finding_from(d: dict[str, Any]) -> Finding:
    return Finding(
        vni=d["vni"],
        network=d["network"],
        service=d["service"],
        server=d["server"],
        clients=tuple(d["clients"]),
        protocol=d["protocol"],
        kind=d["kind"],
        severity=Severity(d["severity"]),
        evidence=tuple(d["evidence"]),
        count=d["count"],
        first_ts=ts_value(d["first_ts"]),
        last_ts=ts_value(d["last_ts"]),
    )
