"""A batch of capture records: what the capture reader hands to the decoders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RecordBatch:
    """Records of one chunk of a capture, as parallel arrays over one byte buffer.

    ``data`` may be a view of a memory map; record ``i`` is
    ``data[data_start[i] : data_start[i] + caplen[i]]``.
    """

    data: np.ndarray  # uint8, 1-D
    data_start: np.ndarray  # int64: index of each record's first captured byte in data
    caplen: np.ndarray  # uint32: captured bytes
    wirelen: np.ndarray  # uint32: original length on the wire
    ts_ns: np.ndarray  # int64: nanoseconds since the epoch
    linktype: np.ndarray  # uint16: the record's link type (pcapng: its interface's)
    rec_offset: np.ndarray  # int64: offset of the record (header) in the decompressed stream

    def __len__(self) -> int:
        return len(self.data_start)

    def record(self, i: int) -> bytes:
        """The captured bytes of record ``i``."""
        start = int(self.data_start[i])
        return self.data[start : start + int(self.caplen[i])].tobytes()
