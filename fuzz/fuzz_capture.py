"""Coverage-guided fuzzing of whole capture files with atheris.

    python fuzz/seed.py capture SEEDDIR
    python fuzz/fuzz_capture.py -max_total_time=60 SEEDDIR

Each input is read, decoded and scanned as a capture file (``targets.check_capture``):
anything but ``CaptureError`` from the reader is a finding. numba-compiled code
is invisible to atheris, so this script sets ``NUMBA_DISABLE_JIT=1``: the same
kernel source runs as Python and is instrumented. For each finding the input is
also run through the compiled kernel with bounds checks (``replay.compiled_outcome``)
and both outcomes are reported; ``python fuzz/replay.py capture CRASHFILE``
replays a saved finding.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["NUMBA_DISABLE_JIT"] = "1"  # before numba is imported: the kernel runs as instrumented Python
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import atheris

with atheris.instrument_imports(include=["vxlaninspect", "fuzz"]):
    from fuzz.replay import compiled_outcome
    from fuzz.targets import check_capture


def test_one_input(data: bytes) -> None:
    try:
        check_capture(data)
    except Exception as error:
        raise AssertionError(f"{type(error).__name__}: {error}; compiled kernel: {compiled_outcome('capture', data)}") from error


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
