"""Decode captures into packet tables: the capture reader and the kernel, joined."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from .capture import DEFAULT_CHUNK_BYTES, open_capture
from .config import DEFAULT_CONFIG, DecodeConfig
from .kernel import decode_batch
from .row_buffers import RowBuffers


@dataclass(frozen=True)
class PacketTable:
    """Decoded rows of one chunk of a capture, with the bytes they point into.

    ``rows`` has dtype ``schema.PACKET_DTYPE``; ``data`` is the chunk's buffer,
    which ``rows["data_start"]`` and the offsets relative to it index. Both stay
    valid for as long as they are kept, after the capture is closed too (a memory
    map is unmapped with the last view of it, and a table is written again only
    once nothing refers to it); keeping them keeps their memory.
    """

    path: str
    rows: np.ndarray
    data: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self, i: int) -> bytes:
        """The captured bytes of packet ``i``."""
        start = int(self.rows["data_start"][i])
        return self.data[start : start + int(self.rows["caplen"][i])].tobytes()

    def payload(self, i: int) -> bytes:
        """The captured innermost TCP/UDP payload of packet ``i``."""
        row = self.rows[i]
        start = int(row["data_start"]) + int(row["payload_off"])
        return self.data[start : start + int(row["payload_len"])].tobytes()


def decode(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    vxlan_ports: Iterable[int] | None = None,
    config: DecodeConfig = DEFAULT_CONFIG,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[PacketTable]:
    """Yield a ``PacketTable`` per chunk of a capture, whatever its format.

    ``vxlan_ports`` replaces the VXLAN ports of ``config``. Raises
    ``CaptureError`` for a capture that cannot be opened, or after the last good
    table when the capture is damaged.

    >>> for table in decode("node1.pcap", vxlan_ports=[4789, 8472]):  # doctest: +SKIP
    ...     print(np.unique(table.rows["vni"]))
    """
    if vxlan_ports is not None:
        config = replace(config, vxlan_ports=tuple(vxlan_ports))
    tables = RowBuffers()
    with open_capture(source, chunk_bytes=chunk_bytes) as capture:
        for batch in capture.batches():
            rows = decode_batch(batch, config, out=tables.take(len(batch)))
            yield PacketTable(capture.path, rows, batch.data)
            del rows  # so that a table the caller let go can be written again
