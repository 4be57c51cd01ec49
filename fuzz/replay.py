"""Run fuzz inputs through a target once, with the compiled kernel or with the kernel source as Python.

    python fuzz/replay.py capture|packet [--compiled] INPUT...

``--compiled`` runs numba's compiled code with ``NUMBA_BOUNDSCHECK=1`` (an
out-of-bounds read raises ``IndexError``) and a private ``NUMBA_CACHE_DIR``;
without it the same source runs as Python (``NUMBA_DISABLE_JIT=1``), as the
fuzzers run it. Prints one line per input, ``ok`` or the error, and exits 1 if
any input failed. ``compiled_outcome`` is the same check from a fuzzer: it
runs in a child process, so the fuzzer's settings do not leak into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent


def compiled_outcome(target: str, data: bytes) -> str:
    """What the compiled kernel (bounds-checked) makes of a fuzz input: ``ok`` or the error."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "input"
        path.write_bytes(data)
        environment = {key: value for key, value in os.environ.items() if key != "NUMBA_DISABLE_JIT"}
        result = subprocess.run(
            [sys.executable, str(FUZZ / "replay.py"), target, "--compiled", str(path)],
            capture_output=True, text=True, timeout=900, env=environment, check=False,
        )  # fmt: skip
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1].partition(": ")[2] if lines else f"exit status {result.returncode}"


def configure_numba(compiled: bool, scratch: str) -> None:
    """Set numba's switches before it is imported: compiled and bounds-checked in a private cache, or no JIT."""
    if compiled:
        os.environ.pop("NUMBA_DISABLE_JIT", None)
        os.environ["NUMBA_BOUNDSCHECK"] = "1"
        os.environ.setdefault("NUMBA_CACHE_DIR", scratch)
    else:
        os.environ["NUMBA_DISABLE_JIT"] = "1"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("capture", "packet"):
        print(__doc__, file=sys.stderr)
        return 2
    target, arguments = argv[0], argv[1:]
    compiled = "--compiled" in arguments
    inputs = [Path(a) for a in arguments if a != "--compiled"]
    with tempfile.TemporaryDirectory() as scratch:
        configure_numba(compiled, scratch)
        sys.path.insert(0, str(REPO))
        from fuzz.targets import check_capture, check_packet

        check = check_capture if target == "capture" else check_packet
        failed = 0
        for path in inputs:
            try:
                check(path.read_bytes())
                print(f"{path}: ok")
            except Exception as error:  # noqa: BLE001 - every failure is reported, and the next input still runs
                failed += 1
                print(f"{path}: {type(error).__name__}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
