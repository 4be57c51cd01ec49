"""What the fuzz targets check, for the atheris scripts and the test-suite alike.

``check_capture``: the bytes of a capture file (any format, any compression)
go through the capture reader, the decoder and the whole scan; nothing but
``CaptureError`` may come out, and the scan records damage instead of raising.

``check_packet``: the first byte of the input picks a link type, the rest is
one captured frame; the kernel and the dpkt reference decoder must produce the
same row, field by field, and neither may raise.
"""

from __future__ import annotations

import io

import numpy as np

from vxlaninspect.decoding import decode
from vxlaninspect.errors import CaptureError
from vxlaninspect.kernel import decode_batch
from vxlaninspect.records import RecordBatch
from vxlaninspect.reference import decode_batch as reference_batch
from vxlaninspect.scanning import Limits, scan
from vxlaninspect.schema import AppHint, Encap, Layer, LinkType, Status

LINKTYPES = tuple(int(linktype) for linktype in LinkType) + (147,)
"""The link types a packet input may pick: every decoded one, and one the decoder does not know."""
SMALL_CHUNK = 4096
"""A chunk size small enough that records straddle chunk boundaries."""
SMALL_LIMITS = Limits(max_flows=64, max_tunnel_entries=16, chunk_bytes=SMALL_CHUNK)


CODES = {"status": Status, "error_layer": Layer, "encap": Encap, "app": AppHint}
"""Columns that hold a code of an enumeration."""


class Finding(Exception):
    """Input that breaks a rule the targets check."""


def check_codes(rows: np.ndarray) -> None:
    """Raise ``Finding`` when a code column of a packet table holds a value outside its enumeration."""
    for column, codes in CODES.items():
        if len(rows) and int(rows[column].max()) > max(codes):
            raise Finding(f"{column} {int(rows[column].max())} is not a {codes.__name__}")


def check_capture(data: bytes) -> None:
    """Read, decode and scan ``data`` as a capture file; raise ``Finding`` for anything but clean damage."""
    for chunk_bytes in (SMALL_CHUNK, 1 << 20):
        try:
            for table in decode(io.BytesIO(data), chunk_bytes=chunk_bytes):
                check_codes(table.rows)
        except CaptureError as error:
            if not error.reason or error.offset < 0:
                raise Finding(f"CaptureError without a reason or offset: {error!r}") from error
    report = scan(io.BytesIO(data), limits=SMALL_LIMITS)
    if len(report.captures) != 1:
        raise Finding(f"one capture scanned, {len(report.captures)} reported")
    if len(report.flows) > SMALL_LIMITS.max_flows:
        raise Finding(f"{len(report.flows)} flows kept beyond the budget of {SMALL_LIMITS.max_flows}")


def packet_input(data: bytes) -> tuple[int, bytes]:
    """The link type and frame a packet input stands for."""
    if not data:
        return LinkType.ETHERNET, b""
    return LINKTYPES[data[0] % len(LINKTYPES)], data[1:]


def packet_seed(linktype: int, frame: bytes) -> bytes:
    """The packet input that stands for ``frame`` of ``linktype`` (one of ``LINKTYPES``)."""
    return bytes([LINKTYPES.index(linktype)]) + frame


def one_record(linktype: int, frame: bytes) -> RecordBatch:
    data = np.frombuffer(frame, dtype=np.uint8) if frame else np.zeros(0, dtype=np.uint8)
    length = np.array([len(frame)], dtype=np.uint32)
    zero = np.zeros(1, dtype=np.int64)
    return RecordBatch(data, zero, length, length.copy(), zero, np.array([linktype], dtype=np.uint16), zero)


def check_packet(data: bytes) -> None:
    """Decode one frame with the kernel and the reference; raise ``Finding`` where they differ."""
    linktype, frame = packet_input(data)
    batch = one_record(linktype, frame)
    ours, expected = decode_batch(batch), reference_batch(batch)
    check_codes(ours)
    differing = [name for name in ours.dtype.names if ours[name][0] != expected[name][0]]
    if differing:
        fields = ", ".join(f"{name}: kernel {ours[name][0]} reference {expected[name][0]}" for name in differing)
        raise Finding(f"link type {linktype}, frame {frame.hex()}: {fields}")
