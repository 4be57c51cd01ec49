"""One task, many tools: vxlaninspect and its peers each count packets per VNI and find HTTP and RESP flows.

``task`` defines the task and the answer's canonical form; each other module
performs the task with one tool and exposes ``run(path)`` (and optionally
``prepare()``, called before the clock starts, and ``to_answer(result)``,
called after it stops). ``runner`` runs one tool on one capture in a fresh
process and measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RssScope(Enum):
    """Which processes a tool's peak resident memory covers."""

    PROCESS = "process"  # the Python process that runs the tool
    CHILD = "child"  # the command the process starts and waits for
    BOTH = "process + child"  # the process and the command it reads from, running side by side


@dataclass(frozen=True)
class Tool:
    name: str
    module: str  # under benchmarks.peer_tasks
    rss_scope: RssScope
    slow: bool  # measured on the subset only, its rate extrapolated
    label: str


TOOLS = (
    Tool("vxlaninspect", "vxlaninspect_library", RssScope.PROCESS, False, "vxlaninspect: decode() + numpy"),
    Tool("vxlaninspect-cli", "vxlaninspect_cli", RssScope.CHILD, False, "vxlaninspect scan --format json"),
    Tool("tshark", "tshark_fields", RssScope.BOTH, False, "tshark -T fields, lines parsed in Python"),
    Tool("dpkt", "dpkt_loop", RssScope.PROCESS, True, "dpkt loop"),
    Tool("struct", "struct_loop", RssScope.PROCESS, True, "struct loop, pure Python"),
    Tool("scapy", "scapy_loop", RssScope.PROCESS, True, "scapy PcapReader"),
    Tool("pyshark", "pyshark_loop", RssScope.BOTH, True, "pyshark FileCapture"),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
PEERS = tuple(tool.name for tool in TOOLS if not tool.name.startswith("vxlaninspect"))
