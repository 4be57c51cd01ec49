"""vxlaninspect: find the overlay networks and services that leak cleartext in packet captures.

>>> import vxlaninspect                                              # doctest: +SKIP
>>> for table in vxlaninspect.decode("node1.pcap", vxlan_ports=[4789, 8472]):
...     print(len(table.rows))
>>> report = vxlaninspect.scan(["node1.pcap"], topology=vxlaninspect.load_topology(["inspect.json"]))

Names are loaded on first use, so importing the package (and its command line)
does not load numpy or the compiled kernel.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "decode": "decoding",
    "PacketTable": "decoding",
    "open_capture": "capture",
    "Capture": "capture",
    "decode_batch": "kernel",
    "RecordBatch": "records",
    "DecodeConfig": "config",
    "DEFAULT_CONFIG": "config",
    "scan": "scanning",
    "Limits": "scanning",
    "Report": "report",
    "Finding": "report",
    "Severity": "report",
    "Verdict": "networks",
    "Inspection": "findings",
    "load_topology": "topology",
    "Topology": "topology",
    "TopologyError": "topology",
    "CaptureError": "errors",
    "ScanOptions": "batch",
    "scan_batch": "batch",
    "ScanRequest": "api",
    "run_scan": "api",
    "extract_overlay": "extract",
    "verify": "verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vxlaninspect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
