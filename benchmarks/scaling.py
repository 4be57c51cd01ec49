"""How vxlaninspect scales: with capture size, chunk size, processes and flows; and how fast it starts.

    python -m benchmarks.scaling [--sizes 10M,100M,1G,2G] [--chunk-sizes 4M,32M,128M]
        [--flows 10,1000,100000,5000000] [--jobs 1,2] [--out benchmarks/results]

Every figure comes from a fresh process (``benchmarks.scaling_probe``), so peak
memory (``VmHWM``) is that of the measurement alone:

* size: ``open_capture`` + the kernel, and ``vxlaninspect.scan`` end to
  end, on generated captures of each size; peak RSS should stay flat;
* chunk: ``open_capture(path, chunk_bytes=...)`` + the kernel on one capture;
* jobs: ``vxlaninspect scan DIR -j N`` over a directory of captures;
* flows: ``scan`` on captures of one size with more and more overlay flows;
* start: ``vxlaninspect scan`` of a tiny capture with an empty numba cache
  (first run: compiles), then with the cache filled (warm start).

Writes ``scaling.json``, PNG plots and ``MACHINE.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .generate import DEFAULT_MIX, MIB, argparse_type, generate, parse_size
from .machine import describe, markdown, start_environment
from .plots import scaling_figures

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path("/tmp/vxlaninspect-bench")
DEFAULT_OUT = REPO / "benchmarks" / "results"
FLAT_RSS_FROM = 100 * MIB
"""Requested capture sizes from this one up must decode in about the same peak memory."""
MAX_RSS_GROWTH = 0.20
MAX_WARM_START_SECONDS = 1.5
TINY_CAPTURE_BYTES = 64 * 1024
WARM_STARTS = 5


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def probe(*args: object, env: dict[str, str] | None = None) -> dict[str, object]:
    """``benchmarks.scaling_probe`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling_probe", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe {args[0]} failed ({done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def best_of(repeat: int, *args: object) -> dict[str, object]:
    """The fastest of ``repeat`` probes, with the highest peak memory any of them reached."""
    runs = [probe(*args) for _ in range(repeat)]
    best = min(runs, key=lambda run: run["seconds"])
    return {**best, "peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs)}


def rates(prefix: str, measured: dict[str, object]) -> dict[str, object]:
    """A probe's figures under ``prefix``: seconds, packets/s, MB/s of captured bytes, peak RSS."""
    seconds = measured["seconds"]
    figures = {
        f"{prefix}_seconds": seconds,
        f"{prefix}_peak_rss_bytes": measured["peak_rss_bytes"],
    }
    if "packets" in measured:
        figures[f"{prefix}_packets_per_second"] = measured["packets"] / seconds
        figures[f"{prefix}_megabytes_per_second"] = measured["captured_bytes"] / 1e6 / seconds
    return figures


class Captures:
    """Generated captures in the work directory, made once per (size, flows, seed) and removed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.made: dict[tuple[int, int, int], dict[str, object]] = {}

    def get(self, size: int, flows: int = 10_000, seed: int = 0, directory: Path | None = None) -> dict[str, object]:
        key = (size, flows, seed)
        if key not in self.made:
            where = directory or self.workdir
            where.mkdir(parents=True, exist_ok=True)
            progress(f"  generating {size / 1e6:,.0f} MB, {flows:,} flows ...")
            result = generate(
                where / f"s{size}-f{flows}-r{seed}.pcap", size=size, flows=flows, mix=DEFAULT_MIX, seed=seed
            )
            self.made[key] = {
                "path": result.path,
                "requested_bytes": size,
                "capture_bytes": result.capture_bytes,
                "capture_megabytes": result.capture_bytes / 1e6,
                "packets": result.packets,
                "distinct_flows": result.flows,
            }
        return self.made[key]

    def drop(self, size: int, flows: int = 10_000, seed: int = 0) -> None:
        made = self.made.pop((size, flows, seed), None)
        if made:
            Path(made["path"]).unlink(missing_ok=True)


def size_sweep(captures: Captures, sizes: list[int], repeat: int) -> list[dict[str, object]]:
    points = []
    for size in sizes:
        capture = captures.get(size)
        progress(f"  size {capture['capture_megabytes']:,.0f} MB: decode, scan ...")
        decoded = best_of(repeat, "decode", capture["path"], 32 * MIB)
        scanned = best_of(repeat, "scan", capture["path"])
        points.append(
            {
                **capture,
                **rates("decode", decoded),
                **rates("scan", scanned),
                "scan_flows": scanned["flows"],
                "load_average": os.getloadavg(),
            }
        )
        if size != max(sizes):
            captures.drop(size)
    return points


def chunk_sweep(capture: dict[str, object], chunk_sizes: list[int], repeat: int) -> list[dict[str, object]]:
    points = []
    for chunk in chunk_sizes:
        progress(f"  chunk {chunk / MIB:,.0f} MiB ...")
        decoded = best_of(repeat, "decode", capture["path"], chunk)
        points.append(
            {
                "chunk_bytes": chunk,
                "chunk_megabytes": chunk / 1e6,
                "capture_megabytes": capture["capture_megabytes"],
                "batches": decoded["batches"],
                **rates("decode", decoded),
                "load_average": os.getloadavg(),
            }
        )
    return points


def flows_sweep(captures: Captures, flow_counts: list[int], size: int, repeat: int) -> list[dict[str, object]]:
    points = []
    for flows in flow_counts:
        capture = captures.get(size, flows)
        progress(
            f"  {flows:,} flows ({capture['distinct_flows']:,} distinct in {capture['capture_megabytes']:,.0f} MB): scan ..."
        )
        scanned = best_of(repeat, "scan", capture["path"])
        points.append(
            {
                "flows": flows,
                **capture,
                **rates("scan", scanned),
                "scan_flows": scanned["flows"],
                "evicted_flows": scanned["evicted_flows"],
                "load_average": os.getloadavg(),
            }
        )
        captures.drop(size, flows)
    return points


def jobs_sweep(captures: Captures, jobs: list[int], files: int, size: int, workdir: Path) -> list[dict[str, object]]:
    directory = workdir / "batch"
    made = [captures.get(size, seed=seed, directory=directory) for seed in range(1, files + 1)]
    total = sum(capture["capture_bytes"] for capture in made)
    vxlaninspect = shutil.which("vxlaninspect") or "vxlaninspect"
    points = []
    for n in jobs:
        progress(f"  vxlaninspect scan DIR -j {n} ({files} files, {total / 1e6:,.0f} MB) ...")
        measured = probe("command", vxlaninspect, "scan", directory, "-j", n, "--format", "json", "--quiet")
        points.append(
            {
                "jobs": n,
                "files": files,
                "capture_megabytes": total / 1e6,
                **rates("batch", measured),
                "batch_megabytes_per_second": total / 1e6 / measured["seconds"],
                "load_average": os.getloadavg(),
            }
        )
    for seed in range(1, files + 1):
        captures.drop(size, seed=seed)
    return points


def start_times(captures: Captures, workdir: Path) -> dict[str, object]:
    """``vxlaninspect scan`` of a tiny capture: with an empty numba cache, then warm."""
    tiny = captures.get(TINY_CAPTURE_BYTES, flows=10)
    cache = workdir / "numba-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = start_environment(str(cache))
    vxlaninspect = shutil.which("vxlaninspect") or "vxlaninspect"
    command = ("command", vxlaninspect, "scan", tiny["path"], "--format", "json", "--quiet")
    progress("  first run, empty numba cache ...")
    cold = probe(*command, env=env)
    progress(f"  {WARM_STARTS} warm starts ...")
    warm = [probe(*command, env=env)["seconds"] for _ in range(WARM_STARTS)]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "capture_bytes": tiny["capture_bytes"],
        "packets": tiny["packets"],
        "cold_seconds": cold["seconds"],
        "cold_peak_rss_bytes": cold["peak_rss_bytes"],
        "warm_seconds": warm,
        "warm_median_seconds": statistics.median(warm),
        "warm_best_seconds": min(warm),
        "load_average": os.getloadavg(),
    }


def targets(results: dict[str, object]) -> list[dict[str, object]]:
    found = []
    large = [p for p in results.get("size", []) if p["requested_bytes"] >= FLAT_RSS_FROM]
    if len(large) >= 2:
        for prefix in ("decode", "scan"):
            rss = [p[f"{prefix}_peak_rss_bytes"] for p in large]
            growth = max(rss) / min(rss) - 1
            found.append(
                {
                    "name": f"{prefix}: peak RSS from {large[0]['capture_megabytes']:,.0f} to {large[-1]['capture_megabytes']:,.0f} MB",
                    "bound": f"within {MAX_RSS_GROWTH:.0%}",
                    "measured": f"{min(rss) / 1e6:,.0f}-{max(rss) / 1e6:,.0f} MB ({growth:+.1%})",
                    "passed": growth <= MAX_RSS_GROWTH,
                }
            )
    start = results.get("start")
    if start:
        found.append(
            {
                "name": f"warm start: vxlaninspect scan of a {start['capture_bytes'] // 1024} KiB capture (median of {WARM_STARTS})",
                "bound": f"< {MAX_WARM_START_SECONDS} s",
                "measured": f"{start['warm_median_seconds']:.2f} s",
                "passed": start["warm_median_seconds"] < MAX_WARM_START_SECONDS,
            }
        )
    return found


def render(results: dict[str, object]) -> str:
    from tabulate import tabulate

    parts = []
    columns = {
        "size": ("capture_megabytes", "packets", "decode_megabytes_per_second", "decode_peak_rss_bytes",
                 "scan_megabytes_per_second", "scan_peak_rss_bytes"),
        "chunk": ("chunk_megabytes", "batches", "decode_megabytes_per_second", "decode_peak_rss_bytes"),
        "flows": ("flows", "distinct_flows", "scan_flows", "evicted_flows", "scan_megabytes_per_second",
                  "scan_peak_rss_bytes"),
        "jobs": ("jobs", "files", "capture_megabytes", "batch_seconds", "batch_megabytes_per_second",
                 "batch_peak_rss_bytes"),
    }  # fmt: skip
    for name, keys in columns.items():
        points = results.get(name)
        if not points:
            continue
        rows = [[p[k] / 1e6 if k.endswith("rss_bytes") else p[k] for k in keys] for p in points]
        headers = [k.replace("_peak_rss_bytes", " peak RSS MB").replace("_megabytes_per_second", " MB/s") for k in keys]
        parts.append(f"by {name}\n" + tabulate(rows, headers=headers, floatfmt=",.1f", intfmt=","))
    start = results.get("start")
    if start:
        parts.append(
            f"start: first run (empty numba cache) {start['cold_seconds']:.2f} s; warm "
            + ", ".join(f"{s:.2f}" for s in start["warm_seconds"])
            + f" s (median {start['warm_median_seconds']:.2f} s)"
        )
    parts.append(
        "\n".join(
            f"{t['name']}: {t['measured']} (target {t['bound']}): {'PASS' if t['passed'] else 'FAIL'}"
            for t in results["targets"]
        )
    )
    return "\n\n".join(parts)


def size_list(text: str) -> list[int]:
    return [parse_size(item) for item in text.split(",") if item.strip()]


def int_list(text: str) -> list[int]:
    values = [int(item) for item in text.split(",") if item.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"{text!r}: expected positive whole numbers separated by commas")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=argparse_type(size_list), default="10M,100M,1G,2G", help="capture sizes")
    parser.add_argument("--chunk-sizes", type=argparse_type(size_list), default="4M,32M,128M", help="chunk sizes")
    parser.add_argument(
        "--chunk-capture", type=argparse_type(parse_size), default="1G", help="capture size of the chunk sweep"
    )
    parser.add_argument("--flows", type=argparse_type(int_list), default="10,1000,100000,5000000", help="overlay flows")
    parser.add_argument(
        "--flows-size", type=argparse_type(parse_size), default="1G", help="capture size of the flows sweep"
    )
    parser.add_argument("--jobs", type=argparse_type(int_list), default="1,2", help="processes of the batch scan")
    parser.add_argument("--batch-files", type=int, default=4, help="captures in the batch directory (default 4)")
    parser.add_argument(
        "--batch-size", type=argparse_type(parse_size), default="256M", help="size of each batch capture"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the fastest counts (default 2)")
    parser.add_argument("--skip", default="", help="sweeps to leave out: size,chunk,jobs,flows,start")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"scratch directory (default {DEFAULT_WORKDIR})"
    )
    args = parser.parse_args(argv)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}

    workdir = args.workdir / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}"
    captures = Captures(workdir)
    command = ["python", "-m", "benchmarks.scaling", *(sys.argv[1:] if argv is None else argv)]
    results: dict[str, object] = {"command": command, "machine": describe()}
    try:
        if "size" not in skip:
            progress("throughput and memory by capture size:")
            results["size"] = size_sweep(captures, sorted(args.sizes), args.repeat)
        if "chunk" not in skip:
            progress("throughput and memory by chunk size:")
            results["chunk"] = chunk_sweep(captures.get(args.chunk_capture), sorted(args.chunk_sizes), args.repeat)
        captures.drop(args.chunk_capture)
        if "jobs" not in skip:
            progress("batch throughput by processes:")
            results["jobs"] = jobs_sweep(captures, sorted(args.jobs), args.batch_files, args.batch_size, workdir)
        if "flows" not in skip:
            progress("scan by number of flows:")
            results["flows"] = flows_sweep(captures, sorted(args.flows), args.flows_size, args.repeat)
        if "start" not in skip:
            progress("start-up time:")
            results["start"] = start_times(captures, workdir)
    except (RuntimeError, ValueError, OSError) as error:
        parser.exit(1, f"error: {error}\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    plots = scaling_figures(results, args.out)
    (args.out / "MACHINE.md").write_text(machine_note(results, args.out))
    print(render(results))
    print("\nwrote " + ", ".join(str(p) for p in [args.out / "scaling.json", *plots, args.out / "MACHINE.md"]))
    return 0


def machine_note(results: dict[str, object], out: Path) -> str:
    """MACHINE.md: the machine, and the load average during this run and the peer and decode runs found beside it."""
    commands = [" ".join(results["command"])]
    loads = [("scaling, start", results["machine"]["load_average"]), ("scaling, end", results["load_average_after"])]
    for peers in sorted(out.glob("peers*.json")):
        found = json.loads(peers.read_text())
        commands.append(" ".join(found["command"]))
        loads.append((f"{peers.name}, start", found["machine"]["load_average"]))
        loads.append((f"{peers.name}, end", found["load_average_after"]))
    for decoded in sorted(out.glob("decode*.json")):
        found = json.loads(decoded.read_text())
        commands.append(" ".join(["python -m benchmarks.decode_throughput", *found["command"][1:]]))
        loads.append((f"{decoded.name}, start", found["machine"]["load_average_before"]))
        loads.append((f"{decoded.name}, end", found["machine"]["load_average_after"]))
    note = markdown(results["machine"], "The machine these results were measured on", commands)
    rows = "\n".join(f"| {when} | {', '.join(f'{v:.2f}' for v in load)} |" for when, load in loads)
    return f"{note}\nLoad average (1, 5, 15 minutes) while measuring; the machine is shared, so other work ran too:\n\n| when | load |\n| --- | --- |\n{rows}\n"


if __name__ == "__main__":
    sys.exit(main())
