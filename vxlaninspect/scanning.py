"""The pipeline: captures in, one Report out.

Each capture is decoded chunk by chunk; every chunk updates the capture's flow
table (with the first payload bytes of each flow direction when an inspection
stage is given), its tunnel table and its packet counts while the chunk's
buffer is in memory, on a thread of its own while the next chunk is decoded
(the compiled passes release the GIL). At the end of a capture the tables are rendered, the
inspection stage (if any) turns flows and payloads into findings, and the
capture's Report is complete. The Report of several captures is the sum of
theirs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from .capture import DEFAULT_CHUNK_BYTES, open_capture
from .config import DEFAULT_CONFIG, DecodeConfig
from .errors import CaptureError
from .flow import Flow, Namer
from .flow_columns import FlowColumns
from .flows import (
    DEFAULT_MAX_FLOWS,
    DEFAULT_PAYLOAD_PER_DIRECTION,
    DEFAULT_PAYLOAD_TOTAL,
    FlowPayloads,
    FlowTable,
)
from .kernel import decode_batch
from .networks import NetworkInfo
from .report import CaptureInfo, Finding, Report, Stats
from .row_buffers import RowBuffers
from .schema import Encap, Status
from .topology import EMPTY_TOPOLOGY, Topology
from .tunnels import DEFAULT_MAX_ENTRIES, PacketTotals, TunnelTable

Source = str | os.PathLike[str] | BinaryIO
Inspector = Callable[[Sequence[Flow], FlowPayloads], Iterable[Finding]]
"""The inspection stage: flows of a capture and their kept payloads in, findings out."""
Progress = Callable[[int, int], None]
"""Called with (bytes of capture files done, total bytes; 0 when unknown) as a scan advances."""


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a scan's memory in check whatever the captures hold."""

    max_flows: int = DEFAULT_MAX_FLOWS  # flows held per capture; the least recently seen are evicted beyond
    payload_per_direction: int = DEFAULT_PAYLOAD_PER_DIRECTION  # payload bytes kept per flow direction
    payload_total: int = DEFAULT_PAYLOAD_TOTAL  # payload bytes kept per capture
    max_tunnel_entries: int = DEFAULT_MAX_ENTRIES  # (direction, encapsulation, VNI or SPI) entries per capture
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # capture bytes decoded at a time

    def __post_init__(self) -> None:
        for name in ("max_flows", "max_tunnel_entries", "chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("payload_per_direction", "payload_total"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, not {getattr(self, name)}")


DEFAULT_LIMITS = Limits()


def scan(
    sources: Source | Iterable[Source],
    *,
    config: DecodeConfig = DEFAULT_CONFIG,
    topology: Topology = EMPTY_TOPOLOGY,
    expect_encrypted: Iterable[int | str] = (),
    limits: Limits = DEFAULT_LIMITS,
    inspect: Inspector | None = None,
    progress: Progress | None = None,
) -> Report:
    """Scan captures into one Report.

    ``sources``: a path, ``"-"``, a binary file object, or several of them.
    ``expect_encrypted``: networks that must be encrypted, by VNI or by name or
    ID in ``topology``. A capture that cannot be read to its end is recorded
    with its error in ``Report.captures`` (everything before the damage is
    counted); nothing is raised for it.
    """
    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "read"):
        sources = [sources]
    sources = list(sources)
    declared, warnings = declarations(topology, expect_encrypted)
    sizes = [_size(source) for source in sources]
    total = sum(sizes)
    done = 0
    report = None
    for source, size in zip(sources, sizes):
        step = None
        if progress is not None:
            base = done

            def step(position: int, base: int = base, size: int = size) -> None:
                progress(base + min(position, size), total)

        part = scan_capture(
            source, config=config, topology=topology, declared=declared, warnings=warnings, limits=limits,
            inspect=inspect, progress=step,
        )  # fmt: skip
        report = part if report is None else report + part
        done += size
        if progress is not None:
            progress(done, total)
    return report if report is not None else Report(network_info=declared, warnings=warnings)


def scan_capture(
    source: Source,
    *,
    config: DecodeConfig = DEFAULT_CONFIG,
    topology: Topology = EMPTY_TOPOLOGY,
    declared: tuple[NetworkInfo, ...] = (),
    warnings: tuple[str, ...] = (),
    limits: Limits = DEFAULT_LIMITS,
    inspect: Inspector | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """The Report of one capture, with what is ``declared`` of networks and the ``warnings`` of the metadata.

    ``progress`` gets the capture bytes read so far (uncompressed files only).
    """
    started = time.perf_counter()
    flows = FlowTable(limits.max_flows, limits.payload_per_direction, limits.payload_total)
    tunnels = TunnelTable(limits.max_tunnel_entries)
    tables = RowBuffers()
    try:
        capture = open_capture(source, chunk_bytes=limits.chunk_bytes)
    except CaptureError as error:
        info = CaptureInfo(error.path, None, None, (), 0, 0, None, None, error.reason, error.offset)
        return Report(captures=(info,), network_info=declared, warnings=warnings)
    error = None
    with capture, ThreadPoolExecutor(max_workers=1) as tables_thread:
        counted: Future | None = None  # the previous chunk, being added to the tables
        try:
            for batch in capture.batches():
                rows = decode_batch(batch, config, out=tables.take(len(batch)))
                if counted is not None:
                    counted.result()
                counted = tables_thread.submit(_count, flows, tunnels, rows, batch.data if inspect is not None else None)
                if progress is not None and capture.compression == "none" and len(rows):
                    progress(int(rows["rec_offset"][-1]) + int(rows["caplen"][-1]))
        except CaptureError as damage:
            error = damage
        finally:
            if counted is not None:
                counted.result()
    info = CaptureInfo(
        path=capture.path,
        format=capture.format,
        compression=capture.compression,
        linktypes=tuple(sorted(capture.linktypes)),
        packets=capture.packets,
        bytes=capture.bytes,
        first_ts=capture.first_ts_ns,
        last_ts=capture.last_ts_ns,
        error=error.reason if error else None,
        error_offset=error.offset if error else None,
    )
    rendered, payloads = flows.render(_namer(topology))
    findings = tuple(inspect(rendered, payloads)) if inspect is not None else ()
    evicted = tuple(NetworkInfo(vni, evicted_flows=count) for vni, count in flows.evicted.items() if vni is not None)
    rendered = refine_protocols(rendered, findings)
    tunnel_rows = tunnels.render(topology.node_name)
    stats = replace(
        packet_stats(tunnels.totals),
        evicted_flows=flows.evicted_total,
        inspected_bytes=payloads.kept_bytes,
        seconds=time.perf_counter() - started,
    )
    if flows.evicted_total:
        warnings += (
            (
                f"{info.path}: more than {limits.max_flows} flows; {flows.evicted_total} least recently seen "
                "were dropped from the flow list (their packets are still counted)"
            ),
        )
    return Report(
        captures=(info,),
        stats=stats,
        network_info=declared + evicted,
        tunnels=tunnel_rows,
        flows=rendered,
        findings=findings,
        warnings=warnings,
    )


def _count(flows: FlowTable, tunnels: TunnelTable, rows: np.ndarray, data: np.ndarray | None) -> None:
    """Add a chunk's packet table to the tables (on a thread of its own, while the next chunk is decoded)."""
    flows.add(rows, data)
    tunnels.add(rows)


def declarations(topology: Topology, expect_encrypted: Iterable[int | str]) -> tuple[tuple[NetworkInfo, ...], tuple[str, ...]]:
    """What the metadata and the caller say of each VNI, and warnings for expectations that name nothing."""
    expected: set[int] = set()
    warnings = list(topology.warnings)
    for wanted in expect_encrypted:
        if isinstance(wanted, int):
            expected.add(wanted)
            continue
        network = topology.network_named(wanted)
        if network is not None and network.vnis:
            expected.update(network.vnis)
        elif network is not None:
            warnings.append(f"network {wanted!r} is expected encrypted but has no VXLAN ID in the metadata")
        elif wanted.isdigit():
            expected.add(int(wanted))
        else:
            warnings.append(f"network {wanted!r} is expected encrypted but is not in the metadata")
    infos = [
        NetworkInfo(vni, n.name, n.subnets, n.declared_encrypted, vni in expected)
        for n in topology.networks
        for vni in n.vnis
    ]
    infos += [NetworkInfo(vni, expected_encrypted=True) for vni in sorted(expected)]
    merged: dict[int, NetworkInfo] = {}
    for info in infos:
        merged[info.vni] = merged[info.vni] + info if info.vni in merged else info
    return tuple(merged.values()), tuple(warnings)


def refine_protocols(flows: FlowColumns, findings: Iterable[Finding]) -> FlowColumns:
    """Flows whose server has a finding, marked with the protocol the finding names."""
    protocols: dict[tuple[int | None, str], str] = {}
    for finding in findings:
        key = (finding.vni, finding.server)
        protocols[key] = min(protocols.get(key, finding.protocol), finding.protocol)
    return flows.with_inspected(protocols)


def packet_stats(totals: PacketTotals) -> Stats:
    """The Report's packet counts from a tunnel table's totals."""
    encaps, statuses = totals.by_encap, totals.by_status
    return Stats(
        packets=totals.packets,
        bytes=totals.bytes,
        vxlan_packets=encaps[Encap.VXLAN] + encaps[Encap.VXLAN_GPE],
        geneve_packets=encaps[Encap.GENEVE],
        esp_packets=encaps[Encap.ESP] + encaps[Encap.ESP_UDP],
        ike_packets=encaps[Encap.IKE] + encaps[Encap.NAT_KEEPALIVE],
        underlay_packets=encaps[Encap.NONE],
        non_ip_packets=totals.non_ip,
        decode_errors=statuses[Status.MALFORMED] + statuses[Status.TOO_DEEP],
        unsupported=statuses[Status.UNSUPPORTED],
        truncated=statuses[Status.TRUNCATED],
        payload_truncated=totals.payload_truncated,
        fragments=totals.fragments,
        untracked_tunnel_packets=totals.untracked_packets,
    )


def _namer(topology: Topology) -> Namer | None:
    """Names endpoints from ``topology``; None when it names none."""
    if not topology.endpoints:
        return None

    def name(vni: int | None, ip: str) -> str | None:
        network = topology.network_by_vni(vni) if vni is not None else None
        endpoint = topology.endpoint(network.name if network else None, ip)
        return endpoint.service if endpoint else None

    return name


def _size(source: Source) -> int:
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
        try:
            return os.path.getsize(source)
        except OSError:
            return 0
    return 0
