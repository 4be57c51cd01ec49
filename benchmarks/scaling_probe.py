"""Measurements for ``benchmarks.scaling`` that need a fresh process; each prints one JSON object.

    python -m benchmarks.scaling_probe decode CAPTURE CHUNK_BYTES   open_capture + the kernel, chunk by chunk
    python -m benchmarks.scaling_probe scan CAPTURE                 vxlaninspect.scan, end to end
    python -m benchmarks.scaling_probe command ARG...               run a command; its time and peak memory

``decode`` and ``scan`` load the compiled code on a one-packet capture before
the clock starts. Peak memory is ``VmHWM`` of this process, or for ``command``
the ``ru_maxrss`` of the largest process it waited for (this probe's own small
interpreter is the floor of that figure).
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import time

ONE_PACKET_PCAP = (
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 60, 60) + bytes(60)
)


def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def decode(path: str, chunk_bytes: str) -> dict[str, object]:
    import numpy as np

    from vxlaninspect.capture import open_capture
    from vxlaninspect.config import DEFAULT_CONFIG
    from vxlaninspect.kernel import decode_batch

    with open_capture(io.BytesIO(ONE_PACKET_PCAP)) as capture:
        for batch in capture.batches():
            decode_batch(batch, DEFAULT_CONFIG)
    baseline = vm_hwm_bytes()
    began = time.perf_counter()
    packets = captured = batches = 0
    with open_capture(path, chunk_bytes=int(chunk_bytes)) as capture:
        for batch in capture.batches():
            rows = decode_batch(batch, DEFAULT_CONFIG)
            packets += len(rows)
            captured += int(batch.caplen.sum(dtype=np.uint64))
            batches += 1
    return {
        "packets": packets,
        "captured_bytes": captured,
        "batches": batches,
        "seconds": time.perf_counter() - began,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": vm_hwm_bytes(),
    }


def scan(path: str) -> dict[str, object]:
    from vxlaninspect.scanning import scan as scan_captures

    scan_captures(io.BytesIO(ONE_PACKET_PCAP))
    baseline = vm_hwm_bytes()
    began = time.perf_counter()
    report = scan_captures(path)
    seconds = time.perf_counter() - began
    peak = vm_hwm_bytes()
    return {
        "packets": report.stats.packets,
        "captured_bytes": report.stats.bytes,
        "flows": len(report.flows),
        "evicted_flows": report.stats.evicted_flows,
        "seconds": seconds,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
    }


def command(*args: str) -> dict[str, object]:
    began = time.perf_counter()
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return {"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


PROBES = {"decode": decode, "scan": scan, "command": command}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PROBES:
        print(f"usage: python -m benchmarks.scaling_probe {{{'|'.join(PROBES)}}} ARG...", file=sys.stderr)
        return 2
    print(json.dumps(PROBES[argv[0]](*argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
