"""Write fuzz seeds made from the sample captures and the third-party corpus, at run time.

    python fuzz/seed.py capture|packet OUTDIR [--max-frames N]

``capture`` seeds are whole capture files (each also gzip-compressed, and the
small ones as pcapng); ``packet`` seeds are single frames, one file each, in
the input form of ``fuzz_packet.py`` (a link-type byte, then the frame). The
captures are read from where they live (``samples/`` and
``../shared/corpus/external``); no copy of them is kept in the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = (REPO / "samples", REPO.parent / "shared" / "corpus" / "external")
DEFAULT_MAX_FRAMES = 40
"""Frames taken from each capture for packet seeds."""


def capture_files() -> list[Path]:
    """Every capture under the seed sources, sorted."""
    found = []
    for source in SOURCES:
        if source.is_dir():
            found += [p for p in source.rglob("*") if p.is_file() and ".pcap" in p.name]
    return sorted(found)


def capture_seeds() -> Iterator[bytes]:
    for path in capture_files():
        data = path.read_bytes()
        yield data
        if not data.startswith(b"\x1f\x8b"):
            yield gzip.compress(data, mtime=0)


def packet_seeds(max_frames: int) -> Iterator[bytes]:
    sys.path.insert(0, str(REPO))
    from fuzz.targets import LINKTYPES, packet_seed
    from vxlaninspect.capture import open_capture
    from vxlaninspect.errors import CaptureError

    for path in capture_files():
        taken = 0
        try:
            with open_capture(path) as capture:
                for batch in capture.batches():
                    for i in range(len(batch)):
                        linktype = int(batch.linktype[i])
                        if taken < max_frames and linktype in LINKTYPES:
                            taken += 1
                            yield packet_seed(linktype, batch.record(i))
        except CaptureError:
            continue


def write_seeds(kind: str, out: Path, max_frames: int = DEFAULT_MAX_FRAMES) -> int:
    """Write the seeds of ``kind`` into ``out`` (named by content); how many were written."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = capture_seeds() if kind == "capture" else packet_seeds(max_frames)
    names = set()
    for seed in seeds:
        name = hashlib.sha1(seed).hexdigest()
        if name not in names:
            names.add(name)
            (out / name).write_bytes(seed)
    return len(names)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4) or argv[0] not in ("capture", "packet") or (len(argv) == 4 and argv[2] != "--max-frames"):
        print(__doc__, file=sys.stderr)
        return 2
    count = write_seeds(argv[0], Path(argv[1]), int(argv[3]) if len(argv) == 4 else DEFAULT_MAX_FRAMES)
    print(f"{count} {argv[0]} seeds in {argv[1]}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
