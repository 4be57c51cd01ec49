"""Scan many captures: in this process, in a process pool, or on a Dask cluster.

Every path is scanned by the same function (``scan_file``) into its own Report;
the Reports are merged by ``Report.__add__``, so the combined Report is the same
however the work was spread. With a ``ScanCache``, unchanged files are not
scanned again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .config import DEFAULT_CONFIG, DecodeConfig
from .report import Report
from .scanning import DEFAULT_LIMITS, Inspector, Limits, scan
from .scan_cache import FileState, ScanCache, file_sha256
from .sources import STDIN
from .topology import EMPTY_TOPOLOGY, Topology

BatchProgress = Callable[[int, int], None]
"""Called with (bytes of captures done, total bytes) as files complete."""


@dataclass(frozen=True)
class ScanOptions:
    """Everything that decides a capture's Report, apart from its bytes.

    ``inspect`` must be picklable and have a stable ``repr`` (a frozen dataclass
    such as ``findings.Inspection``): it travels to worker processes and is part
    of the fingerprint under which results are cached.
    """

    config: DecodeConfig = DEFAULT_CONFIG
    topology: Topology = EMPTY_TOPOLOGY
    expect_encrypted: tuple[int | str, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    inspect: Inspector | None = field(default=None, compare=False)

    def fingerprint(self) -> str:
        """A digest that changes whenever a Report made with these options could."""
        text = repr((__version__, self.config, self.topology, self.expect_encrypted, self.limits, self.inspect))
        return hashlib.sha256(text.encode()).hexdigest()


def scan_file(path: str, options: ScanOptions, progress: BatchProgress | None = None) -> Report:
    """The Report of one capture."""
    return scan(
        path,
        config=options.config,
        topology=options.topology,
        expect_encrypted=options.expect_encrypted,
        limits=options.limits,
        inspect=options.inspect,
        progress=progress,
    )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path) if path != STDIN else 0
    except OSError:
        return 0


def _with_path(report: dict[str, Any], path: str) -> dict[str, Any]:
    """A cached report re-labelled with the path it now stands for."""
    captures = [{**capture, "path": path} for capture in report["captures"]]
    return {**report, "captures": captures}


def _cacheable(report: Report) -> bool:
    return all(capture.error is None for capture in report.captures)


class _Cached:
    """The cache lookups and stores of one batch."""

    def __init__(self, cache: ScanCache | None) -> None:
        self.cache = cache
        self.digests: dict[str, tuple[FileState, str]] = {}

    def get(self, path: str) -> Report | None:
        if self.cache is None or path == STDIN:
            return None
        try:
            state = FileState.of(path)
            found = self.cache.lookup(state)
            if found is None:
                digest = file_sha256(path)
                self.digests[path] = (state, digest)
                found = self.cache.lookup_content(digest)
                if found is not None:
                    self.cache.store(state, digest, _with_path(found, path))
        except OSError:
            return None
        return None if found is None else Report.from_dict(_with_path(found, path))

    def put(self, path: str, report: Report) -> None:
        if self.cache is not None and path in self.digests and _cacheable(report):
            state, digest = self.digests[path]
            self.cache.store(state, digest, report.to_dict())


def _scan_in_pool(paths: Sequence[str], options: ScanOptions, jobs: int, done: Callable) -> None:
    import multiprocessing  # only a pooled batch needs it
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: dict[Future, str] = {pool.submit(scan_file, path, options): path for path in paths}
        for future in as_completed(futures):
            done(futures[future], future.result())


def _scan_on_dask(paths: Sequence[str], options: ScanOptions, address: str, done: Callable) -> None:
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise ValueError("scanning on Dask needs the 'distributed' package: pip install 'vxlaninspect[dask]'") from None

    with Client(address) as client:
        futures = client.map(scan_file, list(paths), options=options, pure=False)
        names = {future.key: path for future, path in zip(futures, paths)}
        for future in dask_completed(futures):
            done(names[future.key], future.result())


def scan_batch(
    paths: Sequence[str],
    options: ScanOptions = ScanOptions(),
    *,
    jobs: int = 1,
    cache: ScanCache | None = None,
    dask_address: str | None = None,
    progress: BatchProgress | None = None,
) -> Report:
    """Scan ``paths`` into one Report, each file at most once.

    ``jobs`` > 1 scans files in that many processes; ``dask_address`` sends them
    to a Dask distributed scheduler instead. Standard input (``"-"``) is always
    scanned here. A file that cannot be read is recorded with its error in the
    Report's captures, and the others are scanned as usual.
    """
    sizes = {path: _size(path) for path in paths}
    total = sum(sizes.values())
    finished = 0
    results: dict[str, Report] = {}
    cached = _Cached(cache)

    def done(path: str, report: Report) -> None:
        nonlocal finished
        results[path] = report
        cached.put(path, report)
        finished += sizes[path]
        if progress is not None:
            progress(finished, total)

    pending = []
    for path in paths:
        hit = cached.get(path)
        if hit is None:
            pending.append(path)
        else:
            done(path, hit)

    local = [p for p in pending if p == STDIN or dask_address is None and (jobs <= 1 or len(pending) == 1)]
    remote = [p for p in pending if p not in local]
    for path in local:
        within = None
        if progress is not None:
            base = finished

            def within(position: int, _total: int, base: int = base, size: int = sizes[path]) -> None:
                progress(base + (min(position, size) if size else position), total)

        done(path, scan_file(path, options, within))
    if remote and dask_address is not None:
        _scan_on_dask(remote, options, dask_address, done)
    elif remote:
        _scan_in_pool(remote, options, min(jobs, len(remote)), done)

    report = Report()
    for path in paths:
        report = report + results[path]
    return report
