"""A SQLite store of per-file scan results, so unchanged captures are not scanned again.

A stored result is reused when the file's path, size and modification time are
unchanged, or, failing that, when its content hash matches a stored one (a
copied, moved or touched file). Results are kept per options fingerprint: the
same capture scanned with other ports or metadata is another result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

HASH_BLOCK = 4 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    scanned_at REAL NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (path, fingerprint)
);
CREATE INDEX IF NOT EXISTS scans_by_content ON scans (sha256, fingerprint);
"""


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read in bounded blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileState:
    """What identifies a file's content without reading it."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> FileState:
        st = os.stat(path)
        return cls(os.path.abspath(path), st.st_size, st.st_mtime_ns)


class ScanCache:
    """Per-file report dictionaries in a SQLite file, keyed by an options fingerprint."""

    def __init__(self, db_path: str | os.PathLike[str], fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self._db = sqlite3.connect(os.fspath(db_path))
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScanCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, state: FileState) -> dict[str, Any] | None:
        """The stored report of an unchanged file, by path and stat; None when unknown."""
        row = self._db.execute(
            "SELECT report FROM scans WHERE path = ? AND fingerprint = ? AND size = ? AND mtime_ns = ?",
            (state.path, self.fingerprint, state.size, state.mtime_ns),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def lookup_content(self, sha256: str) -> dict[str, Any] | None:
        """The stored report of any file with these bytes; None when unknown."""
        row = self._db.execute(
            "SELECT report FROM scans WHERE sha256 = ? AND fingerprint = ? LIMIT 1",
            (sha256, self.fingerprint),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def store(self, state: FileState, sha256: str, report: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO scans VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    state.path,
                    self.fingerprint,
                    state.size,
                    state.mtime_ns,
                    sha256,
                    time.time(),
                    json.dumps(report, separators=(",", ":")),
                ),
            )
