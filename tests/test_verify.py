"""``vxlaninspect.verify`` against tshark: real captures agree, each known reason arises where its cause is, real
disagreements are reported, and a missing or failing tshark is a clear error."""

from __future__ import annotations

import bz2
import lzma
import re
import struct

import pytest

from tests.conftest import CORPUS, SAMPLES, corpus_captures
from tests.test_hostile import (
    HTTP_GET,
    ether,
    inner_http,
    ipv4,
    ipv6,
    nested_vxlan,
    pcap_file,
    record_offsets,
    tcp,
    udp,
    vxlan,
    vxlan_frame,
)
from vxlaninspect.config import DecodeConfig
from vxlaninspect.decoding import decode
from vxlaninspect.errors import CaptureError
from vxlaninspect.schema import MAX_TUNNEL_DEPTH
from vxlaninspect.tshark_fields import TsharkRun, decode_as_options, parse_line
from vxlaninspect.verify import (
    Difference,
    Reason,
    TsharkFailed,
    TsharkNotFound,
    Verification,
    compare_packet,
    verify,
)

pytestmark = pytest.mark.tshark


def manifest_packet_counts() -> dict[str, int]:
    """Packets per corpus capture, as the corpus MANIFEST describes them ("10 pkts.", "1 fuzz pkt.", "Same 10 packets")."""
    manifest = CORPUS / "MANIFEST.md"
    if not manifest.is_file():
        return {}
    counts = {}
    for line in manifest.read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and (match := re.search(r"\b(\d+) (?:fuzz )?(?:pkts?|packets)\b", cells[-2])):
            counts[cells[2]] = int(match.group(1))
    return counts


def reasons(result: Verification) -> set[Reason]:
    return {known.reason for known in result.known}


# -- real captures ------------------------------------------------------------------------

CORPUS_REASONS = {"tcpdump__esp_truncated.pcap": {Reason.CUT_HEADER}}
"""Known differences per corpus capture. esp_truncated.pcap (snaplen 46, MANIFEST #15) ends inside the tunnel
header of UDP 4500 -> 8472: tshark shows the bytes of the header that fit."""


@pytest.mark.parametrize("path", corpus_captures(), ids=lambda p: p.name)
def test_corpus_capture_agrees_with_tshark(tshark, path):
    result = verify(path, tshark=tshark)
    assert result.ok, result.disagreements
    assert result.packets == result.tshark_packets == manifest_packet_counts()[path.name]
    assert reasons(result) == CORPUS_REASONS.get(path.name, set())
    assert result.tally("outer_src").compared > 0 and result.capture_error is None and result.tshark_error is None


def test_every_overlay_field_is_compared_on_the_aws_mirror(tshark, corpus):
    """MANIFEST #4: 100 VXLAN packets, VNI 5569041; 82 TCP (SSH), 16 DNS, 2 NTP inside."""
    result = verify(corpus / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap", tshark=tshark)
    for field in ("outer_encap", "vni", "outer_vni", "vxlan_flags", "outer_src", "src", "sport", "payload_wire"):
        assert (result.tally(field).compared, result.tally(field).agreed) == (100, 100), field
    assert result.tally("ssh").compared > 0 and result.tally("ssh").agreed == result.tally("ssh").compared


def test_esp_spi_and_sequence_are_compared(tshark, corpus):
    """MANIFEST #12: 240 ESP packets over IPv4 and IPv6."""
    result = verify(corpus / "arkime__wireshark-esp.pcap", tshark=tshark)
    assert result.ok
    assert result.tally("spi").agreed == result.tally("esp_seq").agreed == 240


SAMPLE_CAPTURES = sorted(p for p in SAMPLES.glob("*/capture*") if ".pcap" in p.name)


@pytest.mark.parametrize("path", SAMPLE_CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_capture_agrees_with_tshark(tshark, path):
    result = verify(path, tshark=tshark)
    assert result.ok and result.known == (), (result.disagreements, result.known)
    assert result.packets > 0


@pytest.mark.parametrize("compress", [lzma.compress, bz2.compress], ids=["xz", "bz2"])
def test_compressions_tshark_cannot_read_are_piped_to_it(tshark, corpus, tmp_path, compress):
    plain = corpus / "tcpdump__vxlan.pcap"
    packed = tmp_path / "capture.pcap.packed"
    packed.write_bytes(compress(plain.read_bytes()))
    expected = verify(plain, tshark=tshark)
    result = verify(packed, tshark=tshark)
    assert result.ok and (result.packets, result.fields) == (expected.packets, expected.fields)


# -- ports: tshark is told what the configuration says -------------------------------------


def test_decode_as_follows_the_configuration():
    assert decode_as_options(DecodeConfig()) == ("-d", "udp.port==8472,vxlan")
    options = decode_as_options(DecodeConfig(vxlan_ports=(7777,), geneve_ports=(), esp_udp_ports=(4500, 4789)))
    pairs = set(zip(options[::2], options[1::2]))
    assert pairs == {
        ("-d", "udp.port==7777,vxlan"),
        ("-d", "udp.port==6081,data"),  # tshark's Geneve port, not configured
        ("-d", "udp.port==4789,udpencap"),  # configured as ESP-in-UDP
    }


@pytest.mark.parametrize(
    ("name", "vxlan_ports", "vnis"),
    [
        ("tcpdump__vxlan_port_8472.pcap", (4789, 8472), 10),  # tshark is told 8472 is VXLAN
        ("tcpdump__vxlan_port_8472.pcap", (4789,), 0),  # neither takes 8472 as VXLAN
        ("tcpdump__vxlan.pcap", (8472,), 0),  # tshark is told 4789 is not VXLAN either
    ],
)
def test_configured_vxlan_ports(tshark, corpus, name, vxlan_ports, vnis):
    result = verify(corpus / name, DecodeConfig(vxlan_ports=vxlan_ports), tshark=tshark)
    assert result.ok and result.known == ()
    assert (result.tally("vni").compared, result.tally("vni").agreed) == (vnis, vnis)


def test_a_data_path_port_of_docker(tshark, corpus, tmp_path):
    """The 8472 capture moved to port 7777 (``docker swarm init --data-path-port 7777``); its UDP checksums are 0."""
    data = bytearray((corpus / "tcpdump__vxlan_port_8472.pcap").read_bytes())
    for offset in record_offsets(bytes(data)):
        (dport,) = struct.unpack_from(">H", data, offset + 16 + 14 + 20 + 2)
        assert dport == 8472
        struct.pack_into(">H", data, offset + 16 + 14 + 20 + 2, 7777)
    path = tmp_path / "port7777.pcap"
    path.write_bytes(bytes(data))
    result = verify(path, DecodeConfig(vxlan_ports=(7777,)), tshark=tshark)
    assert result.ok and result.tally("vni").agreed == 10
    assert all(d.tshark == "100" for d in result.disagreements) and result.known == ()


# -- each known reason, where its cause is -------------------------------------------------

LINKTYPE_NULL = 0
REQUEST = inner_http()


def snaplen_cut(frame: bytes, keep: int) -> tuple[bytes, int]:
    return frame[:keep], len(frame)


KNOWN_CASES = {
    Reason.PORT_PRECEDENCE: [ether(ipv4(udp(vxlan(4096) + REQUEST, 4500, 4789), 17))],  # ESP-in-UDP's port is lower
    Reason.TUNNEL_DEPTH: [nested_vxlan(MAX_TUNNEL_DEPTH + 1, REQUEST)],
    Reason.IP_LENGTH_ZERO: [ether(ipv6(tcp(HTTP_GET), 6, payload_length=0), 0x86DD)],  # Linux BIG TCP / GSO
    Reason.CUT_HEADER: [snaplen_cut(vxlan_frame(REQUEST), len(vxlan_frame(REQUEST)) - len(HTTP_GET) - 16)],
    Reason.CUT_WITHOUT_SNAPLEN: [vxlan_frame(REQUEST)[:-10]],  # inside the payload, wire length = captured
    Reason.MALFORMED_HEADER: [vxlan_frame(inner_http(total_length=1400))],
    Reason.FRAGMENT_PAYLOAD: [ether(ipv4(udp(vxlan(4096) + REQUEST, 49152, 4789)[:80], 17, fragment=0x2000))],
    Reason.NOT_DISSECTED: [vxlan_frame(ether(ipv4(tcp(HTTP_GET, 40000, 6000), 6)))],  # tshark: no HTTP on 6000
    Reason.SHORT_ICMP: [ether(ipv4(b"\xf1\xc4\x00\x00", 1, fragment=0x2000))],  # 4 bytes in a first fragment
}


@pytest.mark.parametrize("reason", sorted(KNOWN_CASES, key=lambda r: r.value), ids=lambda r: r.value)
def test_each_known_reason_arises_where_its_cause_is(tshark, tmp_path, reason):
    path = tmp_path / "cause.pcap"
    path.write_bytes(pcap_file(KNOWN_CASES[reason]))
    result = verify(path, tshark=tshark)
    assert result.ok and reasons(result) == {reason}
    (known,) = result.known
    assert known.count == sum(t.known for t in result.fields) > 0
    assert known.text == reason.text and all(d.reason == reason and d.frame == 1 for d in known.examples)


def test_an_ipv6_payload_length_past_the_frame_is_a_malformed_header(tshark, tmp_path):
    # tshark only warns of such a length and reads the TCP header after it; the decoder stops.
    frames = [vxlan_frame(ether(ipv6(tcp(b"+OK\r\n", 4789, 549), 6, payload_length=395), 0x86DD))]
    path = tmp_path / "plen.pcap"
    path.write_bytes(pcap_file(frames))
    result = verify(path, tshark=tshark)
    assert result.ok and reasons(result) == {Reason.MALFORMED_HEADER}
    assert {d.field for d in result.known[0].examples} >= {"sport", "dport"}


def test_an_empty_datagram_on_a_tunnel_port_is_plain_udp(tshark, tmp_path):
    # Found by the fuzz test (source port 4500, ESP-in-UDP's): tshark hands an empty payload to no
    # dissector, and there is nothing to decapsulate, so the decoder reads no tunnel into it either.
    ports = [(4500, 9529), (50000, 4789), (50000, 6081), (50000, 4790), (50000, 8472)]
    frames = [ether(ipv4(udp(b"", sport, dport), 17)) for sport, dport in ports]
    path = tmp_path / "empty-datagrams.pcap"
    path.write_bytes(pcap_file(frames))
    config = DecodeConfig(vxlan_ports=(4789, 8472))
    result = verify(path, config, tshark=tshark)
    assert result.ok and result.known == ()
    assert result.tally("encap").agreed == result.tally("payload_wire").agreed == len(frames)
    rows = next(decode(path, config=config)).rows
    assert rows["status"].tolist() == [0] * len(frames) and rows["tunnels"].tolist() == [0] * len(frames)


FOUND_BY_FUZZING = {
    "ipv6-extension-past-the-payload-length": (
        # in Geneve, an IPv6 payload of 7 bytes holds the start of 16 bytes of Destination
        # Options. tshark reads their next header (routing) past the end and notes an unreassembled packet.
        [
            bytes.fromhex(
                "0200000000020200000000018100018e810006e781000da008004500007300012000401100000a0000010a0000020633"
                "17c1005f0000010065580794e7000101010102000000000202000000000186dd6000000000073c4020010db800000000"
                "000000000000000120010db80000000000000000000000022b0101040000000069ff0104000000006e9c8ebf53"
            ),
        ],
        {Reason.MALFORMED_HEADER: {"proto"}},
    ),
    "ipv6-options-in-a-first-fragment": (
        # after the Fragment header of a first fragment, Destination Options hold an
        # option longer than the header. The decoder skips the header by its length and reads the UDP ports;
        # tshark parses the option past the header's end and, the packet being a fragment, calls it unreassembled.
        [
            bytes.fromhex(
                "7a0000000002020000000001810000cb8100003d86dd6000000000422c4020010db80000000000000000000000012001"
                "0db80000000000000000000000023c000001000000071101010400000000119412b6003200000c000009000d5d004500"
                "239100010000401100000a0000010a00000201bb0035123e0000f802d07250e5"
            ),
        ],
        {Reason.IPV6_OPTIONS: {"outer_sport", "outer_dport", "sport", "dport"}, Reason.FRAGMENT_PAYLOAD: {"payload_wire"}},
    ),
    "tunnels-past-broken-ipv6-options": (
        # Destination Options with an option longer than the header, then VXLAN twice
        # and IPv4. tshark stops at the options; the decoder skips them by their length and follows both
        # tunnels, so its innermost addresses are the IPv4 ones.
        [
            bytes.fromhex(
                "02000000000202000000000186dd6000000000933c4020010db800000000000000000000000120010db8000000000000"
                "00000000000200010104000000003cff010400000000110001040000000000162118007b00000000000000543b000200"
                "0000000202000000000186dd600000000035114020010db800000000000000000000000120010db80000000000000000"
                "00000002003512b500350000080000000096df0002000000000202000000000108004500001700014000406f00000a00"
                "00010a00000254f425"
            ),
        ],
        {Reason.IPV6_OPTIONS: {"encap", "src", "dst"}},
    ),
    "vxlan-between-geneve-and-esp": (
        # Geneve, then VXLAN (flags 0x88), then ESP over IPv6. The VXLAN header is
        # neither the outermost tunnel nor the innermost, and its flags were left out of the comparison.
        [
            bytes.fromhex(
                "02001900000202000000000108004500009500014000401100000a0000010a000002063217c10081000000006558158f"
                "7c0002000000000202000000000108004500006300010000401100000a0000010a00000218eb12b5004f000088000000"
                "00cec60002000000000202000000000186dd600000000009324020010db800000000000000000000000120010db80000"
                "000000000000000000023d90f63704be33ffff"
            ),
        ],
        {},
    ),
    "udp-length-zero-over-ipv6": (
        # UDP after an IPv6 Routing header, ports 0 and 0, length 0. The decoder
        # stops at the length; tshark only warns (a jumbogram could have it) and shows ports 0 and 0.
        [
            bytes.fromhex(
                "020000000002020000000001810001f186dd60000000003a2b4020010db800000000000000000000000120010db80000"
                "00000000000000000002110101040000000007b212b5003200000000000000005f000200000000020200000000010800"
                "4f0000140001200340d200000a0000010a000002"
            ),
        ],
        {Reason.MALFORMED_HEADER: {"sport", "dport"}},
    ),
    "tunnel-past-where-the-frame-ends": (
        # An atomic IPv6 fragment: the IPv6 payload length and
        # the UDP length reach past the frame, whose wire length is its captured length. The decoder reads
        # the ESP header that was captured; tshark bounds the payload by the frame and stops at UDP.
        [
            bytes.fromhex(
                "0200000000020200000000018100009d81000fff86dd6000000000832c4020010db80000000000000000000000012001"
                "0db8000000000000000000000002110000000000000701401194007b000000063798000000014300006b000133844011"
                "00000a0000010a00000217c112b500570000880000000486e80002000000000202000000"
            ),
            # the same without the Fragment header, built
            ether(ipv6(udp(struct.pack(">II", 0x63798, 1) + bytes(40), 320, 4500, length=123), 17, payload_length=131), 0x86DD),
        ],
        {Reason.CUT_WITHOUT_SNAPLEN: {"encap", "spi"}, Reason.FRAGMENT_PAYLOAD: {"payload_wire"}},
    ),
    "udp-length-inside-a-fragment": (
        # an IPv4 first fragment carries VXLAN, IPv6 and UDP whose length passes
        # the IPv6 payload. The decoder calls that UDP header malformed; tshark checks no UDP length in a
        # fragment and reads its ports.
        [
            bytes.fromhex(
                "0200000000020200000000018100000b8100046008004500007600012000401100000a0000010a00000217c112b50062"
                "0000000000000000860702000000000202000000000186dd60000000001c2b4020010db8000000000000000000000001"
                "20010db8000000000000000000000002110101040000000001bb17c1066d0000000000009a9a9a9a9a9a9a9a"
            ),
        ],
        {Reason.FRAGMENT_PAYLOAD: {"sport", "dport"}},
    ),
    "silent-lower-port-dissector": (
        # UDP from port 319 (PTP) to 4789 carrying VXLAN. tshark tries the lower
        # port first; its PTP dissector takes the payload and shows nothing, so no VXLAN follows.
        [
            bytes.fromhex(
                "0200000000020200000000018100011008004500009f00010000401100000a0000010a000002013f12b5008b00000800"
                "000001a6240002000000000202000000000186dd600000007a323c4020010db800000000000000000000000120010db8"
                "0000000000000000000000022c00010400000000330000fe00000007060100000000000000000000008912b600000001"
                "000000016018faf0000000005353482d322e302d4f70656e5353485f392e360d0a"
            ),
        ],
        {Reason.PORT_PRECEDENCE: {"encap", "vni"}},
    ),
}
"""Frames the tshark fuzz test found disagreeing: the reasons verify now gives for them (none when
the two agree), each with fields its examples must include."""


@pytest.mark.parametrize("case", FOUND_BY_FUZZING)
def test_frames_the_fuzz_test_found_differ_only_for_known_reasons(tshark, tmp_path, case):
    frames, expected = FOUND_BY_FUZZING[case]
    path = tmp_path / f"{case}.pcap"
    path.write_bytes(pcap_file(frames))
    result = verify(path, tshark=tshark, examples=100)
    assert result.ok and reasons(result) == set(expected)
    for known in result.known:
        assert {d.field for d in known.examples} >= expected[known.reason], known.reason


def test_linux_af_inet6_on_the_null_link_type(tshark, tmp_path):
    frames = [struct.pack("<I", 10) + ipv6(tcp(HTTP_GET), 6), struct.pack("<I", 2) + ipv4(tcp(HTTP_GET), 6)]
    path = tmp_path / "null.pcap"
    path.write_bytes(pcap_file(frames, linktype=LINKTYPE_NULL))
    result = verify(path, tshark=tshark)
    assert result.ok and reasons(result) == {Reason.NULL_LINUX_INET6}
    assert {d.frame for d in result.known[0].examples} == {1}
    assert result.tally("src").agreed == 1  # the IPv4 frame


def test_separators_and_escapes_in_a_banner_do_not_shift_fields(tshark, tmp_path):
    banner = b"SSH-2.0-Open,SSH\t\x1b[31m\xff\r\n"
    path = tmp_path / "ssh.pcap"
    path.write_bytes(pcap_file([vxlan_frame(ether(ipv4(tcp(banner, 22, 50000), 6)))]))
    result = verify(path, tshark=tshark)
    assert result.ok and result.known == ()
    assert result.tally("ssh").agreed == 1 and result.tally("dport").agreed == 1


# -- disagreements -----------------------------------------------------------------------------


def test_a_disagreement_is_reported_with_both_values(tshark, tmp_path):
    """tshark knows WebDAV's PROPFIND as an HTTP method; the application hint's method list does not."""
    webdav = b"PROPFIND /files HTTP/1.1\r\nHost: dav\r\nDepth: 1\r\n\r\n"
    frames = [vxlan_frame(inner_http(HTTP_GET))] + [vxlan_frame(inner_http(webdav))] * 7
    path = tmp_path / "webdav.pcap"
    path.write_bytes(pcap_file(frames))
    result = verify(path, tshark=tshark, examples=3)
    assert not result.ok and result.disagreement_count == 7
    assert result.disagreements == tuple(Difference(n, "http", "no", "request") for n in (2, 3, 4))
    tally = result.tally("http")
    assert (tally.compared, tally.agreed, tally.disagreed) == (8, 1, 7)


def test_compare_packet_finds_a_decoder_that_does_not_follow_the_configuration(tshark, corpus):
    """Rows decoded without port 8472, against tshark told that 8472 is VXLAN: every tunnel field differs."""
    path = corpus / "tcpdump__vxlan_port_8472.pcap"
    rows = [row for table in decode(path, config=DecodeConfig(vxlan_ports=(4789,))) for row in table.rows]
    with TsharkRun(path, DecodeConfig(), tshark) as run:
        frames = list(run)
    assert len(rows) == len(frames) == 10
    for number, (row, frame) in enumerate(zip(rows, frames), 1):
        compared, differences = compare_packet(number, row, frame)
        differing = {d.field for d in differences}
        assert {"outer_encap", "encap", "tunnels", "vni", "src"} <= differing <= set(compared)
        assert all(d.reason is None for d in differences)
        assert next(d for d in differences if d.field == "vni") == Difference(number, "vni", None, "100")


# -- errors ---------------------------------------------------------------------------------------


def test_missing_tshark_is_a_clear_error(corpus, tmp_path):
    for program in ("no-such-tshark", str(tmp_path / "tshark")):
        with pytest.raises(TsharkNotFound, match="apt-get install tshark"):
            verify(corpus / "tcpdump__vxlan.pcap", tshark=program)


def test_tshark_that_fails_is_a_clear_error(corpus, tmp_path):
    program = tmp_path / "tshark"
    program.write_text("#!/bin/sh\necho 'tshark: cannot open the file' >&2\nexit 2\n")
    program.chmod(0o755)
    with pytest.raises(TsharkFailed, match="cannot open the file"):
        verify(corpus / "tcpdump__vxlan.pcap", tshark=str(program))


def test_not_a_capture_is_a_capture_error(tshark, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a capture\n")
    with pytest.raises(CaptureError) as raised:
        verify(path, tshark=tshark)
    assert raised.value.offset == 0


def test_a_damaged_capture_is_compared_up_to_the_damage(tshark, corpus, tmp_path):
    data = (corpus / "tcpdump__vxlan.pcap").read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: record_offsets(data)[-1] + 40])  # inside the tenth record
    result = verify(path, tshark=tshark)
    assert result.ok and result.packets == result.tshark_packets == 9
    assert result.capture_error is not None and "at byte 1388" in result.capture_error
    assert result.tshark_error is not None and "cut short" in result.tshark_error


def test_max_packets(tshark, corpus):
    result = verify(corpus / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap", tshark=tshark, max_packets=7)
    assert result.ok and result.packets == result.tshark_packets == 7 and result.tally("vni").compared == 7


def test_a_line_tshark_did_not_write_is_refused():
    with pytest.raises(ValueError, match="not a line"):
        parse_line("1\teth:ip\n")
