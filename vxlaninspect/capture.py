"""Read the records of a capture in bounded batches.

pcap or pcapng, plain or gzip/bz2/xz/zstd compressed (recognised by content,
not by name), from a path, standard input (``"-"``) or a binary file object.
Plain files are memory-mapped; everything else is streamed. Memory stays near
``chunk_bytes`` whatever the size of the capture or the compression ratio.
The next batch is read (pages mapped in, records indexed, or the stream
decompressed) on a thread of its own while the caller works on the current one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import BinaryIO

import numpy as np

from .capture_pcap import FILE_HEADER_BYTES, PcapIndexer, is_pcap, parse_pcap_header
from .capture_pcapng import PcapngIndexer, is_pcapng
from .capture_source import ByteSource, MappedFile, open_source
from .capture_walk import MAX_RECORD_BYTES, Damage, Indexer, RecordIndex, Stop, walk
from .compression import NONE
from .errors import CaptureError
from .records import RecordBatch

__all__ = ["DEFAULT_CHUNK_BYTES", "MAX_RECORD_BYTES", "Capture", "open_capture"]

DEFAULT_CHUNK_BYTES = 32 << 20
"""About how many bytes of capture each batch covers."""

STDIN = "-"


def open_capture(source: str | os.PathLike[str] | BinaryIO, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Capture:
    """Open a capture and read its header.

    ``source``: a path, ``"-"`` for standard input, or a binary file object
    (read from its current position, left open). Raises ``CaptureError`` for a
    file that is missing, unreadable, empty, or not a capture.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
    raw, path, owned = _open_raw(source)
    opened_source: ByteSource | None = None
    try:
        opened_source, compression = open_source(raw, path, chunk_bytes, mappable=owned)
        mapped = isinstance(opened_source, MappedFile)
        if mapped:
            raw.close()  # the map keeps its own reference to the file
        return Capture(path, opened_source, compression, chunk_bytes, raw if owned and not mapped else None)
    except BaseException:
        if opened_source is not None:
            opened_source.close()
        if owned:
            raw.close()
        raise


class Capture:
    """An open capture: its format, and its records through ``batches()``.

    The counters and ``linktypes`` grow as batches are delivered.
    """

    path: str
    format: str  # "pcap" | "pcapng"
    compression: str  # "none" | "gzip" | "bz2" | "xz" | "zstd"
    linktypes: set[int]
    packets: int
    bytes: int  # captured bytes
    first_ts_ns: int | None  # the earliest record timestamp
    last_ts_ns: int | None  # the latest record timestamp

    def __init__(
        self, path: str, source: ByteSource, compression: str, chunk_bytes: int, file: BinaryIO | None
    ) -> None:
        self.path = path
        self.compression = compression
        self._source = source
        self._file = file
        self._index = RecordIndex.for_chunk(chunk_bytes)
        self._batches: Generator[RecordBatch, None, None] | None = None
        self._indexer, self._start = self._read_header()
        self.format = "pcap" if isinstance(self._indexer, PcapIndexer) else "pcapng"
        self.linktypes = self._indexer.linktypes
        self.packets = 0
        self.bytes = 0
        self.first_ts_ns = None
        self.last_ts_ns = None

    def batches(self) -> Iterator[RecordBatch]:
        """The records, in order, in batches of about ``chunk_bytes`` of capture.

        Raises ``CaptureError`` at damage, after yielding every whole record before it.
        Can be iterated once.
        """
        if self._batches is not None:
            raise RuntimeError("the batches of a capture can be iterated only once")
        self._batches = self._read_ahead()
        return self._batches

    def _read_ahead(self) -> Generator[RecordBatch, None, None]:
        """The batches of ``walk``, each read while the one before is in the caller's hands."""
        records = walk(self._source, self.path, self._start, self._indexer, self._index)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vxlaninspect-read") as reader:
            ahead = reader.submit(next, records, None)
            while (batch := ahead.result()) is not None:
                ahead = reader.submit(next, records, None)
                self._count(batch)
                yield batch

    def _count(self, batch: RecordBatch) -> None:
        self.packets += len(batch)
        self.bytes += int(batch.caplen.sum(dtype=np.uint64))
        earliest, latest = int(batch.ts_ns.min()), int(batch.ts_ns.max())
        self.first_ts_ns = earliest if self.first_ts_ns is None else min(self.first_ts_ns, earliest)
        self.last_ts_ns = latest if self.last_ts_ns is None else max(self.last_ts_ns, latest)

    def close(self) -> None:
        """Release the map or the stream (a file object given by the caller is left open)."""
        if self._batches is not None:
            self._batches.close()  # waits for a batch being read ahead
        self._source.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _read_header(self) -> tuple[Indexer, int]:
        """The indexer for the capture's format, and the stream offset of its first record or block."""
        data, _ = self._source.window(0, FILE_HEADER_BYTES)
        head = data[:4].tobytes()
        try:
            if is_pcap(head):
                header = parse_pcap_header(data)
                return PcapIndexer(header), FILE_HEADER_BYTES
            if is_pcapng(head):
                indexer = PcapngIndexer()
                return indexer, self._read_first_section(indexer)
        except Damage as damage:
            raise self._source.error or CaptureError(self.path, 0, damage.reason) from None
        if self._source.error is not None:
            raise self._source.error
        if not head:
            raise CaptureError(
                self.path, 0, "empty file" if self.compression == NONE else f"empty {self.compression} stream"
            )
        packed = "" if self.compression == NONE else f"{self.compression} data "
        raise CaptureError(self.path, 0, f"not a pcap or pcapng capture ({packed}starts with {head.hex()})")

    def _read_first_section(self, indexer: PcapngIndexer) -> int:
        need = 12
        for _ in range(2):  # the block header, then the whole block
            data, _ = self._source.window(0, need)
            _, _, stop, need = indexer.index(data, 0, 0, self._index.writable())
            if stop != Stop.NEED_BYTES:
                return indexer.resume(Stop(stop), data, 0)
        raise Damage(indexer.truncation(data, 0))


def _open_raw(source: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, str, bool]:
    """The stream to read, the path to name in errors, and whether the reader opened (owns) it."""
    if isinstance(source, str) and source == STDIN:
        if sys.stdin is None:
            raise CaptureError(STDIN, 0, "there is no standard input")
        return sys.stdin.buffer, STDIN, False
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            return open(path, "rb"), path, True
        except OSError as error:
            raise CaptureError(path, 0, f"cannot open: {error.strerror or error}") from None
    name = getattr(source, "name", None)
    return source, name if isinstance(name, str) else "<stream>", False
