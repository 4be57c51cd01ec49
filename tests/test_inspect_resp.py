"""RESP parsing: corpus streams, a live redis-server as the oracle, splits, garbage, hostile sizes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.escape import escape
from vxlaninspect.inspect.parser import Malformed
from vxlaninspect.inspect.resp import (
    Command,
    Reply,
    ReplyKind,
    RespCommandParser,
    RespReplyParser,
    RespState,
    split_inline,
    string_to_int,
)

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import connections
except ImportError:
    from test_inspect_capture import connections

RESP_CAPTURES = ("zeek__redis-50-pings.pcap", "tcpdump__resp_1_benchmark.pcap", "tcpdump__resp_3_malicious.pcap")
REDIS_PORT = 6379


def parse(parser, data: bytes, cuts: list[int] = ()) -> list:
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    events = []
    for start, end in pairwise(bounds):
        events += parser.feed(data[start:end])
    return events + parser.finish()


def client_and_server(connection) -> tuple[bytes, bytes]:
    client, server = (
        (connection.node0, connection.node1)
        if connection.node1[1] == REDIS_PORT
        else (connection.node1, connection.node0)
    )
    return connection.data(client), connection.data(server)


def corpus_streams(corpus: Path) -> list[tuple[bytes, bytes]]:
    return [client_and_server(c) for name in RESP_CAPTURES for c in connections(corpus / name)]


def of_type(events: list, kind: type) -> list:
    return [event for event in events if isinstance(event, kind)]


# -- real captures ---------------------------------------------------------------


def test_redis_py_session(corpus: Path) -> None:
    # MANIFEST and tshark's follow,tcp,ascii,0: redis-py sends AUTH zeek, CLIENT SETINFO
    # LIB-NAME redis-py, CLIENT SETINFO LIB-VER 5.0.8, 50 PING and QUIT; each gets +OK / +PONG.
    (connection,) = connections(corpus / "zeek__redis-50-pings.pcap")
    client, server = client_and_server(connection)
    commands = parse(RespCommandParser(), client)
    assert [(c.name, c.args) for c in commands] == [
        ("AUTH", (b"zeek",)),
        ("CLIENT", (b"SETINFO", b"LIB-NAME", b"redis-py")),
        ("CLIENT", (b"SETINFO", b"LIB-VER", b"5.0.8")),
    ] + [("PING", ())] * 50 + [("QUIT", ())]
    assert all(c.complete and not c.inline and not c.truncated for c in commands)
    replies = parse(RespReplyParser(), server)
    assert [r.summary for r in replies] == ["OK"] * 3 + ["PONG"] * 50 + ["OK"]


@pytest.mark.parametrize("name", RESP_CAPTURES)
def test_each_command_got_one_reply_from_the_real_server(corpus: Path, name: str) -> None:
    """The capture holds the server's own verdict: one reply per command, a protocol error where we report one."""
    for connection in connections(corpus / name):
        client, server = client_and_server(connection)
        events = parse(RespCommandParser(), client)
        commands = of_type(events, Command)
        replies = parse(RespReplyParser(), server)
        assert all(isinstance(r, Reply) and r.complete for r in replies)
        malformed = of_type(events, Malformed)
        if malformed:
            assert len(replies) == len(commands) + 1
            assert replies[-1].kind == ReplyKind.ERROR and replies[-1].value == b"ERR " + malformed[0].reason.encode()
        else:
            assert len(replies) == len(commands)
        for command, reply in zip(commands, replies):
            if reply.value.startswith(b"ERR unknown command '"):
                assert escape(reply.value.split(b"'")[1].upper(), 64) == command.name


def test_benchmark_commands_are_the_ones_redis_benchmark_sends(corpus: Path) -> None:
    # MANIFEST: an inline PING, then RESP PING/SET/GET/INCR/LPUSH/LPOP/SADD/SPOP/LRANGE/MSET.
    found = []
    for client, _ in corpus_streams(corpus)[1:16]:
        found += parse(RespCommandParser(), client)
    assert found[0].inline and found[0].name == "PING"
    assert {c.name for c in found} == {"PING", "SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "SPOP", "LRANGE", "MSET"}
    assert not any(c.inline for c in found[1:])


EXHAUSTIVE = 2048
"""Streams up to this size are cut at every point; longer ones (three LRANGE replies) at every 97th."""


def test_every_split_point_gives_the_same_events(corpus: Path) -> None:
    for client, server in corpus_streams(corpus):
        for factory, data in ((RespCommandParser, client), (RespReplyParser, server)):
            whole = parse(factory(), data)
            for cut in range(1, len(data), 1 if len(data) <= EXHAUSTIVE else 97):
                assert parse(factory(), data, [cut]) == whole


def test_byte_by_byte_feeding(corpus: Path) -> None:
    for client, server in corpus_streams(corpus):
        for factory, data in ((RespCommandParser, client), (RespReplyParser, server)):
            assert parse(factory(), data, list(range(len(data)))) == parse(factory(), data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_splits_give_the_same_events(corpus: Path, data) -> None:
    client, server = data.draw(st.sampled_from(corpus_streams(corpus)))
    for factory, stream in ((RespCommandParser, client), (RespReplyParser, server)):
        cuts = data.draw(st.lists(st.integers(1, max(len(stream), 1)), max_size=40))
        assert parse(factory(), stream, cuts) == parse(factory(), stream)


def test_truncated_streams_never_raise_and_lose_only_the_last_event(corpus: Path) -> None:
    for client, server in corpus_streams(corpus):
        for factory, data in ((RespCommandParser, client), (RespReplyParser, server)):
            whole = parse(factory(), data)
            for end in range(0, len(data), 1 if len(data) <= EXHAUSTIVE else 97):
                *head, last = parse(factory(), data[:end]) or [None]
                assert head == whole[: len(head)]
                assert last is None or last == whole[len(head)] or not last.complete


# -- a live redis-server as the oracle --------------------------------------------


@pytest.fixture(scope="module")
def redis_socket(tmp_path_factory) -> Iterator[Path]:
    """A throw-away redis-server on a unix socket, with DEBUG enabled for RESP3 samples."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run the README's test command (it installs redis-server)")
    directory = tmp_path_factory.mktemp("redis")
    path = directory / "redis.sock"
    process = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--enable-debug-command", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
        yield path
    finally:
        process.terminate()
        process.wait(10)


SENTINEL = b"*2\r\n$4\r\nECHO\r\n$8\r\nSENTINEL\r\n"
SENTINEL_REPLY = b"$8\r\nSENTINEL\r\n"


def exchange(path: Path, request: bytes) -> bytes:
    """Send ``request`` and a sentinel ECHO; the server's bytes up to the sentinel's reply or its close."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(path))
        connection.sendall(request + SENTINEL)
        received = b""
        while not received.endswith(SENTINEL_REPLY):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def test_resp3_reply_types_from_redis(redis_socket: Path) -> None:
    # DEBUG PROTOCOL <type> answers with each RESP3 type; the values and element
    # counts below are what `redis-cli -3 DEBUG PROTOCOL <type>` prints.
    types = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push", "verbatim",
             "true", "false"]  # fmt: skip
    request = b"HELLO 3\r\n" + b"".join(b"DEBUG PROTOCOL %s\r\n" % t.encode() for t in types)
    replies = parse(RespReplyParser(), exchange(redis_socket, request))
    hello, *answers, sentinel = replies
    assert hello.kind == ReplyKind.MAP and hello.size == 7
    assert [(r.kind, r.value, r.size, r.attributed) for r in answers] == [
        (ReplyKind.BULK_STRING, b"Hello World", 11, False),
        (ReplyKind.INTEGER, b"12345", 0, False),
        (ReplyKind.DOUBLE, b"3.141", 0, False),
        (ReplyKind.BIG_NUMBER, b"1234567999999999999999999999999999999", 0, False),
        (ReplyKind.NULL, b"", 0, False),
        (ReplyKind.ARRAY, b"", 3, False),
        (ReplyKind.SET, b"", 3, False),
        (ReplyKind.MAP, b"", 3, False),
        (ReplyKind.BULK_STRING, b"Some real reply following the attribute", 39, True),
        (ReplyKind.PUSH, b"", 2, False),
        (ReplyKind.BULK_STRING, b"Some real reply following the push reply", 40, False),
        (ReplyKind.VERBATIM, b"txt:This is a verbatim\nstring", 29, False),
        (ReplyKind.BOOLEAN, b"t", 0, False),
        (ReplyKind.BOOLEAN, b"f", 0, False),
    ]
    assert sentinel.value == b"SENTINEL"


_SAFE_NAMES = [b"PING", b"ECHO", b"EXISTS", b"NOSUCHCOMMAND"]
_INLINE_ALPHABET = st.sampled_from(list(b"ab x\t\"'\\0123456789fF"))


@st.composite
def command_units(draw) -> bytes:
    """One unit of a client stream: a whole command, an empty line, an empty array, or a protocol error."""
    kind = draw(st.sampled_from(["array", "array", "inline", "inline", "blank", "empty", "bad"]))
    if kind == "array":
        args = [draw(st.sampled_from(_SAFE_NAMES))] + draw(st.lists(st.binary(max_size=40), max_size=3))
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    if kind == "inline":
        name = draw(st.sampled_from(_SAFE_NAMES))
        rest = bytes(draw(st.lists(_INLINE_ALPHABET, max_size=30)))
        return name + b" " + rest + draw(st.sampled_from([b"\r\n", b"\n"]))
    if kind == "blank":
        return draw(st.sampled_from([b"\r\n", b"\n", b"   \r\n"]))
    if kind == "empty":
        return draw(st.sampled_from([b"*0\r\n", b"*-1\r\n", b"*-7\r\n"]))
    return draw(st.sampled_from([b"*x\r\n", b"*1\r\n+PING\r\n", b"*1\r\n$-2\r\n", b"*01\r\n", b"*1\r\n$01\r\n"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.lists(command_units(), max_size=8))
def test_commands_agree_with_a_live_redis_server(redis_socket: Path, units: list[bytes]) -> None:
    request = b"".join(units)
    events = parse(RespCommandParser(max_arg_bytes=1024), request + SENTINEL)
    commands = of_type(events, Command)
    replies = of_type(parse(RespReplyParser(max_value=1024), exchange(redis_socket, request)), Reply)
    malformed = of_type(events, Malformed)
    if malformed:
        assert len(replies) == len(commands) + 1
        assert replies[-1].value == b"ERR " + malformed[0].reason.encode()
    else:
        assert len(replies) == len(commands) and replies[-1].value == b"SENTINEL"
    for command, reply in zip(commands, replies):
        if command.name == "ECHO" and command.arg_count == 1:
            assert reply.value == command.args[0]  # the server saw the argument we parsed


def test_a_nul_byte_stalls_an_inline_command_as_in_redis(redis_socket: Path) -> None:
    request = b"ECHO x\x00y\r\nPING\r\n"
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(0.5)
        connection.connect(str(redis_socket))
        connection.sendall(request)
        with pytest.raises(TimeoutError):
            connection.recv(100)  # the server waits for a line end it cannot see
    assert parse(RespCommandParser(), request) == []
    too_big = RespCommandParser().feed(request + b"z" * 70000)
    assert too_big == [Malformed(0, "Protocol error: too big inline request")]


# -- rules on hand-made input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"SET k v", [b"SET", b"k", b"v"]),
        (b"  ECHO \"a b\\x41\\n\" 'it\\'s'  ", [b"ECHO", b"a bA\n", b"it's"]),
        (b'a"b c"d', None),  # a closing quote must be followed by a space
        (b'ECHO "open', None),
        (b"ECHO x\x00ignored", [b"ECHO", b"x"]),
        (b"", []),
    ],
)
def test_inline_splitting_follows_sdssplitargs(line: bytes, expected) -> None:
    assert split_inline(line) == expected


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"0", 0), (b"-12", -12), (b"9223372036854775807", 2**63 - 1), (b"9223372036854775808", None), (b"01", None),
     (b"-0", None), (b"+1", None), (b" 1", None), (b"", None), (b"-", None)],
)  # fmt: skip
def test_string_to_int_follows_string2ll(raw: bytes, value) -> None:
    assert string_to_int(raw) == value


def test_attributes_nested_aggregates_and_nulls() -> None:
    data = (
        b"|1\r\n+ttl\r\n:3\r\n"  # an attribute before the reply
        b"*3\r\n%1\r\n+k\r\n~2\r\n,1.5e3\r\n(-12\r\n|0\r\n#t\r\n$-1\r\n"
        b"*-1\r\n_\r\n>1\r\n!3\r\nERR\r\n=8\r\nmkd:*hi*\r\n"
    )
    replies = parse(RespReplyParser(), data)
    assert [(r.kind, r.size, r.attributed) for r in replies] == [
        (ReplyKind.ARRAY, 3, True),
        (ReplyKind.NULL, 0, False),
        (ReplyKind.NULL, 0, False),
        (ReplyKind.PUSH, 1, False),
        (ReplyKind.VERBATIM, 8, False),
    ]
    assert [r.summary for r in replies] == ["(array of 3)", "(nil)", "(nil)", "(push of 1)", '"mkd:*hi*"']


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"$?\r\n;4\r\nabcd\r\n;0\r\n", "streamed"),
        (b"=3\r\nabc\r\n", "verbatim"),
        (b"_x\r\n", "invalid null"),
        (b"#y\r\n", "invalid boolean"),
        (b":99999999999999999999\r\n", "invalid integer"),
        (b",1.2.3\r\n", "invalid double"),
        (b"$3\r\nabcd\r\n", "not followed by CRLF"),
        (b"*-2\r\n", "invalid array length"),
        (b"@5\r\n", "unknown reply type"),
    ],
)
def test_malformed_replies(data: bytes, reason: str) -> None:
    parser = RespReplyParser()
    events = parse(parser, data)
    assert isinstance(events[-1], Malformed) and reason in events[-1].reason
    assert parser.state == RespState.ERROR and parser.feed(b"+OK\r\n") == []


def test_long_commands_keep_bounded_arguments() -> None:
    value = b"v" * 5000
    data = (
        b"*102\r\n$4\r\nMSET\r\n"
        + b"".join(b"$4\r\nk%03d\r\n" % i for i in range(100))
        + b"$5000\r\n"
        + value
        + b"\r\n"
    )
    (command,) = parse(RespCommandParser(max_args=10, max_arg_bytes=16), data)
    assert command.name == "MSET" and command.arg_count == 101 and command.truncated
    assert command.args == tuple(b"k%03d" % i for i in range(10))


def test_a_command_cut_by_the_end_of_the_stream_is_reported_incomplete() -> None:
    data = b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$20\r\nsecr"
    (command,) = parse(RespCommandParser(), data)
    assert command == Command(0, "AUTH", (b"default", b"secr"), 2, True, False, complete=False)


def test_gap_inside_a_bulk_string_is_skipped() -> None:
    parser = RespCommandParser()
    events = parser.feed(b"*2\r\n$4\r\nECHO\r\n$10\r\nabc")
    events += parser.gap(5)
    events += parser.feed(b"ij\r\n*1\r\n$4\r\nPING\r\n")
    assert [(c.name, c.args, c.truncated) for c in events] == [("ECHO", (b"abc",), True), ("PING", (), False)]
    assert isinstance(RespReplyParser().gap(3)[0], Malformed)


# -- hostile input -------------------------------------------------------------------


_RESP_ALPHABET = st.sampled_from(list(b"*$+-:_,#!=(%~>|?.0123456789\r\n abPING\"'\\"))


@settings(max_examples=500, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=300), st.lists(_RESP_ALPHABET, max_size=300).map(bytes)),
    cuts=st.lists(st.integers(1, 300), max_size=8),
)
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    for parser in (RespCommandParser(), RespReplyParser(max_depth=4)):
        events = parse(parser, data, cuts)
        malformed = of_type(events, Malformed)
        assert len(malformed) <= 1 and (not malformed or events[-1] is malformed[0])


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


def test_hostile_lengths_allocate_nothing_they_announce() -> None:
    block = b"x" * 65536
    header = b"*99999999\r\n$999999999\r\n"
    assert _peak_bytes(RespCommandParser(), [header] + [block] * 32) < 400_000
    assert _peak_bytes(RespReplyParser(), [b"*99999999\r\n$999999999\r\n"] + [block] * 32) < 400_000
    many = b"$1\r\nx\r\n" * 20000
    assert _peak_bytes(RespCommandParser(), [b"*99999999\r\n", many, many, many]) < 1_000_000


def test_nesting_is_bounded() -> None:
    events = parse(RespReplyParser(max_depth=32), b"*1\r\n" * 10000)
    assert isinstance(events[-1], Malformed) and "nested deeper than 32" in events[-1].reason
    assert parse(RespReplyParser(max_depth=32), b"*1\r\n" * 32 + b":1\r\n")[0].kind == ReplyKind.ARRAY


def test_lines_are_bounded() -> None:
    events = RespReplyParser().feed(b"+" + b"a" * 70000)
    assert isinstance(events[-1], Malformed) and "longer than" in events[-1].reason
    events = RespCommandParser().feed(b"GET " + b"a" * 70000)
    assert events[-1] == Malformed(0, "Protocol error: too big inline request")
