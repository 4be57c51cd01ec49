"""The pipeline: split-and-merge equality, damaged and unreadable captures, progress, the inspection hook."""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, SAMPLES
from tests.test_flows import pcap_records
from vxlaninspect.flow import Flow
from vxlaninspect.flows import Direction, FlowPayloads
from vxlaninspect.report import Finding, Report
from vxlaninspect import scanning
from vxlaninspect.findings import Inspection
from vxlaninspect.scanning import Limits, scan
from vxlaninspect.topology import load_topology

SPLIT_CAPTURES = [
    SAMPLES / "swarm-plaintext" / "capture.pcap",
    SAMPLES / "swarm-encrypted" / "capture.pcap",
    SAMPLES / "lab-capture" / "capture.pcap",
    CORPUS / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap",
    CORPUS / "arkime__wireshark-esp.pcap",
    CORPUS / "tcpdump__resp_3_malicious.pcap",
]


def without_captures(report: Report) -> dict:
    """Everything a Report says but which files it came from and how long it took."""
    data = report.to_dict()
    data.pop("captures")
    data["stats"].pop("seconds")
    return data


def write_pieces(path: Path, cuts: Sequence[int], directory: Path) -> list[Path]:
    """The records of ``path`` cut at ``cuts`` into pcap files of their own (same header)."""
    header, records = pcap_records(path)
    bounds = [0, *cuts, len(records)]
    pieces = []
    for k, (start, end) in enumerate(pairwise(bounds)):
        piece = directory / f"piece-{k}.pcap"
        piece.write_bytes(header + b"".join(h + d for h, d in records[start:end]))
        pieces.append(piece)
    return pieces


@pytest.mark.parametrize("path", SPLIT_CAPTURES, ids=lambda p: p.name if "external" in str(p) else p.parent.name)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_report_of_a_capture_is_the_sum_of_the_reports_of_its_pieces(path: Path, data: st.DataObject) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    count = len(pcap_records(path)[1])
    cuts = sorted(data.draw(st.lists(st.integers(0, count), min_size=1, max_size=4), label="cuts"))
    topology = load_topology([path.parent]) if (path.parent / "network-inspect.json").exists() else None
    options = {"expect_encrypted": [4097]} | ({"topology": topology} if topology else {})
    whole = scan(path, **options)
    with tempfile.TemporaryDirectory() as directory:
        pieces = write_pieces(path, cuts, Path(directory))
        apart = [scan(piece, **options) for piece in pieces]
        together = scan(pieces, **options)
    summed = sum(apart[1:], apart[0])
    assert without_captures(summed) == without_captures(whole)
    assert dataclasses.replace(summed, captures=whole.captures) == whole
    assert without_captures(together) == without_captures(whole)
    assert [c.packets for c in together.captures] == [b - a for a, b in pairwise([0, *cuts, count])]


def test_formats_and_compression_do_not_change_the_report() -> None:
    directory = SAMPLES / "swarm-plaintext"
    variants = [directory / name for name in ("capture.pcap", "capture.pcapng", "capture.pcap.gz")]
    if not all(v.exists() for v in variants):
        pytest.skip("swarm-plaintext variants not found")
    pcap, pcapng, gzipped = (without_captures(scan(v)) for v in variants)
    assert pcap["flows"]
    assert gzipped == pcap
    # The pcapng file keeps the nanoseconds that the pcap file rounds down to microseconds.
    in_microseconds = re.sub(r"(\.\d{6})\d{3}Z", r"\g<1>000Z", json.dumps(pcapng))
    assert json.loads(in_microseconds) == pcap
    assert in_microseconds != json.dumps(pcapng)


def test_a_damaged_capture_is_recorded_with_everything_before_the_damage(tmp_path: Path) -> None:
    path = SAMPLES / "swarm-plaintext" / "capture.pcap"
    header, records = pcap_records(path)
    kept = 40
    damaged = tmp_path / "damaged.pcap"
    cut_at = len(header) + sum(len(h) + len(d) for h, d in records[:kept])
    damaged.write_bytes(header + b"".join(h + d for h, d in records[:kept]) + records[kept][0] + records[kept][1][:10])
    prefix = tmp_path / "prefix.pcap"
    prefix.write_bytes(header + b"".join(h + d for h, d in records[:kept]))

    for chunk_bytes in (1024, Limits().chunk_bytes):  # the damage in a later chunk, or in the only one
        report = scan(damaged, limits=Limits(chunk_bytes=chunk_bytes))
        (capture,) = report.captures
        assert capture.error and capture.error_offset == cut_at
        assert capture.packets == kept
        assert without_captures(report) == without_captures(scan(prefix))


@pytest.mark.parametrize("name", ["capture.pcap", "capture.pcap.gz"])
@pytest.mark.parametrize("chunk_bytes", [512, 4096])
def test_chunks_added_to_the_tables_on_their_own_thread_give_the_report_of_one(name: str, chunk_bytes: int) -> None:
    """Small chunks: many go through the table thread while the next is decoded, payloads inspected across them."""
    sample = SAMPLES / "swarm-plaintext"
    inspection = Inspection.for_topology(load_topology([sample]))
    whole = without_captures(scan(sample / "capture.pcap", inspect=inspection))
    chunked = scan(sample / name, inspect=inspection, limits=Limits(chunk_bytes=chunk_bytes))
    assert whole["findings"] and without_captures(chunked) == whole


def test_an_error_on_the_table_thread_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("table thread failed")

    monkeypatch.setattr(scanning, "_count", failing)
    with pytest.raises(RuntimeError, match="table thread failed"):
        scan(SAMPLES / "swarm-plaintext" / "capture.pcap", limits=Limits(chunk_bytes=512))
    assert len(calls) == 2  # no chunk was handed over after the failure


def test_unreadable_captures_are_recorded_and_the_others_scanned(tmp_path: Path) -> None:
    not_a_capture = tmp_path / "notes.txt"
    not_a_capture.write_text("not a capture\n")
    missing = tmp_path / "missing.pcap"
    good = SAMPLES / "swarm-plaintext" / "capture.pcap"
    report = scan([not_a_capture, missing, good])
    rows = {Path(c.path).name: c for c in report.captures}
    assert rows["notes.txt"].format is None and "not a pcap" in rows["notes.txt"].error
    assert rows["missing.pcap"].format is None and rows["missing.pcap"].error
    assert rows["capture.pcap"].error is None and rows["capture.pcap"].packets == report.stats.packets > 0
    assert without_captures(report) == without_captures(scan(good))


def test_progress_reaches_the_total_bytes_in_order() -> None:
    paths = [SAMPLES / "swarm-plaintext" / "capture.pcap", SAMPLES / "swarm-encrypted" / "capture.pcap"]
    calls: list[tuple[int, int]] = []
    scan(paths, progress=lambda done, total: calls.append((done, total)), limits=Limits(chunk_bytes=4096))
    total = sum(p.stat().st_size for p in paths)
    assert len(calls) > len(paths), "progress is reported within a capture, not only at its end"
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (total, total)


def redis_auth_inspector(flows: Sequence[Flow], payloads: FlowPayloads) -> list[Finding]:
    """A stand-in inspection stage: one finding per flow whose client starts with a RESP AUTH."""
    findings = []
    for flow in payloads.flows():
        sent = b"".join(s.data for s in payloads.segments(flow, Direction.CLIENT_TO_SERVER))
        if sent.startswith(b"*2\r\n$4\r\nAUTH\r\n"):
            findings.append(
                Finding(
                    vni=flow.vni,
                    network=None,
                    service=flow.service,
                    server=flow.server,
                    clients=(flow.client.rsplit(":", 1)[0],),
                    protocol="redis",
                    kind="auth",
                    severity="credential",
                    evidence=("AUTH ****",),
                    count=1,
                    first_ts=flow.first_ts,
                    last_ts=flow.last_ts,
                )
            )
    return findings


def test_the_inspection_stage_gets_flows_and_payloads_and_its_findings_refine_protocols() -> None:
    directory = SAMPLES / "swarm-plaintext"
    topology = load_topology([directory])
    plain = scan(directory / "capture.pcap", topology=topology)
    inspected = scan(directory / "capture.pcap", topology=topology, inspect=redis_auth_inspector)
    assert plain.findings == () and plain.stats.inspected_bytes == 0
    (finding,) = inspected.findings
    assert (finding.vni, finding.server, finding.service) == (4097, "10.0.1.3:6379", "app1_redis")
    assert inspected.stats.inspected_bytes > 0
    redis = "10.0.1.3:6379"
    assert [f.protocol for f in plain.flows if f.server == redis] == ["resp"]
    assert [f.protocol for f in inspected.flows if f.server == redis] == ["redis"]
    assert [(f.key, f.protocol) for f in inspected.flows if f.server != redis] == [
        (f.key, f.protocol) for f in plain.flows if f.server != redis
    ]


def test_limits_are_checked() -> None:
    for bad in ({"max_flows": 0}, {"chunk_bytes": 0}, {"payload_total": -1}, {"max_tunnel_entries": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)
