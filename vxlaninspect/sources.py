"""Turn what a user names (files, directories, globs, "-") into capture paths."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import CaptureError

STDIN = "-"
GLOB_CHARS = frozenset("*?[")


def _directory_files(directory: Path, recursive: bool) -> list[str]:
    walk = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(str(p) for p in walk if p.is_file() and not p.name.startswith("."))


def expand_sources(names: Iterable[str], *, recursive: bool = False) -> list[str]:
    """Every capture path that ``names`` stand for, in order, each once.

    A directory stands for the files in it (and below it with ``recursive``), a
    pattern with ``*``, ``?`` or ``[`` for the files it matches, ``-`` for
    standard input. A name that stands for nothing raises ``CaptureError``.
    Whether a file is a capture is decided when it is read, by its first bytes.
    """
    paths: list[str] = []
    for name in names:
        if name == STDIN:
            found = [STDIN]
        elif os.path.isdir(name):
            found = _directory_files(Path(name), recursive)
        elif GLOB_CHARS & set(name) and not os.path.exists(name):
            found = sorted(p for p in glob.glob(name, recursive=recursive) if os.path.isfile(p))
        elif os.path.exists(name):
            found = [name]
        else:
            raise CaptureError(name, 0, "no such file or directory")
        if not found:
            raise CaptureError(name, 0, "matches no file")
        paths.extend(found)
    return list(dict.fromkeys(paths))
