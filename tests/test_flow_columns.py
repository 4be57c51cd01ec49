"""FlowColumns: the columns agree with the Flow values rendered from them, on real captures."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES, corpus_captures
from vxlaninspect.addresses import endpoint_order, ip_words, split_endpoint
from vxlaninspect.findings import Inspection
from vxlaninspect.flow import PORTED_TRANSPORTS, PROTOCOL_BY_HINT, Flow
from vxlaninspect.flow_columns import EMPTY_FLOWS, FlowColumns, transport_number
from vxlaninspect.networks import services
from vxlaninspect.report import Report
from vxlaninspect.scanning import scan
from vxlaninspect.topology import EMPTY_TOPOLOGY, load_topology

STORIES = ["swarm-plaintext", "swarm-encrypted", "secure-vs-insecure", "misconfigured", "lab-capture"]


def _captures() -> list[Path]:
    return corpus_captures() + [SAMPLES / name / "capture.pcap" for name in STORIES]


def _report(path: Path) -> Report:
    if not path.exists():
        pytest.skip(f"{path} not found")
    topology = load_topology([path.parent]) if (path.parent / "network-inspect.json").exists() else EMPTY_TOPOLOGY
    return scan(path, topology=topology, inspect=Inspection.for_topology(topology))


def _services_of_values(flows: list[Flow]) -> list[tuple]:
    """Services grouped from Flow values one by one: what the columnar grouping must match."""
    names = [name for name, _ in PROTOCOL_BY_HINT]
    groups: dict[tuple, list[Flow]] = {}
    for flow in flows:
        if flow.transport in PORTED_TRANSPORTS:
            ip, port = split_endpoint(flow.server)
            groups.setdefault((flow.vni, ip, port, flow.transport), []).append(flow)
    rows = []
    for (vni, ip, port, transport), members in groups.items():
        protocols = sorted({f.protocol for f in members if f.protocol}, key=lambda p: (names.index(p) if p in names else len(names), p))
        rows.append(
            (
                vni, ip, port, transport, min((f.service for f in members if f.service), default=None),
                protocols[0] if protocols else None, any(f.payload_bytes for f in members), len(members),
                len({split_endpoint(f.client)[0] for f in members}), sum(f.packets for f in members),
                sum(f.bytes for f in members), sum(f.payload_bytes for f in members),
                min(f.first_ts for f in members), max(f.last_ts for f in members),
            )
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r[0] is None, r[0] or 0, r[1], r[2], r[3]))


def _numeric_order(flow: Flow) -> tuple:
    underlay = tuple(w for ip in flow.underlay for w in ip_words(ip)) if flow.underlay else (0, 0, 0, 0)
    return (
        flow.vni is None, flow.vni or 0, underlay, transport_number(flow.transport),
        endpoint_order(flow.a), endpoint_order(flow.b),
    )  # fmt: skip


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name if "external" in str(p) else p.parent.name)
def test_columns_agree_with_the_flows_rendered_from_them(path: Path) -> None:
    flows = _report(path).flows
    rendered = list(flows)
    assert len(rendered) == len(flows)
    assert rendered == sorted(rendered, key=_numeric_order)
    assert flows.client_side.tolist() == [f.client_side for f in rendered]
    codes, vocabulary = flows.protocol_codes()
    assert [vocabulary[code] for code in codes.tolist()] == [f.protocol for f in rendered]
    assert flows.count_by_vni() == {
        vni: sum(f.vni == vni for f in rendered) for vni in {f.vni for f in rendered if f.vni is not None}
    }
    got = [
        (
            s.vni, s.ip, s.port, s.transport, s.name, s.protocol, s.leaked, s.flows, s.clients, s.packets, s.bytes,
            s.payload_bytes, s.first_ts, s.last_ts,
        )
        for s in services(flows)
    ]  # fmt: skip
    assert got == _services_of_values(rendered)


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name if "external" in str(p) else p.parent.name)
def test_flow_values_turn_back_into_the_same_columns(path: Path) -> None:
    flows = _report(path).flows
    again = FlowColumns.from_flows(reversed(list(flows)))
    assert again == flows and list(again) == list(flows)
    assert pickle.loads(pickle.dumps(flows)) == flows


def test_adding_columns_adds_the_counts_of_each_flow() -> None:
    flows = _report(SAMPLES / "swarm-plaintext" / "capture.pcap").flows
    assert len(flows) > 2
    half = len(flows) // 2
    first, second = FlowColumns.from_flows(flows[:half]), FlowColumns.from_flows(flows[half:])
    assert first + second == flows == second + first
    doubled = flows + flows
    assert [f.key for f in doubled] == [f.key for f in flows]
    assert doubled.counts[:, 2:8].tolist() == (2 * flows.counts[:, 2:8]).tolist()  # packets, bytes, payload: doubled
    assert doubled.counts[:, [0, 1, 8, 9, 10]].tolist() == flows.counts[:, [0, 1, 8, 9, 10]].tolist()  # times, marks
    assert flows + EMPTY_FLOWS == flows == EMPTY_FLOWS + flows


def test_inspected_protocols_mark_the_flows_of_that_server() -> None:
    flows = _report(SAMPLES / "swarm-plaintext" / "capture.pcap").flows
    ported = [f for f in flows if f.transport in PORTED_TRANSPORTS]
    target = ported[0]
    marked = flows.with_inspected({(target.vni, target.server): "redis"})
    expected = [(f.key, "redis" if (f.vni, f.server) == (target.vni, target.server) else f.inspected) for f in flows]
    assert [(f.key, f.inspected) for f in marked] == expected
    assert any(f.inspected == "redis" for f in marked)
    codes, vocabulary = marked.protocol_codes()
    assert [vocabulary[code] for code in codes.tolist()] == [f.protocol for f in marked]


def test_take_renders_just_the_flows_asked_for() -> None:
    flows = _report(SAMPLES / "swarm-plaintext" / "capture.pcap").flows
    fresh = FlowColumns(flows.keys, flows.counts, flows.names, flows.inspected)
    picked = fresh.take(np.array([len(fresh) - 1, 0]))
    assert "_flows" not in fresh.__dict__
    assert picked == (flows[len(flows) - 1], flows[0])
