"""HTTP/1.x parsing: corpus streams against tshark, http.client as an oracle, splits, garbage, bounds."""

from __future__ import annotations

import http.client
import io
import time
import tracemalloc
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.http import (
    EndOfMessage,
    HttpRequestParser,
    HttpResponseParser,
    HttpState,
    ProtocolSwitch,
    Request,
    Response,
)
from vxlaninspect.inspect.parser import Malformed

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import connections, tshark_fields, tshark_follow
except ImportError:
    from test_inspect_capture import connections, tshark_fields, tshark_follow

HTTP_CAPTURES = (
    "zeek__docker-http-upgrade.pcap",
    "suricata-verify__vxlan-non-zero-reserved-fields.pcap",
    "suricata-verify__decode-sll2-01.pcap",
)
SAMPLE = 4096


def parse(parser, data: bytes, cuts: list[int] = ()) -> list:
    """Feed ``data`` cut at ``cuts``, then end the stream."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    events = []
    for start, end in pairwise(bounds):
        events += parser.feed(data[start:end])
    return events + parser.finish()


def methods_of(events: list) -> list[str]:
    return [event.method for event in events if isinstance(event, Request)]


def corpus_streams(corpus: Path) -> list[tuple[str, bytes, bytes]]:
    """(capture, client bytes, server bytes) of every HTTP connection in the corpus."""
    found = []
    for name in HTTP_CAPTURES:
        for connection in connections(corpus / name):
            found.append((name, connection.data(connection.node0), connection.data(connection.node1)))
    return found


def _tshark_text(data: bytes) -> str:
    """Body bytes the way ``tshark -T fields`` prints ``http.file_data``."""
    return data.decode("utf-8").replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("latin-1")


# -- real captures against tshark ---------------------------------------------


@pytest.mark.tshark
@pytest.mark.parametrize("name", HTTP_CAPTURES)
def test_requests_and_responses_match_tshark(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / name
    expected_requests = tshark_fields(
        tshark, path, "http.request", "tcp.stream", "http.request.method", "http.request.uri",
        "http.request.version", "http.host", "http.user_agent", "http.content_length", "http.file_data", "http.upgrade",
    )  # fmt: skip
    expected_responses = tshark_fields(
        tshark, path, "http.response", "tcp.stream", "http.response.version", "http.response.code",
        "http.response.phrase", "http.content_length", "http.file_data", "http.upgrade", "http.transfer_encoding",
    )  # fmt: skip
    requests, responses = [], []
    for index, connection in enumerate(connections(path)):
        client = parse(HttpRequestParser(body_sample=SAMPLE), connection.data(connection.node0))
        server = parse(HttpResponseParser(methods_of(client), body_sample=SAMPLE), connection.data(connection.node1))
        assert not any(isinstance(event, Malformed) for event in client + server)
        for head, end in pairwise(client):
            if isinstance(head, Request):
                requests.append([
                    str(index), head.method, head.target.decode(), f"HTTP/{head.version}", _text(head.header("host")),
                    _text(head.header("user-agent")), _text(head.header("content-length")),
                    _tshark_text(end.body_sample), _text(head.header("upgrade")),
                ])  # fmt: skip
        for head, end in pairwise(server):
            if isinstance(head, Response):
                body = end.body_sample if isinstance(end, EndOfMessage) else b""
                responses.append([
                    str(index), f"HTTP/{head.version}", str(head.status), head.reason.decode(),
                    _text(head.header("content-length")), _tshark_text(body), _text(head.header("upgrade")),
                    _text(head.header("transfer-encoding")),
                ])  # fmt: skip
    by_stream = sorted  # tshark lists messages in frame order; compare per connection, in stream order
    assert by_stream(requests, key=lambda row: int(row[0])) == by_stream(expected_requests, key=lambda r: int(r[0]))
    assert by_stream(responses, key=lambda row: int(row[0])) == by_stream(expected_responses, key=lambda r: int(r[0]))


@pytest.mark.tshark
def test_upgrade_switches_both_directions_where_tshark_sees_the_raw_stream(corpus: Path, tshark: str) -> None:
    path = corpus / "zeek__docker-http-upgrade.pcap"
    attach = connections(path)[1]  # tcp.stream 1: POST .../attach with Upgrade: tcp
    sent_client, sent_server = tshark_follow(tshark, path, 2)[1]
    client = parse(HttpRequestParser(), attach.data(attach.node0))
    server = parse(HttpResponseParser(methods_of(client)), attach.data(attach.node1))
    client_head = sent_client.index(b"\r\n\r\n") + 4
    server_head = sent_server.index(b"\r\n\r\n") + 4
    assert client[-1] == ProtocolSwitch(client_head, b"tcp")
    assert server[-1] == ProtocolSwitch(server_head, b"tcp")
    assert [type(e) for e in server] == [Response, ProtocolSwitch] and server[0].status == 101


def test_every_split_point_gives_the_same_events(corpus: Path) -> None:
    for _, client_bytes, server_bytes in corpus_streams(corpus):
        client = parse(HttpRequestParser(), client_bytes)
        server = parse(HttpResponseParser(methods_of(client)), server_bytes)
        for cut in range(1, len(client_bytes)):
            assert parse(HttpRequestParser(), client_bytes, [cut]) == client
        for cut in range(1, len(server_bytes)):
            assert parse(HttpResponseParser(methods_of(client)), server_bytes, [cut]) == server


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_splits_give_the_same_events(corpus: Path, data) -> None:
    streams = corpus_streams(corpus)
    _, client_bytes, server_bytes = data.draw(st.sampled_from(streams))
    client = parse(HttpRequestParser(), client_bytes)
    cuts = data.draw(st.lists(st.integers(1, max(len(client_bytes), 1)), max_size=60))
    assert parse(HttpRequestParser(), client_bytes, cuts) == client
    server = parse(HttpResponseParser(methods_of(client)), server_bytes)
    cuts = data.draw(st.lists(st.integers(1, max(len(server_bytes), 1)), max_size=60))
    assert parse(HttpResponseParser(methods_of(client)), server_bytes, cuts) == server


def test_byte_by_byte_feeding(corpus: Path) -> None:
    for _, client_bytes, server_bytes in corpus_streams(corpus):
        client = parse(HttpRequestParser(), client_bytes)
        assert parse(HttpRequestParser(), client_bytes, list(range(len(client_bytes)))) == client
        server = parse(HttpResponseParser(methods_of(client)), server_bytes)
        assert parse(HttpResponseParser(methods_of(client)), server_bytes, list(range(len(server_bytes)))) == server


def assert_prefix(events: list, whole: list) -> None:
    """``events`` of a cut stream: those of the whole stream, but the last may say the stream was cut."""
    *head, last = events or [None]
    assert head == whole[: len(head)]
    cut_short = isinstance(last, Malformed) or (isinstance(last, EndOfMessage) and not last.complete)
    assert last is None or cut_short or last == whole[len(head)] or isinstance(last, EndOfMessage)


def test_truncated_streams_give_a_prefix_of_the_events(corpus: Path) -> None:
    for _, client_bytes, server_bytes in corpus_streams(corpus):
        whole = parse(HttpRequestParser(), client_bytes)
        for end in range(len(client_bytes)):
            assert_prefix(parse(HttpRequestParser(), client_bytes[:end]), whole)
        methods = methods_of(whole)
        whole = parse(HttpResponseParser(methods), server_bytes)
        for end in range(len(server_bytes)):
            assert_prefix(parse(HttpResponseParser(methods), server_bytes[:end]), whole)


# -- http.client as an independent oracle for response framing ---------------


class _KeepOpen(io.BytesIO):
    def close(self) -> None:  # http.client closes the file after a HEAD response; keep reading
        pass


class _Socket:
    def __init__(self, stream: io.BytesIO) -> None:
        self._stream = stream

    def makefile(self, mode: str) -> io.BytesIO:
        return self._stream


@st.composite
def response_streams(draw):
    """Responses as a server writes them, the request methods, and whether the last one ends with the connection."""
    parts, methods = [], []
    count = draw(st.integers(1, 4))
    for position in range(count):
        method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
        status = draw(st.sampled_from([200, 201, 204, 304, 404, 500]))
        body = draw(st.binary(max_size=300))
        headers = [b"Server: hypothesis", b"Content-Type: application/octet-stream"]
        no_body = method == "HEAD" or status in (204, 304)
        framings = ["length"] + ([] if status in (204, 304) else ["chunked"])  # RFC 9110: no TE on 204/304
        framing = draw(st.sampled_from(framings + (["close"] if position == count - 1 else [])))
        payload = b""
        if framing == "length":
            headers.append(b"Content-Length: %d" % len(body))
            payload = body
        elif framing == "chunked":
            headers.append(b"Transfer-Encoding: chunked")
            cuts = sorted(draw(st.lists(st.integers(1, max(len(body), 1)), max_size=5)))
            bounds = [0, *[c for c in cuts if c < len(body)], len(body)]
            for start, end in pairwise(bounds):
                if end > start:
                    payload += b"%x;ext=1\r\n" % (end - start) + body[start:end] + b"\r\n"
            payload += b"0\r\nX-Trailer: yes\r\n\r\n"
        else:
            payload = body
        head = b"HTTP/1.1 %d Reason\r\n" % status + b"\r\n".join(headers) + b"\r\n\r\n"
        parts.append(head + (b"" if no_body else payload))
        methods.append(method)
    return b"".join(parts), methods


@settings(max_examples=300, deadline=None)
@given(stream=response_streams(), cuts=st.lists(st.integers(1, 5000), max_size=20))
def test_response_framing_agrees_with_http_client(stream, cuts) -> None:
    data, methods = stream
    source = _KeepOpen(data)
    expected = []
    for method in methods:
        response = http.client.HTTPResponse(_Socket(source), method=method)
        response.begin()
        expected.append((response.status, response.read()))
    events = parse(HttpResponseParser(methods, body_sample=SAMPLE), data, cuts)
    heads = [e for e in events if isinstance(e, Response)]
    ends = [e for e in events if isinstance(e, EndOfMessage)]
    assert [(head.status, end.body_sample) for head, end in zip(heads, ends)] == expected
    assert [end.body_length for end in ends] == [len(body) for _, body in expected]
    assert all(end.complete for end in ends) and len(heads) == len(ends) == len(methods)


# -- framing rules (RFC 9112 examples) -----------------------------------------


def test_pipelined_requests_with_bodies_and_leading_blank_lines() -> None:
    data = (
        b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 27\r\n\r\nuser=bob&password=hunter2!!"
        b"\r\n"  # a stray CRLF after a body, as some clients send
        b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
        b"GET / HTTP/1.0\n\n"
    )
    events = parse(HttpRequestParser(), data)
    assert [type(e) for e in events] == [Request, EndOfMessage] * 3
    assert [e.method for e in events[::2]] == ["POST", "PUT", "GET"]
    assert events[1].body_sample == b"user=bob&password=hunter2!!"
    assert events[3].body_sample == b"Wikipedia" and events[3].body_length == 9
    assert events[4].version == "1.0" and events[5].offset == len(data)


def test_responses_without_bodies_and_interim_responses() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"  # answers HEAD: no body
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.0 200 OK\r\n\r\nuntil the connection closes"
    )
    events = parse(HttpResponseParser(["HEAD", "GET", "DELETE", "GET"]), data)
    statuses = [e.status for e in events if isinstance(e, Response)]
    assert statuses == [100, 200, 304, 204, 200]
    ends = [e for e in events if isinstance(e, EndOfMessage)]
    assert [e.body_length for e in ends] == [0, 0, 0, 27]
    assert ends[-1] == EndOfMessage(len(data), 27, b"until the connection closes", True)


def test_connect_tunnel_and_http2_preface_switch_protocols() -> None:
    request = b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n\x16\x03\x01\x02\x00\x01"
    events = parse(HttpRequestParser(), request)
    assert isinstance(events[0], Request) and events[-1] == ProtocolSwitch(43, b"")
    response = parse(HttpResponseParser(["CONNECT"]), b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03")
    assert response[-1] == ProtocolSwitch(39, b"")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00"
    assert parse(HttpRequestParser(), preface) == [ProtocolSwitch(0, b"h2c")]


def test_declined_upgrade_keeps_parsing_requests() -> None:
    data = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\n\r\n"
    events = parse(HttpRequestParser(), data)
    assert [e.target for e in events if isinstance(e, Request)] == [b"/chat", b"/next"]


def test_obsolete_line_folding_is_joined() -> None:
    events = parse(HttpRequestParser(), b"GET / HTTP/1.1\r\nX-Long: one\r\n two\r\n\tthree\r\n\r\n")
    assert events[0].header("x-long") == b"one two three"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET /\r\n\r\n", "request line"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "without a colon"),
        (b"GET / HTTP/1.1\r\n folded: first\r\n\r\n", "continuation line"),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "does not end with chunked"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", "not followed by CRLF"),
        (b"GET / HTTP/9\r\n\r\n", "invalid HTTP version"),
        (b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03\n\n", "request line"),
    ],
)
def test_malformed_input_is_one_event_then_silence(data: bytes, reason: str) -> None:
    parser = HttpRequestParser()
    events = parse(parser, data)
    assert isinstance(events[-1], Malformed) and reason in events[-1].reason
    assert parser.state == HttpState.ERROR
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []


def test_gap_inside_a_body_is_skipped_and_elsewhere_is_fatal() -> None:
    parser = HttpResponseParser()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    events = parser.feed(head + b"abc")
    events += parser.gap(4)
    events += parser.feed(b"hij" + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert events[1] == EndOfMessage(len(head) + 10, 10, b"abc", True)
    assert events[2].status == 404
    gap_in_head = HttpRequestParser()
    gap_in_head.feed(b"GET / HT")
    assert isinstance(gap_in_head.gap(5)[0], Malformed)


def test_head_size_is_bounded() -> None:
    parser = HttpRequestParser(max_head=1024)
    events = parser.feed(b"GET / HTTP/1.1\r\nCookie: " + b"a" * 2000)
    assert isinstance(events[0], Malformed) and "longer than 1024" in events[0].reason


def test_end_inside_a_body_is_an_incomplete_message() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\npassword="
    assert parse(HttpRequestParser(), data)[-1] == EndOfMessage(len(data), 9, b"password=", False)


# -- hostile input -------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(1, 600), max_size=8))
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    for parser in (HttpRequestParser(max_head=200), HttpResponseParser(["HEAD", "GET"], max_head=200)):
        events = parse(parser, data, cuts)
        malformed = [e for e in events if isinstance(e, Malformed)]
        assert len(malformed) <= 1 and (not malformed or events[-1] is malformed[0])


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from([b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b""]),
    body=st.binary(max_size=300),
    gaps=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 50)), max_size=3),
)
def test_gaps_anywhere_never_raise(prefix: bytes, body: bytes, gaps) -> None:
    """Gaps anywhere: no exception, and at most one Malformed, which ends the events; without gaps, the one-shot events."""
    data = prefix + body
    for make in (HttpRequestParser, HttpResponseParser):
        parser, events, position = make(), [], 0
        for at, size in sorted(gaps):
            events += parser.feed(data[position:at])
            events += parser.gap(size)
            position = max(position, at)
        events += parser.feed(data[position:])
        events += parser.finish()
        malformed = [e for e in events if isinstance(e, Malformed)]
        assert len(malformed) <= 1 and (not malformed or events[-1] is malformed[0])
        if not gaps:
            one_shot = make()
            assert events == one_shot.feed(data) + one_shot.finish()


def _peak_bytes(parser, pieces) -> int:
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for piece in pieces:
            parser.feed(piece)
        parser.finish()
        return tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    ],
)
def test_announced_body_sizes_allocate_nothing(head: bytes) -> None:
    block = b"x" * 65536
    parser = HttpRequestParser()
    assert _peak_bytes(parser, [head] + [block] * 32) < 400_000
    assert parser.state == HttpState.DONE


@pytest.mark.parametrize("line", [b"X: " + b" \t" * 32768, b"X: " + b"a" * 65536, b"X" * 65536 + b": a"])
def test_pathological_64k_header_line_is_linear(line: bytes) -> None:
    data = b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n"
    started = time.perf_counter()
    whole = parse(HttpRequestParser(max_head=128 * 1024), data)
    bytewise = parse(HttpRequestParser(max_head=128 * 1024), data, list(range(0, len(data), 1)))
    assert whole == bytewise and isinstance(whole[0], Request)
    assert time.perf_counter() - started < 10


def test_many_short_header_lines_fed_byte_by_byte_are_linear() -> None:
    """32768 header lines fed one byte at a time: a rescan from the start would take hours."""
    data = b"GET / HTTP/1.1\r\n" + b"a:b\n" * 32768 + b"\r\n"
    parser = HttpRequestParser(max_head=256 * 1024)
    started = time.perf_counter()
    events = []
    for index in range(len(data)):
        events += parser.feed(data[index : index + 1])
    assert len(events[0].headers) == 32768
    assert time.perf_counter() - started < 20
