"""SSH banners: the AWS mirror capture (SSH inside VXLAN) against tshark; splits, garbage, bounds."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.parser import Malformed
from vxlaninspect.inspect.ssh import MAX_LINE, SshBanner, SshParser, SshState

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import connections, tshark_fields
except ImportError:
    from test_inspect_capture import connections, tshark_fields

CAPTURE = "suricata-verify__vxlan-decoder-03_aws-mirror.pcap"


def parse(data: bytes, cuts: list[int] = ()) -> list:
    parser = SshParser()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    events = []
    for start, end in pairwise(bounds):
        events += parser.feed(data[start:end])
    return events + parser.finish()


def directions(corpus: Path) -> list[tuple[int, int, bytes]]:
    """(tcp.stream, source port, bytes) of every direction of every SSH connection in the capture."""
    found = []
    for index, connection in enumerate(connections(corpus / CAPTURE)):
        for source in (connection.node0, connection.node1):
            found.append((index, source[1], connection.data(source)))
    return found


@pytest.mark.tshark
def test_banners_match_tshark(corpus: Path, tshark: str) -> None:
    expected = {
        (int(stream), int(port)): banner
        for stream, port, banner in tshark_fields(
            tshark, corpus / CAPTURE, "ssh.protocol", "tcp.stream", "tcp.srcport", "ssh.protocol"
        )
    }
    found = {}
    for stream, port, data in directions(corpus):
        events = parse(data)
        assert len(events) == 1 and isinstance(events[0], SshBanner)
        found[(stream, port)] = events[0].line.decode()
    assert found == expected
    assert {b.split("-", 2)[1] for b in found.values()} == {"2.0"}


def test_every_split_point_gives_the_same_banner(corpus: Path) -> None:
    for _, _, data in directions(corpus):
        whole = parse(data)
        for cut in range(1, min(len(data), 300)):
            assert parse(data, [cut]) == whole


def test_truncated_streams_never_raise(corpus: Path) -> None:
    for _, _, data in directions(corpus):
        banner_end = data.index(b"\n") + 1
        for end in range(min(len(data), 300)):
            events = parse(data[:end])
            if end == 0:
                assert events == []
            elif end < banner_end:
                assert events == [Malformed(0, "stream ended before the identification line was whole")]
            else:
                assert events == parse(data)


def test_preamble_lines_and_bare_line_feeds() -> None:
    data = b"Welcome to the bastion\r\nauthorised use only\nSSH-1.99-Cisco-1.25 IOS\nbinary\x00\x01"
    (banner,) = parse(data)
    assert banner == SshBanner(len(b"Welcome to the bastion\r\nauthorised use only\n"), "1.99", b"Cisco-1.25", b"IOS")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SSH-2.0\r\n", "invalid identification"),
        (b"SSH-x.y-OpenSSH\r\n", "invalid identification"),
        (b"SSH-2.0-Open\x1bSSH\r\n", "non-printable"),
        (b"A" * MAX_LINE, "longer than"),
        (b"line\n" * 40, "no SSH identification line"),
        (b"SSH-2.0-OpenSSH_9.6", "stream ended"),
    ],
)
def test_malformed_banners(data: bytes, reason: str) -> None:
    events = parse(data)
    assert isinstance(events[-1], Malformed) and reason in events[-1].reason


def test_gaps_before_and_after_the_banner() -> None:
    parser = SshParser()
    assert parser.feed(b"SSH-2.0-Go\r\n")[0].software == b"Go"
    assert parser.gap(1000) == [] and parser.state == SshState.PACKETS
    before = SshParser()
    before.feed(b"SSH-2.")
    assert isinstance(before.gap(10)[0], Malformed)


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=600), st.binary(max_size=300).map(lambda b: b"SSH-2.0-" + b)),
    cuts=st.lists(st.integers(1, 600), max_size=6),
)
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    events = parse(data, cuts)
    assert len(events) <= 1
    assert events == parse(data)
