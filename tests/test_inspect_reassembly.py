"""Bounded TCP reassembly: corpus streams against tshark, and the rules on hostile segment orders."""

from __future__ import annotations

import random
import tracemalloc
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.reassembly import PIECE_OVERHEAD, ByteBudget, Data, Gap, Stream, Truncation

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import CAPTURES_WITH_TCP, connections, tshark_follow
except ImportError:
    from test_inspect_capture import CAPTURES_WITH_TCP, connections, tshark_follow

WRAP = 2**32


def joined(chunks: list) -> bytes:
    return b"".join(chunk.data for chunk in chunks if isinstance(chunk, Data))


def segments_of(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """``data`` cut at ``cuts`` into (offset, bytes) segments."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [(a, data[a:b]) for a, b in pairwise(bounds) if b > a]


# -- real captures ------------------------------------------------------------


GSO_CAPTURES = ("tcpdump__gso-ipv6-vxlan-ipv4.pcap", "tcpdump__gso-ipv6-vxlan-ipv6.pcap")


@pytest.mark.tshark
@pytest.mark.parametrize("name", CAPTURES_WITH_TCP + GSO_CAPTURES)
def test_corpus_streams_equal_tshark_follow(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / name
    found = connections(path)
    assert found
    for index, (connection, (sent0, sent1)) in enumerate(zip(found, tshark_follow(tshark, path, len(found)))):
        assert connection.data(connection.node0) == sent0, (name, index, 0)
        assert connection.data(connection.node1) == sent1, (name, index, 1)


def test_handshake_and_fin_make_complete_streams(corpus: Path) -> None:
    for connection in connections(corpus / "zeek__redis-50-pings.pcap"):
        for stream in connection.streams.values():
            stream.finish()
            assert stream.complete and not stream.midstream and not stream.truncated and stream.gaps == ()


def test_capture_starting_mid_connection(corpus: Path) -> None:
    # The MANIFEST: resp_3_malicious "starts mid-stream with FINs": its first
    # connection is only FIN/ACK packets, no SYN and no payload.
    first = connections(corpus / "tcpdump__resp_3_malicious.pcap")[0]
    for stream in first.streams.values():
        assert stream.started and stream.midstream
        assert stream.complete
        assert stream.take() == []


def test_limit_keeps_the_first_bytes(corpus: Path) -> None:
    path = corpus / "tcpdump__resp_1_benchmark.pcap"
    sizes = [len(c.data(c.node0)) for c in connections(path)]
    index = sizes.index(max(sizes))  # the MSET connection: redis-benchmark's largest request
    full = connections(path)[index].data(connections(path)[index].node0)
    cut = connections(path, limit=100)[index]
    assert len(full) > 100
    stream = cut.streams[cut.node0]
    assert cut.data(cut.node0) == full[:100]
    assert stream.truncated and stream.truncation == Truncation.LIMIT and not stream.complete


# -- the rules, on random streams --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=3000),
    isn=st.integers(0, WRAP - 1),
    cuts=st.lists(st.integers(0, 3000), max_size=40),
    extra=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 600)), max_size=20),
    seed=st.integers(0, 2**32),
)
@example(data=bytes(range(256)) * 4, isn=WRAP - 100, cuts=[50, 99, 100, 101, 700], extra=[(90, 30)], seed=1)
@example(data=b"x" * 100, isn=WRAP - 1, cuts=[1], extra=[], seed=2)
def test_shuffled_duplicated_overlapping_segments_give_the_stream(data, isn, cuts, extra, seed) -> None:
    segments = segments_of(data, cuts)
    segments += [(start, data[start : start + size]) for start, size in extra if start < len(data)]
    segments += segments[: len(segments) // 3]  # retransmissions
    random.Random(seed).shuffle(segments)
    stream = Stream()
    stream.add(isn, syn=True)
    fin_at = random.Random(seed).randrange(len(segments) + 1)
    for index, (offset, payload) in enumerate(segments):
        if index == fin_at:
            stream.add(isn + 1 + len(data), fin=True)
        stream.add(isn + 1 + offset, payload)
    if fin_at == len(segments):
        stream.add(isn + 1 + len(data), fin=True)
    assert stream.complete and stream.ended  # before finish(): the FIN was reached in order
    stream.finish()
    chunks = stream.take()
    assert joined(chunks) == data
    assert all(isinstance(chunk, Data) for chunk in chunks)
    assert stream.gaps == () and not stream.truncated and stream.held == 0


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=2, max_size=3000),
    isn=st.integers(0, WRAP - 1),
    cuts=st.lists(st.integers(1, 2999), min_size=1, max_size=30),
    drop=st.integers(0, 100),
    seed=st.integers(0, 2**32),
)
def test_a_dropped_segment_is_a_gap_of_its_size(data, isn, cuts, drop, seed) -> None:
    segments = segments_of(data, cuts)
    lost_offset, lost = segments.pop(drop % len(segments))
    random.Random(seed).shuffle(segments)
    stream = Stream()
    stream.add(isn, syn=True)
    for offset, payload in segments:
        stream.add(isn + 1 + offset, payload)
    stream.add(isn + 1 + len(data), fin=True)
    assert not stream.complete
    stream.finish()
    chunks = stream.take()
    expected_gap = Gap(lost_offset, len(lost))
    assert stream.gaps == (expected_gap,)
    assert [c for c in chunks if isinstance(c, Gap)] == [expected_gap]
    assert joined(chunks) == data[:lost_offset] + data[lost_offset + len(lost) :]
    position = 0
    for chunk in chunks:  # chunks tile the stream in order
        assert chunk.offset == position
        position += chunk.size if isinstance(chunk, Gap) else len(chunk.data)
    assert position == len(data)


def test_first_copy_wins_over_later_different_bytes() -> None:
    stream = Stream()
    stream.add(1000, syn=True)
    stream.add(1001, b"AAAA")
    stream.add(1003, b"BBBB")  # overlaps delivered bytes: only "BB" is new
    stream.add(1009, b"CCCC")  # out of order
    stream.add(1005, b"DDDDDDDD")  # overlaps the waiting "CCCC"
    assert joined(stream.take()) == b"AAAABBDDCCCC"


def test_data_before_a_midstream_start_is_ignored() -> None:
    stream = Stream()
    stream.add(5000, b"hello")
    stream.add(4990, b"0123456789hello")  # a retransmission reaching back before the start
    stream.add(5005, b" world")
    assert stream.midstream
    assert joined(stream.take()) == b"hello world"


def test_rst_ends_the_direction_and_declares_holes() -> None:
    stream = Stream()
    stream.add(0, syn=True)
    stream.add(1, b"abc")
    stream.add(7, b"ghi")
    stream.add(20, rst=True)
    stream.add(4, b"def")  # too late: the direction was reset
    assert stream.reset and stream.ended and not stream.complete
    assert stream.take() == [Data(0, b"abc"), Gap(3, 3), Data(6, b"ghi")]


def test_bytes_after_the_fin_are_ignored() -> None:
    stream = Stream()
    stream.add(0, syn=True)
    stream.add(1, b"abc", fin=True)
    stream.add(4, b"def")
    assert stream.complete and stream.take() == [Data(0, b"abc")]


def test_too_many_waiting_segments_declare_the_hole_lost() -> None:
    stream = Stream(max_pending=4)
    stream.add(0, syn=True)
    for offset in (10, 20, 30, 40):
        stream.add(1 + offset, b"x" * 5)
    assert stream.take() == []
    stream.add(51, b"y")
    assert stream.take() == [Gap(0, 10), Data(10, b"xxxxx")]
    assert stream.gaps == (Gap(0, 10),)


def test_finish_reports_bytes_missing_before_the_highest_seen() -> None:
    stream = Stream()
    stream.add(99, b"0123")
    stream.add(110, b"z")
    stream.finish()
    assert stream.take() == [Data(0, b"0123"), Gap(4, 7), Data(11, b"z")]


def test_shared_budget_bounds_every_stream_together() -> None:
    budget = ByteBudget(3000)
    streams = [Stream(budget=budget) for _ in range(4)]
    for stream in streams:
        stream.add(0, syn=True)
        for offset in range(100, 2000, 100):  # all out of order: offset 0..99 never comes
            stream.add(1 + offset, bytes(50))
    assert budget.used <= budget.limit
    assert sum(stream.held for stream in streams) == budget.used
    assert streams[0].truncation == Truncation.NONE
    assert streams[-1].truncation == Truncation.BUDGET
    for stream in streams:
        stream.finish()
        stream.take()
    assert budget.used == 0


def test_discard_gives_the_budget_back() -> None:
    budget = ByteBudget(10_000)
    stream = Stream(budget=budget)
    stream.add(0, syn=True)
    stream.add(1, b"a" * 100)
    stream.add(500, b"b" * 100)
    assert budget.used == 2 * (100 + PIECE_OVERHEAD)
    stream.discard()
    assert budget.used == 0 and stream.ended


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 2**31}, {"max_pending": 0}, {"max_gaps": -1}])
def test_bad_bounds_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        Stream(**bad)


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_tiny_hostile_segments_stay_within_the_budget(order: str) -> None:
    """Four streams of 16383 one-byte segments, none in order, hold no more than the shared budget."""
    offsets = list(range(2, 32768, 2))
    if order == "descending":
        offsets.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(offsets)
    budget = ByteBudget(64 * 1024)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        streams = [Stream(budget=budget) for _ in range(4)]
        for stream in streams:
            stream.add(0, syn=True)
            for offset in offsets:
                stream.add(1 + offset, b"x")
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert budget.used <= budget.limit
    assert peak < 2 * budget.limit


def test_too_many_gaps_end_the_stream() -> None:
    stream = Stream(max_pending=1, max_gaps=3)
    stream.add(0, syn=True)
    for offset in range(2, 20, 2):
        stream.add(1 + offset, b"x")
    stream.finish()
    assert stream.take() == [Gap(0, 2), Data(2, b"x"), Gap(3, 1), Data(4, b"x"), Gap(5, 1), Data(6, b"x")]
    assert stream.truncation == Truncation.GAPS and len(stream.gaps) == 3
