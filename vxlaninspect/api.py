"""Scan requests as a user states them: names, ports, metadata files, expectations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .batch import ScanOptions, scan_batch
from .config import DEFAULT_CONFIG
from .findings import Inspection
from .scanning import DEFAULT_LIMITS
from .scan_cache import ScanCache
from .sources import expand_sources
from .topology import EMPTY_TOPOLOGY, load_topology


def parse_network(text: str) -> int | str:
    """A network named on the command line: a VNI when it is a number, else a name."""
    text = text.strip()
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class ScanRequest:
    """One scan as asked for; ``run_scan`` carries it out."""

    names: tuple[str, ...]
    recursive: bool = False
    vxlan_ports: tuple[int, ...] = ()
    docker: tuple[str, ...] = ()
    expect_encrypted: tuple[str, ...] = ()
    jobs: int = 1
    db: str | None = None
    dask_address: str | None = None
    max_flows: int | None = None
    show_secrets: bool = False

    def options(self) -> ScanOptions:
        """The scan options this request stands for (reads the Docker metadata)."""
        config = replace(DEFAULT_CONFIG, vxlan_ports=self.vxlan_ports) if self.vxlan_ports else DEFAULT_CONFIG
        limits = replace(DEFAULT_LIMITS, max_flows=self.max_flows) if self.max_flows else DEFAULT_LIMITS
        topology = load_topology(self.docker) if self.docker else EMPTY_TOPOLOGY
        return ScanOptions(
            config=config,
            topology=topology,
            expect_encrypted=tuple(parse_network(n) for n in self.expect_encrypted),
            limits=limits,
            inspect=Inspection.for_topology(topology, show_secrets=self.show_secrets),
        )


def run_scan(request: ScanRequest, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Scan what ``request`` names into one report dictionary (the JSON contract).

    Raises ``CaptureError`` when a name stands for no file, and ``TopologyError``
    for unreadable metadata; a capture that is damaged or unreadable is recorded
    in the report's ``captures`` with its error instead.
    """
    paths = expand_sources(request.names, recursive=request.recursive)
    options = request.options()
    cache = ScanCache(request.db, options.fingerprint()) if request.db else None
    try:
        report = scan_batch(
            paths, options, jobs=request.jobs, cache=cache, dask_address=request.dask_address, progress=progress
        )
    finally:
        if cache is not None:
            cache.close()
    return report.to_dict()
