"""Fuzzing: random and mutated capture files and packets, with hypothesis here and with atheris (``fuzz/``).

A capture file, however damaged, may only end in ``CaptureError``; a packet,
however hostile, decodes to the same row in the kernel and in the reference and
agrees with tshark but for differences of a named reason. The compiled kernel
is run once more with numba's bounds checks on, and each atheris target runs
for a bounded time with zero findings allowed.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.replay import compiled_outcome
from fuzz.seed import capture_files, write_seeds
from fuzz.targets import LINKTYPES, check_capture, check_packet, packet_seed
from tests.conftest import REPO
from tests.test_hostile import HTTP_GET, ether, ipv4, ipv6, pcap_file, pcapng_file, tcp, udp, vxlan
from vxlaninspect.capture import open_capture
from vxlaninspect.decoding import decode
from vxlaninspect.errors import CaptureError
from vxlaninspect.schema import LinkType
from vxlaninspect.verify import verify


def fuzz_settings(examples: int = 100) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
CAPTURES = capture_files()


def real_frames() -> list[tuple[int, bytes]]:
    """Up to 40 frames of each sample and corpus capture, with their link types."""
    frames = []
    for path in CAPTURES:
        try:
            with open_capture(path) as capture:
                for batch in capture.batches():
                    frames += [(int(batch.linktype[i]), batch.record(i)) for i in range(min(len(batch), 40))]
        except CaptureError:
            continue
    return frames


REAL_FRAMES = real_frames()

# -- capture files -----------------------------------------------------------------------

PCAP_HEADER = pcap_file([])
PCAPNG_HEAD = pcapng_file([])


@fuzz_settings(200)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=2048).map(lambda tail: PCAP_HEADER + tail),
        st.binary(max_size=2048).map(lambda tail: PCAPNG_HEAD + tail),
        st.binary(max_size=2048).map(lambda tail: gzip.compress(PCAP_HEADER + tail, mtime=0)),
    )
)
def test_random_bytes_as_a_capture_file(data):
    check_capture(data)


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None, lies: list[tuple[int, int]]) -> bytes:
    """``data`` with bytes replaced, little-endian 32-bit length fields overwritten at record/block starts, and cut."""
    mutated = bytearray(data)
    starts = length_fields(data)
    for index, value in lies:
        if starts:
            struct.pack_into("<I", mutated, starts[index % len(starts)], value)
    for at, value in flips:
        mutated[at % len(mutated)] = value
    return bytes(mutated[:cut] if cut is not None else mutated)


def length_fields(data: bytes) -> list[int]:
    """Offsets of the length fields of a pcap's record headers (captured length) or a pcapng's blocks."""
    offsets = []
    if data[:4] == b"\xd4\xc3\xb2\xa1" or data[:4] == b"\x4d\x3c\xb2\xa1":
        at = 24
        while at + 16 <= len(data):
            offsets.append(at + 8)
            at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    elif data[:4] == b"\x0a\x0d\x0d\x0a" and data[8:12] == b"\x4d\x3c\x2b\x1a":
        at = 0
        while at + 12 <= len(data):
            offsets.append(at + 4)
            length = struct.unpack_from("<I", data, at + 4)[0]
            if length < 12:
                break
            at += length
    return offsets


LENGTHS = st.sampled_from([0, 1, 11, 12, 13, 16, 65535, 262144, 262145, 1 << 31, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF)


@fuzz_settings(150)
@given(
    capture=st.sampled_from(CAPTURES) if CAPTURES else st.nothing(),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 1 << 16),
    lies=st.lists(st.tuples(st.integers(0, 200), LENGTHS), max_size=2),
)
def test_mutated_capture_file(capture, flips, cut, lies):
    data = mutate(capture.read_bytes(), flips, cut, lies)
    check_capture(data)
    with tempfile.NamedTemporaryFile(suffix=".pcap") as file:  # a path is memory-mapped, a stream is not
        file.write(data)
        file.flush()
        try:
            for table in decode(file.name):
                assert (table.rows["caplen"] <= 262144).all()
        except CaptureError as error:  # the offset counts decompressed bytes
            assert error.path == file.name and error.offset >= 0
            assert error.offset <= len(data) or data[:2] == b"\x1f\x8b"


# -- single packets ---------------------------------------------------------------------------

PORTS = st.sampled_from([22, 53, 80, 443, 4500, 4789, 4790, 6081, 6379, 8472]) | st.integers(0, 65535)
PAYLOADS = st.sampled_from(
    [
        HTTP_GET, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", b"+OK\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"SSH-2.0-OpenSSH_9.6\r\n", b"", b"\xff", b"\0\0\0\0" + b"\x9a" * 8,
    ]
) | st.binary(max_size=64)  # fmt: skip
MAYBE_LENGTH = st.none() | st.integers(0, 65535)


@st.composite
def transports(draw) -> tuple[int, bytes]:
    """(IP protocol, bytes) of a transport header and payload, lengths and offsets possibly lying."""
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "esp", "other"]))
    payload = draw(PAYLOADS)
    if kind == "tcp":
        return 6, tcp(payload, draw(PORTS), draw(PORTS), data_offset=draw(st.sampled_from([5, 5, 6, 0, 4, 15])))
    if kind == "udp":
        return 17, udp(payload, draw(PORTS), draw(PORTS), draw(MAYBE_LENGTH))
    if kind == "icmp":
        return draw(st.sampled_from([1, 58])), bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255)), 0, 0]) + payload
    if kind == "esp":
        return 50, struct.pack(">II", draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF))) + payload
    return draw(st.integers(0, 255)), payload


def ipv6_extension(kind: int, next_header: int, draw) -> bytes:
    if kind == 44:
        return struct.pack(">BBHI", next_header, 0, draw(st.integers(0, 0xFFFF)), 7)
    if kind == 51:
        return struct.pack(">BBH", next_header, 1, 0) + b"\0" * 8
    return struct.pack(">BB", next_header, draw(st.sampled_from([0, 0, 1, 255]))) + b"\x01\x04\0\0\0\0"


@st.composite
def ip_packets(draw, carried: tuple[int, bytes]) -> tuple[int, bytes]:
    """(EtherType, bytes) of an IPv4 or IPv6 packet around ``carried``, its header fields possibly lying."""
    proto, payload = carried
    if draw(st.booleans()):
        fragment = draw(st.sampled_from([0, 0, 0x2000, 0x4000, 0x2003]) | st.integers(0, 0xFFFF))
        ihl = draw(st.sampled_from([5, 5, 5, 3, 6, 15]))
        return 0x0800, ipv4(payload, proto, total_length=draw(MAYBE_LENGTH), ihl=ihl, fragment=fragment)
    extensions = draw(st.lists(st.sampled_from([0, 43, 44, 51, 60]), max_size=3))
    nxt = proto
    for kind in reversed(extensions):
        payload = ipv6_extension(kind, nxt, draw) + payload
        nxt = kind
    return 0x86DD, ipv6(payload, nxt, payload_length=draw(MAYBE_LENGTH))


@st.composite
def tunnelled(draw, inner: tuple[int, bytes]) -> tuple[int, bytes]:
    """(IP protocol, bytes): ``inner`` (EtherType, IP packet) in a VXLAN, Geneve, GPE or ESP-in-UDP tunnel."""
    ethertype, packet = inner
    kind = draw(st.sampled_from(["vxlan", "geneve", "gpe", "esp-udp"]))
    vni = draw(st.integers(0, (1 << 24) - 1))
    if kind == "vxlan":
        header = vxlan(vni, draw(st.sampled_from([0x08, 0x08, 0x00, 0xFF, 0x88])), last=draw(st.sampled_from([0, 0, 7])))
        body, port = header + ether(packet, ethertype), draw(st.sampled_from([4789, 8472]))
    elif kind == "geneve":
        options = draw(st.integers(0, 3))
        protocol = draw(st.sampled_from([0x6558, ethertype, 0x1234]))
        header = bytes([options, 0]) + struct.pack(">HI", protocol, vni << 8) + b"\x01" * 4 * options
        body, port = header + (ether(packet, ethertype) if protocol == 0x6558 else packet), 6081
    elif kind == "gpe":
        next_protocol = draw(st.sampled_from([1 if ethertype == 0x0800 else 2, 3, 9]))
        header = struct.pack(">BBBBI", 0x0C, 0, 0, next_protocol, vni << 8)
        body, port = header + (ether(packet, ethertype) if next_protocol == 3 else packet), 4790
    else:
        body, port = struct.pack(">II", vni or 1, 1) + packet, 4500
    return 17, udp(body, draw(PORTS), port, draw(st.none() | st.none() | st.integers(0, 65535)))


@st.composite
def frames(draw, linktypes: tuple[int, ...] = LINKTYPES) -> tuple[int, bytes]:
    """(link type, frame): transport in IP, in 0 to 5 tunnels, behind a link header; maybe cut or with flipped bytes."""
    packet = draw(ip_packets(draw(transports())))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 5]))):
        packet = draw(ip_packets(draw(tunnelled(packet))))
    ethertype, ip = packet
    linktype = draw(st.sampled_from(linktypes))
    if linktype == LinkType.ETHERNET:
        tags = b"".join(struct.pack(">HH", 0x8100, vid) for vid in draw(st.lists(st.integers(0, 4095), max_size=5)))
        frame = ether(b"", 0x8100)[:12] + tags + struct.pack(">H", ethertype) + ip if tags else ether(ip, ethertype)
    elif linktype == LinkType.LINUX_SLL:
        frame = struct.pack(">HHH8sH", 0, 1, 6, b"\x02" * 8, ethertype) + ip
    elif linktype == LinkType.LINUX_SLL2:
        frame = struct.pack(">HHIHBB8s", ethertype, 0, 2, 1, 0, 6, b"\x02" * 8) + ip
    elif linktype in (LinkType.NULL, LinkType.LOOP):
        family = draw(st.sampled_from([2, 10, 24, 28, 30, 7]))
        frame = struct.pack("<I" if linktype == LinkType.NULL else ">I", family) + ip
    else:
        frame = ip
    flips = draw(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=3))
    mutated = bytearray(frame)
    for at, value in flips:
        mutated[at % len(mutated)] = value
    cut = draw(st.none() | st.integers(0, len(mutated)))
    return linktype, bytes(mutated[:cut])


@fuzz_settings(400)
@given(frames())
def test_built_packet_kernel_and_reference_agree(frame):
    check_packet(packet_seed(*frame))


@fuzz_settings(300)
@given(
    real=st.sampled_from(REAL_FRAMES) if REAL_FRAMES else st.nothing(),
    flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 4096),
)
def test_mutated_real_packet_kernel_and_reference_agree(real, flips, cut):
    linktype, frame = real
    mutated = bytearray(frame)
    for at, value in flips:
        if mutated:
            mutated[at % len(mutated)] = value
    check_packet(packet_seed(linktype, bytes(mutated[:cut])))


@fuzz_settings(300)
@given(st.binary(max_size=512))
def test_random_packet_kernel_and_reference_agree(data):
    check_packet(data)


@pytest.mark.tshark
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # no shrinking through tshark: a failure names every disagreeing frame instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(st.lists(frames(linktypes=(LinkType.ETHERNET,)).map(lambda f: f[1]), min_size=25, max_size=25))
def test_built_packets_agree_with_tshark(tshark, packets):
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "built.pcap"
        path.write_bytes(pcap_file(packets))
        result = verify(path, tshark=tshark, examples=100)
    assert result.packets == result.tshark_packets == len(packets)
    disagreeing = sorted({d.frame for d in result.disagreements})
    assert not disagreeing, [(packets[n - 1].hex(), [d for d in result.disagreements if d.frame == n]) for n in disagreeing]


# -- the compiled kernel with bounds checks ----------------------------------------------------

BOUNDSCHECK_SCRIPT = textwrap.dedent(
    """
    import random, sys
    import numba
    assert numba.config.BOUNDSCHECK and not numba.config.DISABLE_JIT
    from fuzz.seed import capture_seeds, packet_seeds
    from fuzz.targets import check_capture, check_packet
    rng = random.Random(20240501)
    checked = 0
    for seed in list(capture_seeds()):
        for _ in range(8):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            check_capture(bytes(data[: rng.randrange(len(data) + 1)]))
            checked += 1
    for seed in list(packet_seeds(40)):
        for _ in range(20):
            data = bytearray(seed)
            for _ in range(rng.randint(0, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            check_packet(bytes(data[: rng.randrange(len(data) + 1)]))
            checked += 1
    print(checked)
    """
)


@pytest.mark.slow
def test_compiled_code_reads_in_bounds(tmp_path):
    """Mutated captures and packets through the compiled kernel, capture indexers and flow table, bounds-checked."""
    environment = {key: value for key, value in os.environ.items() if key != "NUMBA_DISABLE_JIT"}
    environment.update(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    result = subprocess.run(
        [sys.executable, "-c", BOUNDSCHECK_SCRIPT], cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) > 10_000


# -- atheris ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("target", ["capture", "packet"])
def test_atheris_target_finds_nothing(tmp_path, target):
    pytest.importorskip("atheris")
    seeds = tmp_path / "seeds"
    assert write_seeds(target, seeds) > 10
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    result = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / f"fuzz_{target}.py"), "-max_total_time=30", "-seed=1", "-timeout=60",
         "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/", str(seeds)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr and list(artifacts.iterdir()) == []


@pytest.mark.slow
def test_a_finding_is_replayed_on_the_compiled_kernel_and_as_python(tmp_path):
    linktype, frame = REAL_FRAMES[0]
    seed = packet_seed(linktype, frame[: len(frame) // 2])
    assert compiled_outcome("packet", seed) == "ok"
    path = tmp_path / "input"
    path.write_bytes(seed)
    result = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "replay.py"), "packet", str(path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, f"{path}: ok\n")


def test_seeds_are_made_from_the_captures_at_run_time(tmp_path):
    assert write_seeds("capture", tmp_path / "captures") >= len(CAPTURES)
    assert write_seeds("packet", tmp_path / "packets", max_frames=2) > 0
    assert not list((REPO / "fuzz").glob("**/*.pcap*"))  # no capture is kept beside the fuzz targets
    rng = random.Random(0)
    inputs = sorted((tmp_path / "packets").iterdir())
    assert all(path.read_bytes()[0] < len(LINKTYPES) for path in rng.sample(inputs, min(10, len(inputs))))
