"""Bounded memory: decompression bombs and large files cost time, never memory beyond about a chunk."""

from __future__ import annotations

import gzip
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard

from tests.test_capture_support import ETHERNET_FILE, corpus_file
from vxlaninspect.capture import open_capture
from vxlaninspect.errors import CaptureError

MIB = 1 << 20
BOMB_MIB = 200


def compressed_megabyte(compression: str, byte: int) -> bytes:
    """One gzip member or zstd frame of 1 MiB of ``byte``: repeated, a multi-member bomb."""
    data = bytes([byte]) * MIB
    if compression == "gzip":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        return compressor.compress(data) + compressor.flush()
    return zstandard.ZstdCompressor(3).compress(data)


def compressed_header(compression: str) -> bytes:
    header = corpus_file(ETHERNET_FILE).read_bytes()[:24]
    return gzip.compress(header) if compression == "gzip" else zstandard.ZstdCompressor().compress(header)


def peak_traced_bytes(path: Path, chunk_bytes: int) -> tuple[int, int, str | None]:
    """(records read, peak bytes allocated while reading, error reason)."""
    with open_capture(corpus_file(ETHERNET_FILE)) as warm_up:  # load the compiled kernels first
        list(warm_up.batches())
    records, reason = 0, None
    tracemalloc.start()
    try:
        with open_capture(path, chunk_bytes=chunk_bytes) as capture:
            try:
                for batch in capture.batches():
                    records += len(batch)
            except CaptureError as error:
                reason = error.reason
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return records, peak, reason


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_bomb_of_empty_records_is_read_in_bounded_memory(tmp_path: Path, compression: str) -> None:
    """200 MiB of zeros after a pcap header are 13 million empty records: all read, in chunk-sized memory."""
    path = tmp_path / f"zeros.{compression}"
    path.write_bytes(compressed_header(compression) + compressed_megabyte(compression, 0) * BOMB_MIB)
    assert path.stat().st_size < BOMB_MIB * MIB // 500
    records, peak, reason = peak_traced_bytes(path, chunk_bytes=MIB)
    assert reason is None
    assert records == BOMB_MIB * MIB // 16
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_bomb_of_garbage_stops_at_the_first_record(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"garbage.{compression}"
    path.write_bytes(compressed_header(compression) + compressed_megabyte(compression, 0xFF) * BOMB_MIB)
    records, peak, reason = peak_traced_bytes(path, chunk_bytes=MIB)
    assert (records, reason) == (0, "record length 4294967295 exceeds the limit of 262144 bytes")
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"


_MAX_RSS_AFTER_READING = """
import sys
from vxlaninspect.capture import open_capture
from vxlaninspect.errors import CaptureError
with open_capture(sys.argv[1], chunk_bytes=int(sys.argv[2])) as capture:
    for batch in capture.batches():
        pass
peak_kib = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(capture.packets, int(peak_kib) * 1024)  # ru_maxrss would carry the parent's peak over exec
"""


def max_rss_after_reading(path: Path, chunk_bytes: int) -> tuple[int, int]:
    command = [sys.executable, "-c", _MAX_RSS_AFTER_READING, str(path), str(chunk_bytes)]
    packets, rss = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    return int(packets), int(rss)


@pytest.mark.slow
def test_resident_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    """A 256 MiB memory-mapped capture needs no more resident memory than a 10 KiB one."""
    raw = np.fromfile(corpus_file(ETHERNET_FILE), dtype=np.uint8)
    records = raw[24:]
    copies = 256 * MIB // len(records)
    big = tmp_path / "big.pcap"
    with open(big, "wb") as file:
        file.write(raw[:24].tobytes())
        np.tile(records, copies).tofile(file)
    chunk = 4 * MIB
    small_packets, small_rss = max_rss_after_reading(corpus_file(ETHERNET_FILE), chunk)
    big_packets, big_rss = max_rss_after_reading(big, chunk)
    assert big_packets == small_packets * copies
    assert big_rss - small_rss < 32 * MIB, f"{(big_rss - small_rss) / MIB:.0f} MiB more"
