"""The namespace lab: a real VXLAN overlay, real services, a real capture, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "samples" / "lab" / "swarm_lab.py"
SAMPLE = REPO / "samples" / "lab-capture"
PASSWORD = "lab-test-password"
REQUESTS = 3
NAMESPACES_PER_RUN = 9
"""Two nodes, each on two networks (a namespace per node and network), and three sandboxes."""


def _netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "the lab creates network namespaces: run as root"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as error:
        return f"`ip netns` is unavailable: {error}"
    return None


NETNS_PROBLEM = _netns_problem()
needs_netns = pytest.mark.skipif(NETNS_PROBLEM is not None, reason=str(NETNS_PROBLEM))


def lab_command(out: Path, *options: str) -> list[str]:
    return [sys.executable, str(LAB), "--out", str(out), "--password", PASSWORD, *options]


def lab_namespaces(pid: int) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.startswith(f"vxi-{pid}-")]


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds ``marker``: the lab's children inherit it."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def tshark_rows(tshark: str, capture: Path, *decode_as: str) -> list[dict[str, str]]:
    fields = ["vxlan.vni", "ip.src", "ip.dst", "udp.dstport", "tcp.dstport", "http.request.method",
              "http.request.uri", "tcp.payload"]
    decode = [arg for rule in decode_as for arg in ("-d", rule)]
    out = subprocess.run(
        [tshark, "-r", str(capture), *decode, "-T", "fields", *(a for f in fields for a in ("-e", f))],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return [dict(zip(fields, line.split("\t"))) for line in out.splitlines()]


def resp_command(*args: str) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)


@dataclass(frozen=True)
class LabRun:
    out: Path
    pid: int
    returncode: int
    stderr: str
    marker: str
    """An environment variable the lab's processes inherit, to find any left running."""


def start_lab(out: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    marker = f"VXI_TEST_{uuid.uuid4().hex}"
    proc = subprocess.Popen(lab_command(out, *options), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, marker: "1"})
    return proc, marker


def run_lab(out: Path, *options: str, timeout: float = 60) -> LabRun:
    """Run the lab to its end."""
    proc, marker = start_lab(out, *options)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        pytest.fail(f"the lab ran past {timeout} s: {stderr}")
    return LabRun(out, proc.pid, proc.returncode, stderr, marker)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    """One successful run of the lab, shared by the checks of its capture."""
    if NETNS_PROBLEM:
        pytest.skip(NETNS_PROBLEM)
    run = run_lab(tmp_path_factory.mktemp("lab"), "--requests", str(REQUESTS))
    assert run.returncode == 0, run.stderr
    return run


def inspect_view(out: Path) -> dict:
    """From the inspect JSON: each network's VNI and VXLAN device name, the peers, the tasks' and the ingress sandbox's IPs."""
    networks = json.loads((out / "network-inspect.json").read_text())
    vni = {n["Name"]: int(n["Options"]["com.docker.network.driver.overlay.vxlanid_list"]) for n in networks}
    return {
        "vni": vni,
        "devices": {f"vx-{vni[n['Name']]:06x}-{n['Id'][:5]}" for n in networks},
        "peers": {p["IP"] for n in networks for p in n["Peers"]},
        "task_ip": {(n["Name"], s): t["EndpointIP"] for n in networks for s, v in n["Services"].items()
                    for t in v["Tasks"]},
        "sbox_ip": next(n["Containers"]["ingress-sbox"]["IPv4Address"].split("/")[0] for n in networks if n["Ingress"]),
    }


def inner(address_pair: str) -> str:
    """The inner (overlay) address of tshark's "outer,inner" field."""
    return address_pair.split(",")[1]


def assert_nothing_left(pid: int, marker: str) -> None:
    assert lab_namespaces(pid) == [], "namespaces left behind"
    assert processes_with(marker) == [], "processes left running"


@pytest.mark.netns
@pytest.mark.tshark
def test_capture_holds_both_overlays_between_the_two_nodes(lab_run, tshark):
    view = inspect_view(lab_run.out)
    rows = tshark_rows(tshark, lab_run.out / "capture.pcap")
    vxlan = [r for r in rows if r["vxlan.vni"]]
    assert {int(r["vxlan.vni"]) for r in vxlan} == set(view["vni"].values()) == {4096, 4097}
    assert {r["udp.dstport"] for r in vxlan} == {"4789"}
    assert {r["ip.src"].split(",")[0] for r in vxlan} == {r["ip.dst"].split(",")[0] for r in vxlan} == view["peers"]
    assert all(not r["ip.src"] for r in rows if not r["vxlan.vni"]), "only underlay ARP travels outside VXLAN"


@pytest.mark.netns
@pytest.mark.tshark
def test_http_get_to_port_3000_crosses_the_ingress_overlay(lab_run, tshark):
    view = inspect_view(lab_run.out)
    gets = [r for r in tshark_rows(tshark, lab_run.out / "capture.pcap") if r["http.request.method"] == "GET"]
    assert len(gets) == REQUESTS
    for row in gets:
        assert (row["vxlan.vni"], row["tcp.dstport"], row["http.request.uri"]) == (str(view["vni"]["ingress"]), "3000", "/")
        assert (inner(row["ip.src"]), inner(row["ip.dst"])) == (view["sbox_ip"], view["task_ip"]["ingress", "web"])


@pytest.mark.netns
@pytest.mark.tshark
def test_resp_to_6379_crosses_the_app_overlay_with_auth_and_hincrby(lab_run, tshark):
    view = inspect_view(lab_run.out)
    to_redis = [r for r in tshark_rows(tshark, lab_run.out / "capture.pcap") if r["tcp.dstport"] == "6379"]
    assert {r["vxlan.vni"] for r in to_redis} == {str(view["vni"]["app"])}
    assert {(inner(r["ip.src"]), inner(r["ip.dst"])) for r in to_redis} == {
        (view["task_ip"]["app", "web"], view["task_ip"]["app", "redis"])
    }
    sent = b"".join(bytes.fromhex(r["tcp.payload"].replace(":", "")) for r in to_redis)
    assert sent.count(resp_command("AUTH", PASSWORD)) == REQUESTS + 1, "the web task per request, redis-cli once"
    assert sent.count(resp_command("HINCRBY", "ip", view["sbox_ip"], "1")) == REQUESTS
    assert sent.count(resp_command("HGETALL", "ip")) == REQUESTS + 1


@pytest.mark.netns
def test_scan_of_the_fresh_capture_names_the_leaking_services(lab_run):
    """vxlaninspect itself finds the lab's HTTP and RESP leaks and names them after web and redis."""
    proc = subprocess.run(
        ["vxlaninspect", "scan", str(lab_run.out / "capture.pcap"), "--docker", str(lab_run.out), "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    view = inspect_view(lab_run.out)
    verdicts = {n["vni"]: n["verdict"] for n in report["networks"]}
    assert verdicts == {vni: "plaintext" for vni in view["vni"].values()}
    found = {(f["service"], f["protocol"], f["kind"]) for f in report["findings"]}
    assert {("web", "http", "request"), ("redis", "resp", "command"), ("redis", "resp", "auth")} <= found
    auth = next(f for f in report["findings"] if f["kind"] == "auth")
    assert auth["severity"] == "credential" and "swarm-lab-s3cret" not in proc.stdout
    commands = " ".join(next(f for f in report["findings"] if f["kind"] == "command")["evidence"])
    assert "HINCRBY ip" in commands and "HGETALL ip" in commands


def test_a_finished_run_leaves_no_namespace_interface_or_process(lab_run):
    assert_nothing_left(lab_run.pid, lab_run.marker)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=True).stdout
    for name in (f"vxi-{lab_run.pid}", *inspect_view(lab_run.out)["devices"]):
        assert name not in links


@pytest.mark.netns
@pytest.mark.tshark
@needs_netns
def test_port_option_moves_the_overlay_to_8472(tmp_path, tshark):
    run = run_lab(tmp_path, "--port", "8472", "--requests", "1")
    assert run.returncode == 0, run.stderr
    rows = tshark_rows(tshark, tmp_path / "capture.pcap", "udp.port==8472,vxlan")
    vxlan = [r for r in rows if r["vxlan.vni"]]
    assert {r["udp.dstport"] for r in vxlan} == {"8472"}
    assert {r["vxlan.vni"] for r in vxlan} == {"4096", "4097"}


@pytest.mark.netns
@needs_netns
def test_a_run_that_times_out_midway_cleans_up(tmp_path):
    run = run_lab(tmp_path / "out", "--timeout", "0.3")
    assert run.returncode == 1 and "timed out" in run.stderr
    assert_nothing_left(run.pid, run.marker)
    assert not (tmp_path / "out").exists()


@pytest.mark.netns
@needs_netns
@pytest.mark.parametrize(("sig", "namespaces"), [(signal.SIGTERM, 1), (signal.SIGINT, NAMESPACES_PER_RUN)],
                         ids=["sigterm-during-set-up", "sigint-during-traffic"])
def test_an_interrupted_run_cleans_up(tmp_path, sig, namespaces):
    proc, marker = start_lab(tmp_path, "--requests", "1000")
    try:
        give_up = time.monotonic() + 20
        while len(lab_namespaces(proc.pid)) < namespaces:
            assert proc.poll() is None, "the lab ended before it could be interrupted"
            assert time.monotonic() < give_up, f"{namespaces} namespaces never appeared"
            time.sleep(0.01)
        if namespaces == NAMESPACES_PER_RUN:
            time.sleep(0.5)  # the clients are talking
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig
    assert f"interrupted by {sig.name}" in stderr
    assert_nothing_left(proc.pid, marker)
    assert not (tmp_path / "capture.pcap").exists()


def test_missing_tools_are_named_with_their_apt_packages(tmp_path):
    proc = subprocess.run([sys.executable, str(LAB), "--out", str(tmp_path)], env={"PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "missing ip, bridge, tcpdump, redis-server, redis-cli, curl" in proc.stderr
    assert "apt-get install curl iproute2 redis-server redis-tools tcpdump" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.tshark
def test_committed_sample_agrees_with_its_inspect_json(tshark):
    capture = SAMPLE / "capture.pcap"
    assert capture.stat().st_size < 300_000
    view = inspect_view(SAMPLE)
    rows = tshark_rows(tshark, capture)
    assert {int(r["vxlan.vni"]) for r in rows if r["vxlan.vni"]} == set(view["vni"].values())
    servers = {(r["vxlan.vni"], r["tcp.dstport"], inner(r["ip.dst"])) for r in rows if r["tcp.dstport"] in ("3000", "6379")}
    assert servers == {
        (str(view["vni"]["ingress"]), "3000", view["task_ip"]["ingress", "web"]),
        (str(view["vni"]["app"]), "6379", view["task_ip"]["app", "redis"]),
    }
