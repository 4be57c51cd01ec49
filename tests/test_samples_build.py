"""The sample captures: reproducible from samples/make_samples.py, small, and telling their stories to Wireshark.

What each story must show is read from the Docker JSON beside the capture and from
the story's description in samples/README.md; what the capture shows is what
tshark decodes.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BUDGET_BYTES = 2 * 1024 * 1024
STORIES = ("swarm-plaintext", "swarm-encrypted", "secure-vs-insecure", "misconfigured")
PLAINTEXT_VARIANTS = ("capture.pcap", "capture-sll2.pcap", "capture.pcapng", "capture.pcap.gz")
CAPTURES = [f"{story}/capture.pcap" for story in STORIES] + [f"swarm-plaintext/{v}" for v in PLAINTEXT_VARIANTS[1:]]
# Per story (README.md): the networks whose VXLAN crosses the wire in cleartext, and the server ports used on them.
CLEARTEXT = {
    "swarm-plaintext": ({"ingress", "app1-network"}, {3000, 6379}),
    "swarm-encrypted": ({"ingress"}, {3000}),
    "secure-vs-insecure": ({"insecure"}, {80}),
    "misconfigured": ({"payments", "billing"}, {8080, 6379}),
}
TSHARK_OPTIONS = [
    "-o", "ip.check_checksum:TRUE",
    "-o", "udp.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-d", "tcp.port==3000,http",
]  # fmt: skip


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    subprocess.run(
        [sys.executable, str(SAMPLES / "make_samples.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_committed_samples_are_exactly_what_the_script_writes(regenerated: Path) -> None:
    produced = files_under(regenerated)
    assert {p.parts[0] for p in produced} == set(STORIES)
    for relative in produced:
        assert (SAMPLES / relative).read_bytes() == (regenerated / relative).read_bytes(), (
            f"{relative} differs: rerun make_samples.py"
        )
    for story in STORIES:
        assert files_under(SAMPLES / story) == [p.relative_to(story) for p in produced if p.parts[0] == story]


def test_a_second_run_writes_the_same_bytes(regenerated: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLES / "make_samples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert [(p, (tmp_path / p).read_bytes()) for p in files_under(tmp_path)] == [
        (p, (regenerated / p).read_bytes()) for p in files_under(regenerated)
    ]


def test_samples_fit_the_size_budget() -> None:
    total = sum((SAMPLES / story / p).stat().st_size for story in STORIES for p in files_under(SAMPLES / story))
    assert 0 < total < BUDGET_BYTES


def inspect_json(story: str, name: str = "network-inspect.json") -> list[dict]:
    return json.loads((SAMPLES / story / name).read_text())


def vnis_by_name(story: str) -> dict[str, int]:
    return {n["Name"]: int(n["Options"]["com.docker.network.driver.overlay.vxlanid_list"]) for n in inspect_json(story)}


def endpoint_ips(network: dict) -> set[str]:
    """Every inner address the network's metadata names: tasks, VIPs and the local sandboxes."""
    ips = {str(ipaddress.ip_interface(c["IPv4Address"]).ip) for c in network["Containers"].values()}
    for service in network["Services"].values():
        ips.add(service["VIP"])
        ips.update(task["EndpointIP"] for task in service["Tasks"])
    return ips


FIELDS = (
    "frame.time_epoch", "frame.encap_type", "sll.ifindex", "sll.pkttype", "ip.src", "ip.dst", "ip.len",
    "arp.opcode", "arp.src.proto_ipv4", "udp.srcport", "udp.dstport", "vxlan.flags", "vxlan.vni", "esp.spi",
    "esp.sequence", "tcp.flags.syn", "tcp.flags.ack", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw",
    "tcp.len", "http.request.method", "http.request.uri", "http.host", "http.authbasic", "http.authorization",
    "http.response.code", "resp.bulk_string.value",
)  # fmt: skip


def tshark_fields(
    path: Path, fields: tuple[str, ...] | list[str], display_filter: str | None = None
) -> list[list[str]]:
    """One row per packet, one string per field (occurrences joined by commas)."""
    command = ["tshark", "-n", "-r", str(path), *TSHARK_OPTIONS, "-T", "fields", "-E", "separator=\t"]
    command += [arg for field in fields for arg in ("-e", field)]
    if display_filter:
        command += ["-Y", display_filter]
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    return [line.split("\t") for line in result.stdout.splitlines()]


@functools.cache
def packets(capture: str) -> tuple[dict[str, str], ...]:
    """Every packet of a sample as tshark decodes it: field name -> value ("" when absent)."""
    return tuple(dict(zip(FIELDS, row, strict=True)) for row in tshark_fields(SAMPLES / capture, FIELDS))


def where(capture: str, *fields: str) -> list[dict[str, str]]:
    """The packets of ``capture`` that have all of ``fields``."""
    return [p for p in packets(capture) if all(p[f] for f in fields)]


@pytest.mark.tshark
@pytest.mark.parametrize("capture", CAPTURES)
def test_wireshark_decodes_cleanly(tshark: str, capture: str) -> None:
    path = SAMPLES / capture
    expert = subprocess.run(
        [tshark, "-n", "-r", str(path), *TSHARK_OPTIONS, "-q", "-z", "expert"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "Errors (" not in expert and "Warns (" not in expert and "Warnings (" not in expert, expert
    assert "Chats (" in expert  # the expert ran: every story opens connections
    flagged = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(path),
            *TSHARK_OPTIONS,
            "-Y",
            "_ws.malformed || _ws.expert.severity >= 6291456 || tcp.analysis.flags && !tcp.analysis.window_update",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert flagged == ""


@pytest.mark.tshark
@pytest.mark.parametrize("story", STORIES)
def test_cleartext_vnis_and_inner_flows_match_the_metadata(tshark: str, story: str) -> None:
    capture = f"{story}/capture.pcap"
    networks = {n["Name"]: n for n in inspect_json(story)}
    vnis = vnis_by_name(story)
    names, server_ports = CLEARTEXT[story]
    assert {int(p["vxlan.vni"]) for p in where(capture, "vxlan.vni")} == {vnis[name] for name in names}
    syns = [
        p
        for p in where(capture, "vxlan.vni", "tcp.flags.syn")
        if p["tcp.flags.syn"] == "1" and p["tcp.flags.ack"] == "0"
    ]
    assert {int(p["tcp.dstport"]) for p in syns} == server_ports
    name_of = {vni: name for name, vni in vnis.items()}
    peers = {peer["IP"] for n in networks.values() for peer in n["Peers"]}
    for syn in syns:
        network = networks[name_of[int(syn["vxlan.vni"])]]
        outer_src, inner_src = syn["ip.src"].split(",")
        outer_dst, inner_dst = syn["ip.dst"].split(",")
        assert {outer_src, outer_dst} == peers
        assert inner_src in endpoint_ips(network) and inner_dst in endpoint_ips(network)
        (task,) = [t for s in network["Services"].values() for t in s["Tasks"] if t["EndpointIP"] == inner_dst]
        assert task["Info"]["Host IP"] == outer_dst  # the server task lives on the node the VXLAN goes to


@pytest.mark.tshark
@pytest.mark.parametrize("story", STORIES)
def test_vxlan_is_sent_as_linux_sends_it(tshark: str, story: str) -> None:
    """UDP to 4789, flags with only the I bit, source ports in Linux's ephemeral range, one per flow and sender."""
    ports: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for packet in where(f"{story}/capture.pcap", "vxlan.vni"):
        assert packet["udp.dstport"] == "4789" and packet["vxlan.flags"] == "0x0800"
        assert 32768 <= int(packet["udp.srcport"]) <= 60999
        flow = (packet["ip.src"], packet["ip.dst"], packet["tcp.srcport"], packet["tcp.dstport"])
        ports[flow].add(packet["udp.srcport"])
    assert ports and all(len(sources) == 1 for sources in ports.values())


@pytest.mark.tshark
@pytest.mark.parametrize(("story", "spis_per_direction"), [("swarm-encrypted", 2), ("secure-vs-insecure", 1)])
def test_esp_has_one_spi_per_direction_and_counting_sequences(tshark: str, story: str, spis_per_direction: int) -> None:
    rows = where(f"{story}/capture.pcap", "esp.spi")
    assert rows
    peers = {p["IP"] for n in inspect_json(story) for p in n["Peers"]}
    sequences: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        assert {row["ip.src"], row["ip.dst"]} == peers
        sequences[(row["ip.src"], row["ip.dst"])][int(row["esp.spi"], 16)].append(int(row["esp.sequence"]))
        esp_body = int(row["ip.len"]) - 20 - 8 - 8 - 8  # IP header, SPI and sequence, IV, ICV
        assert esp_body % 4 == 0  # padding aligns the payload, pad length and next header to 4 bytes
        assert esp_body >= 8 + 8 + 14 + 20 + 32 + 2  # UDP, VXLAN, inner Ethernet, IP, TCP with timestamps, trailer
    assert len(sequences) == 2
    spis = [spi for direction in sequences.values() for spi in direction]
    assert len(spis) == len(set(spis)) == 2 * spis_per_direction
    for direction in sequences.values():
        assert len(direction) == spis_per_direction
        for numbers in direction.values():
            assert numbers == list(range(1, len(numbers) + 1))


def commands(rows: list[dict[str, str]]) -> list[str]:
    """The Redis command names among RESP packets sent to port 6379."""
    return [
        bytes.fromhex(r["resp.bulk_string.value"].split(",")[0]).decode() for r in rows if r["tcp.dstport"] == "6379"
    ]


@pytest.mark.tshark
def test_plaintext_story_leaks_http_credentials_and_redis_commands(tshark: str) -> None:
    capture = "swarm-plaintext/capture.pcap"
    requests = where(capture, "http.request.method")
    assert [(r["http.request.method"], r["http.request.uri"], r["http.host"]) for r in requests] == [
        ("GET", "/", "host01:3000")
    ] * 3
    (basic,) = [r["http.authbasic"] for r in requests if r["http.authbasic"]]
    assert basic.startswith("admin:")
    bodies = [r[0] for r in tshark_fields(SAMPLES / capture, ["http.file_data"], "http.response.code == 200")]
    assert [f"visited {n} times" in body for n, body in enumerate(bodies, 1)] == [True] * 3
    assert commands(where(capture, "resp.bulk_string.value")) == ["AUTH"] + ["HINCRBY", "HGETALL", "INCR"] * 3 + [
        "QUIT"
    ]


@pytest.mark.tshark
def test_encrypted_story_hides_redis_but_not_ingress(tshark: str) -> None:
    capture = "swarm-encrypted/capture.pcap"
    assert where(capture, "resp.bulk_string.value") == []
    assert len(where(capture, "http.request.method")) == 3


@pytest.mark.tshark
def test_secure_vs_insecure_http_is_readable_only_on_the_insecure_network(tshark: str) -> None:
    capture = "secure-vs-insecure/capture.pcap"
    services = {s["Spec"]["Name"]: s for s in inspect_json("secure-vs-insecure", "service-inspect.json")}
    networks = {n["Name"]: n["Id"] for n in inspect_json("secure-vs-insecure")}
    virtual_ips = services["web_nginx"]["Endpoint"]["VirtualIPs"]
    (insecure_vip,) = [v["Addr"].split("/")[0] for v in virtual_ips if v["NetworkID"] == networks["insecure"]]
    vni = str(vnis_by_name("secure-vs-insecure")["insecure"])
    requests = [
        (r["vxlan.vni"], r["http.request.method"], r["http.request.uri"], r["http.host"])
        for r in where(capture, "http.request.method")
    ]
    assert requests == [(vni, "GET", "/", insecure_vip), (vni, "GET", "/status", insecure_vip)]
    assert [r["http.response.code"] for r in where(capture, "http.response.code")] == ["200", "404"]


@pytest.mark.tshark
def test_misconfigured_networks_leak_in_cleartext(tshark: str) -> None:
    capture = "misconfigured/capture.pcap"
    networks = {n["Name"]: n for n in inspect_json("misconfigured")}
    assert "encrypted" in networks["payments"]["Options"] and "encrypted" not in networks["billing"]["Options"]
    assert where(capture, "esp.spi") == []
    vnis = vnis_by_name("misconfigured")
    posts = where(capture, "http.request.method")
    assert [(p["vxlan.vni"], p["http.request.method"], p["http.request.uri"]) for p in posts] == [
        (str(vnis["payments"]), "POST", "/v1/charges")
    ] * 2
    assert all(p["http.authorization"].startswith("Bearer ") for p in posts)
    resp = where(capture, "resp.bulk_string.value")
    assert {r["vxlan.vni"] for r in resp} == {str(vnis["billing"])}
    assert commands(resp) == ["HSET", "EXPIRE", "LPUSH", "QUIT"]


@pytest.mark.tshark
@pytest.mark.parametrize("variant", PLAINTEXT_VARIANTS[1:])
def test_plaintext_variants_hold_the_same_packets(tshark: str, variant: str) -> None:
    fields = ("ip.src", "ip.dst", "vxlan.vni", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "arp.opcode")
    reference = packets("swarm-plaintext/capture.pcap")
    rows = packets(f"swarm-plaintext/{variant}")
    assert len(rows) == len(reference) > 0
    for row, expected in zip(rows, reference, strict=True):
        assert [row[f] for f in fields] == [expected[f] for f in fields]
        # pcap keeps microseconds; pcapng keeps the nanoseconds they were cut from.
        assert row["frame.time_epoch"][:17] == expected["frame.time_epoch"][:17]


@pytest.mark.tshark
def test_sll2_variant_is_what_tcpdump_any_writes(tshark: str) -> None:
    host01 = next(p["IP"] for p in inspect_json("swarm-plaintext")[0]["Peers"] if p["Name"].startswith("host01"))
    rows = packets("swarm-plaintext/capture-sll2.pcap")
    assert {r["frame.encap_type"] for r in rows} == {"210"}  # Wireshark's number for LINKTYPE_LINUX_SLL2
    assert {r["sll.ifindex"] for r in rows} == {"2"}
    for row in rows:
        sender = (row["ip.src"] or row["arp.src.proto_ipv4"]).split(",")[0]
        assert (row["sll.pkttype"] == "4") == (sender == host01)  # 4: sent by this host
