"""Findings of the sample captures and of third-party captures, checked against what tshark reads in them.

Expectations come from tshark (requests, statuses, Authorization headers, the
RESP commands and their arguments), from the Docker metadata beside each
sample (service and network names) and, for the malicious RESP capture, from
the answers the Redis server itself gave.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from vxlaninspect.cli.main import FORMATS, main

from tests.conftest import SAMPLES
from tests.test_findings import every_output, kept_payloads, only_printable, shows
from tests.test_inspect_capture import tshark_fields
from vxlaninspect.findings import Inspection, observe
from vxlaninspect.findings_redact import Evidence
from vxlaninspect.inspect.escape import escape
from vxlaninspect.report import Finding, Report, Severity
from vxlaninspect.scanning import scan
from vxlaninspect.topology import Topology, load_topology

SAMPLE_NAMES = ("swarm-plaintext", "swarm-encrypted", "secure-vs-insecure", "misconfigured", "lab-capture")
NAME_CHARS = 64
"""Escaped characters of a command name the RESP parser keeps."""
EXPECTED_KINDS = {"request", "response", "authorization", "auth", "command", "reply"}


def sample_report(name: str, capture: str = "capture.pcap", **options) -> tuple[Report, Topology]:
    directory = SAMPLES / name
    topology = load_topology([directory])
    report = scan(directory / capture, topology=topology, inspect=Inspection.for_topology(topology, **options))
    return report, topology


def inner(value: str) -> str:
    """The innermost of the values tshark lists for a field repeated by encapsulation."""
    return value.split(",")[-1]


def http_requests(tshark: str, path: Path) -> list[dict[str, str]]:
    fields = ("vxlan.vni", "ip.src", "ip.dst", "tcp.dstport", "http.request.method", "http.request.uri",
              "http.request.version", "http.host", "http.authorization")  # fmt: skip
    rows = tshark_fields(tshark, path, "http.request", *fields)
    return [
        dict(zip(("vni", "client", "server", "port", "method", "uri", "version", "host", "authorization"), row)) for row in rows
    ]


def http_responses(tshark: str, path: Path) -> list[dict[str, str]]:
    rows = tshark_fields(tshark, path, "http.response", "vxlan.vni", "ip.src", "tcp.srcport", "http.response.code")
    return [dict(zip(("vni", "server", "port", "code"), row)) for row in rows]


def resp_commands(tshark: str, path: Path, port: int = 6379) -> list[dict]:
    """Commands sent to ``port`` as tshark reads them: arguments of each array of bulk strings."""
    rows = tshark_fields(
        tshark, path, f"resp && tcp.dstport == {port}", "vxlan.vni", "ip.src", "ip.dst", "resp.bulk_string.value"
    )
    return [
        {
            "vni": vni,
            "client": inner(src),
            "server": f"{inner(dst)}:{port}",
            "args": [bytes.fromhex(a) for a in values.split(",")],
        }
        for vni, src, dst, values in rows
        if values
    ]


def findings_of(report: Report, vni: int | None, server: str) -> dict[str, Finding]:
    found = {f.kind: f for f in report.findings if f.vni == vni and f.server == server}
    assert len(found) == len([f for f in report.findings if f.vni == vni and f.server == server])
    return found


def check_names(finding: Finding, topology: Topology) -> None:
    """Service and network names as the Docker metadata gives them."""
    network = topology.network_by_vni(finding.vni)
    assert network is not None and finding.network == network.name
    endpoint = topology.endpoint(network.name, finding.server.rsplit(":", 1)[0])
    assert endpoint is not None and finding.service == endpoint.service


def http_secrets(requests: list[dict[str, str]]) -> list[bytes]:
    """The credentials of each Authorization header: as sent, and decoded when Basic."""
    secrets = []
    for request in requests:
        scheme, _, credentials = request["authorization"].partition(" ")
        if credentials:
            secrets.append(credentials.encode())
            if scheme == "Basic":
                secrets.append(base64.b64decode(credentials).split(b":", 1)[1])
    return secrets


def resp_secrets(commands: list[dict]) -> list[bytes]:
    return [c["args"][-1] for c in commands if c["args"][0].upper() == b"AUTH"]


@pytest.mark.tshark
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_findings_are_the_http_and_resp_tshark_reads(tshark: str, name: str) -> None:
    path = SAMPLES / name / "capture.pcap"
    report, topology = sample_report(name)
    requests, responses, commands = http_requests(tshark, path), http_responses(tshark, path), resp_commands(tshark, path)
    assert requests or commands
    assert {f.kind for f in report.findings} <= EXPECTED_KINDS
    servers = {(int(r["vni"]), f"{inner(r['server'])}:{r['port']}") for r in requests}
    servers |= {(int(c["vni"]), c["server"]) for c in commands}
    assert {(f.vni, f.server) for f in report.findings} == servers
    for vni, server in servers:
        found = findings_of(report, vni, server)
        for finding in found.values():
            check_names(finding, topology)
        sent = [r for r in requests if (int(r["vni"]), f"{inner(r['server'])}:{r['port']}") == (vni, server)]
        answered = [r for r in responses if (int(r["vni"]), f"{inner(r['server'])}:{r['port']}") == (vni, server)]
        if sent:
            assert found["request"].count == len(sent)
            assert set(found["request"].evidence) == {f"{r['method']} {r['uri']} {r['version']} Host: {r['host']}" for r in sent}
            assert set(found["request"].clients) == {inner(r["client"]) for r in sent}
            assert found["response"].count == len(answered)
            assert {e.split(" ")[1] for e in found["response"].evidence} == {r["code"] for r in answered}
            authorized = [r["authorization"] for r in sent if r["authorization"]]
            assert ("authorization" in found) == bool(authorized)
            if authorized:
                assert found["authorization"].count == len(authorized)
                assert found["authorization"].severity == Severity.CREDENTIAL
                assert set(found["authorization"].evidence) == {f"Authorization: {a.split()[0]} ********" for a in authorized}
        to_redis = [c for c in commands if (int(c["vni"]), c["server"]) == (vni, server)]
        if to_redis:
            auth = [c for c in to_redis if c["args"][0].upper() == b"AUTH"]
            others = [c for c in to_redis if c not in auth]
            assert ("auth" in found) == bool(auth)
            if auth:
                assert found["auth"].count == len(auth) and found["auth"].severity == Severity.CREDENTIAL
                assert set(found["auth"].evidence) == {"AUTH ********"}
            assert found["command"].count == len(others)
            assert set(found["command"].evidence) == {b" ".join(c["args"]).decode() for c in others}
            assert set(found["command"].clients) == {c["client"] for c in to_redis}
    for secret in http_secrets(requests) + resp_secrets(commands):
        assert not shows(report, secret), secret


@pytest.mark.tshark
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_secrets_of_samples_are_shown_only_when_asked(tshark: str, name: str) -> None:
    path = SAMPLES / name / "capture.pcap"
    secrets = http_secrets(http_requests(tshark, path)) + resp_secrets(resp_commands(tshark, path))
    shown, _ = sample_report(name, show_secrets=True)
    hidden, _ = sample_report(name)
    for secret in secrets:
        assert shows(shown, secret) and not shows(hidden, secret), secret
    assert [f.key for f in shown.findings] == [f.key for f in hidden.findings]


def test_an_encrypted_network_leaks_nothing_while_ingress_still_does() -> None:
    plain, _ = sample_report("swarm-plaintext")
    encrypted, _ = sample_report("swarm-encrypted")
    assert {f.vni for f in plain.findings} == {4096, 4097}
    assert {f.vni for f in encrypted.findings} == {4096}

    def what(report: Report) -> set[tuple]:
        return {
            (f.network, f.service, f.server, f.clients, f.kind, f.evidence, f.count) for f in report.findings if f.vni == 4096
        }

    assert what(encrypted) == what(plain)
    insecure, _ = sample_report("secure-vs-insecure")
    assert {(f.vni, f.network) for f in insecure.findings} == {(4098, "insecure")}


def test_every_format_of_the_plaintext_sample_gives_the_same_findings() -> None:
    reports = [
        sample_report("swarm-plaintext", capture)[0]
        for capture in ("capture.pcap", "capture-sll2.pcap", "capture.pcapng", "capture.pcap.gz")
    ]
    first = reports[0].findings
    assert first
    for report in reports[1:]:
        assert [(f.key, f.clients, f.evidence, f.count) for f in report.findings] == [
            (f.key, f.clients, f.evidence, f.count) for f in first
        ]


# -- the command line -------------------------------------------------------------------

PLAINTEXT = SAMPLES / "swarm-plaintext"


def cli(*args: object) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.tshark
@pytest.mark.parametrize("command", ["scan", "leaks"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_command_line_never_shows_a_secret_unless_asked(tshark: str, command: str, fmt: str) -> None:
    path = PLAINTEXT / "capture.pcap"
    secrets = http_secrets(http_requests(tshark, path)) + resp_secrets(resp_commands(tshark, path))
    assert len(secrets) == 3
    hidden = cli(command, path, "--docker", PLAINTEXT, "--format", fmt, "-q", "-j", "1")
    shown = cli(command, path, "--docker", PLAINTEXT, "--format", fmt, "-q", "-j", "1", "--show-secrets")
    assert "AUTH ********" in hidden and "Authorization: Basic ********" in hidden
    assert only_printable(hidden) and only_printable(shown)
    for secret in secrets:
        assert secret.decode() not in hidden
        assert secret.decode() in shown


# -- third-party captures ---------------------------------------------------------------


def corpus_report(corpus: Path, name: str, **options) -> Report:
    return scan(corpus / name, inspect=Inspection(**options))


@pytest.mark.tshark
def test_redis_py_authenticates_then_pings(tshark: str, corpus: Path) -> None:
    path = corpus / "zeek__redis-50-pings.pcap"
    commands = resp_commands(tshark, path)
    report = corpus_report(corpus, path.name)
    found = findings_of(report, None, "127.0.0.1:6379")
    assert set(found) == {"auth", "command", "reply"}
    names = Counter(c["args"][0].upper() for c in commands)
    assert names[b"AUTH"] == found["auth"].count == 1
    assert names[b"PING"] == 50
    assert found["command"].count == sum(names.values()) - names[b"AUTH"]
    assert set(found["command"].evidence) == {b" ".join(c["args"]).decode() for c in commands if c["args"][0] != b"AUTH"}
    assert all((f.vni, f.network, f.service) == (None, None, "redis") for f in report.findings)
    (secret,) = resp_secrets(commands)
    findings = json.dumps(report.to_dict()["findings"])  # the password is also in the capture's file name
    assert secret.decode() not in findings
    assert secret.decode() in json.dumps(corpus_report(corpus, path.name, show_secrets=True).to_dict()["findings"])


@pytest.mark.tshark
def test_redis_benchmark_commands_inline_and_multibulk(tshark: str, corpus: Path) -> None:
    path = corpus / "tcpdump__resp_1_benchmark.pcap"
    rows = tshark_fields(tshark, path, "tcp.dstport == 6379 && tcp.len > 0", "resp.bulk_string.value", "tcp.payload")
    expected = []
    for values, payload in rows:
        if values:
            expected.append(b" ".join(bytes.fromhex(v) for v in values.split(",")))
        else:  # an inline command, which tshark does not split
            expected += [line.strip() for line in bytes.fromhex(payload).split(b"\n") if line.strip()]
    found = findings_of(corpus_report(corpus, path.name, max_evidence_chars=2000), None, "127.0.0.1:6379")
    assert set(found) == {"command", "reply"}
    assert found["command"].count == len(expected) == 15
    assert set(found["command"].evidence) <= {e.decode() for e in expected}
    assert found["reply"].count == found["command"].count


@pytest.mark.tshark
def test_malicious_resp_is_read_as_the_redis_server_read_it(tshark: str, corpus: Path) -> None:
    path = corpus / "tcpdump__resp_3_malicious.pcap"
    clients = {
        stream: port
        for stream, port in tshark_fields(tshark, path, "tcp.dstport == 6379 && tcp.len > 0", "tcp.stream", "tcp.srcport")
    }
    errors: dict[int, list[str]] = {}
    for stream, error in tshark_fields(tshark, path, "resp && tcp.srcport == 6379", "tcp.stream", "resp.error"):
        errors.setdefault(int(clients[stream]), []).extend(e for e in error.split(",") if e)
    evidence = Evidence(show_secrets=False, max_chars=200)
    seen = {int(flow.client.rsplit(":", 1)[1]): observe(flow, payloads, evidence) for flow, payloads in kept_payloads(path)}
    assert set(errors) <= set(seen)
    checked = 0
    for port, observations in seen.items():
        commands = [o.evidence for o in observations if o.kind == "command"]
        malformed = [o.evidence for o in observations if o.kind == "malformed"]
        for error in errors.get(port, []):
            unknown = re.fullmatch(r"ERR unknown command '(.*)'", error)
            if unknown:
                name = escape(unknown.group(1).upper(), NAME_CHARS)
                assert any(c == name or c.startswith(name + " ") for c in commands), (port, error, commands)
            else:
                reason = error.removeprefix("ERR ")
                assert malformed == [f"command stream at byte 0: {reason}"], (port, error, malformed)
            checked += 1
        if not errors.get(port) and not [o for o in observations if o.kind == "reply"]:
            assert not commands and not malformed, "the server answered nothing, so it read no command"
    assert checked >= 9
    report = corpus_report(corpus, path.name)
    assert {f.kind for f in report.findings} == {"command", "reply", "malformed"}
    assert all(only_printable(e) for f in report.findings for e in f.evidence)


@pytest.mark.tshark
def test_docker_engine_api_over_plain_http(tshark: str, corpus: Path) -> None:
    path = corpus / "zeek__docker-http-upgrade.pcap"
    requests, responses = http_requests(tshark, path), http_responses(tshark, path)
    found = findings_of(corpus_report(corpus, path.name, max_evidence_chars=400), None, "192.168.122.87:2375")
    assert set(found) == {"request", "response"}
    assert found["request"].count == len(requests) == 6
    assert set(found["request"].evidence) == {f"{r['method']} {r['uri']} {r['version']} Host: {r['host']}" for r in requests}
    assert any("/containers/create" in e for e in found["request"].evidence)
    assert found["response"].count == len(responses)
    assert {e.split(" ")[1] for e in found["response"].evidence} == {r["code"] for r in responses} >= {"101"}
    assert found["request"].service == "docker"


@pytest.mark.tshark
@pytest.mark.parametrize(
    "name,vni,network",
    [
        ("suricata-verify__vxlan-non-zero-reserved-fields.pcap", 11, "vni-11"),
        ("suricata-verify__decode-sll2-01.pcap", None, None),
    ],
)
def test_http_in_vxlan_and_in_linux_cooked_captures(
    tshark: str, corpus: Path, name: str, vni: int | None, network: str | None
) -> None:
    path = corpus / name
    requests, responses = http_requests(tshark, path), http_responses(tshark, path)
    report = corpus_report(corpus, name)
    (server,) = {f"{inner(r['server'])}:{r['port']}" for r in requests}
    found = findings_of(report, vni, server)
    assert found["request"].evidence == tuple(f"{r['method']} {r['uri']} {r['version']} Host: {r['host']}" for r in requests)
    assert ("response" in found) == bool(responses)
    assert {(f.vni, f.network) for f in report.findings} == {(vni, network)}


@pytest.mark.tshark
def test_ssh_handshakes_in_a_traffic_mirror_are_metadata(tshark: str, corpus: Path) -> None:
    path = corpus / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap"
    banners: dict[str, dict[str, str]] = {}
    for stream, port, banner in tshark_fields(tshark, path, "ssh.protocol", "tcp.stream", "tcp.srcport", "ssh.protocol"):
        banners.setdefault(stream, {})["server" if port == "22" else "client"] = banner
    report = corpus_report(corpus, path.name)
    (finding,) = report.findings
    assert (finding.protocol, finding.kind, finding.severity) == ("ssh", "handshake", Severity.METADATA)
    assert finding.count == len(banners)
    assert set(finding.evidence) == {f"client {b['client']}, server {b['server']}" for b in banners.values()}


def test_esp_alone_leaks_nothing(corpus: Path) -> None:
    report = corpus_report(corpus, "arkime__wireshark-esp.pcap")
    assert report.stats.esp_packets > 0 and report.findings == ()
    assert all(only_printable(text) for text in every_output(report))
