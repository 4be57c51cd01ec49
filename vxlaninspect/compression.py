"""Compressed captures: recognised by their first bytes, read back decompressed in bounded pieces.

Every decompressor here produces at most as many bytes as the caller asks for
per read, so a decompression bomb costs time, never memory.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import BinaryIO

import zstandard

NONE = "none"
GZIP = "gzip"
BZ2 = "bz2"
XZ = "xz"
ZSTD = "zstd"

_MAGIC = (
    (GZIP, b"\x1f\x8b"),
    (BZ2, b"BZh"),
    (XZ, b"\xfd7zXZ\x00"),
    (ZSTD, b"\x28\xb5\x2f\xfd"),
)
MAGIC_BYTES = max(len(magic) for _, magic in _MAGIC)
"""How many leading bytes ``sniff_compression`` needs to decide."""


_STDLIB_READERS = {
    GZIP: lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    BZ2: bz2.BZ2File,
    XZ: lzma.LZMAFile,
}


class StreamDamage(Exception):
    """The byte stream cannot be read further; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sniff_compression(head: bytes) -> str:
    """The compression announced by a stream's first bytes: one of gzip, bz2, xz, zstd, none."""
    for name, magic in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 4 and int.from_bytes(head[:4], "little") & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_MAGIC:
        return ZSTD
    return NONE


class DecompressingReader:
    """The decompressed bytes of a gzip (multi-member), bz2, xz or zstd (multi-frame) stream.

    ``readinto`` raises ``StreamDamage`` for a truncated or corrupt stream,
    after returning every byte that could be decompressed before it.
    """

    def __init__(self, raw: BinaryIO, compression: str) -> None:
        self.compression = compression
        self._frames: _ZstdFrames | None = None
        if compression == ZSTD:
            self._frames = _ZstdFrames(raw)
            self._stream: BinaryIO = zstandard.ZstdDecompressor().stream_reader(
                self._frames, read_across_frames=True, closefd=False
            )
        else:
            self._stream = _STDLIB_READERS[compression](raw)

    def readinto(self, view: memoryview) -> int:
        """Fill up to ``len(view)`` bytes; 0 at the end of a complete stream."""
        try:  # one read of the underlying stream: bytes already produced are returned before an error
            count = self._stream.readinto1(view)
        except StreamDamage:
            raise
        except EOFError:
            raise StreamDamage(f"truncated {self.compression} stream") from None
        except (OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as error:
            raise StreamDamage(f"corrupt {self.compression} stream ({error})") from None
        if not count and self._frames is not None and not self._frames.complete:
            raise StreamDamage(f"truncated {self.compression} stream")
        return count

    def close(self) -> None:
        self._stream.close()


_ZSTD_FRAME_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50
_ZSTD_FCS_BYTES = (0, 2, 4, 8)
_ZSTD_DICT_ID_BYTES = (0, 1, 2, 4)
_ZSTD_RLE_BLOCK = 1


class _ZstdFrames:
    """Passes compressed zstd bytes through, following the frame and block structure.

    The zstandard stream reader ends silently on input cut inside a frame; this
    tracker knows whether the input ended on a frame boundary (``complete``).
    Unknown frame magic stops the tracking: the decompressor reports that itself.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._header = bytearray()
        self._header_bytes = 4  # the header being collected is complete at this length
        self._skip = 0  # payload bytes to pass over before the next header
        self._in_frame = False
        self._checksum_bytes = 0
        self._lost = False

    @property
    def complete(self) -> bool:
        return self._lost or (not self._in_frame and not self._header and not self._skip)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data and not self._lost:
            self._follow(memoryview(data))
        return data

    def _follow(self, data: memoryview) -> None:
        at = 0
        while at < len(data) and not self._lost:
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                continue
            step = min(self._header_bytes - len(self._header), len(data) - at)
            self._header += data[at : at + step]
            at += step
            if len(self._header) == self._header_bytes:
                self._parse_header()

    def _parse_header(self) -> None:
        header = self._header
        if self._in_frame:
            self._parse_block_header(int.from_bytes(header[:3], "little"))
            return
        magic = int.from_bytes(header[:4], "little")
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_MAGIC:
            if len(header) < 8:
                self._header_bytes = 8
                return
            self._start_header(skip=int.from_bytes(header[4:8], "little"), in_frame=False)
        elif magic != _ZSTD_FRAME_MAGIC:
            self._lost = True
        elif len(header) == 4:
            self._header_bytes = 5
        elif len(header) == 5:
            descriptor = header[4]
            single_segment = descriptor & 0x20
            fcs_bytes = _ZSTD_FCS_BYTES[descriptor >> 6] or (1 if single_segment else 0)
            self._checksum_bytes = 4 if descriptor & 0x04 else 0
            self._header_bytes = 5 + (0 if single_segment else 1) + _ZSTD_DICT_ID_BYTES[descriptor & 3] + fcs_bytes
            if self._header_bytes == 5:
                self._start_header(skip=0, in_frame=True)
        else:
            self._start_header(skip=0, in_frame=True)

    def _parse_block_header(self, block: int) -> None:
        last, kind, size = block & 1, (block >> 1) & 3, block >> 3
        payload = 1 if kind == _ZSTD_RLE_BLOCK else size
        if last:
            self._start_header(skip=payload + self._checksum_bytes, in_frame=False)
        else:
            self._start_header(skip=payload, in_frame=True)

    def _start_header(self, *, skip: int, in_frame: bool) -> None:
        self._header = bytearray()
        self._header_bytes = 3 if in_frame else 4
        self._skip = skip
        self._in_frame = in_frame
