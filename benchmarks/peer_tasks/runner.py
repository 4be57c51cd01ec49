"""Run one tool on one capture in this (fresh) process and measure it; print one JSON object.

    python -m benchmarks.peer_tasks.runner TOOL CAPTURE FLOWS_OUT

The time covers ``run`` alone (import and ``prepare`` are timed apart). Peak
memory is Linux's ``VmHWM`` of this process, read before the answer is put in
canonical form, and the ``ru_maxrss`` of the largest child (a command this
process waited for); the tool's ``RssScope`` says which of them count. The
answer's flow lines go to FLOWS_OUT, one per line, sorted.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib
import json
import resource
import sys
from pathlib import Path


def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(tool_name: str, capture: str, flows_out: Path) -> dict[str, object]:
    from . import TOOLS_BY_NAME, RssScope
    from .task import CanonicalAnswer

    tool = TOOLS_BY_NAME[tool_name]
    module = importlib.import_module(f"{__package__}.{tool.module}")
    prepare = getattr(module, "prepare", None)
    if prepare is not None:
        prepare()
    ready = time.perf_counter()
    result = module.run(capture)
    seconds = time.perf_counter() - ready
    process_rss = vm_hwm_bytes()
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    to_answer = getattr(module, "to_answer", None)
    answer = CanonicalAnswer.of(to_answer(result) if to_answer is not None else result)
    flows_out.write_text("".join(f"{line}\n" for line in sorted(answer.flow_lines)))
    peak = {
        RssScope.PROCESS: process_rss,
        RssScope.CHILD: child_rss,
        RssScope.BOTH: process_rss + child_rss,
    }[tool.rss_scope]
    return {
        "tool": tool.name,
        "capture": capture,
        "setup_seconds": ready - STARTED,
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "process_rss_bytes": process_rss,
        "child_rss_bytes": child_rss,
        "rss_scope": tool.rss_scope.value,
        "answer": answer.to_dict(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m benchmarks.peer_tasks.runner TOOL CAPTURE FLOWS_OUT", file=sys.stderr)
        return 2
    print(json.dumps(measure(argv[0], argv[1], Path(argv[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
