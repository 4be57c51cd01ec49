"""The exception the public API raises for a capture it cannot open or read to the end."""

from __future__ import annotations

import os


class CaptureError(Exception):
    """A capture that cannot be read further: which file, at which byte, and why.

    Everything decoded before ``offset`` has already been delivered to the caller.
    ``offset`` counts bytes of the decompressed capture stream.
    """

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: at byte {offset}: {reason}")
