"""vxlaninspect against its peers on the same captures: the same task, checked for agreement, then timed.

    python -m benchmarks.peers [--size 100M] [--flows N] [--capture FILE ...] [--json OUT]
        [--peers all|dpkt,struct,scapy,pyshark,tshark] [--subset-packets N] [--workdir DIR]

The task (``benchmarks.peer_tasks.task``): packets per VXLAN VNI, and which
inner TCP flows per VNI carry HTTP or RESP. Every tool runs in its own fresh
process (``benchmarks.peer_tasks.runner``), so its peak memory is its own.

1. The first ``--subset-packets`` records of the capture are written to a
   subset file, and every tool, vxlaninspect included, performs the task on it.
   Their answers must agree (packets, bytes, per-VNI counts, labelled flows);
   otherwise the command prints the differences and exits 1 before any speed.
2. vxlaninspect (library and command) and tshark perform the task on the whole
   capture, and must agree again.
3. dpkt, the struct loop, scapy and pyshark are timed on the subset only: their
   rates are extrapolated to the capture and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tabulate import tabulate

from .generate import DEFAULT_MIX, argparse_type, generate, parse_size
from .machine import describe
from .peer_agreement import ToolAnswer, disagreements
from .peer_tasks import PEERS, TOOLS, TOOLS_BY_NAME, Tool
from .subset import Subset, write_subset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path("/tmp/vxlaninspect-bench")
DEFAULT_SUBSET_PACKETS = 20_000
REFERENCE = "vxlaninspect"
ALWAYS = ("vxlaninspect", "vxlaninspect-cli")
TARGETS = {"dpkt": 300, "tshark": 1000}
"""Peer: how many times faster than it vxlaninspect should be."""


class Disagreement(Exception):
    """Tools gave different answers on the same packets."""


@dataclass(frozen=True)
class Measurement:
    """One tool's run on one capture (the whole capture, or the subset)."""

    tool: str
    scope: str  # "capture" or "subset"
    capture: str
    packets: int
    captured_bytes: int
    seconds: float
    setup_seconds: float
    peak_rss_bytes: int
    rss_scope: str
    answer: dict[str, object]

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.captured_bytes / 1e6 / self.seconds


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(tool: Tool, capture: Path, scope: str, workdir: Path) -> tuple[Measurement, ToolAnswer]:
    """Run ``tool`` on ``capture`` in a fresh interpreter."""
    flows_file = workdir / f"{tool.name}.{scope}.flows"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_tasks.runner", tool.name, str(capture), str(flows_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool.name} failed on {capture} ({done.returncode}):\n{done.stderr.strip()}")
    result = json.loads(done.stdout)
    answer = result["answer"]
    lines = frozenset(flows_file.read_text().splitlines())
    flows_file.unlink()
    measurement = Measurement(
        tool=tool.name,
        scope=scope,
        capture=str(capture),
        packets=answer["packets"],
        captured_bytes=answer["captured_bytes"],
        seconds=result["seconds"],
        setup_seconds=result["setup_seconds"],
        peak_rss_bytes=result["peak_rss_bytes"],
        rss_scope=result["rss_scope"],
        answer=answer,
    )
    return measurement, ToolAnswer(tool.name, answer["packets"], answer["captured_bytes"], answer["vni_packets"], lines)


def run_all(tools: list[Tool], capture: Path, scope: str, workdir: Path) -> dict[str, Measurement]:
    """Every tool on ``capture``; raises ``Disagreement`` unless all answers agree."""
    measurements, answers = {}, []
    for tool in tools:
        progress(f"  {tool.name} on the {scope} ...")
        measurements[tool.name], answer = measure(tool, capture, scope, workdir)
        answers.append(answer)
        progress(f"    {answer.packets:,} packets in {measurements[tool.name].seconds:.3f} s")
    found = disagreements(answers, f"{capture} ({scope})")
    if found:
        raise Disagreement("\n".join(found))
    return measurements


def figures(subset_run: dict[str, Measurement], capture_run: dict[str, Measurement]) -> list[dict[str, object]]:
    """One row per tool: its rate on the capture, or on the subset extrapolated; and how vxlaninspect compares."""
    reference = capture_run[REFERENCE]
    rows = []
    measured = {**subset_run, **capture_run}
    for name in [tool.name for tool in TOOLS if tool.name in measured]:
        measurement, extrapolated = measured[name], name not in capture_run
        rate = measurement.packets_per_second
        rows.append(
            {
                "tool": name,
                "label": TOOLS_BY_NAME[name].label,
                "measured_on": measurement.scope,
                "extrapolated": extrapolated,
                "packets": measurement.packets,
                "captured_bytes": measurement.captured_bytes,
                "seconds": measurement.seconds,
                "setup_seconds": measurement.setup_seconds,
                "packets_per_second": rate,
                "megabytes_per_second": measurement.megabytes_per_second,
                "seconds_for_capture": reference.packets / rate,
                "peak_rss_bytes": measurement.peak_rss_bytes,
                "rss_scope": measurement.rss_scope,
                "vxlaninspect_times_faster": reference.packets_per_second / rate,
            }
        )
    return rows


def targets(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    by_tool = {row["tool"]: row for row in rows}
    return [
        {
            "name": f"vxlaninspect vs {peer}",
            "bound": bound,
            "measured": by_tool[peer]["vxlaninspect_times_faster"],
            "passed": by_tool[peer]["vxlaninspect_times_faster"] >= bound,
        }
        for peer, bound in TARGETS.items()
        if peer in by_tool
    ]


def benchmark(capture: Path, tools: list[Tool], subset_packets: int, workdir: Path) -> dict[str, object]:
    """Agreement on the subset, agreement and speed on the capture, extrapolated rates of the slow peers."""
    subset: Subset = write_subset(capture, workdir / "subset.pcap", subset_packets)
    progress(f"subset: the first {subset.packets:,} packets of {capture}")
    subset_run = run_all(tools, Path(subset.path), "subset", workdir)
    full_tools = [tool for tool in tools if not tool.slow]
    progress(f"all {len(tools)} tools agree on the subset; the whole capture:")
    capture_run = run_all(full_tools, capture, "capture", workdir)
    rows = figures({k: v for k, v in subset_run.items() if TOOLS_BY_NAME[k].slow}, capture_run)
    return {
        "capture": {"path": str(capture), "file_bytes": capture.stat().st_size, **capture_run[REFERENCE].answer},
        "subset": {**asdict(subset), "tools": {name: asdict(m) for name, m in subset_run.items()}},
        "agreement": {"subset": sorted(subset_run), "capture": sorted(capture_run)},
        "tools": rows,
        "targets": targets(rows),
    }


def render(run: dict[str, object]) -> str:
    """The figures of one capture as a table, and the targets."""
    capture = run["capture"]
    table = tabulate(
        [
            [
                row["label"],
                f"first {row['packets']:,} packets (extrapolated)" if row["extrapolated"] else "whole capture",
                row["seconds"],
                row["packets_per_second"] / 1e6,
                row["megabytes_per_second"],
                row["peak_rss_bytes"] / 1e6,
                row["seconds_for_capture"],
                row["vxlaninspect_times_faster"],
            ]
            for row in run["tools"]
        ],
        headers=[
            "tool",
            "measured on",
            "seconds",
            "M packets/s",
            "MB/s",
            "peak RSS MB",
            "s for capture",
            "vxlaninspect x",
        ],
        floatfmt=("", "", ".3f", ".4f", ",.1f", ",.0f", ",.1f", ",.1f"),
    )
    verdicts = "\n".join(
        f"{t['name']}: {t['measured']:,.1f} x (target >= {t['bound']:,} x): {'PASS' if t['passed'] else 'FAIL'}"
        for t in run["targets"]
    )
    vnis = ", ".join(f"{vni}: {count:,}" for vni, count in capture["vni_packets"].items())
    flows = capture["flows"]
    head = (
        f"{capture['path']}: {capture['packets']:,} packets, {capture['captured_bytes'] / 1e6:,.1f} MB captured; "
        f"VNI packets {{{vnis}}}; {flows['http']:,} HTTP and {flows['resp']:,} RESP flows\n"
        f"every tool agrees on the first {run['subset']['packets']:,} packets; "
        f"{', '.join(run['agreement']['capture'])} agree on the whole capture"
    )
    return f"{head}\n\n{table}\n\n{verdicts}"


def parse_peers(text: str) -> list[str]:
    if text == "all":
        return list(PEERS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)} (choose from {', '.join(PEERS)}, or all)")
    return names


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive whole number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=argparse_type(parse_size), default="100M", help="generated capture size (default 100M)"
    )
    parser.add_argument(
        "--flows", type=int, default=10_000, help="overlay flows of the generated capture (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated capture")
    parser.add_argument("--capture", type=Path, nargs="+", help="benchmark these captures instead of a generated one")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument(
        "--peers", type=argparse_type(parse_peers), default="all", help="all, or some of " + ",".join(PEERS)
    )
    parser.add_argument(
        "--subset-packets",
        type=argparse_type(positive),
        default=DEFAULT_SUBSET_PACKETS,
        help=f"packets of the subset every tool decodes (default {DEFAULT_SUBSET_PACKETS})",
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"scratch directory (default {DEFAULT_WORKDIR})"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated capture and the subset")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    for capture in args.capture or []:
        if not capture.is_file():
            parser.error(f"--capture: {capture} is not a file")
    if "tshark" in args.peers and shutil.which("tshark") is None:
        parser.error("tshark is not installed (apt-get install tshark), or leave it out of --peers")

    tools = [TOOLS_BY_NAME[name] for name in ALWAYS] + [t for t in TOOLS if t.name in args.peers]
    workdir = args.workdir / f"peers-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "command": ["python", "-m", "benchmarks.peers", *(argv or sys.argv[1:])],
        "machine": describe(),
    }
    runs = []
    try:
        if args.capture:
            captures = args.capture
        else:
            progress(f"generating a {args.size / 1e6:,.0f} MB capture ...")
            generated = generate(
                workdir / "peers.pcap", size=args.size, flows=args.flows, mix=DEFAULT_MIX, seed=args.seed
            )
            progress(generated.summary())
            results["generated"] = asdict(generated)
            captures = [Path(generated.path)]
        for capture in captures:
            runs.append(benchmark(capture, tools, args.subset_packets, workdir))
    except Disagreement as error:
        print(f"the tools disagree; no speed is reported.\n{error}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, OSError) as error:
        parser.exit(1, f"error: {error}\n")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["runs"] = runs
    results["load_average_after"] = os.getloadavg()
    print("\n\n".join(render(run) for run in runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = any(not t["passed"] for run in runs for t in run["targets"])
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
