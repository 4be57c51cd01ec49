"""TLS hellos from real OpenSSL handshakes (Python's ssl), checked against tshark; splits, garbage, bounds."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from itertools import pairwise
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxlaninspect.inspect.parser import Malformed
from vxlaninspect.inspect.tls import ClientHello, ServerHello, TlsParser, TlsState, is_grease, version_name

try:  # tests/ as a package, or as a directory on sys.path
    from tests.test_inspect_capture import connections, tshark_fields
except ImportError:
    from test_inspect_capture import connections, tshark_fields

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 443)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate and key, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: run the README's test command (it installs openssl)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=test", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def handshake(certificate, *, sni: str | None, alpn: list[str], max_version=None) -> tuple[bytes, bytes]:
    """The bytes an OpenSSL client and server send each other during a handshake, in memory."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    if alpn:
        client_context.set_alpn_protocols(alpn)
    if max_version is not None:
        client_context.maximum_version = max_version
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*certificate)
    if alpn:
        server_context.set_alpn_protocols(alpn[-1:])
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, client_out, server_hostname=sni)
    server = server_context.wrap_bio(to_server, server_out, server_side=True)
    sent_client = sent_server = b""
    for _ in range(10):
        for end in (client, server):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        from_client, from_server = client_out.read(), server_out.read()
        sent_client += from_client
        sent_server += from_server
        to_server.write(from_client)
        to_client.write(from_server)
    return sent_client, sent_server


def _frame(source, destination, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=source[1], dport=destination[1], seq=seq, ack=ack, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(source[0]), dst=socket.inet_aton(destination[0]), p=6, ttl=64, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def write_capture(path: Path, sent_client: bytes, sent_server: bytes) -> None:
    """A pcap of one TCP connection carrying the two byte streams (dpkt-built packets around real TLS bytes)."""
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        client_seq, server_seq = 1000, 5000
        writer.writepkt(_frame(CLIENT, SERVER, client_seq, 0, dpkt.tcp.TH_SYN), 1)
        writer.writepkt(_frame(SERVER, CLIENT, server_seq, client_seq + 1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK), 1)
        client_seq, server_seq = client_seq + 1, server_seq + 1
        data_flags = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH
        for start in range(0, len(sent_client), 700):
            piece = sent_client[start : start + 700]
            writer.writepkt(_frame(CLIENT, SERVER, client_seq, server_seq, data_flags, piece), 2)
            client_seq += len(piece)
        for start in range(0, len(sent_server), 700):
            piece = sent_server[start : start + 700]
            writer.writepkt(_frame(SERVER, CLIENT, server_seq, client_seq, data_flags, piece), 3)
            server_seq += len(piece)


def parse(data: bytes, cuts: list[int] = ()) -> list:
    parser = TlsParser()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    events = []
    for start, end in pairwise(bounds):
        events += parser.feed(data[start:end])
    return events + parser.finish()


HANDSHAKES = {
    "tls13-sni-alpn": {"sni": "db.example.org", "alpn": ["h2", "http/1.1"]},
    "tls12-sni": {"sni": "cache.internal", "alpn": [], "max_version": ssl.TLSVersion.TLSv1_2},
    "tls13-bare": {"sni": None, "alpn": []},
}


@pytest.mark.tshark
@pytest.mark.parametrize("name", HANDSHAKES)
def test_hellos_match_tshark(certificate, tshark: str, tmp_path: Path, name: str) -> None:
    sent_client, sent_server = handshake(certificate, **HANDSHAKES[name])
    path = tmp_path / f"{name}.pcap"
    write_capture(path, sent_client, sent_server)
    (connection,) = connections(path)
    (client_hello,) = parse(connection.data(CLIENT))
    (server_hello,) = parse(connection.data(SERVER))
    fields = ("tls.record.version", "tls.handshake.version", "tls.handshake.extensions_server_name",
              "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version",
              "tls.handshake.ciphersuite")  # fmt: skip
    (client_row,) = tshark_fields(tshark, path, "tls.handshake.type == 1", *fields)
    (server_row,) = tshark_fields(tshark, path, "tls.handshake.type == 2", *fields)

    def versions(text: str) -> list[int]:
        return [v for v in (int(x, 16) for x in text.split(",") if x) if not is_grease(v)]

    assert isinstance(client_hello, ClientHello)
    assert client_hello.record_version == int(client_row[0].split(",")[0], 16)
    assert client_hello.legacy_version == int(client_row[1], 16)
    assert (client_hello.server_name or b"").decode() == client_row[2]
    assert b",".join(client_hello.alpn).decode() == client_row[3]
    assert list(client_hello.versions) == versions(client_row[4])
    assert isinstance(server_hello, ServerHello)
    assert server_hello.record_version == int(server_row[0].split(",")[0], 16)
    assert server_hello.legacy_version == int(server_row[1], 16)
    assert server_hello.version == (versions(server_row[4]) or [server_hello.legacy_version])[0]
    assert server_hello.cipher_suite == int(server_row[5], 16)
    expected_version = "TLS 1.2" if "max_version" in HANDSHAKES[name] else "TLS 1.3"
    assert version_name(server_hello.version) == expected_version
    assert not server_hello.hello_retry


def test_every_split_point_gives_the_same_events(certificate) -> None:
    for options in HANDSHAKES.values():
        for data in handshake(certificate, **options):
            whole = parse(data)
            assert len(whole) == 1
            for cut in range(1, len(data)):
                assert parse(data, [cut]) == whole


def test_truncations_never_raise_and_report_a_cut_hello(certificate) -> None:
    sent_client, _ = handshake(certificate, **HANDSHAKES["tls13-sni-alpn"])
    hello_end = 5 + int.from_bytes(sent_client[3:5], "big")
    for end in range(len(sent_client)):
        events = parse(sent_client[:end])
        if end < hello_end and end > 5:
            assert events == [Malformed(0, "stream ended inside the first handshake message")]
        elif end >= hello_end:
            assert isinstance(events[0], ClientHello)


def test_records_after_the_hello_are_followed_not_stored(certificate) -> None:
    _, sent_server = handshake(certificate, **HANDSHAKES["tls13-sni-alpn"])
    parser = TlsParser()
    parser.feed(sent_server)
    records = parser.records
    assert records >= 3  # ServerHello, ChangeCipherSpec, encrypted handshake records
    application_data = b"\x17\x03\x03\x40\x00"  # a 16 KiB record, of which 100 bytes are lost
    assert parser.feed(application_data + bytes(1000)) == []
    assert parser.gap(100) == []
    assert parser.feed(bytes(16384 - 1100)) == []
    assert parser.records == records + 1 and parser.state == TlsState.HEADER


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x2e\x01\x03\x01", "SSLv2"),
        (b"\x63\x03\x01\x00\x10", "not a TLS content type"),
        (b"\x16\x04\x01\x00\x10", "record version"),
        (b"\x16\x03\x01\xff\xff", "exceeds"),
        (b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "exceeds"),  # a 16 MiB ClientHello is announced
        (b"\x16\x03\x01\x00\x08\x0b\x00\x00\x04\x00\x00\x00\x00", "not a hello"),
        (b"\x16\x03\x01\x00\x0a\x01\x00\x00\x06\x03\x03\x00\x00\x00\x00", "overruns"),
    ],
)
def test_malformed_records(data: bytes, reason: str) -> None:
    events = parse(data)
    assert isinstance(events[-1], Malformed) and reason in events[-1].reason


def test_gap_inside_the_hello_is_fatal(certificate) -> None:
    sent_client, _ = handshake(certificate, **HANDSHAKES["tls13-sni-alpn"])
    parser = TlsParser()
    assert parser.feed(sent_client[:100]) == []
    assert isinstance(parser.gap(50)[0], Malformed)


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: b"\x16\x03\x01" + len(b).to_bytes(2, "big") + b"\x01" + b),
    ),
    cuts=st.lists(st.integers(1, 400), max_size=6),
)
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    events = parse(data, cuts)
    malformed = [e for e in events if isinstance(e, Malformed)]
    assert len(malformed) <= 1 and (not malformed or events[-1] is malformed[0])
