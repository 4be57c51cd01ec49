"""The benchmark harness: generated captures checked with tshark and dpkt, and the throughput run end to end."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import dpkt
import pytest
import zstandard

from benchmarks.generate import MIB
from benchmarks.generate import generate as generate_capture

REPO = Path(__file__).resolve().parents[1]
MIX = "vxlan=70,esp=20,underlay=10"
MAX_RECORD_BYTES = 32 + 1516  # a pcapng Enhanced Packet Block around a full Ethernet frame


def run_module(module: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True, check=False
    )


def generate(path: Path, *args: object) -> dict:
    """Run the generator's command line; its JSON summary."""
    summary = path.with_suffix(".json")
    done = run_module("benchmarks.generate", path, *args, "--json", summary)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "MB/s" in done.stdout
    return json.loads(summary.read_text())


def read_frames(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        return list(reader)


def overlay_flows(path: Path) -> tuple[set, int]:
    """Distinct (VNI, bidirectional inner TCP 5-tuple) of the VXLAN packets, and how many such packets."""
    flows, packets = set(), 0
    for _, frame in read_frames(path):
        ip = dpkt.ethernet.Ethernet(frame).data
        if not (isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 4789):
            continue
        vxlan = ip.data.data
        inner = dpkt.ethernet.Ethernet(vxlan[8:]).data
        if isinstance(inner, dpkt.ip.IP) and isinstance(inner.data, dpkt.tcp.TCP):
            ends = frozenset({(inner.src, inner.data.sport), (inner.dst, inner.data.dport)})
            flows.add((int.from_bytes(vxlan[4:7], "big"), ends))
            packets += 1
    return flows, packets


def tshark_fields(tshark: str, path: Path, *fields: str, options: tuple[str, ...] = ()) -> list[list[str]]:
    command = [tshark, "-r", str(path), *options, "-T", "fields", "-E", "separator=/t"]
    for field in fields:
        command += ["-e", field]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("generated") / "mix.pcap"
    return path, generate(path, "--size", "3M", "--flows", 300, "--mix", MIX, "--seed", 7)


@pytest.mark.tshark
@pytest.mark.parametrize(
    ("mix", "fmt", "shares"),
    [
        (MIX, "pcap", (70, 20, 10)),
        ("vxlan=1,esp=1,underlay=1", "pcapng", (1, 1, 1)),
        ("underlay=3,vxlan=1", "pcap", (1, 0, 3)),
    ],
)
def test_tshark_counts_match_the_requested_mix(
    tmp_path: Path, tshark: str, mix: str, fmt: str, shares: tuple[int, ...]
) -> None:
    path = tmp_path / f"mix.{fmt}"
    summary = generate(path, "--size", "2M", "--mix", mix, "--format", fmt, "--seed", 1)
    rows = tshark_fields(tshark, path, "vxlan.vni", "esp.spi")
    vnis = Counter(int(vni) for vni, _ in rows if vni)
    spis = Counter(int(spi, 16) for vni, spi in rows if spi and not vni)
    counts = (sum(vnis.values()), sum(spis.values()), len(rows) - sum(vnis.values()) - sum(spis.values()))
    assert len(rows) == summary["packets"] > 1000
    for count, share in zip(counts, shares):
        assert abs(count - len(rows) * share / sum(shares)) <= 1, (counts, shares)
    assert sorted(vnis) == summary["vnis"]
    assert sorted(spis) == summary["spis"]
    if shares[0]:
        assert min(vnis) >= 4096 and len(vnis) >= 3  # Docker numbers overlay networks from 4096
    assert list(counts) == [summary["categories"][c] for c in ("vxlan", "esp", "underlay")]


@pytest.mark.tshark
def test_tshark_finds_every_checksum_valid(tshark: str, capture: tuple[Path, dict]) -> None:
    path, _ = capture
    checks = ("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")
    rows = tshark_fields(
        tshark, path, "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", options=checks
    )
    statuses = Counter(s for row in rows for column in row for s in column.split(",") if s)
    assert statuses["0"] == 0, statuses  # 0 is "Bad"
    assert statuses["1"] > len(rows)  # "Good": outer and inner IPv4 headers, TCP, UDP


def test_overlay_flows_are_as_many_as_requested(capture: tuple[Path, dict]) -> None:
    path, summary = capture
    flows, packets = overlay_flows(path)
    assert packets > 1500
    assert len(flows) == summary["flows"] == 300


def test_more_flows_than_packets_gives_every_packet_its_own_flow(tmp_path: Path) -> None:
    path = tmp_path / "many.pcap"
    summary = generate(path, "--size", "1M", "--flows", 5_000_000)
    flows, packets = overlay_flows(path)
    assert len(flows) == packets == summary["flows"]


def test_chunks_join_seamlessly_and_flows_and_sequences_run_on_across_blocks(tmp_path: Path) -> None:
    whole, chunked = tmp_path / "whole.pcap", tmp_path / "chunked.pcap"
    result = generate_capture(whole, size=13 * MIB, flows=2000, seed=9)
    generate_capture(chunked, size=13 * MIB, flows=2000, seed=9, chunk_bytes=1)  # one block per write
    assert whole.read_bytes() == chunked.read_bytes()
    frames = read_frames(whole)
    assert len(frames) == result.packets > 2 * 8192  # more than two repeated blocks
    flows, _ = overlay_flows(whole)
    assert len(flows) == result.flows == 2000
    times = [ts for ts, _ in frames]
    assert times == sorted(times)
    assert_esp_sequences_count_up(frames, result.spis)


def assert_esp_sequences_count_up(frames: list[tuple[float, bytes]], spis: list[int]) -> None:
    sequences = defaultdict(list)
    for _, frame in frames:
        ip = dpkt.ethernet.Ethernet(frame).data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.esp.ESP):
            sequences[ip.data.spi].append(ip.data.seq)
    assert sorted(sequences) == sorted(spis)
    for seqs in sequences.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_timestamps_rise_and_esp_sequence_numbers_count_up_per_spi(capture: tuple[Path, dict]) -> None:
    path, summary = capture
    frames = read_frames(path)
    times = [ts for ts, _ in frames]
    assert times == sorted(times) and times[-1] > times[0]
    assert_esp_sequences_count_up(frames, summary["spis"])


def test_same_seed_writes_the_same_bytes_and_another_seed_other_bytes(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    for path, seed in ((first, 3), (again, 3), (other, 4)):
        generate(path, "--size", "1M", "--seed", seed)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_compressed_output_holds_the_same_capture(tmp_path: Path, fmt: str) -> None:
    plain = tmp_path / f"plain.{fmt}"
    summary = generate(plain, "--size", "2M", "--format", fmt, "--seed", 5)
    gz, zst = tmp_path / f"c.{fmt}.gz", tmp_path / f"c.{fmt}.zst"
    generate(gz, "--size", "2M", "--format", fmt, "--seed", 5, "--compress", "gzip")
    generate(zst, "--size", "2M", "--format", fmt, "--seed", 5, "--compress", "zstd")
    data = plain.read_bytes()
    assert gzip.decompress(gz.read_bytes()) == data
    assert zstandard.ZstdDecompressor().stream_reader(zst.read_bytes()).read() == data
    assert len(read_frames(plain)) == summary["packets"]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_size_is_an_upper_bound_filled_to_the_last_whole_record(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"sized.{fmt}"
    summary = generate(path, "--size", "1500K", "--format", fmt)
    size = path.stat().st_size
    assert size == summary["capture_bytes"] == summary["file_bytes"]
    assert 1500 * 1024 - MAX_RECORD_BYTES < size <= 1500 * 1024


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--mix", "vxlan=x"), 2, "weight of vxlan must be a whole number"),
        (("--mix", "geneve=5"), 2, "unknown category 'geneve'"),
        (("--size", "lots"), 2, "size 'lots'"),
        (("--flows", "1"), 1, "flows: 1 is outside"),
        (("--mix", "vxlan=0"), 1, "mix: weights must be whole numbers"),
        (("--size", "30"), 1, "cannot hold a single record"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    done = run_module("benchmarks.generate", tmp_path / "x.pcap", *args)
    assert done.returncode == status
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_unwritable_output_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.pcap"
    done = run_module("benchmarks.generate", target, "--size", "1M")
    assert done.returncode == 1
    assert str(target) in done.stderr and "Traceback" not in done.stderr


def test_library_sees_the_generated_mix(capture: tuple[Path, dict]) -> None:
    from vxlaninspect.decoding import decode
    from vxlaninspect.schema import Encap, Status

    path, summary = capture
    encaps, vnis = Counter(), set()
    for table in decode(path):
        assert (table.rows["status"] == Status.OK).all()
        encaps.update(table.rows["encap"].tolist())
        vnis.update(table.rows["vni"][table.rows["encap"] == Encap.VXLAN].tolist())
    categories = summary["categories"]
    assert [encaps[Encap.VXLAN], encaps[Encap.ESP], encaps[Encap.NONE]] == [
        categories["vxlan"],
        categories["esp"],
        categories["underlay"],
    ]
    assert sorted(vnis) == summary["vnis"]


@pytest.mark.slow
def test_throughput_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    workdir = tmp_path / "work"
    done = run_module(
        "benchmarks.decode_throughput",
        "--size",
        "2M",
        "--rss-size",
        "3M",
        "--dpkt-packets",
        500,
        "--repeat",
        1,
        "--workdir",
        workdir,
        "--json",
        out,
        "--check",
    )
    figures = json.loads(out.read_text())
    targets = figures["targets"]
    assert done.returncode == (0 if all(t["passed"] for t in targets) else 1), done.stderr

    packets = figures["generated"]["packets"]
    for key in ("decode_file", "scan_file", "kernel_in_memory", "kernel_in_memory_one_thread"):
        assert figures[key]["packets"] == packets
        assert figures[key]["bytes"] == figures["decode_file"]["bytes"]
        assert figures[key]["seconds"] > 0 and math.isfinite(figures[key]["packets_per_second"])
    assert figures["dpkt_loop"]["packets"] == 500 and figures["dpkt_loop"]["extrapolated"] is True
    assert figures["dpkt_loop"]["unparsed"] == 0
    ratios = figures["ratios"]
    assert set(ratios) == {"kernel_vs_dpkt", "kernel_one_thread_vs_dpkt", "decode_file_vs_dpkt", "tables_vs_decode_file"}
    assert all(ratios[name] > 0 for name in ("kernel_vs_dpkt", "kernel_one_thread_vs_dpkt", "decode_file_vs_dpkt"))
    scanned, decoded = figures["scan_file"]["seconds"], figures["decode_file"]["seconds"]
    assert ratios["tables_vs_decode_file"] == pytest.approx(scanned / decoded - 1)
    assert figures["start"]["cold"]["seconds"] > 0 and figures["start"]["warm"]["seconds"] > 0
    assert figures["memory"]["packets"] > packets  # the 3 MB capture holds more than the 2 MB one
    assert figures["memory"]["peak_rss_bytes"] >= figures["memory"]["baseline_rss_bytes"] > 0

    assert len(targets) == 6
    lines = done.stdout.splitlines()
    for target in targets:
        bound, measured = target["bound"], target["measured"]
        assert target["passed"] == (measured >= bound if target["at_least"] else measured < bound)
        line = next(line for line in reversed(lines) if line.startswith(target["name"]))
        assert line.rstrip().endswith("PASS" if target["passed"] else "FAIL")
    assert not list(workdir.glob("*.pcap"))  # generated captures are removed
