"""Chunk boundaries: any chunk size gives the records (and the damage) of one big chunk."""

from __future__ import annotations

import gzip
import io
import mmap
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_capture_support import (
    ETHERNET_FILE,
    SLL_FILE,
    Reading,
    corpus_file,
    read_capture,
    require_tool,
    run_tool,
    walk_pcap,
)
from vxlaninspect.capture import open_capture
from vxlaninspect.capture_source import WINDOWS_IN_USE, MappedFile
from vxlaninspect.capture_walk import PREFETCH_DISTANCE, fetch_ahead

LARGE_PACKETS_FILE = "tcpdump__gso-ipv6-vxlan-ipv4.pcap"  # one 7026-byte record
ONE_CHUNK = 1 << 30


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Captures of each kind, plain and streamed, some damaged at the end."""
    directory = tmp_path_factory.mktemp("chunks")
    editcap, mergecap = require_tool("editcap"), require_tool("mergecap")
    ethernet, sll, large = corpus_file(ETHERNET_FILE), corpus_file(SLL_FILE), corpus_file(LARGE_PACKETS_FILE)
    out = {"pcap": ethernet}
    run_tool(mergecap, "-F", "pcap", "-w", directory / "large.pcap", ethernet, large)
    out["pcap-large-record"] = directory / "large.pcap"
    run_tool(editcap, "-F", "nsecpcap", sll, directory / "nsec.pcap")
    out["nsecpcap"] = directory / "nsec.pcap"
    run_tool(mergecap, "-F", "pcapng", "-w", directory / "merged.pcapng", ethernet, sll, large)
    out["pcapng-interfaces"] = directory / "merged.pcapng"
    sections = directory / "sections.pcapng"
    sections.write_bytes((directory / "merged.pcapng").read_bytes() * 2)
    out["pcapng-sections"] = sections
    out["gzip-pcapng"] = directory / "sections.pcapng.gz"
    out["gzip-pcapng"].write_bytes(gzip.compress(sections.read_bytes()))
    out["damaged-pcap"] = directory / "damaged.pcap"
    out["damaged-pcap"].write_bytes(ethernet.read_bytes()[:-30])
    out["damaged-pcapng"] = directory / "damaged.pcapng"
    out["damaged-pcapng"].write_bytes(sections.read_bytes()[:-30])
    out["damaged-gzip"] = directory / "damaged.pcap.gz"
    out["damaged-gzip"].write_bytes(gzip.compress(large.read_bytes() + ethernet.read_bytes())[:-500])
    return out


def summary(reading: Reading) -> tuple[list[tuple[int, int, int, int, bytes, int]], tuple[str, int, str] | None]:
    records = [(r.ts_ns, r.caplen, r.wirelen, r.linktype, r.data, r.offset) for r in reading.records]
    error = None if reading.error is None else (reading.error.path, reading.error.offset, reading.error.reason)
    return records, error


_ONE_CHUNK_SUMMARY: dict[str, tuple] = {}


def one_chunk_summary(files: dict[str, Path], kind: str) -> tuple:
    if kind not in _ONE_CHUNK_SUMMARY:
        _ONE_CHUNK_SUMMARY[kind] = summary(read_capture(files[kind], ONE_CHUNK))
    return _ONE_CHUNK_SUMMARY[kind]


KINDS = [
    "pcap",
    "pcap-large-record",
    "nsecpcap",
    "pcapng-interfaces",
    "pcapng-sections",
    "gzip-pcapng",
    "damaged-pcap",
    "damaged-pcapng",
    "damaged-gzip",
]


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), chunk_bytes=st.one_of(st.integers(1, 300), st.integers(300, 20_000)))
def test_any_chunk_size_gives_the_same_records(files: dict[str, Path], kind: str, chunk_bytes: int) -> None:
    assert summary(read_capture(files[kind], chunk_bytes)) == one_chunk_summary(files, kind)


@pytest.mark.parametrize("chunk_bytes", [100, 1024, 4096])
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_chunk_sizes(files: dict[str, Path], kind: str, chunk_bytes: int) -> None:
    reading = read_capture(files[kind], chunk_bytes)
    assert summary(reading) == one_chunk_summary(files, kind)
    if chunk_bytes == 100:
        assert reading.batches == len(reading.records), "records larger than the chunk: one per batch"


@pytest.mark.parametrize("chunk_bytes", [1000, 2000, 4000])
def test_a_batch_holds_the_whole_records_of_its_chunk(files: dict[str, Path], chunk_bytes: int) -> None:
    """A batch's bytes start at its first record header, end with its last record, fit in the chunk
    (or in the one record that is larger), and the next record did not fit."""
    path = files["pcap-large-record"]
    records = walk_pcap(path.read_bytes()).records
    with open_capture(path, chunk_bytes=chunk_bytes) as capture:
        for batch in capture.batches():
            first, last = int(batch.rec_offset[0]), int(batch.rec_offset[-1])
            assert int(batch.data_start[0]) == 16
            assert int(batch.data_start[-1] + batch.caplen[-1]) == len(batch.data)
            assert len(batch.data) == last + 16 + int(batch.caplen[-1]) - first
            assert len(batch.data) <= max(chunk_bytes, 16 + int(batch.caplen.max()))
            following = [r for r in records if r.offset > last][:1]
            for record in following:
                assert record.offset + 16 + record.caplen - first > chunk_bytes


@pytest.mark.parametrize("kind", ["gzip-pcapng", "pcapng-sections"])
def test_kept_batches_stay_valid(files: dict[str, Path], kind: str) -> None:
    """Batches kept by the caller (streamed buffers are reused) still hold their own records."""
    want = [r.data for r in read_capture(files[kind], ONE_CHUNK).records]
    with open_capture(files[kind], chunk_bytes=700) as capture:
        batches = list(capture.batches())
    assert len(batches) > 10
    assert [batch.record(i) for batch in batches for i in range(len(batch))] == want
    with open_capture(files[kind], chunk_bytes=700) as capture:
        lengths = [batch.caplen for batch in capture.batches()]
    assert [int(n) for column in lengths for n in column] == [len(data) for data in want]


def test_streamed_file_object_with_tiny_chunks(files: dict[str, Path]) -> None:
    raw = files["pcapng-sections"].read_bytes()
    records, error = summary(read_capture(io.BytesIO(raw), 64))
    assert error is None
    assert records == one_chunk_summary(files, "pcapng-sections")[0]


def test_records_larger_than_the_chunk_in_a_stream(tmp_path: Path) -> None:
    big = np.arange(200_000, dtype=np.uint32).tobytes()[:200_000]
    raw = corpus_file(ETHERNET_FILE).read_bytes()[:24] + struct.pack("<IIII", 5, 6, len(big), len(big)) + big
    reading = read_capture(io.BytesIO(gzip.compress(raw)), chunk_bytes=1000)
    assert reading.error is None
    assert [(r.ts_ns, r.data) for r in reading.records] == [(5_000_006_000, big)]


def test_the_map_drops_pages_only_behind_the_windows_still_in_use(tmp_path: Path) -> None:
    """While a window is read ahead, the one before is being decoded and the one before that
    counted into the tables: the pages of neither may be dropped."""
    page = mmap.PAGESIZE
    path = tmp_path / "pages.bin"
    path.write_bytes(bytes(64 * page))
    chunk = 16 * page
    with open(path, "rb") as file:
        source = MappedFile(file, path.stat().st_size, chunk)
        try:
            for start in range(WINDOWS_IN_USE + 1):
                source.window(start * chunk, 0)
                assert source._released == 0  # every window so far may still be in use
            source.window((WINDOWS_IN_USE + 1) * chunk, 0)
            assert source._released == chunk  # now only the first is dropped
        finally:
            source.close()


def test_fetch_ahead_reaches_the_prefetch_distance_and_never_goes_back() -> None:
    data = np.zeros(10 * PREFETCH_DISTANCE, dtype=np.uint8)
    ahead = fetch_ahead(data, 0, 100)
    assert 100 + PREFETCH_DISTANCE <= ahead < 100 + PREFETCH_DISTANCE + 64
    assert fetch_ahead(data, ahead, 100) == ahead  # already far enough
    assert fetch_ahead(np.zeros(0, dtype=np.uint8), 0, 0) >= PREFETCH_DISTANCE  # hints only: an empty buffer is safe
