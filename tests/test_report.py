"""The Report: JSON round trip and schema, the merge rule, and verdicts on the sample stories."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SAMPLES, corpus_captures
from vxlaninspect.findings import Inspection
from vxlaninspect.networks import Verdict
from vxlaninspect.report import (
    MAX_EVIDENCE,
    SCHEMA,
    Finding,
    Report,
    Severity,
    json_schema,
    ts_text,
    ts_value,
)
from vxlaninspect.scanning import scan
from vxlaninspect.topology import EMPTY_TOPOLOGY, load_topology

STORIES = ["swarm-plaintext", "swarm-encrypted", "secure-vs-insecure", "misconfigured", "lab-capture"]
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def story(name: str, **options) -> Report:
    directory = SAMPLES / name
    if not directory.is_dir():
        pytest.skip(f"{directory} not found")
    return scan(directory / "capture.pcap", topology=load_topology([directory]), **options)


def verdicts(report: Report) -> dict[str, str]:
    return {n.name: n.verdict.value for n in report.networks}


def test_the_schema_is_a_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    assert json_schema()["properties"]["schema"]["const"] == SCHEMA


def _captures() -> list[Path]:
    return corpus_captures() + [SAMPLES / name / "capture.pcap" for name in STORIES]


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name if "external" in str(p) else p.parent.name)
def test_json_round_trip_and_schema(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    topology = load_topology([path.parent]) if (path.parent / "network-inspect.json").exists() else EMPTY_TOPOLOGY
    report = scan(path, topology=topology, expect_encrypted=[4097], inspect=Inspection.for_topology(topology))
    text = report.to_json()
    VALIDATOR.validate(json.loads(text))
    stats = report.stats
    assert stats.packets == sum(c.packets for c in report.captures) > 0
    categorised = stats.vxlan_packets + stats.geneve_packets + stats.esp_packets + stats.ike_packets
    assert categorised + stats.underlay_packets == stats.packets
    again = Report.from_json(text)
    assert again == report
    assert again.to_dict() == json.loads(text)
    if path.parent.name == "swarm-plaintext":
        assert {f.severity for f in again.findings} >= {Severity.CREDENTIAL, Severity.DATA}


def test_a_report_of_another_schema_is_refused() -> None:
    data = Report().to_dict() | {"schema": "vxlaninspect.report/2"}
    with pytest.raises(ValueError, match="report/2"):
        Report.from_dict(data)


def test_merge_is_associative_and_has_an_identity() -> None:
    a = story("swarm-plaintext")
    b = story("swarm-encrypted")
    c = story("misconfigured", expect_encrypted=["billing"])
    assert (a + b) + c == a + (b + c)
    assert ((a + b) + c).to_dict() == (a + (b + c)).to_dict()
    assert a + Report() == a == Report() + a
    merged = a + b
    assert merged.stats.packets == a.stats.packets + b.stats.packets
    assert merged.captures == a.captures + b.captures


def test_merging_a_report_with_itself_doubles_counts_and_keeps_the_rest() -> None:
    a = story("swarm-plaintext")
    doubled = a + a
    assert [f.key for f in doubled.flows] == [f.key for f in a.flows]
    assert [f.packets for f in doubled.flows] == [2 * f.packets for f in a.flows]
    assert [(f.client, f.server, f.protocol) for f in doubled.flows] == [(f.client, f.server, f.protocol) for f in a.flows]
    assert verdicts(doubled) == verdicts(a)


def _finding(**changes) -> Finding:
    fields = {
        "vni": 4097,
        "network": "app1-network",
        "service": "app1_redis",
        "server": "10.0.1.3:6379",
        "clients": ("10.0.1.5",),
        "protocol": "resp",
        "kind": "redis-auth",
        "severity": "credential",
        "evidence": ("AUTH ****",),
        "count": 1,
        "first_ts": 10,
        "last_ts": 20,
    }
    return Finding(**(fields | changes))


def test_findings_of_one_server_and_kind_merge_into_one() -> None:
    a = _finding()
    b = _finding(clients=("10.0.1.9", "10.0.1.5"), evidence=("AUTH ****", "HGETALL ip"), count=2, first_ts=5, last_ts=15)
    merged = Report(findings=(a,)) + Report(findings=(b,))
    assert merged.findings == (
        _finding(
            clients=("10.0.1.5", "10.0.1.9"), evidence=("AUTH ****", "HGETALL ip"), count=3, first_ts=5, last_ts=20
        ),
    )
    assert merged.findings[0].severity is Severity.CREDENTIAL
    other_kind = _finding(kind="redis-command", severity="data")
    assert len((Report(findings=(a,)) + Report(findings=(other_kind,))).findings) == 2


def test_evidence_keeps_the_first_distinct_strings_whatever_the_grouping() -> None:
    parts = [Report(findings=(_finding(evidence=tuple(f"e{i}-{j}" for j in range(3))),)) for i in range(5)]
    left = ((parts[0] + parts[1]) + parts[2]) + (parts[3] + parts[4])
    right = parts[0] + (parts[1] + (parts[2] + (parts[3] + parts[4])))
    assert left == right
    evidence = left.findings[0].evidence
    assert len(evidence) == MAX_EVIDENCE
    assert evidence == tuple(f"e{i}-{j}" for i in range(5) for j in range(3))[:MAX_EVIDENCE]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_timestamps_round_trip_to_the_nanosecond(ns: int) -> None:
    text = ts_text(ns)
    assert text.endswith("Z") and len(text.split(".")[1]) == 10
    assert ts_value(text) == ns


def test_timestamp_text_is_utc() -> None:
    assert ts_text(1_714_564_800_123_456_789) == "2024-05-01T12:00:00.123456789Z"
    assert ts_text(0) == "1970-01-01T00:00:00.000000000Z"
    assert ts_text(-1) == "1969-12-31T23:59:59.999999999Z"


# The stories of samples/README.md, and what the verdicts must say of them.


def test_plaintext_swarm_leaks_both_networks() -> None:
    report = story("swarm-plaintext")
    assert verdicts(report) == {"ingress": "plaintext", "app1-network": "plaintext"}
    by_name = {n.name: n for n in report.networks}
    assert by_name["ingress"].vni == 4096 and by_name["app1-network"].vni == 4097
    assert by_name["app1-network"].services == ("app1_redis",)
    assert {(s.name, s.protocol, s.leaked) for s in report.services} == {("app1_web", "http", True), ("app1_redis", "resp", True)}


def test_a_network_expected_encrypted_and_seen_in_cleartext_is_a_violation() -> None:
    for expectation in (["app1-network"], [4097], ["4097"]):
        report = story("swarm-plaintext", expect_encrypted=expectation)
        assert verdicts(report) == {"ingress": "plaintext", "app1-network": "violation"}, expectation
        assert {n.name: n.expected_encrypted for n in report.networks} == {"ingress": False, "app1-network": True}


def test_an_encrypted_network_seen_only_as_esp_is_encrypted_with_its_keys_and_rotations() -> None:
    report = story("swarm-encrypted")
    assert verdicts(report) == {"ingress": "plaintext", "app1-network": "encrypted"}
    network = {n.name: n for n in report.networks}["app1-network"]
    assert network.declared_encrypted and network.packets == 0 and network.flows == 0
    esp = [t for t in report.tunnels if t.encap == "esp"]
    assert len(esp) == 2 and all(t.src_node and t.dst_node for t in esp)
    assert network.spis == tuple(sorted(spi for t in esp for spi in t.spis))
    assert network.rotations == sum(len(t.rotations) for t in esp) == 2


def test_one_service_on_a_secure_and_an_insecure_network() -> None:
    report = story("secure-vs-insecure")
    assert verdicts(report) == {"insecure": "plaintext", "secure": "encrypted"}
    assert [(s.vni, s.name, s.protocol) for s in report.services] == [(4098, "web_nginx", "http")]


def test_a_declared_encrypted_network_in_cleartext_and_a_mistyped_option() -> None:
    report = story("misconfigured")
    assert verdicts(report) == {"payments": "violation", "billing": "plaintext"}
    assert any("'encrypt'" in w for w in report.warnings)
    assert verdicts(story("misconfigured", expect_encrypted=["billing"])) == {"payments": "violation", "billing": "violation"}


def test_overlay_traffic_without_payload_is_no_payload(corpus: Path) -> None:
    report = scan(corpus / "tcpdump__vxlan.pcap")  # ARP and ICMP echo in VNI 100
    assert [(n.vni, n.verdict) for n in report.networks] == [(100, Verdict.NO_PAYLOAD)]
    assert report.networks[0].name == "vni-100"


def test_an_expected_network_neither_seen_nor_shown_encrypted_is_unseen(corpus: Path) -> None:
    report = scan(corpus / "tcpdump__vxlan.pcap", expect_encrypted=[4097, "nonexistent"])
    assert {n.vni: n.verdict for n in report.networks} == {100: Verdict.NO_PAYLOAD, 4097: Verdict.UNSEEN}
    assert any("'nonexistent'" in w for w in report.warnings)


def test_esp_between_nodes_shows_an_expected_network_encrypted(corpus: Path) -> None:
    report = scan(corpus / "tcpdump__02-sunrise-sunset-esp.pcap", expect_encrypted=[4097])
    (network,) = report.networks
    assert (network.vni, network.verdict, network.spis) == (4097, Verdict.ENCRYPTED, (0x12345678,))
