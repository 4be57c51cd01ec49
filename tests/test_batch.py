"""Batch scans with a result cache: damaged captures are never cached, cached and fresh Reports merge alike."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.conftest import SAMPLES
from vxlaninspect.batch import ScanOptions, scan_batch
from vxlaninspect.report import Report
from vxlaninspect.scan_cache import FileState, ScanCache

SAMPLE = SAMPLES / "lab-capture" / "capture.pcap"


def comparable(report: Report) -> dict:
    data = report.to_dict()
    data["stats"].pop("seconds")
    return data


def test_a_damaged_capture_is_not_cached_and_cached_reports_merge_like_fresh_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.pcap"
    good.write_bytes(SAMPLE.read_bytes())
    zipped = tmp_path / "good.pcap.gz"
    zipped.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(SAMPLE.read_bytes()[:-7])
    options = ScanOptions()
    fresh = scan_batch([str(good), str(zipped)], options)
    with ScanCache(tmp_path / "scans.sqlite", options.fingerprint()) as cache:
        first = scan_batch([str(good), str(broken)], options, cache=cache)
        assert [c.error is not None for c in first.captures].count(True) == 1
        assert cache.lookup(FileState.of(str(broken))) is None
        assert cache.lookup(FileState.of(str(good))) is not None
        merged = scan_batch([str(good), str(zipped)], options, cache=cache)  # one cached, one scanned now
    assert comparable(merged) == comparable(fresh)
