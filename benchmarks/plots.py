"""PNG figures of the peer and scaling results (matplotlib, no display needed).

python -m benchmarks.plots peers RESULTS.json OUT.png     packets/s of every tool, log scale
python -m benchmarks.plots scaling RESULTS.json OUT_DIR   one figure per sweep of the scaling run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MB = 1e6


def peers_figure(results: dict, out: Path) -> None:
    """A bar per tool: packets/s on a log scale, extrapolated rates hatched, vxlaninspect's lead written on each bar."""
    rows = results["runs"][0]["tools"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    names = [row["tool"] for row in rows]
    rates = [row["packets_per_second"] for row in rows]
    bars = ax.bar(
        names, rates, color=["tab:blue" if row["tool"].startswith("vxlaninspect") else "tab:gray" for row in rows]
    )
    for bar, row in zip(bars, rows):
        if row["extrapolated"]:
            bar.set_hatch("//")
        ax.annotate(
            f"{row['vxlaninspect_times_faster']:,.0f}x" if row["tool"] != "vxlaninspect" else "1x",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_yscale("log")
    ax.set_ylabel("packets per second (log)")
    capture = results["runs"][0]["capture"]
    load = results["machine"]["load_average"][0]
    ax.set_title(
        f"Same task on {capture['packets']:,} packets ({capture['captured_bytes'] / MB:,.0f} MB); "
        f"hatched: first {results['runs'][0]['subset']['packets']:,} packets, extrapolated; load {load:.1f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def sweep_figure(
    points: list[dict], x_key: str, x_label: str, series: dict[str, str], title: str, out: Path, log_x: bool
) -> None:
    """Throughput (MB/s) and peak RSS (MB) against ``x_key``, one line per series (key prefix -> legend)."""
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [point[x_key] for point in points]
    for prefix, legend in series.items():
        if f"{prefix}_megabytes_per_second" not in points[0]:
            continue
        speed.plot(xs, [p[f"{prefix}_megabytes_per_second"] for p in points], marker="o", label=legend)
        memory.plot(xs, [p[f"{prefix}_peak_rss_bytes"] / MB for p in points], marker="o", label=legend)
    for ax, label in ((speed, "throughput, MB/s"), (memory, "peak RSS, MB")):
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def scaling_figures(results: dict, out_dir: Path) -> list[Path]:
    """One PNG per sweep present in ``results``."""
    load = results["machine"]["load_average"][0]
    made = []
    specs = (
        ("size", "capture_megabytes", "capture size, MB", {"decode": "open_capture + kernel", "scan": "scan()"}, True),
        ("chunk", "chunk_megabytes", "chunk size, MB", {"decode": "open_capture + kernel"}, True),
        ("flows", "distinct_flows", "distinct overlay flows in the capture", {"scan": "scan()"}, True),
        ("jobs", "jobs", "processes (vxlaninspect scan DIR -j N)", {"batch": "vxlaninspect scan -j N"}, False),
    )
    for name, x_key, x_label, series, log_x in specs:
        points = results.get(name)
        if not points:
            continue
        out = out_dir / f"scaling-{name}.png"
        sweep_figure(points, x_key, x_label, series, f"vxlaninspect by {name} (1-minute load {load:.1f})", out, log_x)
        made.append(out)
    return made


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("peers", "scaling"):
        print(__doc__, file=sys.stderr)
        return 2
    results = json.loads(Path(argv[1]).read_text())
    if argv[0] == "peers":
        peers_figure(results, Path(argv[2]))
    else:
        scaling_figures(results, Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
