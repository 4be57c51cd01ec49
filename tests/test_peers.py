"""The peer benchmark: every tool does the same task on a small generated capture and agrees; the harness's parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from benchmarks.generate import Format, generate
from benchmarks.peer_agreement import ToolAnswer, disagreements
from benchmarks.peer_tasks import PEERS, TOOLS
from benchmarks.peer_tasks.task import HTTP, RESP, classify
from benchmarks.subset import write_subset

REPO = Path(__file__).resolve().parents[1]
SUBSET_PACKETS = 300


def run_module(module: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True, check=False
    )


def frames(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        return [bytes(frame) for _, frame in reader]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("peers") / "small.pcap"
    return generate(path, size=400_000, flows=40, seed=3)


@pytest.fixture(scope="module")
def peers_run(capture, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("peers-out")
    done = run_module(
        "benchmarks.peers",
        "--capture", capture.path,
        "--subset-packets", SUBSET_PACKETS,
        "--peers", "all",
        "--workdir", out / "work",
        "--json", out / "peers.json",
    )  # fmt: skip
    results = json.loads((out / "peers.json").read_text()) if done.returncode == 0 else {}
    return done, results


@pytest.mark.slow
@pytest.mark.tshark
def test_every_tool_agrees_and_every_figure_is_reported(peers_run, capture) -> None:
    done, results = peers_run
    assert done.returncode == 0, done.stderr
    (run,) = results["runs"]
    assert run["agreement"]["subset"] == sorted(tool.name for tool in TOOLS)
    assert run["agreement"]["capture"] == ["tshark", "vxlaninspect", "vxlaninspect-cli"]
    assert run["subset"]["packets"] == SUBSET_PACKETS

    # the answer, checked against what the generator says it wrote
    whole = run["capture"]
    assert whole["packets"] == capture.packets
    assert sum(whole["vni_packets"].values()) == capture.categories["vxlan"]
    assert sorted(int(vni) for vni in whole["vni_packets"]) == list(capture.vnis)
    # 40 flows, flow f of service f % 5: services 0 and 1 speak HTTP, 2 and 3 RESP, 4 TLS
    assert 0 < whole["flows"]["http"] <= 16 and 0 < whole["flows"]["resp"] <= 16

    rows = {row["tool"]: row for row in run["tools"]}
    assert list(rows) == [tool.name for tool in TOOLS]
    for tool in TOOLS:
        row = rows[tool.name]
        assert row["extrapolated"] is tool.slow
        assert row["packets"] == (SUBSET_PACKETS if tool.slow else capture.packets)
        assert row["packets_per_second"] > 0 and row["megabytes_per_second"] > 0
        assert row["peak_rss_bytes"] > 1_000_000
        assert row["vxlaninspect_times_faster"] > 0
    assert rows["vxlaninspect"]["vxlaninspect_times_faster"] == pytest.approx(1)
    assert {t["name"] for t in run["targets"]} == {"vxlaninspect vs dpkt", "vxlaninspect vs tshark"}
    assert results["machine"]["nproc"] >= 1 and len(results["load_average_after"]) == 3


@pytest.mark.slow
@pytest.mark.tshark
def test_the_table_marks_extrapolated_rates(peers_run) -> None:
    done, _ = peers_run
    assert done.returncode == 0, done.stderr
    for label in ("dpkt loop", "struct loop", "scapy", "pyshark"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(label))
        assert f"first {SUBSET_PACKETS:,} packets (extrapolated)" in line
    assert "every tool agrees on the first 300 packets" in done.stdout


def measured_answer(tool: str, capture: Path, flows: Path) -> ToolAnswer:
    done = run_module("benchmarks.peer_tasks.runner", tool, capture, flows)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)["answer"]
    lines = frozenset(flows.read_text().splitlines())
    return ToolAnswer(tool, answer["packets"], answer["captured_bytes"], answer["vni_packets"], lines)


def test_answers_of_different_packets_are_told_apart(capture, tmp_path: Path) -> None:
    whole = measured_answer("struct", Path(capture.path), tmp_path / "a.flows")
    head = write_subset(capture.path, tmp_path / "head.pcap", 200)
    part = measured_answer("dpkt", Path(head.path), tmp_path / "b.flows")
    report = disagreements([whole, part], "the test captures")
    assert report[0] == "dpkt disagrees with struct on the test captures:"
    assert f"  packets: struct {capture.packets:,}, dpkt 200" in report
    assert any(line.startswith("  packets of VNI ") for line in report)
    assert any(line.startswith("  flows only struct reports (") for line in report)
    assert disagreements([whole, measured_answer("dpkt", Path(capture.path), tmp_path / "c.flows")], "x") == []


def test_subset_holds_the_first_records_of_a_pcapng(tmp_path: Path) -> None:
    source = tmp_path / "source.pcapng"
    generate(source, size=200_000, flows=20, seed=5, fmt=Format.PCAPNG)
    subset = write_subset(source, tmp_path / "subset.pcap", 50)
    assert subset.packets == 50 and subset.linktype == 1
    assert frames(Path(subset.path)) == frames(source)[:50]
    assert subset.captured_bytes == sum(len(f) for f in frames(source)[:50])


def test_classify_follows_the_app_hint_rules() -> None:
    assert classify(b"GET / HTTP/1.1\r\n") == HTTP
    assert classify(b"HTTP/1.0 200 OK\r\n") == HTTP
    assert classify(b"*2\r\n$3\r\nGET\r\n") == RESP
    assert classify(b"get / HTTP/1.1") is None  # methods are upper case
    assert classify(b"GET/") is None  # a space must follow the method
    assert classify(b"*1234567\r\n$") is None  # at most six digits
    assert classify(b"+OK\r\n") is None  # a reply is not a command


def test_unknown_peer_is_a_usage_error() -> None:
    done = run_module("benchmarks.peers", "--peers", "dpkt,wireshark-ng")
    assert done.returncode == 2
    assert "unknown peer wireshark-ng" in done.stderr
    assert set(PEERS) == {"tshark", "dpkt", "struct", "scapy", "pyshark"}


@pytest.mark.slow
def test_scaling_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_module(
        "benchmarks.scaling",
        "--sizes", "1M,2M", "--chunk-sizes", "1M,2M", "--chunk-capture", "2M",
        "--flows", "10,200", "--flows-size", "2M", "--jobs", "1", "--batch-files", "2", "--batch-size", "1M",
        "--repeat", "1", "--skip", "start", "--out", out, "--workdir", tmp_path / "work",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "scaling.json").read_text())
    assert [p["capture_bytes"] for p in results["size"]] == sorted(p["capture_bytes"] for p in results["size"])
    for point in results["size"]:
        assert point["decode_peak_rss_bytes"] > 0 and point["scan_megabytes_per_second"] > 0
    small_chunks, large_chunks = results["chunk"]
    assert small_chunks["batches"] > large_chunks["batches"] >= 1
    assert [p["flows"] for p in results["flows"]] == [10, 200]
    few, many = results["flows"]
    assert many["scan_flows"] > few["scan_flows"]
    assert all(point["scan_flows"] >= point["distinct_flows"] for point in results["flows"])  # the underlay's too
    assert results["jobs"][0]["jobs"] == 1
    for name in ("size", "chunk", "flows", "jobs"):
        assert (out / f"scaling-{name}.png").stat().st_size > 10_000
    assert "CPUs:" in (out / "MACHINE.md").read_text()
