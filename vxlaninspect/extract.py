"""Decapsulate one overlay network into a plain pcap of its inner frames."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from .addresses import ip_words, parse_endpoint
from .capture import open_capture
from .config import DEFAULT_CONFIG
from .errors import CaptureError
from .kernel import decode_batch
from .row_buffers import RowBuffers
from .schema import LinkType, PacketFlag
from .topology import EMPTY_TOPOLOGY, Topology, load_topology

PCAP_NS_MAGIC = 0xA1B23C4D
PCAP_SNAPLEN = 262144
_RECORD = np.dtype([("sec", "<u4"), ("nsec", "<u4"), ("incl", "<u4"), ("orig", "<u4")])


@dataclass(frozen=True)
class Selector:
    """Which tunnelled frames to keep: a VNI, and optionally endpoints within it."""

    vni: int
    addresses: tuple[tuple[int, int], ...] = ()  # (hi, lo) words; empty: every address
    port: int | None = None

    def mask(self, rows: np.ndarray) -> np.ndarray:
        keep = (rows["vni"] == self.vni) & (rows["inner_off"] > 0)
        keep &= (rows["flags"] & PacketFlag.INNER_NOT_ETHERNET) == 0
        if self.addresses:
            near = np.zeros(len(rows), dtype=bool)
            for hi, lo in self.addresses:
                for side in ("src", "dst"):
                    near |= (rows[f"{side}_hi"] == hi) & (rows[f"{side}_lo"] == lo)
            keep &= near
        if self.port is not None:
            keep &= (rows["sport"] == self.port) | (rows["dport"] == self.port)
        return keep


def service_selector(vni: int, service: str | None, topology: Topology) -> Selector:
    """A selector for ``service``: a name or task in ``topology``, or ``IP[:PORT]``."""
    if service is None:
        return Selector(vni)
    try:
        address, port = parse_endpoint(service)
        return Selector(vni, (ip_words(address),), port)
    except ValueError:
        pass
    network = topology.network_by_vni(vni)
    ips = {
        e.ip
        for e in topology.endpoints
        if service in (e.service, e.task) and (network is None or e.network == network.name)
    }
    if not ips:
        raise ValueError(f"no service or address {service!r} on VNI {vni} in the Docker metadata")
    return Selector(vni, tuple(ip_words(ip) for ip in sorted(ips)))


@dataclass(frozen=True)
class ExtractResult:
    """How many frames were written, and the damage that stopped reading, if any."""

    frames: int
    error: CaptureError | None = None


@njit(cache=True, nogil=True)
def _interleave(data, starts, lengths, headers, out):  # pragma: no cover - compiled
    """Write header ``k`` then ``data[starts[k]:starts[k] + lengths[k]]`` for every ``k`` into ``out``."""
    width = headers.shape[1]
    p = 0
    for k in range(len(starts)):
        out[p : p + width] = headers[k]
        p += width
        out[p : p + lengths[k]] = data[starts[k] : starts[k] + lengths[k]]
        p += lengths[k]


def inner_records(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """pcap records (nanosecond headers) of the inner frames of ``rows``, back to back."""
    starts = (rows["data_start"] + rows["inner_off"]).astype(np.int64)
    lengths = (rows["caplen"] - rows["inner_off"]).astype(np.int64)
    headers = np.zeros(len(rows), dtype=_RECORD)
    headers["sec"], headers["nsec"] = np.divmod(rows["ts_ns"], 1_000_000_000)
    headers["incl"] = lengths
    headers["orig"] = np.maximum(rows["wirelen"].astype(np.int64) - rows["inner_off"], lengths)
    out = np.empty(int(lengths.sum()) + len(rows) * _RECORD.itemsize, dtype=np.uint8)
    _interleave(data, starts, lengths, headers.view(np.uint8).reshape(len(rows), _RECORD.itemsize), out)
    return out


def extract_overlay(
    capture: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    vni: int,
    service: str | None = None,
    vxlan_ports: Iterable[int] = (),
    docker: Iterable[str | os.PathLike[str]] = (),
) -> ExtractResult:
    """Write the inner Ethernet frames of overlay ``vni`` in ``capture`` to the pcap ``out``.

    Frames keep their timestamps (nanosecond pcap). Tunnels that carry IP
    without Ethernet (some Geneve and VXLAN-GPE) are left out, as a plain pcap
    has one link type. A damaged capture stops with everything before the damage
    written, and the damage in ``ExtractResult.error``.
    """
    ports = tuple(vxlan_ports)
    config = replace(DEFAULT_CONFIG, vxlan_ports=ports) if ports else DEFAULT_CONFIG
    docker = tuple(docker)
    selector = service_selector(vni, service, load_topology(docker) if docker else EMPTY_TOPOLOGY)
    frames = 0
    error = None
    tables = RowBuffers()
    with open_capture(capture) as source, open(out, "wb") as sink:
        sink.write(struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, PCAP_SNAPLEN, LinkType.ETHERNET))
        try:
            for batch in source.batches():
                rows = decode_batch(batch, config, out=tables.take(len(batch)))
                chosen = rows[selector.mask(rows)]
                sink.write(inner_records(batch.data, chosen).tobytes())
                frames += len(chosen)
        except CaptureError as damage:
            error = damage
    return ExtractResult(frames, error)
