"""Tunnels: per direction, VXLAN per VNI and ESP per SPI, checked against tshark's dissection."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import CORPUS, SAMPLES
from vxlaninspect.decoding import decode
from vxlaninspect.scanning import scan
from vxlaninspect.tunnels import ESP_ENCAPS, Rotation, TunnelTable

ESP_CAPTURES = [
    CORPUS / "arkime__wireshark-esp.pcap",
    CORPUS / "tcpdump__02-sunrise-sunset-esp.pcap",
    CORPUS / "tcpdump__espudp1.pcap",
    SAMPLES / "swarm-encrypted" / "capture.pcap",
    SAMPLES / "secure-vs-insecure" / "capture.pcap",
]
VXLAN_CAPTURES = [
    CORPUS / "tcpdump__vxlan.pcap",
    CORPUS / "suricata-verify__vxlan-decoder-03_aws-mirror.pcap",
    CORPUS / "suricata-verify__vxlan-non-zero-reserved-fields.pcap",
    CORPUS / "tcpdump__gso-ipv6-vxlan-ipv6.pcap",
    SAMPLES / "lab-capture" / "capture.pcap",
    SAMPLES / "swarm-plaintext" / "capture.pcap",
    SAMPLES / "swarm-encrypted" / "capture.pcap",
    SAMPLES / "misconfigured" / "capture.pcap",
]


def _name(path: Path) -> str:
    return path.name if path.parent == CORPUS else path.parent.name


def _needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def tshark_rows(tshark: str, path: Path, fields: list[str], display_filter: str) -> list[dict[str, str]]:
    command = [tshark, "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "occurrence=a"]
    output = subprocess.run(command + [x for f in fields for x in ("-e", f)], capture_output=True, text=True, check=True)
    return [dict(zip(fields, line.split("\t"))) for line in output.stdout.splitlines()]


def _ns(epoch: str) -> int:
    return int(Decimal(epoch) * 1_000_000_000)


def _outer(row: dict[str, str], field: str) -> str:
    """The first (underlay) address of an IPv4 or IPv6 field pair."""
    return (row[f"ip.{field}"] or row[f"ipv6.{field}"]).split(",")[0]


def _add(table: dict, key: tuple, sub: int, size: int, ts: int) -> None:
    packets, total, first, last = table.setdefault(key, {}).get(sub, (0, 0, ts, ts))
    table[key][sub] = (packets + 1, total + size, min(first, ts), max(last, ts))


@pytest.mark.tshark
@pytest.mark.parametrize("path", ESP_CAPTURES, ids=_name)
def test_esp_per_direction_and_spi_agrees_with_tshark(tshark: str, path: Path) -> None:
    fields = ["frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "udp.srcport", "esp.spi"]
    theirs: dict[tuple, dict] = {}
    for row in tshark_rows(tshark, _needs(path), fields, "esp"):
        encap = "esp-udp" if row["udp.srcport"] else "esp"
        key = (_outer(row, "src"), _outer(row, "dst"), encap)
        _add(theirs, key, int(row["esp.spi"], 16), int(row["frame.len"]), _ns(row["frame.time_epoch"]))
    assert theirs
    report = scan(path)
    assert report.stats.esp_packets == sum(p for spis in theirs.values() for p, *_ in spis.values())
    tunnels = [t for t in report.tunnels if t.encap in ESP_ENCAPS]
    ours = {t.key: {s.spi: (s.packets, s.bytes, s.first_ts, s.last_ts) for s in t.spi_traffic} for t in tunnels}
    assert ours == theirs
    for tunnel in tunnels:
        assert tunnel.packets == sum(s.packets for s in tunnel.spi_traffic)
        assert tunnel.vnis == ()


@pytest.mark.tshark
@pytest.mark.parametrize("path", VXLAN_CAPTURES, ids=_name)
def test_vxlan_per_direction_and_vni_agrees_with_tshark(tshark: str, path: Path) -> None:
    fields = ["frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "vxlan.vni", "tcp.len", "udp.length"]
    theirs: dict[tuple, dict] = {}
    payload: dict[tuple, int] = {}
    for row in tshark_rows(tshark, _needs(path), fields, "vxlan"):
        key = (_outer(row, "src"), _outer(row, "dst"), "vxlan")
        vni = int(row["vxlan.vni"].split(",")[-1])
        _add(theirs, key, vni, int(row["frame.len"]), _ns(row["frame.time_epoch"]))
        udp_lengths = row["udp.length"].split(",")
        inner_udp = int(udp_lengths[1]) - 8 if len(udp_lengths) > 1 else 0
        if int(row["tcp.len"] or 0) > 0 or inner_udp > 0:
            payload[(key, vni)] = payload.get((key, vni), 0) + 1
    assert theirs
    report = scan(path)
    assert report.stats.vxlan_packets == sum(p for vnis in theirs.values() for p, *_ in vnis.values())
    tunnels = [t for t in report.tunnels if t.encap == "vxlan"]
    ours = {t.key: {v.vni: (v.packets, v.bytes, v.first_ts, v.last_ts) for v in t.vni_traffic} for t in tunnels}
    assert ours == theirs
    assert {(t.key, v.vni): v.payload_packets for t in tunnels for v in t.vni_traffic if v.payload_packets} == payload


@pytest.mark.tshark
def test_a_new_spi_in_a_direction_is_a_key_rotation(tshark: str) -> None:
    path = _needs(SAMPLES / "swarm-encrypted" / "capture.pcap")
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "esp.spi"]
    first_seen: dict[tuple, dict[int, int]] = {}
    for row in tshark_rows(tshark, path, fields, "esp"):
        spis = first_seen.setdefault((row["ip.src"], row["ip.dst"]), {})
        spis.setdefault(int(row["esp.spi"], 16), _ns(row["frame.time_epoch"]))
    report = scan(path)
    rotations = {(t.src, t.dst): t.rotations for t in report.tunnels if t.encap == "esp"}
    expected = {
        pair: tuple(Rotation(ts, spi) for spi, ts in sorted(spis.items(), key=lambda item: item[1])[1:])
        for pair, spis in first_seen.items()
    }
    assert rotations == expected
    assert all(len(r) == 1 for r in rotations.values()), "the sample rotates each direction's key once"


def test_entries_beyond_the_bound_are_counted_as_untracked(corpus: Path) -> None:
    table = TunnelTable(max_entries=3)
    packets = 0
    for chunk in decode(corpus / "arkime__wireshark-esp.pcap", chunk_bytes=2048):
        table.add(chunk.rows)
        packets += len(chunk)
    tunnels = table.render()
    assert len(tunnels) == 3
    assert table.totals.untracked_packets == packets - sum(t.packets for t in tunnels) > 0
    whole = {t.key: t for t in scan(corpus / "arkime__wireshark-esp.pcap").tunnels}
    assert all(whole[t.key] == t for t in tunnels)
