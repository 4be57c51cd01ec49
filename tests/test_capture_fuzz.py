"""Hostile input: cut or mutated captures end in ``CaptureError`` or records, never in a crash or a bad read."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_capture_support import corpus_file, read_capture, require_tool, run_tool
from vxlaninspect.capture import MAX_RECORD_BYTES, open_capture
from vxlaninspect.errors import CaptureError

SMALL_FILE = "tcpdump__vxlan.pcap"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("fuzz")
    run_tool(require_tool("editcap"), "-F", "pcapng", corpus_file(SMALL_FILE), directory / "small.pcapng")
    return {"pcap": corpus_file(SMALL_FILE).read_bytes(), "pcapng": (directory / "small.pcapng").read_bytes()}


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_cut_anywhere_keeps_the_whole_records_before_the_cut(
    tmp_path: Path, seeds: dict[str, bytes], kind: str
) -> None:
    raw = seeds[kind]
    whole = read_capture(_write(tmp_path / "whole", raw)).records
    ends = [record.offset for record in whole[1:]] + [len(raw)]  # the blocks follow one another
    headers_end = whole[0].offset
    section_end = int.from_bytes(raw[4:8], "little") if kind == "pcapng" else headers_end
    near_boundaries = {end + step for end in [headers_end, section_end, *ends] for step in (-2, -1, 0, 1, 2)}
    cuts = sorted(({*range(1, headers_end + 1), *range(1, len(raw), 7)} | near_boundaries) & {*range(1, len(raw))})
    for cut in cuts:
        reading = read_capture(io.BytesIO(raw[:cut]), chunk_bytes=97)
        kept = sum(1 for end in ends if end <= cut)
        assert reading.records == whole[:kept], f"cut at {cut}"
        if cut in ends or cut in (headers_end, section_end):
            assert reading.error is None, f"cut at {cut}"
        else:
            assert reading.error is not None, f"cut at {cut} went unnoticed"
            if kept:
                assert reading.error.offset == ends[kept - 1]
            else:
                assert reading.error.offset <= headers_end


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["pcap", "pcapng"]), data=st.data())
def test_mutated_captures(tmp_path: Path, seeds: dict[str, bytes], kind: str, data: st.DataObject) -> None:
    raw = bytearray(seeds[kind])
    for _ in range(data.draw(st.integers(1, 8), label="mutations")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    chunk_bytes = data.draw(st.sampled_from([50, 333, 1 << 20]), label="chunk_bytes")
    path = _write(tmp_path / f"mutated.{kind}", bytes(raw))
    try:
        with open_capture(path, chunk_bytes=chunk_bytes) as capture:
            for batch in capture.batches():
                assert int((batch.data_start + batch.caplen).max()) <= len(batch.data)
                assert int(batch.data_start.min()) >= 0
                assert int(batch.caplen.max()) <= MAX_RECORD_BYTES
    except CaptureError as error:
        assert error.path == str(path)
        assert 0 <= error.offset <= len(raw)


_BOUNDS_CHECKED_FUZZ = """
import random, sys
from vxlaninspect.capture import open_capture
from vxlaninspect.errors import CaptureError
rng = random.Random(20240611)
outcomes = {"records": 0, "damage": 0}
for seed_path in sys.argv[2:]:
    seed = open(seed_path, "rb").read()
    for trial in range(int(sys.argv[1])):
        raw = bytearray(seed[: rng.randrange(1, len(seed) + 1)])
        for _ in range(rng.randrange(0, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path = seed_path + ".fuzz"
        open(path, "wb").write(raw)
        try:
            with open_capture(path, chunk_bytes=rng.choice([40, 400, 1 << 20])) as capture:
                for batch in capture.batches():
                    pass
            outcomes["records"] += 1
        except CaptureError:
            outcomes["damage"] += 1
print(outcomes["records"], outcomes["damage"])
"""


@pytest.mark.slow
def test_no_read_out_of_bounds_under_numba_boundscheck(tmp_path: Path, seeds: dict[str, bytes]) -> None:
    """The kernels compiled with bounds checks: any out-of-bounds read would raise IndexError."""
    paths = [_write(tmp_path / f"seed.{kind}", raw) for kind, raw in seeds.items()]
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDS_CHECKED_FUZZ, "400", *map(str, paths)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records, damage = map(int, result.stdout.split())
    assert records + damage == 800 and records > 0 and damage > 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
