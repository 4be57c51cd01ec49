"""The decompressed bytes of a capture, handed out as windows of about ``chunk_bytes``.

A plain file is memory-mapped: a window is a view of the map, and pages behind
the ``WINDOWS_IN_USE`` windows before the current one are dropped from the
process (consumers may still be working on those), so resident memory stays near
a few windows whatever the file size. Compressed input and pipes are streamed into a
ring of reused buffers; the bytes of an incomplete record at the end of one
window are carried to the start of the next.
"""

from __future__ import annotations

import collections
import contextlib
import io
import mmap
import os
import stat
import sys
from typing import BinaryIO, NamedTuple, Protocol

import numpy as np

from .compression import MAGIC_BYTES, NONE, DecompressingReader, StreamDamage, sniff_compression
from .errors import CaptureError

READ_BYTES = 1 << 20
"""The most bytes asked of a stream or decompressor in one read."""
WINDOWS_IN_USE = 2
"""Windows before the current one that a scan may still be reading: one being decoded while
the next is read ahead, and one being counted into the tables while that is decoded."""


class Window(NamedTuple):
    """Read-only bytes from a stream offset on; ``at_end`` when they reach the end of the stream."""

    data: np.ndarray
    at_end: bool


class ByteSource(Protocol):
    error: CaptureError | None
    """Damage of the stream itself (truncated or corrupt compression), met where the data ends."""

    def window(self, offset: int, need: int) -> Window:
        """Bytes from ``offset`` on: at least ``need`` of them unless the stream ends first.

        ``offset`` never moves backwards. Windows handed out earlier stay valid.
        """

    def close(self) -> None: ...


class MappedFile:
    """A regular, uncompressed file, memory-mapped."""

    def __init__(self, file: BinaryIO, size: int, chunk_bytes: int) -> None:
        self.error: CaptureError | None = None
        self._map: mmap.mmap | None = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)
        if hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_SEQUENTIAL)
        self._bytes: np.ndarray | None = np.frombuffer(self._map, dtype=np.uint8)
        self._chunk_bytes = chunk_bytes
        self._released = 0
        # Starts of the windows before the current one, whose batches may still be in use: one
        # decoded while the next is read ahead, one counted into the tables while that is decoded.
        self._in_use = collections.deque([0] * WINDOWS_IN_USE, maxlen=WINDOWS_IN_USE)

    def window(self, offset: int, need: int) -> Window:
        assert self._bytes is not None, "window of a closed source"
        self._release_before(self._in_use[0])
        self._in_use.append(offset)
        end = min(offset + max(self._chunk_bytes, need), len(self._bytes))
        return Window(self._bytes[offset:end], end == len(self._bytes))

    def _release_before(self, offset: int) -> None:
        """Drop the pages wholly before ``offset`` from the process; a later access reloads them."""
        page_end = offset - offset % mmap.PAGESIZE
        if page_end > self._released and hasattr(mmap, "MADV_DONTNEED"):
            assert self._map is not None
            self._map.madvise(mmap.MADV_DONTNEED, self._released, page_end - self._released)
            self._released = page_end

    def close(self) -> None:
        self._bytes = None
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a batch still views the map: unmapped with the last one
                self._map.close()
            self._map = None


class StreamedBytes:
    """A stream (decompressor, pipe, file object) read into a ring of reused buffers.

    Each refill writes into the next buffer of the ring, which holds none of the
    current window and the ``WINDOWS_IN_USE`` before it. A buffer that a
    delivered batch still views is replaced rather than overwritten, so every
    batch stays valid for as long as the caller keeps it.
    """

    def __init__(self, reader: BinaryIO | DecompressingReader, path: str, chunk_bytes: int) -> None:
        self.error: CaptureError | None = None
        self._reader = reader
        self._path = path
        self._chunk_bytes = chunk_bytes
        self._buffers = [np.empty(0, dtype=np.uint8) for _ in range(WINDOWS_IN_USE + 1)]
        self._unshared = sys.getrefcount(self._buffers[0])
        self._current = 0
        self._start = 0  # stream offset of the current buffer's first byte
        self._filled = 0
        self._eof = False

    def window(self, offset: int, need: int) -> Window:
        begin = offset - self._start
        assert 0 <= begin <= self._filled, "windows must move forwards"
        carried = self._filled - begin
        if carried >= need or self._eof:
            return Window(_read_only(self._buffers[self._current][begin : self._filled]), self._eof)
        size = max(self._chunk_bytes, need)
        target = (self._current + 1) % len(self._buffers)
        buffer = self._writable(target, size)
        buffer[:carried] = self._buffers[self._current][begin : self._filled]
        self._current, self._start = target, offset
        self._filled = self._fill(buffer, carried, size)
        return Window(_read_only(buffer[: self._filled]), self._eof)

    def _writable(self, index: int, size: int) -> np.ndarray:
        if len(self._buffers[index]) < size or sys.getrefcount(self._buffers[index]) > self._unshared:
            self._buffers[index] = np.empty(size, dtype=np.uint8)
        return self._buffers[index]

    def _fill(self, buffer: np.ndarray, filled: int, size: int) -> int:
        with memoryview(buffer) as view:
            while filled < size:
                try:
                    count = self._reader.readinto(view[filled : min(size, filled + READ_BYTES)])
                except StreamDamage as damage:
                    self.error = CaptureError(self._path, self._start + filled, damage.reason)
                    count = 0
                if not count:
                    self._eof = True
                    break
                filled += count
        return filled

    def close(self) -> None:
        if isinstance(self._reader, DecompressingReader):
            self._reader.close()
        self._buffers = []


def _read_only(data: np.ndarray) -> np.ndarray:
    data.flags.writeable = False
    return data


class _PrefixedReader(io.RawIOBase):
    """A stream whose first bytes were already read (to recognise it), put back in front.

    Read errors of the underlying stream become ``StreamDamage``.
    """

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, view: memoryview) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        try:
            if hasattr(self._raw, "readinto"):
                return self._raw.readinto(view) or 0
            data = self._raw.read(len(view))
        except OSError as error:
            raise StreamDamage(f"read error: {error.strerror or error}") from None
        view[: len(data)] = data
        return len(data)


class OpenedSource(NamedTuple):
    source: ByteSource
    compression: str


def open_source(raw: BinaryIO, path: str, chunk_bytes: int, *, mappable: bool) -> OpenedSource:
    """Recognise the compression of ``raw`` by its first bytes and wrap it as a ``ByteSource``.

    ``mappable``: ``raw`` is a file opened by the reader, to be memory-mapped when
    it is a regular, uncompressed file.
    """
    head = _read_head(raw, path, MAGIC_BYTES)
    if not head:
        raise CaptureError(path, 0, "empty file")
    compression = sniff_compression(head)
    if compression == NONE and mappable:
        info = os.fstat(raw.fileno())
        if stat.S_ISREG(info.st_mode):
            return OpenedSource(MappedFile(raw, info.st_size, chunk_bytes), compression)
    reader: BinaryIO | DecompressingReader = io.BufferedReader(_PrefixedReader(head, raw), READ_BYTES)
    if compression != NONE:
        reader = DecompressingReader(reader, compression)
    return OpenedSource(StreamedBytes(reader, path, chunk_bytes), compression)


def _read_head(raw: BinaryIO, path: str, size: int) -> bytes:
    head = b""
    try:
        while len(head) < size:
            data = raw.read(size - len(head))
            if not data:
                break
            head += data
    except OSError as error:
        raise CaptureError(path, len(head), f"read error: {error.strerror or error}") from None
    return head
