"""Measure vxlaninspect's decode throughput, start-up time and memory on a synthetic capture.

    python -m benchmarks.decode_throughput [--size 1G] [--capture FILE] [--json OUT]

(a) ``vxlaninspect.decode`` of the capture file, and ``vxlaninspect.scan`` of it
(decode, then flows, tunnels and networks, no payload inspection), the
difference being what building those tables costs; (b) the kernel alone
over batches already read into memory, on every core and on one thread; (c) a
plain dpkt loop doing the same decode work on the first packets, its rate
extrapolated; (d) first-run compile and warm start, each in a fresh interpreter;
(e) peak resident memory of decoding a large capture in a fresh interpreter.
Then each figure is checked against the project's target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import dpkt
import numba
import numpy as np
from tabulate import tabulate

from vxlaninspect.capture import open_capture
from vxlaninspect.config import DEFAULT_CONFIG
from vxlaninspect.decoding import decode
from vxlaninspect.errors import CaptureError
from vxlaninspect.kernel import decode_batch
from vxlaninspect.records import RecordBatch
from vxlaninspect.row_buffers import RowBuffers
from vxlaninspect.scanning import scan

from .dpkt_baseline import decode_frames
from .machine import start_environment
from .generate import (
    DEFAULT_MIX,
    MIB,
    Format,
    GenerationResult,
    argparse_type,
    generate,
    parse_size,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path("/tmp/vxlaninspect-bench")
START_CAPTURE_BYTES = 1 * MIB
MIN_PACKETS_PER_SECOND = 10e6
MIN_BYTES_PER_SECOND = 1e9
MIN_DPKT_RATIO = 300
MAX_PEAK_RSS_BYTES = 500e6
MAX_COMPILE_SECONDS = 10
MAX_TABLES_SHARE = 0.20
"""Building flows, tunnels and networks: at most this share of the decode time."""


@dataclass(frozen=True)
class Rate:
    """``packets`` of ``bytes`` captured bytes decoded in ``seconds``."""

    packets: int
    bytes: int
    seconds: float

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds

    def to_dict(self) -> dict[str, float]:
        return {
            **asdict(self),
            "packets_per_second": self.packets_per_second,
            "megabytes_per_second": self.megabytes_per_second,
        }


@dataclass(frozen=True)
class Target:
    """A figure and the bound it must meet."""

    name: str
    measured: float
    bound: float
    at_least: bool  # the figure must be >= bound; otherwise < bound
    unit: str

    @property
    def passed(self) -> bool:
        return self.measured >= self.bound if self.at_least else self.measured < self.bound

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evict_page_cache(path: Path) -> None:
    """Drop the file's pages from the page cache, so the next read comes from the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def decode_pass(path: Path) -> Rate:
    """One pass of ``decode(path)``, counting packets and captured bytes."""
    packets = captured = 0
    began = time.perf_counter()
    for table in decode(path):
        packets += len(table)
        captured += int(table.rows["caplen"].sum(dtype=np.uint64))
    return Rate(packets, captured, time.perf_counter() - began)


def scan_pass(path: Path) -> Rate:
    """One pass of ``scan(path)``: the Report's flows, tunnels, services and networks, without payload inspection."""
    began = time.perf_counter()
    report = scan(path)
    _ = report.networks  # networks and services are derived on first use: time them too
    seconds = time.perf_counter() - began
    return Rate(report.stats.packets, sum(c.bytes for c in report.captures), seconds)


def measure_file(path: Path, repeat: int, cold: bool) -> tuple[Rate, Rate]:
    """Fastest of ``repeat`` passes of ``decode(path)`` and of ``scan(path)``, taken in turn."""
    decoded, scanned = [], []
    for _ in range(repeat):
        for one_pass, passes in ((decode_pass, decoded), (scan_pass, scanned)):
            if cold:
                evict_page_cache(path)
            passes.append(one_pass(path))
    return min(decoded, key=lambda rate: rate.seconds), min(scanned, key=lambda rate: rate.seconds)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive whole number")
    return value


def compact(batch: RecordBatch) -> RecordBatch:
    """A copy of ``batch`` that owns just the bytes its records use."""
    lo = int(batch.data_start.min())
    hi = int((batch.data_start + batch.caplen).max())
    return replace(batch, data=batch.data[lo:hi].copy(), data_start=batch.data_start - lo)


def load_batches(path: Path) -> list[RecordBatch]:
    with open_capture(path) as capture:
        return [compact(batch) for batch in capture.batches() if len(batch)]


def measure_kernel(batches: list[RecordBatch], repeat: int, threads: int | None) -> Rate:
    """Best of ``repeat`` passes of the kernel over batches held in memory, tables taken as ``decode()`` takes them."""
    tables = RowBuffers()
    decode_batch(batches[0], DEFAULT_CONFIG, threads=threads, out=tables.take(len(batches[0])))
    packets = sum(len(b) for b in batches)
    captured = sum(int(b.caplen.sum(dtype=np.uint64)) for b in batches)
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        for batch in batches:
            decode_batch(batch, DEFAULT_CONFIG, threads=threads, out=tables.take(len(batch)))
        seconds.append(time.perf_counter() - began)
    return Rate(packets, captured, min(seconds))


def measure_dpkt(batches: list[RecordBatch], limit: int, repeat: int) -> tuple[Rate, int]:
    """Fastest of ``repeat`` passes of the dpkt loop over the first ``limit`` frames, read into memory first;
    and how many dpkt could not parse."""
    frames: list[bytes] = []
    for batch in batches:
        take = min(len(batch), limit - len(frames))
        frames.extend(batch.record(i) for i in range(take))
        if len(frames) == limit:
            break
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        unparsed = decode_frames(frames, DEFAULT_CONFIG.vxlan_ports)
        seconds.append(time.perf_counter() - began)
    return Rate(len(frames), sum(len(f) for f in frames), min(seconds)), unparsed


def run_probe(kind: str, capture: Path, cache_dir: Path) -> dict[str, float | int]:
    """``benchmarks.probe`` in a fresh interpreter with numba's cache in ``cache_dir``."""
    env = start_environment(str(cache_dir))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", kind, str(capture)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe {kind} on {capture} failed ({done.returncode}):\n{done.stderr}")
    return {**json.loads(done.stdout), "process_seconds": time.perf_counter() - began}


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "dpkt": dpkt.__version__,
        "load_average_before": os.getloadavg(),
    }


def make_capture(args: argparse.Namespace, name: str, size: int) -> GenerationResult:
    progress(f"generating {size / 1e6:,.0f} MB capture in {args.workdir} ...")
    path = args.workdir / f"{name}.{args.format}"
    result = generate(path, size=size, flows=args.flows, mix=DEFAULT_MIX, seed=args.seed, fmt=Format(args.format))
    progress(result.summary())
    return result


def throughput_figures(capture: Path, args: argparse.Namespace) -> dict[str, object]:
    """(a), (b) and (c), with the ratios between them."""
    progress("(a) decoding and scanning the file ...")
    from_file, scanned = measure_file(capture, args.repeat, args.cold)
    progress("(b) the kernel over batches in memory ...")
    batches = load_batches(capture)
    kernel = measure_kernel(batches, args.repeat, threads=None)
    kernel_one = measure_kernel(batches, args.repeat, threads=1)
    progress(f"(c) the dpkt loop over the first {args.dpkt_packets:,} packets ...")
    baseline, unparsed = measure_dpkt(batches, args.dpkt_packets, args.repeat)
    return {
        "capture": {"path": str(capture), "file_bytes": capture.stat().st_size, "packets": from_file.packets},
        "decode_file": {**from_file.to_dict(), "page_cache": "cold" if args.cold else "warm"},
        "scan_file": {**scanned.to_dict(), "page_cache": "cold" if args.cold else "warm"},
        "kernel_in_memory": {**kernel.to_dict(), "threads": len(os.sched_getaffinity(0))},
        "kernel_in_memory_one_thread": {**kernel_one.to_dict(), "threads": 1},
        "dpkt_loop": {
            **baseline.to_dict(),
            "unparsed": unparsed,
            "extrapolated": True,
            "extrapolated_seconds_for_capture": from_file.packets / baseline.packets_per_second,
        },
        "ratios": {
            "kernel_vs_dpkt": kernel.packets_per_second / baseline.packets_per_second,
            "kernel_one_thread_vs_dpkt": kernel_one.packets_per_second / baseline.packets_per_second,
            "decode_file_vs_dpkt": from_file.packets_per_second / baseline.packets_per_second,
            "tables_vs_decode_file": scanned.seconds / from_file.seconds - 1,
        },
    }


def check_targets(results: dict[str, object]) -> list[Target]:
    kernel, memory = results["kernel_in_memory"], results["memory"]
    return [
        Target("kernel in memory: packets/s", kernel["packets_per_second"], MIN_PACKETS_PER_SECOND, True, "packets/s"),
        Target("kernel in memory: bytes/s", kernel["bytes"] / kernel["seconds"], MIN_BYTES_PER_SECOND, True, "bytes/s"),
        Target("kernel in memory vs dpkt loop", results["ratios"]["kernel_vs_dpkt"], MIN_DPKT_RATIO, True, "x"),
        Target(
            f"peak RSS, {memory['capture_bytes'] / 1e6:,.0f} MB capture",
            memory["peak_rss_bytes"],
            MAX_PEAK_RSS_BYTES,
            False,
            "bytes",
        ),
        Target("first run, fresh numba cache", results["start"]["cold"]["seconds"], MAX_COMPILE_SECONDS, False, "s"),
        Target(
            "flows, tunnels, networks vs decode(path)",
            results["ratios"]["tables_vs_decode_file"],
            MAX_TABLES_SHARE,
            False,
            "share",
        ),
    ]


def run(args: argparse.Namespace) -> dict[str, object]:
    """Every measurement, in order; generated files are removed unless ``--keep``."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"command": sys.argv, "machine": machine()}
    made: list[Path] = []
    cache_dir = args.workdir / "numba-cache"
    try:
        if args.capture:
            generated, capture = None, args.capture
        else:
            generated = make_capture(args, "throughput", args.size)
            capture = Path(generated.path)
            made.append(capture)
        results["generated"] = generated and {
            **asdict(generated),
            "megabytes_per_second": generated.megabytes_per_second,
        }
        small = Path(make_capture(args, "start", START_CAPTURE_BYTES).path)
        made.append(small)

        progress("compiling (in this process) ...")
        for _ in decode(small):
            pass
        results.update(throughput_figures(capture, args))

        progress("(d) first-run compile and warm start in fresh interpreters ...")
        shutil.rmtree(cache_dir, ignore_errors=True)
        results["start"] = {"cold": run_probe("start", small, cache_dir), "warm": run_probe("start", small, cache_dir)}

        progress("(e) peak memory of decoding a large capture in a fresh interpreter ...")
        if generated and args.rss_size == args.size:
            large = generated
        else:
            large = make_capture(args, "memory", args.rss_size)
            made.append(Path(large.path))
        results["memory"] = {**run_probe("memory", Path(large.path), cache_dir), "capture_bytes": large.capture_bytes}
    finally:
        if not args.keep:
            for path in made:
                path.unlink(missing_ok=True)
            shutil.rmtree(cache_dir, ignore_errors=True)

    results["targets"] = [t.to_dict() for t in check_targets(results)]
    results["machine"]["load_average_after"] = os.getloadavg()
    return results


DISPLAY_UNITS = {
    "packets/s": (1e6, "M packets/s"),
    "bytes/s": (1e9, "GB/s"),
    "bytes": (1e6, "MB"),
    "x": (1, "x"),
    "s": (1, "s"),
    "share": (0.01, "%"),
}


def show(value: float, unit: str) -> str:
    scale, label = DISPLAY_UNITS[unit]
    return f"{value / scale:,.3g} {label}"


def render(results: dict[str, object]) -> str:
    """The figures as tables."""
    dpkt_rate = results["dpkt_loop"]["packets_per_second"]
    rows = []
    generated = results["generated"]
    if generated:
        rows.append(
            [
                "generate the capture",
                generated["packets"],
                generated["seconds"],
                generated["packets"] / generated["seconds"] / 1e6,
                generated["megabytes_per_second"],
                "",
            ]
        )
    for key, label in (
        ("decode_file", f"decode(path), page cache {results['decode_file']['page_cache']}"),
        ("scan_file", "scan(path): + flows, tunnels, networks"),
        ("kernel_in_memory", f"kernel in memory, {results['kernel_in_memory']['threads']} threads"),
        ("kernel_in_memory_one_thread", "kernel in memory, 1 thread"),
        ("dpkt_loop", "dpkt loop (extrapolated)"),
    ):
        figure = results[key]
        rows.append(
            [
                label,
                figure["packets"],
                figure["seconds"],
                figure["packets_per_second"] / 1e6,
                figure["megabytes_per_second"],
                figure["packets_per_second"] / dpkt_rate,
            ]
        )
    throughput = tabulate(
        rows,
        headers=["measurement", "packets", "seconds", "M packets/s", "MB/s", "x dpkt"],
        floatfmt=("", ",.0f", ".3f", ".3f", ",.0f", ",.0f"),
        intfmt=",",
    )
    start, memory = results["start"], results["memory"]
    other = tabulate(
        [
            ["first run: import + compile + first table (fresh numba cache)", f"{start['cold']['seconds']:.2f} s"],
            ["warm start: import + first table (cached)", f"{start['warm']['seconds']:.2f} s"],
            [
                f"peak RSS decoding {memory['capture_bytes'] / 1e6:,.0f} MB ({memory['packets']:,} packets)",
                f"{memory['peak_rss_bytes'] / 1e6:,.0f} MB (after import {memory['baseline_rss_bytes'] / 1e6:,.0f} MB)",
            ],
        ],
        headers=["start-up and memory", ""],
    )
    verdicts = tabulate(
        [
            [
                t["name"],
                f"{'>=' if t['at_least'] else '<'} {show(t['bound'], t['unit'])}",
                show(t["measured"], t["unit"]),
                "PASS" if t["passed"] else "FAIL",
            ]
            for t in results["targets"]
        ],
        headers=["target", "bound", "measured", ""],
    )
    host = results["machine"]
    loads = f"{host['load_average_before'][0]:.1f} before, {host['load_average_after'][0]:.1f} after"
    machine_line = f"{host['usable_cpus']} CPUs, 1-minute load average {loads}"
    return f"{machine_line}\n\n{throughput}\n\n{other}\n\n{verdicts}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--size", type=argparse_type(parse_size), default="1G", help="size of the generated capture (default 1G)"
    )
    parser.add_argument("--capture", type=Path, help="measure this capture instead of generating one")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"scratch directory for captures (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--rss-size",
        type=argparse_type(parse_size),
        default="2G",
        help="size of the capture whose decoding memory is measured (default 2G)",
    )
    parser.add_argument(
        "--dpkt-packets",
        type=argparse_type(positive),
        default=100_000,
        help="packets the dpkt loop decodes (default 100000)",
    )
    parser.add_argument("--flows", type=int, default=10_000, help="overlay flows in generated captures (default 10000)")
    parser.add_argument(
        "--format", choices=[f.value for f in Format], default="pcap", help="format of generated captures"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of generated captures")
    parser.add_argument(
        "--repeat",
        type=argparse_type(positive),
        default=3,
        help="passes of (a), (b) and (c); the fastest counts (default 3)",
    )
    parser.add_argument(
        "--cold", action="store_true", help="evict the capture from the page cache before each pass of (a)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated captures and numba cache in the workdir"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.capture and not args.capture.is_file():
        parser.error(f"--capture: {args.capture} is not a file")
    try:
        results = run(args)
    except (CaptureError, RuntimeError, OSError) as error:
        parser.exit(1, f"error: {error}\n")
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if args.check and not all(t["passed"] for t in results["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
