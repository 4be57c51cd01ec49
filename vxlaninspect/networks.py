"""Overlay networks and the services in them, derived from tunnels and flows, with a verdict each.

What is known of a VNI besides its traffic (its name, subnets, whether metadata
declares it encrypted or the caller expects it to be) is a ``NetworkInfo``;
its traffic is in the tunnels (per VNI) and flows. ``networks()`` joins them
into one ``Network`` row per VNI, ``services()`` groups flows by server.

Verdicts:

``plaintext``   cleartext overlay traffic carried application payload;
``no-payload``  cleartext overlay traffic, but only handshakes, ARP, ICMP;
``encrypted``   declared or expected encrypted, not seen in cleartext, and ESP
                crossed between the nodes;
``violation``   declared or expected encrypted, yet seen in cleartext;
``unseen``      neither seen in cleartext nor shown encrypted by ESP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .addresses import ip_text, join_endpoint
from .flow import transport_name
from .flow_columns import BYTES, FIRST_TS, LAST_TS, PACKETS, PAYLOAD, FlowColumns
from .merging import pick_known
from .tunnels import ESP_ENCAPS, OVERLAY_ENCAPS, Tunnel
from .well_known import well_known_service


class Verdict(str, Enum):
    PLAINTEXT = "plaintext"
    NO_PAYLOAD = "no-payload"
    ENCRYPTED = "encrypted"
    VIOLATION = "violation"
    UNSEEN = "unseen"


@dataclass(frozen=True)
class NetworkInfo:
    """What is known of one VNI besides its traffic."""

    vni: int
    name: str | None = None  # from metadata
    subnets: tuple[str, ...] = ()
    declared_encrypted: bool = False  # metadata marks the network encrypted
    expected_encrypted: bool = False  # the caller expects it encrypted
    evicted_flows: int = 0  # flows of this VNI dropped from the flow table to stay within its bound

    def __add__(self, other: NetworkInfo) -> NetworkInfo:
        if other.vni != self.vni:
            raise ValueError(f"cannot add what is known of VNI {self.vni} and VNI {other.vni}")
        if self.name is None or other.name is None:
            name = self.name if other.name is None else other.name
        else:
            name = min(self.name, other.name)
        return NetworkInfo(
            vni=self.vni,
            name=name,
            subnets=tuple(sorted(set(self.subnets) | set(other.subnets))),
            declared_encrypted=self.declared_encrypted or other.declared_encrypted,
            expected_encrypted=self.expected_encrypted or other.expected_encrypted,
            evicted_flows=self.evicted_flows + other.evicted_flows,
        )


@dataclass(frozen=True)
class Service:
    """A server (address, port, transport) in one VNI, with the flows it answered."""

    vni: int | None
    ip: str
    port: int
    transport: str
    name: str | None
    protocol: str | None
    leaked: bool  # application payload crossed in cleartext
    flows: int
    clients: int  # distinct client addresses
    packets: int
    bytes: int
    payload_bytes: int
    first_ts: int
    last_ts: int

    @property
    def label(self) -> str:
        """The name, else ``ip:port``."""
        return self.name or join_endpoint(self.ip, self.port)


@dataclass(frozen=True)
class Network:
    """One VNI: what is known of it, what crossed, and the verdict."""

    vni: int
    name: str
    subnets: tuple[str, ...]
    declared_encrypted: bool
    expected_encrypted: bool
    verdict: Verdict
    packets: int  # cleartext overlay packets
    bytes: int
    payload_packets: int
    payload_bytes: int
    flows: int  # including evicted ones
    evicted_flows: int
    services: tuple[str, ...]  # labels of the services seen in it
    spis: tuple[int, ...]  # SPIs of the ESP that makes an encrypted verdict
    rotations: int  # key rotations among those SPIs
    first_ts: int | None
    last_ts: int | None

    @property
    def subnet(self) -> str | None:
        return self.subnets[0] if self.subnets else None


def services(flows: FlowColumns) -> tuple[Service, ...]:
    """One ``Service`` per (VNI, server address, port, transport) of the TCP/UDP/SCTP flows."""
    rows = np.flatnonzero(flows.ported)
    if not len(rows):
        return ()
    server = flows.server_words[rows]
    columns = (flows.vni[rows], server[:, 0], server[:, 1], flows.server_port[rows], flows.proto[rows])
    order, starts = _runs(columns)
    members = np.diff(np.append(starts, len(rows)))
    group_of = np.empty(len(rows), dtype=np.int64)
    group_of[order] = np.repeat(np.arange(len(starts)), members)

    def per_group(ufunc: np.ufunc, values: np.ndarray) -> list[int]:
        return ufunc.reduceat(values[rows][order], starts).tolist()

    packets = per_group(np.add, flows.pair_sum(PACKETS))
    sizes = per_group(np.add, flows.pair_sum(BYTES))
    payload = per_group(np.add, flows.pair_sum(PAYLOAD))
    first = per_group(np.minimum, flows.counts[:, FIRST_TS])
    last = per_group(np.maximum, flows.counts[:, LAST_TS])
    client = flows.client_words[rows]
    client_order, client_starts = _runs((group_of, client[:, 0], client[:, 1]))
    clients = np.bincount(group_of[client_order[client_starts]], minlength=len(starts)).tolist()
    groups = list(zip(*(column[order[starts]].tolist() for column in columns)))
    codes, vocabulary = flows.protocol_codes()
    best = [vocabulary[code] for code in per_group(np.minimum, codes)]
    known = [well_known_service(port, transport_name(proto)) for _, _, _, port, proto in groups]
    named = _service_names(flows, rows, group_of, known)
    result = []
    for g, (vni, hi, lo, port, proto) in enumerate(groups):
        transport = transport_name(proto)
        result.append(
            Service(
                vni=None if vni < 0 else vni,
                ip=ip_text(hi, lo),
                port=port,
                transport=transport,
                name=named[g],
                protocol=best[g],
                leaked=payload[g] > 0,
                flows=int(members[g]),
                clients=clients[g],
                packets=packets[g],
                bytes=sizes[g],
                payload_bytes=payload[g],
                first_ts=first[g],
                last_ts=last[g],
            )
        )
    return tuple(sorted(result, key=lambda s: (s.vni is None, s.vni or 0, s.ip, s.port, s.transport)))


def _runs(columns: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts rows by ``columns`` (the first most significant), and where in it each run of equal rows starts."""
    order = np.lexsort(columns[::-1])
    differs = np.zeros(len(order), dtype=bool)
    differs[:1] = True
    for column in columns:
        ordered = column[order]
        differs[1:] |= ordered[1:] != ordered[:-1]
    return order, np.flatnonzero(differs)


def _service_names(flows: FlowColumns, rows: np.ndarray, group_of: np.ndarray, known: list[str | None]) -> list[str | None]:
    """Per group of ``rows``, the first in sort order of its servers' names from metadata, and of the
    well-known name of its port when a member has no name from metadata."""
    if flows.names is None:
        return list(known)
    names = np.array(flows.server_names(), dtype=object)[rows]
    named = names != None  # noqa: E711 (elementwise)
    unnamed = np.bincount(group_of[~named], minlength=len(known)) > 0
    chosen = [k if missing else None for k, missing in zip(known, unnamed.tolist())]
    for g, name in zip(group_of[named].tolist(), names[named].tolist()):
        chosen[g] = pick_known(min, chosen[g], name)
    return chosen


def encryption_evidence(tunnels: Iterable[Tunnel]) -> tuple[Tunnel, ...]:
    """The ESP tunnels that show overlays encrypted: those between known nodes if any are, else all."""
    esp = [t for t in tunnels if t.encap in ESP_ENCAPS]
    between_nodes = [t for t in esp if t.src_node and t.dst_node]
    return tuple(between_nodes or esp)


def verdict(info: NetworkInfo, cleartext_packets: int, payload_packets: int, esp: bool) -> Verdict:
    """The verdict on a VNI from what crossed in cleartext and whether ESP crossed between the nodes."""
    must_encrypt = info.declared_encrypted or info.expected_encrypted
    if cleartext_packets:
        if must_encrypt:
            return Verdict.VIOLATION
        return Verdict.PLAINTEXT if payload_packets else Verdict.NO_PAYLOAD
    if must_encrypt and esp:
        return Verdict.ENCRYPTED
    return Verdict.UNSEEN


def networks(
    infos: Iterable[NetworkInfo],
    tunnels: Iterable[Tunnel],
    flow_counts: Mapping[int, int],
    service_rows: Iterable[Service],
) -> tuple[Network, ...]:
    """One ``Network`` per VNI known or seen in cleartext, sorted by VNI; ``flow_counts``: flows held per VNI."""
    tunnels = tuple(tunnels)
    known = {info.vni: info for info in infos}
    traffic: dict[int, list] = {}
    for tunnel in tunnels:
        if tunnel.encap in OVERLAY_ENCAPS:
            for t in tunnel.vni_traffic:
                traffic.setdefault(t.vni, []).append(t)
    labels: dict[int, set[str]] = {}
    for service in service_rows:
        if service.vni is not None:
            labels.setdefault(service.vni, set()).add(service.label)
    evidence = encryption_evidence(tunnels)
    spis = tuple(sorted({spi for t in evidence for spi in t.spis}))
    rotations = sum(len(t.rotations) for t in evidence)
    rows = []
    for vni in sorted(set(known) | set(traffic)):
        info = known.get(vni, NetworkInfo(vni))
        seen = traffic.get(vni, [])
        packets = sum(t.packets for t in seen)
        payload_packets = sum(t.payload_packets for t in seen)
        v = verdict(info, packets, payload_packets, bool(evidence))
        shown_encrypted = v == Verdict.ENCRYPTED
        rows.append(
            Network(
                vni=vni,
                name=info.name or f"vni-{vni}",
                subnets=info.subnets,
                declared_encrypted=info.declared_encrypted,
                expected_encrypted=info.expected_encrypted,
                verdict=v,
                packets=packets,
                bytes=sum(t.bytes for t in seen),
                payload_packets=payload_packets,
                payload_bytes=sum(t.payload_bytes for t in seen),
                flows=flow_counts.get(vni, 0) + info.evicted_flows,
                evicted_flows=info.evicted_flows,
                services=tuple(sorted(labels.get(vni, ()))),
                spis=spis if shown_encrypted else (),
                rotations=rotations if shown_encrypted else 0,
                first_ts=min((t.first_ts for t in seen), default=None),
                last_ts=max((t.last_ts for t in seen), default=None),
            )
        )
    return tuple(rows)
