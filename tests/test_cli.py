"""The command line, through Click's runner and as a subprocess, on real captures."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from vxlaninspect.cli.main import main
from vxlaninspect.report import json_schema

from tests.conftest import CORPUS, SAMPLES

LAB = SAMPLES / "lab-capture"
LAB_PCAP = LAB / "capture.pcap"
LAB_JSON = LAB / "network-inspect.json"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def scan_json(*args: str) -> dict:
    code, out, err = run("scan", "--format", "json", *args)
    assert code in (0, 1), err
    return json.loads(out)


def test_help_has_an_example_for_every_command():
    code, out, _ = run("--help")
    assert code == 0
    commands = [line.split()[0] for line in out.split("Commands:")[1].strip().splitlines()]
    assert set(commands) >= {"scan", "networks", "tunnels", "flows", "leaks", "extract"}
    for command in commands:
        code, text, _ = run(command, "--help")
        assert code == 0 and "vxlaninspect " + command in text, command


def test_help_does_not_load_numpy_or_numba():
    probe = "import sys, vxlaninspect.cli.main; print(any(m in sys.modules for m in ('numpy', 'numba')))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy absent: nothing to keep out")
def test_a_command_starts_without_scipy_linear_algebra():
    """numba would import SciPy's BLAS (0.2 s) on its first cached load; no command needs it."""
    probe = (
        "import sys; from vxlaninspect.cli.main import main\n"
        "try: main(['scan', sys.argv[1], '--quiet'], standalone_mode=False)\n"
        "except SystemExit: pass\n"
        "print('scipy.linalg' in sys.modules, 'numba' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(LAB_PCAP)], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["False", "True"]


def test_scan_names_networks_and_leaked_services_of_the_lab():
    code, out, err = run("scan", LAB_PCAP, "--docker", LAB_JSON)
    assert code == 0, err
    networks = out.split("OVERLAY NETWORKS")[1].split("SERVICES THAT SENT PLAINTEXT")[0]
    assert "4096" in networks and "ingress" in networks and "plaintext" in networks
    leaked = out.split("SERVICES THAT SENT PLAINTEXT")[1].split("WHAT LEAKED")[0]
    assert "web" in leaked and "10.0.0.4:3000/tcp" in leaked
    assert "redis" in leaked and "10.0.1.3:6379/tcp" in leaked


def test_json_report_validates_against_the_schema():
    report = scan_json(LAB_PCAP, "--docker", LAB_JSON)
    jsonschema.validate(report, json_schema())
    assert {n["vni"]: n["verdict"] for n in report["networks"]} == {4096: "plaintext", 4097: "plaintext"}
    assert report["stats"]["packets"] == report["captures"][0]["packets"] > 0


@pytest.mark.parametrize("command,key", [("networks", "networks"), ("tunnels", "tunnels"), ("flows", "flows"), ("leaks", "findings")])
def test_views_as_json_equal_the_report_sections(command, key):
    report = scan_json(LAB_PCAP, "--docker", LAB_JSON)
    extra = ("--limit", "0") if command == "flows" else ()
    code, out, err = run(command, LAB_PCAP, "--docker", LAB_JSON, "--format", "json", *extra)
    assert code == 0, err
    rows = json.loads(out)
    if command == "flows":
        assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, report[key]))
    else:
        assert rows == report[key]


@pytest.mark.parametrize("command", ["networks", "tunnels", "flows", "leaks", "scan"])
def test_csv_parses_with_one_row_per_item(command):
    code, out, err = run(command, LAB_PCAP, "--docker", LAB_JSON, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    report = scan_json(LAB_PCAP, "--docker", LAB_JSON)
    expected = {"networks": "networks", "tunnels": "tunnels", "flows": "flows", "leaks": "findings", "scan": "findings"}
    assert len(rows) == min(len(report[expected[command]]), 50)


def test_markdown_has_a_heading_and_a_table():
    code, out, _ = run("scan", LAB_PCAP, "--format", "markdown")
    assert code == 0
    assert "## Overlay networks" in out and "| VNI" in out


def test_flow_filters_and_limit():
    code, out, _ = run("flows", LAB_PCAP, "--docker", LAB_JSON, "--vni", "4097", "--format", "json", "--limit", "0")
    rows = json.loads(out)
    assert rows and {r["vni"] for r in rows} == {4097}
    code, out, _ = run("flows", LAB_PCAP, "--docker", LAB_JSON, "--service", "web", "--format", "json", "--limit", "2")
    rows = json.loads(out)
    assert len(rows) == 2 and all("web" in (r["service"], r["client_name"]) for r in rows)
    assert rows[0]["bytes"] >= rows[1]["bytes"]


def test_flows_of_a_service_include_those_it_opened():
    """app1_web serves HTTP and is itself a client of app1_redis: --service app1_web shows both."""
    sample = SAMPLES / "swarm-plaintext"
    code, out, _ = run("flows", sample / "capture.pcap", "--docker", sample, "--service", "app1_web", "--format", "json", "--limit", "0")
    rows = json.loads(out)
    assert code == 0
    assert {r["service"] for r in rows} == {"app1_web", "app1_redis"}
    assert all(r["client_name"] == "app1_web" for r in rows if r["service"] == "app1_redis")


def test_verbose_is_an_option_of_scan_only():
    code, out, _ = run("scan", LAB_PCAP, "-vv")
    assert code == 0 and {"CAPTURES", "TUNNELS", "FLOWS"} <= set(out.splitlines())
    code, out, _ = run("scan", LAB_PCAP)
    assert code == 0 and not {"CAPTURES", "TUNNELS", "FLOWS"} & set(out.splitlines())
    code, _, err = run("networks", LAB_PCAP, "-v")
    assert code == 2 and "No such option" in err


def test_output_file(tmp_path):
    out = tmp_path / "report.json"
    code, stdout, _ = run("scan", LAB_PCAP, "--format", "json", "-o", out)
    assert code == 0 and stdout == ""
    assert json.loads(out.read_text())["schema"] == "vxlaninspect.report/1"


def test_fail_on_leak_and_violation():
    assert run("scan", LAB_PCAP, "--fail-on", "leak")[0] == 1
    assert run("scan", LAB_PCAP, "--fail-on", "never")[0] == 0
    assert run("scan", LAB_PCAP, "--fail-on", "violation")[0] == 0
    code, out, _ = run("scan", LAB_PCAP, "--docker", LAB_JSON, "--expect-encrypted", "app", "--fail-on", "violation", "--format", "json")
    assert code == 1
    assert {n["name"]: n["verdict"] for n in json.loads(out)["networks"]}["app"] == "violation"
    assert run("scan", LAB_PCAP, "--expect-encrypted", "4096", "--fail-on", "violation")[0] == 1


def test_missing_path_is_a_one_line_error(tmp_path):
    code, out, err = run("scan", tmp_path / "nope.pcap")
    assert code == 2 and out == ""
    assert err.strip() == f"vxlaninspect: error: {tmp_path / 'nope.pcap'}: at byte 0: no such file or directory"


def test_non_capture_and_empty_files_are_named_with_the_offset(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello world, not a capture\n")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    code, out, err = run("scan", text, empty, "--format", "json", "-j", "1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("vxlaninspect: error: ") for line in lines)
    assert f"{text}: at byte 0: not a pcap or pcapng capture" in lines[0] or f"{text}: at byte 0" in err
    assert f"{empty}: at byte 0:" in err
    assert "Traceback" not in err
    assert len(json.loads(out)["captures"]) == 2


def test_damaged_capture_keeps_what_came_before_and_exits_2(tmp_path):
    data = LAB_PCAP.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 10])
    code, out, err = run("scan", cut, "--format", "json")
    assert code == 2
    whole = scan_json(LAB_PCAP)
    report = json.loads(out)
    assert report["stats"]["packets"] == whole["stats"]["packets"] - 1
    capture = report["captures"][0]
    assert capture["error"] and capture["error_offset"] > 0
    assert err.strip() == f"vxlaninspect: error: {cut}: at byte {capture['error_offset']}: {capture['error']}"


def test_bad_docker_metadata_is_a_usage_error(tmp_path):
    bad = tmp_path / "inspect.json"
    bad.write_text("{not json")
    code, _, err = run("scan", LAB_PCAP, "--docker", bad)
    assert code == 2 and str(bad) in err and "Traceback" not in err


def test_unknown_option_value_is_a_usage_error():
    code, _, err = run("scan", LAB_PCAP, "--vxlan-port", "70000")
    assert code == 2 and "70000" in err


def test_standard_input(tmp_path):
    proc = subprocess.run(
        ["vxlaninspect", "scan", "-", "--format", "json"], input=LAB_PCAP.read_bytes(), capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["captures"][0]["path"] == "-"
    assert report["stats"]["packets"] == scan_json(LAB_PCAP)["stats"]["packets"]


def test_subprocess_exit_codes_and_no_traceback(tmp_path):
    proc = subprocess.run(["vxlaninspect", "scan", str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run(["vxlaninspect", "scan", str(LAB_PCAP), "--fail-on", "leak", "-q"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == ""


def _batch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    (folder / "deeper").mkdir(parents=True)
    shutil.copy(LAB_PCAP, folder / "lab.pcap")
    (folder / "deeper" / "lab.pcap.gz").write_bytes(gzip.compress(LAB_PCAP.read_bytes(), mtime=0))
    (folder / "deeper" / "broken.pcap").write_bytes(LAB_PCAP.read_bytes()[:-7])
    return folder


def _comparable(report: dict) -> dict:
    stats = {k: v for k, v in report["stats"].items() if k != "seconds"}
    return {**report, "stats": stats, "captures": sorted(report["captures"], key=lambda c: c["path"])}


def test_batch_directory_equals_scanning_files_one_by_one(tmp_path):
    folder = _batch_dir(tmp_path)
    code, out, err = run("scan", folder, "-r", "-j", "2", "--format", "json")
    assert code == 2  # the broken file is reported
    combined = json.loads(out)
    assert sorted(Path(c["path"]).name for c in combined["captures"]) == ["broken.pcap", "lab.pcap", "lab.pcap.gz"]
    assert "broken.pcap" in err and err.count("vxlaninspect: error:") == 1
    files = sorted(str(p) for p in folder.rglob("*.pcap*"))
    one_by_one = [json.loads(run("scan", f, "--format", "json")[1]) for f in files]
    from vxlaninspect.report import Report

    merged = Report()
    for part in one_by_one:
        merged = merged + Report.from_dict(part)
    assert _comparable(combined) == _comparable(merged.to_dict())
    code, out, _ = run("scan", folder, "--format", "json")
    assert [Path(c["path"]).name for c in json.loads(out)["captures"]] == ["lab.pcap"]


def test_db_skips_unchanged_files(tmp_path):
    folder = _batch_dir(tmp_path)
    db = tmp_path / "scans.sqlite"
    first = json.loads(run("scan", folder, "-r", "--db", db, "--format", "json")[1])
    # Same size and modification time but other bytes: only a rescan could notice.
    good = folder / "lab.pcap"
    stat = good.stat()
    good.write_bytes(b"\0" * stat.st_size)
    os.utime(good, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = json.loads(run("scan", folder, "-r", "--db", db, "--format", "json")[1])
    assert _comparable(first) == _comparable(second)
    # A touched file is recognised by its content hash when the bytes are the same.
    good.write_bytes(LAB_PCAP.read_bytes())
    third = json.loads(run("scan", folder, "-r", "--db", db, "--format", "json")[1])
    assert _comparable(third) == _comparable(first)
    # Changed bytes with a new modification time are scanned again.
    good.write_bytes(b"\0" * 100)
    fourth = json.loads(run("scan", folder, "-r", "--db", db, "--format", "json")[1])
    assert [c["error"] is not None for c in sorted(fourth["captures"], key=lambda c: c["path"])].count(True) == 2


@pytest.mark.slow
def test_dask_cluster_gives_the_same_report(tmp_path):
    distributed = pytest.importorskip("distributed")
    folder = _batch_dir(tmp_path)
    local = json.loads(run("scan", folder, "-r", "-j", "1", "--format", "json")[1])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, out, err = run("scan", folder, "-r", "--dask", cluster.scheduler_address, "--format", "json")
    assert code == 2, err
    assert _comparable(json.loads(out)) == _comparable(local)


def test_dask_without_distributed_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    code, _, err = run("scan", LAB_PCAP, "--dask", "tcp://127.0.0.1:8786")
    assert code == 2 and "pip install 'vxlaninspect[dask]'" in err and "Traceback" not in err


@pytest.mark.tshark
def test_extract_writes_the_inner_frames_unchanged(tmp_path, tshark):
    out = tmp_path / "app.pcap"
    code, _, err = run("extract", LAB_PCAP, "--vni", "4097", "-w", out)
    assert code == 0, err
    fields = ["-T", "fields", "-e", "frame.time_epoch", "-e", "eth.src", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.len"]
    inner = subprocess.run([tshark, "-r", str(LAB_PCAP), "-Y", "vxlan.vni == 4097", *fields], capture_output=True, text=True, check=True)
    expected = [line.split("\t") for line in inner.stdout.splitlines()]
    # tshark lists inner fields after outer ones: keep the last occurrence of each.
    expected = [[cell.split(",")[-1] for cell in row] for row in expected]
    extracted = subprocess.run([tshark, "-r", str(out), *fields], capture_output=True, text=True, check=True)
    assert [line.split("\t") for line in extracted.stdout.splitlines()] == expected
    assert f"{len(expected)} frames of VNI 4097" in err


def test_extract_by_service_name(tmp_path):
    out = tmp_path / "redis.pcap"
    code, _, err = run("extract", LAB_PCAP, "--vni", "4097", "--service", "redis", "--docker", LAB_JSON, "-w", out)
    assert code == 0, err
    redis_only = json.loads(run("flows", out, "--format", "json", "--limit", "0")[1])
    assert redis_only and all(f["server"] == "10.0.1.3:6379" for f in redis_only)
    code, _, err = run("extract", LAB_PCAP, "--vni", "4097", "--service", "nosuch", "--docker", LAB_JSON, "-w", out)
    assert code == 2 and "nosuch" in err


def test_extract_of_a_cut_capture_keeps_the_frames_before_the_cut(tmp_path):
    cut = tmp_path / "cut.pcap"
    data = LAB_PCAP.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    whole, part = tmp_path / "whole.pcap", tmp_path / "part.pcap"
    assert run("extract", LAB_PCAP, "--vni", "4097", "-w", whole)[0] == 0
    code, _, err = run("extract", cut, "--vni", "4097", "-w", part)
    assert code == 2
    written, message = err.strip().splitlines()
    assert written.endswith(f"frames of VNI 4097 written to {part}")
    assert message.startswith(f"vxlaninspect: error: {cut}: at byte ")
    kept = part.read_bytes()
    assert len(kept) > 24 and whole.read_bytes().startswith(kept)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="capture corpus absent")
def test_underlay_leaks_are_reported_apart_from_overlay_leaks():
    code, out, _ = run("scan", CORPUS / "zeek__redis-50-pings.pcap", CORPUS / "tcpdump__vxlan.pcap")
    assert code == 0
    overlay = out.split("WHAT LEAKED\n")[1].split("WHAT LEAKED OUTSIDE")[0]
    underlay = out.split("WHAT LEAKED OUTSIDE ANY OVERLAY (UNDERLAY)\n")[1]
    assert overlay.strip() == "(none)"
    assert "AUTH ********" in underlay and "127.0.0.1:6379" in underlay


@pytest.mark.skipif(not CORPUS.is_dir(), reason="capture corpus absent")
def test_custom_vxlan_port_finds_the_8472_capture():
    path = CORPUS / "tcpdump__vxlan_port_8472.pcap"
    default = scan_json(path)
    assert [n["vni"] for n in default["networks"]] == [100]
    only_4789 = scan_json(path, "--vxlan-port", "4789")
    assert only_4789["networks"] == [] and only_4789["stats"]["vxlan_packets"] == 0


@pytest.mark.tshark
@pytest.mark.skipif(not CORPUS.is_dir(), reason="capture corpus absent")
def test_verify_agrees_with_tshark_and_lists_known_differences(tshark):
    code, out, err = run("verify", CORPUS / "tcpdump__vxlan_port_8472.pcap", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["packets"] == result["tshark_packets"] == 10
    vni = next(f for f in result["fields"] if f["field"] == "vni")
    assert vni["compared"] == vni["agreed"] == 10
    code, out, _ = run("verify", CORPUS / "tcpdump__esp_truncated.pcap")
    assert code == 0 and "cut-header" in out and "agree" in out.splitlines()[0]


def test_verify_without_tshark_is_a_usage_error(tmp_path):
    code, out, err = run("verify", LAB_PCAP, "--tshark", str(tmp_path / "no-tshark"))
    assert code == 2 and out == "" and "tshark" in err and "Traceback" not in err


@pytest.mark.skipif(shutil.which("script") is None, reason="script(1) from util-linux gives the command a terminal")
def test_progress_bar_on_a_terminal_only(tmp_path):
    typescript = tmp_path / "typescript"
    command = f"vxlaninspect scan {LAB_PCAP} > /dev/null"
    subprocess.run(["script", "-qec", command, str(typescript)], check=True, capture_output=True, timeout=120)
    assert "scanning" in typescript.read_text(errors="replace") and "100%" in typescript.read_text(errors="replace")
    subprocess.run(["script", "-qec", command.replace("scan ", "scan -q "), str(typescript)], check=True, capture_output=True, timeout=120)
    assert "scanning" not in typescript.read_text(errors="replace")
    piped = subprocess.run(["vxlaninspect", "scan", str(LAB_PCAP)], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "scanning" not in piped.stderr
