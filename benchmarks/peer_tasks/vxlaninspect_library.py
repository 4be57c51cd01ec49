"""The task with vxlaninspect as a library: ``decode(path)`` and numpy over the packet table's columns.

Per chunk: VNI counts of the VXLAN rows, and the distinct flow keys of the
rows whose application hint is HTTP or a RESP command, endpoints put in a
fixed order with array comparisons. No Python object is made per packet.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from vxlaninspect.decoding import decode
from vxlaninspect.schema import AppHint, Encap

from .task import HTTP, RESP, Answer

TCP = 6
NO_LABEL, HTTP_LABEL, RESP_LABEL = 0, 1, 2
LABEL_OF_HINT = np.zeros(max(AppHint) + 1, dtype=np.uint8)
LABEL_OF_HINT[[AppHint.HTTP_REQUEST, AppHint.HTTP_RESPONSE]] = HTTP_LABEL
LABEL_OF_HINT[AppHint.RESP_COMMAND] = RESP_LABEL
KEY_DTYPE = np.dtype(
    [
        ("vni", "<i8"),
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("a_port", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("b_port", "<u8"),
        ("label", "<u8"),  # HTTP_LABEL or RESP_LABEL: sorting puts HTTP first
    ]
)
FLOW_FIELDS = list(KEY_DTYPE.names[:-1])
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
COMPACT_ROWS = 1 << 21
"""Collected flow keys are made distinct again whenever this many have piled up."""


class Result:
    """What the library pass computes: totals, VNI counts, distinct labelled flow keys."""

    def __init__(self) -> None:
        self.packets = 0
        self.captured_bytes = 0
        self.vni_counts: dict[int, int] = {}
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.keys = np.empty(0, dtype=KEY_DTYPE)

    def add(self, rows: np.ndarray) -> None:
        self.packets += len(rows)
        self.captured_bytes += int(rows["caplen"].sum(dtype=np.uint64))
        vxlan = rows["encap"] == Encap.VXLAN
        vnis, counts = np.unique(rows["vni"][vxlan], return_counts=True)
        for vni, count in zip(vnis.tolist(), counts.tolist()):
            self.vni_counts[vni] = self.vni_counts.get(vni, 0) + count
        label = LABEL_OF_HINT[rows["app"]]
        chosen = np.flatnonzero(vxlan & (rows["proto"] == TCP) & (label != NO_LABEL))
        if len(chosen):
            keys = distinct(flow_keys(rows, chosen, label[chosen]))
            self.pending.append(keys)
            self.pending_rows += len(keys)
            if self.pending_rows >= COMPACT_ROWS:
                self.compact()

    def compact(self) -> None:
        self.keys = distinct(np.concatenate([self.keys, *self.pending]))
        self.pending, self.pending_rows = [], 0

    def finish(self) -> Result:
        """Sorted keys, one per flow: HTTP where a flow has both labels."""
        self.compact()
        keys = np.sort(self.keys)
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[FLOW_FIELDS][1:] != keys[FLOW_FIELDS][:-1]
        self.keys = keys[first]
        return self


def flow_keys(rows: np.ndarray, chosen: np.ndarray, label: np.ndarray) -> np.ndarray:
    """A key per chosen row: VNI, endpoints in the order of their (address, port), and the label."""
    src = [rows[name][chosen].astype(np.uint64) for name in ("src_hi", "src_lo", "sport")]
    dst = [rows[name][chosen].astype(np.uint64) for name in ("dst_hi", "dst_lo", "dport")]
    src_first = (src[0] < dst[0]) | (
        (src[0] == dst[0]) & ((src[1] < dst[1]) | ((src[1] == dst[1]) & (src[2] <= dst[2])))
    )
    keys = np.empty(len(chosen), dtype=KEY_DTYPE)
    keys["vni"] = rows["vni"][chosen]
    for a, b, s, d in zip(("a_hi", "a_lo", "a_port"), ("b_hi", "b_lo", "b_port"), src, dst):
        keys[a] = np.where(src_first, s, d)
        keys[b] = np.where(src_first, d, s)
    keys["label"] = label
    return keys


def distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct keys, in some order.

    Rows are grouped by a 64-bit hash of all fields, which needs no structured
    sort; the grouping is then checked field by field, and a hash collision
    (which the check would show) falls back to an exact sort.
    """
    words = keys.view(np.uint64).reshape(len(keys), len(KEY_DTYPE.names))
    digest = np.zeros(len(keys), dtype=np.uint64)
    for column in words.T:
        digest = (digest ^ column) * HASH_MULTIPLIER
        digest ^= digest >> np.uint64(29)
    _, first, group = np.unique(digest, return_index=True, return_inverse=True)
    if np.array_equal(words[first][group], words):
        return keys[first]
    return np.unique(keys)


def to_answer(result: Result) -> Answer:
    """The keys as Python values, for comparison with the other tools (not part of the timed work)."""
    k = result.keys
    columns = (k[name].tolist() for name in KEY_DTYPE.names)
    flows = {
        (vni, address(a_hi, a_lo), a_port, address(b_hi, b_lo), b_port): HTTP if label == HTTP_LABEL else RESP
        for vni, a_hi, a_lo, a_port, b_hi, b_lo, b_port, label in zip(*columns)
    }
    return Answer(result.packets, result.captured_bytes, dict(result.vni_counts), flows)


def address(hi: int, lo: int) -> bytes:
    return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")


def prepare() -> None:
    """Load the compiled kernel (from numba's cache) on a one-packet capture, so that ``run`` times the work."""
    frame = bytes(60)
    pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 60, 60) + frame
    for _ in decode(io.BytesIO(pcap)):
        pass


def run(path: str) -> Result:
    result = Result()
    for table in decode(path):
        result.add(table.rows)
    return result.finish()
