"""The inspection stage on real bytes: credentials found and redacted, hostile bytes escaped, bounds, cost.

Conversations are written by text2pcap (real TCP framing and sequence
numbers), TLS hellos by OpenSSL, and the larger captures are the lab's
kernel traffic grown to many flows or many packets.
"""

from __future__ import annotations

import base64
import json
import math
import pickle
import shutil
import ssl
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vxlaninspect.cli.main import FORMATS, scan_text
from vxlaninspect.cli.render import FINDING_COLUMNS, view_text

from tests.conftest import CORPUS, SAMPLES
from tests.test_flows import pcap_records
from tests.test_inspect_capture import tshark_fields
from vxlaninspect.batch import ScanOptions, scan_batch
from vxlaninspect.findings import Inspection
from vxlaninspect.findings_handshake import ssh_observations, tls_observations
from vxlaninspect.findings_http import http_observations, request_starts
from vxlaninspect.findings_redact import (
    Evidence,
    is_secret_name,
    redact_assignments,
    redact_target,
)
from vxlaninspect.findings_resp import resp_observations
from vxlaninspect.findings_streams import contiguous, reassemble, reassembled
from vxlaninspect.findings_text import text_observations
from vxlaninspect.flow import Flow
from vxlaninspect.flows import (
    DEFAULT_PAYLOAD_PER_DIRECTION,
    Direction,
    FlowPayloads,
    Segment,
)
from vxlaninspect.inspect.escape import escape
from vxlaninspect.inspect.tls import version_name
from vxlaninspect.report import MAX_EVIDENCE, Finding, Report, Severity
from vxlaninspect.scanning import Limits, scan
from vxlaninspect.topology import load_topology

# -- captures ------------------------------------------------------------------

LAB = SAMPLES / "lab-capture" / "capture.pcap"
PRINTABLE = frozenset(map(chr, range(0x20, 0x7F))) | {"\n"}
"""Characters an output may hold: nothing else can drive a terminal."""


def only_printable(text: str) -> bool:
    return set(text) <= PRINTABLE


def text2pcap(
    directory: Path,
    name: str,
    messages: Sequence[tuple[str, bytes]],
    *,
    client: tuple[str, int] = ("10.1.1.1", 40000),
    server: tuple[str, int] = ("10.1.1.2", 80),
    start_second: int = 0,
) -> Path:
    """One TCP connection written by text2pcap: ``("c", bytes)`` from the client, ``("s", bytes)`` from the server.

    Each message is one segment, a second after the one before it, from
    2024-05-01T12:00:00Z on; text2pcap numbers the sequence of each direction.
    """
    if shutil.which("text2pcap") is None:
        pytest.fail("text2pcap is not installed: run the README's test command (it installs tshark)")
    lines = []
    for k, (side, data) in enumerate(messages):
        second = start_second + k
        lines.append(f"{'I' if side == 'c' else 'O'} 2024-05-01T12:{second // 60:02d}:{second % 60:02d}.000000Z")
        lines += [f"{at:06x} " + " ".join(f"{b:02x}" for b in data[at : at + 16]) for at in range(0, len(data), 16)]
    dump = directory / f"{name}.txt"
    dump.write_text("\n".join(lines) + "\n")
    out = directory / f"{name}.pcap"
    subprocess.run(
        [
            "text2pcap",
            "-q",
            "-D",
            "-t",
            "ISO",
            "-F",
            "pcap",
            "-4",
            f"{client[0]},{server[0]}",
            "-T",
            f"{client[1]},{server[1]}",
            str(dump),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def mergecap(directory: Path, name: str, captures: Sequence[Path]) -> Path:
    out = directory / f"{name}.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(out), *map(str, captures)], check=True, capture_output=True)
    return out


@dataclass(frozen=True)
class TcpFrame:
    """A VXLAN frame of the lab capture carrying TCP, and where its fields are."""

    header: bytes  # pcap record header
    frame: bytes
    flow: int  # which of the lab's connections
    client_port_at: int  # byte offset of the client's port in the frame
    seq_at: int  # byte offset of the TCP sequence number
    from_client: bool
    payload: int  # TCP payload bytes


def lab_tcp_frames() -> tuple[bytes, list[TcpFrame]]:
    """The pcap file header of the lab capture and its VXLAN frames carrying TCP (servers: 3000 and 6379)."""
    file_header, records = pcap_records(LAB)
    flows: dict[int, int] = {}
    frames = []
    for header, frame in records:
        outer = dpkt.ethernet.Ethernet(frame)
        if not (isinstance(outer.data, dpkt.ip.IP) and isinstance(outer.data.data, dpkt.udp.UDP)):
            continue
        inner_at = 14 + outer.data.hl * 4 + 8 + 8
        inner = dpkt.ethernet.Ethernet(frame[inner_at:])
        if not (isinstance(inner.data, dpkt.ip.IP) and isinstance(inner.data.data, dpkt.tcp.TCP)):
            continue
        tcp_at = inner_at + 14 + inner.data.hl * 4
        tcp = inner.data.data
        from_client = tcp.dport in (3000, 6379)
        client_port = tcp.sport if from_client else tcp.dport
        frames.append(
            TcpFrame(
                header,
                frame,
                flows.setdefault(client_port, len(flows)),
                tcp_at if from_client else tcp_at + 2,
                tcp_at + 4,
                from_client,
                len(tcp.data),
            )
        )
    return file_header, frames


def replicated_flows(copies: int) -> bytes:
    """The lab's TCP frames ``copies`` times, each copy with client ports of its own: ``11 * copies`` connections."""
    file_header, frames = lab_tcp_frames()
    count = 1 + max(f.flow for f in frames)
    assert count * copies < 64000
    out = [file_header]
    for copy in range(copies):
        for f in frames:
            port = struct.pack(">H", 1024 + copy * count + f.flow)
            out.append(f.header + f.frame[: f.client_port_at] + port + f.frame[f.client_port_at + 2 :])
    return b"".join(out)


def repeated_payloads(packets: int) -> bytes:
    """About ``packets`` packets of the lab's connections: their payload frames again and again, sequence numbers running on."""
    file_header, frames = lab_tcp_frames()
    frames = [f for f in frames if f.payload]
    block = np.frombuffer(b"".join(f.header + f.frame for f in frames), dtype=np.uint8)
    repeats = max(1, packets // len(frames))
    tiled = np.tile(block, (repeats, 1))
    step: dict[tuple[int, bool], int] = {}
    for f in frames:
        step[(f.flow, f.from_client)] = step.get((f.flow, f.from_client), 0) + f.payload
    at = 0
    rounds = np.arange(repeats, dtype=np.uint64)
    for f in frames:
        seq_at = at + 16 + f.seq_at
        seq = struct.unpack(">I", f.frame[f.seq_at : f.seq_at + 4])[0]
        values = ((seq + rounds * step[(f.flow, f.from_client)]) % (1 << 32)).astype(">u4")
        tiled[:, seq_at : seq_at + 4] = values.view(np.uint8).reshape(-1, 4)
        seconds = struct.unpack("<I", f.header[:4])[0]
        tiled[:, at : at + 4] = (seconds + rounds).astype("<u4").view(np.uint8).reshape(-1, 4)
        at += 16 + len(f.frame)
    return file_header + tiled.tobytes()


# -- running the inspection -------------------------------------------------


def inspect(path: Path, **options) -> Report:
    return scan(path, inspect=Inspection(**options))


def by_kind(report: Report) -> dict[str, Finding]:
    kinds = [f.kind for f in report.findings]
    assert len(kinds) == len(set(kinds)), "one finding per kind for one server"
    return {f.kind: f for f in report.findings}


def every_output(report: Report) -> list[str]:
    """The Report as every format of ``scan`` and of ``leaks`` prints it, and as JSON."""
    data = report.to_dict()
    texts = [report.to_json()]
    for fmt in FORMATS:
        texts.append(scan_text(data, fmt, verbose=2))
        texts.append(view_text(data["findings"], FINDING_COLUMNS, fmt))
    return texts


def shows(report: Report, secret: bytes) -> bool:
    """Whether ``secret`` can be read in any output of the Report, raw or escaped."""
    forms = {secret.decode("latin-1"), escape(secret, 1 << 20)}
    return any(form in text for text in every_output(report) for form in forms)


# -- HTTP ----------------------------------------------------------------------

BASIC = b"Basic " + base64.b64encode(b"proxyuser:Pr0xy-Pa55")
HTTP_SECRETS = (
    b"K3y-Qu3ry",
    b"C00kie-V4lue",
    b"F0rm-Secr3t",
    b"Js0n-Secr3t",
    b"Url-Pa55",
    BASIC[6:],
    b"Ap1-K3y-H34der",
    b"S3t-C00kie",
)
HTTP_CONVERSATION = (
    ("c", b"GET /search?q=shoes&api_key=K3y-Qu3ry HTTP/1.1\r\nHost: shop\r\nCookie: sid=C00kie-V4lue; theme=dark\r\n\r\n"),
    ("s", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: token=S3t-C00kie; Path=/\r\nContent-Length: 2\r\n\r\nok"),
    (
        "c",
        b"POST /login HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\nuser=bob&password=F0rm-Secr3t",
    ),
    ("s", b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"),
    (
        "c",
        b'PUT /api/me HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 46\r\n\r\n{"user": "bob", "newPassword": "Js0n-Secr3t"}\n',
    ),
    ("s", b"HTTP/1.1 204 No Content\r\n\r\n"),
    (
        "c",
        b"GET http://alice:Url-Pa55@proxy.example/ HTTP/1.1\r\nHost: proxy.example\r\nProxy-Authorization: "
        + BASIC
        + b"\r\n\r\n",
    ),
    ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("c", b"GET /api/orders HTTP/1.1\r\nHost: shop\r\nX-Api-Key: Ap1-K3y-H34der\r\n\r\n"),
    ("s", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"),
)


@pytest.mark.tshark
def test_http_credentials_in_headers_targets_and_bodies_are_found_and_redacted(tshark: str, tmp_path: Path) -> None:
    path = text2pcap(tmp_path, "http", HTTP_CONVERSATION)
    requests = tshark_fields(tshark, path, "http.request", "http.request.method", "http.request.uri", "http.host")
    statuses = tshark_fields(tshark, path, "http.response", "http.response.code")
    cookies = tshark_fields(tshark, path, "http.cookie", "http.cookie")
    set_cookies = tshark_fields(tshark, path, "http.set_cookie", "http.set_cookie")
    proxy_auth = tshark_fields(tshark, path, "http.proxy_authorization", "http.proxy_authorization")
    report = inspect(path)
    found = by_kind(report)
    assert set(found) == {"request", "response", "cookie", "set-cookie", "url-password", "form-password", "authorization"}
    assert found["request"].count == len(requests) == 5
    assert found["response"].count == len(statuses) == 5
    assert found["cookie"].count == len(cookies) == 1
    assert found["set-cookie"].count == len(set_cookies) == 1
    assert found["authorization"].count == len(proxy_auth) + 1  # and X-Api-Key, which tshark has no field for
    assert found["url-password"].count == 2 and found["form-password"].count == 2
    assert {f.kind for f in report.findings if f.severity == Severity.CREDENTIAL} == {
        "cookie",
        "set-cookie",
        "url-password",
        "form-password",
        "authorization",
    }
    methods = [method for method, _, _ in requests]
    assert [e.split(" ", 1)[0] for e in found["request"].evidence] == methods
    assert "Proxy-Authorization: Basic ********" in found["authorization"].evidence
    assert "X-Api-Key: ********" in found["authorization"].evidence
    assert {e.split(" ")[1] for e in found["response"].evidence} == {code for (code,) in statuses}
    assert all(f.protocol == "http" and f.server == "10.1.1.2:80" and f.clients == ("10.1.1.1",) for f in report.findings)
    for secret in HTTP_SECRETS:
        assert not shows(report, secret), secret
    assert shows(report, b"shoes") and shows(report, b"bob"), "what is not secret stays readable"
    shown = inspect(path, show_secrets=True)
    for secret in HTTP_SECRETS:
        assert shows(shown, secret), secret
    assert [f.key for f in shown.findings] == [f.key for f in report.findings]


# -- RESP ----------------------------------------------------------------------


def resp(*arguments: bytes) -> bytes:
    return b"*%d\r\n" % len(arguments) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in arguments)


RESP_SECRETS = (b"Pw-One", b"Pw-Two", b"Pw-Hello", b"Pw-Config", b"Pw-Migrate", b"Pw-Acl", b"Pw-Inline")
RESP_CONVERSATION = (
    ("c", resp(b"AUTH", b"Pw-One")),
    ("s", b"+OK\r\n"),
    ("c", resp(b"AUTH", b"app", b"Pw-Two")),
    ("s", b"+OK\r\n"),
    ("c", resp(b"HELLO", b"3", b"AUTH", b"default", b"Pw-Hello", b"SETNAME", b"worker")),
    ("s", b"%1\r\n+server\r\n+redis\r\n"),
    ("c", resp(b"CONFIG", b"SET", b"maxmemory", b"100mb", b"requirepass", b"Pw-Config")),
    ("s", b"+OK\r\n"),
    ("c", resp(b"MIGRATE", b"10.0.0.9", b"6379", b"", b"0", b"5000", b"AUTH2", b"app", b"Pw-Migrate", b"KEYS", b"a", b"b")),
    ("s", b"+NOKEY\r\n"),
    ("c", resp(b"ACL", b"SETUSER", b"bob", b"on", b">Pw-Acl", b"~cache:*", b"+get")),
    ("s", b"+OK\r\n"),
    ("c", b"auth Pw-Inline\r\n"),
    ("s", b"+OK\r\n"),
    ("c", resp(b"CONFIG", b"GET", b"requirepass")),
    ("s", b"*2\r\n$11\r\nrequirepass\r\n$9\r\nPw-Config\r\n"),
    ("c", resp(b"GET", b"session:42")),
    ("s", b"$-1\r\n"),
)


@pytest.mark.tshark
def test_redis_passwords_are_auth_findings_and_never_shown(tshark: str, tmp_path: Path) -> None:
    path = text2pcap(tmp_path, "resp", RESP_CONVERSATION, server=("10.1.1.3", 6379))
    sent = [row[0] for row in tshark_fields(tshark, path, "resp && tcp.dstport == 6379", "resp.bulk_string.value")]
    names = [bytes.fromhex(values.split(",")[0]).upper() for values in sent if values]
    assert names == [b"AUTH", b"AUTH", b"HELLO", b"CONFIG", b"MIGRATE", b"ACL", b"CONFIG", b"GET"]  # tshark skips inline commands
    report = inspect(path)
    found = by_kind(report)
    assert set(found) == {"auth", "command", "reply"}
    assert found["auth"].severity == Severity.CREDENTIAL and found["auth"].count == len(RESP_SECRETS)
    assert found["command"].evidence == ("CONFIG GET requirepass", "GET session:42")
    assert found["reply"].count == len(RESP_CONVERSATION) // 2
    assert "(array of 2)" in found["reply"].evidence
    evidence = found["auth"].evidence
    assert "AUTH app ********" in evidence, "a user name is not a secret"
    assert "HELLO 3 AUTH default ******** SETNAME worker" in evidence
    assert "CONFIG SET maxmemory 100mb requirepass ********" in evidence
    assert "ACL SETUSER bob on >******** ~cache:* +get" in evidence
    for secret in RESP_SECRETS:
        assert not shows(report, secret), secret
    shown = inspect(path, show_secrets=True)
    for secret in RESP_SECRETS:
        assert shows(shown, secret), secret


@pytest.mark.tshark
def test_a_stream_that_starts_mid_message_is_read_from_the_first_message(tshark: str, tmp_path: Path) -> None:
    http = text2pcap(
        tmp_path,
        "http-mid",
        (
            ("c", b'": "tail of a body"}'),
            ("c", b"GET /next HTTP/1.1\r\nHost: shop\r\n\r\n"),
            ("s", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ),
    )
    redis = text2pcap(
        tmp_path,
        "resp-mid",
        (("c", b"$5\r\nhello\r\n"), ("c", resp(b"PING")), ("s", b"+PONG\r\n")),
        server=("10.1.1.3", 6379),
    )
    per_segment = [tshark, "-o", "tcp.desegment_tcp_streams:FALSE", "-T", "fields", "-r"]
    uris = subprocess.run(
        [*per_segment, str(http), "-Y", "http.request", "-e", "http.request.uri"], capture_output=True, text=True, check=True
    )
    assert uris.stdout.split() == ["/next"], "tshark finds the request when it looks at each segment alone"
    found = by_kind(inspect(mergecap(tmp_path, "mid", [http, redis])))
    assert "malformed" not in found
    assert found["request"].evidence == ("GET /next HTTP/1.1 Host: shop",)
    assert found["command"].evidence == ("PING",)


# -- hostile payloads ------------------------------------------------------------

HOSTILE = b"\x1b[31mred\x1b[0m \x1b]0;owned\x07 \x9b2J \xe2\x80\xaeevil\xe2\x80\xac \x7f"
"""ESC CSI and OSC sequences, a C1 CSI, the bidi override U+202E and DEL."""


@pytest.mark.tshark
def test_terminal_control_bytes_in_payload_are_escaped_in_every_output(tshark: str, tmp_path: Path) -> None:
    http = text2pcap(
        tmp_path,
        "hostile-http",
        (
            ("c", b"GET /\xe2\x80\xae/x HTTP/1.1\r\nHost: " + HOSTILE + b"\r\n\r\n"),
            ("s", b"HTTP/1.1 200 " + HOSTILE + b"\r\nContent-Length: 0\r\n\r\n"),
            ("c", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n"),
        ),
    )
    redis = text2pcap(
        tmp_path,
        "hostile-resp",
        (("c", resp(b"SET", b"k\x00" + HOSTILE, b"\x1b]52;c;ZXZpbA==\x07")), ("s", b"-ERR " + HOSTILE + b"\r\n")),
        server=("10.1.1.3", 6379),
    )
    hosts = [host for (host,) in tshark_fields(tshark, http, "http.request", "http.host")]
    assert hosts[0].startswith("\\x1b[31mred") or "[31mred" in hosts[0], "tshark sees the same Host"
    report = inspect(mergecap(tmp_path, "hostile", [http, redis]))
    kinds = {(f.protocol, f.kind) for f in report.findings}
    assert {("http", "request"), ("http", "response"), ("http", "malformed"), ("resp", "command"), ("resp", "reply")} <= kinds
    evidence = [e for f in report.findings for e in f.evidence]
    assert all(only_printable(e) for e in evidence)
    assert any(escape(b"Host: " + HOSTILE, 1000) in e for e in evidence)
    assert any(e.startswith('SET "k\\x00\\x1b[31mred') for e in evidence)
    assert any("NUL" in e for e in evidence), "the NUL in a header value makes the request malformed, and says so"
    for text in every_output(report):
        assert only_printable(text)
        assert "\\x1b" in text


# -- text protocols ----------------------------------------------------------------


@pytest.mark.tshark
def test_logins_of_text_protocols_are_credentials_with_the_password_redacted(tshark: str, tmp_path: Path) -> None:
    ftp = text2pcap(
        tmp_path,
        "ftp",
        (
            ("s", b"220 ProFTPD Server ready.\r\n"),
            ("c", b"USER bob\r\n"),
            ("s", b"331 Password required\r\n"),
            ("c", b"PASS Ftp-Secr3t\r\n"),
        ),
        server=("10.1.1.4", 21),
    )
    imap = text2pcap(
        tmp_path,
        "imap",
        (("s", b"* OK IMAP4rev1 ready\r\n"), ("c", b"a1 LOGIN bob Imap-Secr3t\r\n"), ("s", b"a1 OK done\r\n")),
        server=("10.1.1.5", 143),
    )
    commands = [c for (c,) in tshark_fields(tshark, ftp, "ftp.request.command", "ftp.request.command")]
    assert commands == ["USER", "PASS"]
    report = inspect(mergecap(tmp_path, "logins", [ftp, imap]))
    found = {(f.service, f.kind): f for f in report.findings}
    assert set(found) == {("ftp", "plaintext"), ("ftp", "login"), ("imap", "plaintext"), ("imap", "login")}
    assert found[("ftp", "login")].evidence == ("PASS ********",)
    assert found[("imap", "login")].evidence == ("a1 LOGIN ********",)
    assert set(found[("ftp", "plaintext")].evidence) == {"client: USER bob", "server: 220 ProFTPD Server ready."}
    assert all(f.protocol == "text" for f in report.findings)
    assert found[("ftp", "login")].severity == Severity.CREDENTIAL
    for secret in (b"Ftp-Secr3t", b"Imap-Secr3t"):
        assert not shows(report, secret)
        assert shows(inspect(mergecap(tmp_path, "logins", [ftp, imap]), show_secrets=True), secret)


# -- TLS -----------------------------------------------------------------------


def tls_hellos(directory: Path) -> tuple[bytes, bytes]:
    """A real ClientHello (SNI example.com, ALPN h2 and http/1.1) and the ServerHello flight answering it, from OpenSSL."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=example.com", "-days", "2"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    for context in (server_context, client_context):
        context.set_alpn_protocols(["h2", "http/1.1"])
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname="example.com")
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = client_out.read()
    server_in.write(hello)
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return hello, server_out.read()


@pytest.mark.tshark
def test_a_tls_handshake_is_metadata_with_version_sni_and_alpn(tshark: str, tmp_path: Path) -> None:
    hello, answer = tls_hellos(tmp_path)
    path = text2pcap(
        tmp_path, "tls", (("c", hello), ("s", answer), ("c", b"\x17\x03\x03\x00\x05" + b"\x8a" * 5)), server=("10.1.1.6", 443)
    )
    (sni, offered) = tshark_fields(
        tshark, path, "tls.handshake.type == 1", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str"
    )[0]
    (chosen, alpn) = tshark_fields(
        tshark, path, "tls.handshake.type == 2", "tls.handshake.extensions.supported_version", "tls.handshake.extensions_alpn_str"
    )[0]
    assert alpn == "", "TLS 1.3 answers ALPN in the encrypted extensions: only the offer is in the clear"
    report = inspect(path)
    (finding,) = report.findings
    assert (finding.protocol, finding.kind, finding.severity, finding.service) == ("tls", "handshake", Severity.METADATA, "https")
    assert finding.evidence == (f"{version_name(int(chosen, 16))} SNI {sni} ALPN offered {offered}",)


# -- bounds, gaps and truncation ------------------------------------------------------


@pytest.mark.tshark
def test_bytes_missing_from_the_capture_never_make_a_malformed_finding(tmp_path: Path) -> None:
    source = SAMPLES / "swarm-plaintext" / "capture.pcap"
    cut = tmp_path / "snap160.pcap"
    subprocess.run(["editcap", "-s", "160", str(source), str(cut)], check=True, capture_output=True)
    for report in (inspect(cut), scan(source, inspect=Inspection(), limits=Limits(payload_per_direction=24))):
        kinds = {f.kind for f in report.findings}
        assert kinds and "malformed" not in kinds
        assert not shows(report, b"Rd!s-app1-Pr0d-2024")


def test_evidence_is_bounded_in_length_and_number() -> None:
    report = inspect(CORPUS / "zeek__docker-http-upgrade.pcap", max_evidence_chars=40) if CORPUS.is_dir() else None
    if report is None:
        pytest.skip("corpus not found")
    assert report.findings
    for finding in report.findings:
        assert 0 < len(finding.evidence) <= MAX_EVIDENCE
        assert all(len(e) <= 40 for e in finding.evidence)
    long = [e for f in report.findings for e in f.evidence if e.endswith("...")]
    assert long, "the long Docker API targets are cut"


def test_the_fast_path_of_reassembly_agrees_with_the_bounded_stream() -> None:
    paths = [SAMPLES / name / "capture.pcap" for name in ("swarm-plaintext", "misconfigured", "lab-capture")]
    paths += [
        CORPUS / name
        for name in ("zeek__docker-http-upgrade.pcap", "zeek__redis-50-pings.pcap", "tcpdump__resp_1_benchmark.pcap")
    ]
    compared = 0
    for path in filter(Path.exists, paths):
        for flow, payloads in kept_payloads(path):
            for direction in Direction:
                segments = payloads.segments(flow, direction)
                fast = contiguous(segments, 1 << 16) if segments else None
                if fast is not None:
                    assert fast == reassembled(segments, segments[0].seq, 1 << 16)
                    compared += 1
    assert compared > 20


def kept_payloads(path: Path) -> list[tuple[Flow, FlowPayloads]]:
    kept = []

    def keep(flows, payloads):
        kept.extend((flow, payloads) for flow in payloads.flows())
        return []

    scan(path, inspect=keep)
    return kept


# -- properties of redaction -------------------------------------------------------

SECRET_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="&;,}]#\"'\\ "), min_size=4, max_size=40
)
SECRET_NAMES = st.sampled_from(
    [
        b"password",
        b"passwd",
        b"pwd",
        b"db_password",
        b"newPassword",
        b"api_key",
        b"apiKey",
        b"access_token",
        b"client-secret",
        b"Credentials",
    ]
)


@given(name=SECRET_NAMES, value=SECRET_VALUES, before=st.sampled_from([b"", b"user=bob&", b"a=1;"]))
def test_a_secret_field_of_a_form_or_query_is_never_shown(name: bytes, value: str, before: bytes) -> None:
    secret = value.encode()
    data = before + name + b"=" + secret + b"&next=1"
    redacted, found = redact_assignments(data)
    assert found and secret not in redacted and b"next=1" in redacted
    target, in_target = redact_target(b"/x?" + data)
    assert in_target and secret not in target
    assert redact_assignments(data, show=True) == (data, True)


@given(name=SECRET_NAMES, value=st.text(max_size=60), cut=st.integers(min_value=0, max_value=80))
def test_a_secret_json_value_is_never_shown_even_cut_short(name: bytes, value: str, cut: int) -> None:
    document = b'{"user": "bob", "' + name + b'": ' + json.dumps(value).encode() + b', "n": 1}'
    sample = document[: len(document) - cut]
    redacted, _ = redact_assignments(sample)
    secret = json.dumps(value).encode()[1:-1]
    start = document.index(secret, document.index(name) + len(name)) if secret else len(sample)
    shown = sample[start : start + len(secret)]  # the part of the value that the cut sample holds
    if len(shown) >= 4:
        assert shown not in redacted
    if b'"bob"' in sample:
        assert redacted.startswith(b'{"user": "bob"'), "a value that is not secret stays"


def test_names_that_merely_contain_a_secret_word_are_not_secret() -> None:
    for name in (b"passenger", b"compass", b"tokenizer", b"secretary", b"keyword", b"author"):
        assert not is_secret_name(name)
    for name in (b"pass", b"PASSWORD", b"user_pwd", b"newPassword", b"apiKey", b"x-api-key", b"pass%77ord"):
        assert is_secret_name(name)


# -- hostile streams ------------------------------------------------------------------

PREFIXES = (b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"*2\r\n$4\r\nAUTH\r\n", b"$3\r\n", b"\x16\x03\x01\x00\x30\x01",
            b"SSH-2.0-", b"PASS ", b"Authorization: Basic ", b"\x1b[2J", b"")  # fmt: skip
PAYLOADS = st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(PREFIXES), st.binary(max_size=80))
SEQUENCE_NUMBERS = st.integers(2**32 - 300, 2**32 + 300).map(lambda seq: seq % 2**32)  # around a wrap
FLAGS = st.sampled_from([0x18, 0x10, 0x19, 0x14, 0x11])  # PSH-ACK, ACK, with FIN, with RST
SEGMENTS = st.lists(st.builds(Segment, st.integers(0, 10**6), SEQUENCE_NUMBERS, FLAGS, PAYLOADS, st.integers(0, 200)), max_size=6)
ANALYZERS = (http_observations, resp_observations, tls_observations, ssh_observations)


@settings(max_examples=300, deadline=None)
@given(
    client=SEGMENTS,
    server=SEGMENTS,
    analyzer=st.sampled_from(ANALYZERS),
    show=st.booleans(),
    transport=st.sampled_from(["tcp", "udp"]),
)
def test_hostile_streams_never_raise_and_their_evidence_stays_printable(client, server, analyzer, show, transport) -> None:
    evidence = Evidence(show_secrets=show, max_chars=60)
    sides = (reassemble(client, transport, request_starts), reassemble(server, transport))
    for strict in (True, False):
        observations = analyzer(*sides, evidence, strict)
        observations += text_observations(sides[0], "client", evidence, logins=True)
        for observation in observations:
            assert only_printable(observation.evidence) and len(observation.evidence) <= 60
            assert observation.ts_ns in {s.ts_ns for s in client + server}


# -- the stage in a scan -------------------------------------------------------------


def test_an_inspection_pickles_and_gives_the_same_report_in_worker_processes() -> None:
    directory = SAMPLES / "swarm-plaintext"
    topology = load_topology([directory])
    inspection = Inspection.for_topology(topology, show_secrets=True, max_evidence_chars=60)
    assert pickle.loads(pickle.dumps(inspection)) == inspection
    paths = [str(directory / "capture.pcap"), str(SAMPLES / "misconfigured" / "capture.pcap")]
    options = ScanOptions(topology=topology, inspect=inspection)
    here = scan_batch(paths, options, jobs=1)
    there = scan_batch(paths, options, jobs=2)
    assert here.findings and [f for f in here.findings] == [f for f in there.findings]


def test_network_names_are_the_reports() -> None:
    directory = SAMPLES / "swarm-plaintext"
    topology = load_topology([directory])
    report = scan(directory / "capture.pcap", topology=topology, inspect=Inspection.for_topology(topology))
    names = {n.vni: n.name for n in report.networks}
    assert {f.vni for f in report.findings} == {4096, 4097}
    assert all(f.network == names[f.vni] for f in report.findings)
    bare = inspect(directory / "capture.pcap")
    assert {f.network for f in bare.findings} == {"vni-4096", "vni-4097"}
    assert {(f.vni, f.network) for f in bare.findings} <= {(n.vni, n.name) for n in bare.networks}


# -- cost ------------------------------------------------------------------------------


def inspection_seconds(path: Path) -> tuple[float, int, int]:
    """CPU seconds the inspection stage takes on a capture (best of three), flows with payload, bytes kept."""
    kept: dict[str, object] = {}

    def keep(flows, payloads):
        kept.update(flows=flows, payloads=payloads)
        return []

    scan(path, inspect=keep)
    inspection = Inspection()
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        inspection(kept["flows"], kept["payloads"])
        best = min(best, time.process_time() - started)
    payloads = kept["payloads"]
    return best, sum(1 for _ in payloads.flows()), payloads.kept_bytes


@pytest.mark.slow
def test_inspection_time_grows_with_the_flows_not_faster(tmp_path: Path) -> None:
    few, many = tmp_path / "few.pcap", tmp_path / "many.pcap"
    few.write_bytes(replicated_flows(91))
    many.write_bytes(replicated_flows(910))
    few_seconds, few_flows, _ = inspection_seconds(few)
    many_seconds, many_flows, _ = inspection_seconds(many)
    assert (few_flows, many_flows) == (1001, 10010)
    assert many_seconds < 3 * 10 * few_seconds + 0.5, (few_seconds, many_seconds)


@pytest.mark.slow
def test_inspection_of_many_packets_of_few_flows_costs_what_their_kept_bytes_cost(tmp_path: Path) -> None:
    moderate, huge = tmp_path / "200k.pcap", tmp_path / "1m.pcap"
    moderate.write_bytes(repeated_payloads(200_000))
    huge.write_bytes(repeated_payloads(1_000_000))
    moderate_seconds, moderate_flows, moderate_bytes = inspection_seconds(moderate)
    huge_seconds, huge_flows, huge_bytes = inspection_seconds(huge)
    assert moderate_flows == huge_flows == 11
    assert moderate_bytes == huge_bytes == 11 * 2 * DEFAULT_PAYLOAD_PER_DIRECTION
    assert huge_seconds < 2 * moderate_seconds + 0.2, (moderate_seconds, huge_seconds)
