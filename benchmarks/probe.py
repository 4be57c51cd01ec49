"""Measurements that need a fresh interpreter; each prints one JSON object.

    python -m benchmarks.probe start CAPTURE    import vxlaninspect, decode the first table
                                                (compiles the kernel when numba's cache is empty)
    python -m benchmarks.probe memory CAPTURE   decode the whole capture; peak resident memory

The caller chooses numba's cache through ``NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json
import resource
import sys


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux's ``VmHWM``, not ``ru_maxrss``: the latter survives ``exec`` and so
    reports the parent's peak when the parent was the larger.
    """
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def start(path: str) -> dict[str, float | int]:
    from vxlaninspect.decoding import decode

    imported = time.perf_counter()
    tables = decode(path)
    first = next(tables)
    done = time.perf_counter()
    tables.close()
    return {
        "import_seconds": imported - STARTED,
        "first_table_seconds": done - imported,
        "seconds": done - STARTED,
        "packets": len(first),
    }


def memory(path: str) -> dict[str, float | int]:
    from vxlaninspect.decoding import decode

    baseline = peak_rss_bytes()
    began = time.perf_counter()
    packets = 0
    for table in decode(path):
        packets += len(table)
    return {
        "packets": packets,
        "seconds": time.perf_counter() - began,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak_rss_bytes(),
    }


PROBES = {"start": start, "memory": memory}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PROBES:
        print(f"usage: python -m benchmarks.probe {{{'|'.join(PROBES)}}} CAPTURE", file=sys.stderr)
        return 2
    print(json.dumps(PROBES[argv[0]](argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
