"""The first records of a capture, written as a plain pcap that every tool reads.

The capture may be pcap or pcapng, compressed or not; the subset is an
uncompressed pcap with nanosecond timestamps, the records' bytes unchanged.
Its records must share one link type, since a pcap file has only one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vxlaninspect.capture import open_capture

PCAP_NANOSECOND_MAGIC = 0xA1B23C4D
SNAPLEN = 262144


@dataclass(frozen=True)
class Subset:
    path: str
    packets: int
    captured_bytes: int
    linktype: int


def write_subset(source: str | Path, out: str | Path, packets: int) -> Subset:
    """Write the first ``packets`` records of ``source`` (fewer if it holds fewer) to ``out``."""
    if packets < 1:
        raise ValueError(f"packets: {packets} is not a positive number")
    written = captured = 0
    linktype = None
    chunks: list[bytes] = []
    with open_capture(source, chunk_bytes=min(32 << 20, max(1 << 20, packets * 2048))) as capture:
        for batch in capture.batches():
            take = min(len(batch), packets - written)
            kinds = np.unique(batch.linktype[:take])
            if linktype is None and len(kinds):
                linktype = int(kinds[0])
            if any(int(kind) != linktype for kind in kinds):
                raise ValueError(
                    f"{source}: the first {packets} records mix link types "
                    f"{sorted({linktype, *map(int, kinds)})}; a pcap subset holds one"
                )
            for i in range(take):
                ts = int(batch.ts_ns[i])
                frame = batch.record(i)
                chunks.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), int(batch.wirelen[i])))
                chunks.append(frame)
                captured += len(frame)
            written += take
            if written == packets:
                break
    if linktype is None:
        raise ValueError(f"{source}: holds no packet")
    header = struct.pack("<IHHiIII", PCAP_NANOSECOND_MAGIC, 2, 4, 0, 0, SNAPLEN, linktype)
    Path(out).write_bytes(header + b"".join(chunks))
    return Subset(str(out), written, captured, linktype)
