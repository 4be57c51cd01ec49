"""Coverage-guided fuzzing of single packets with atheris: the kernel against the reference decoder.

    python fuzz/seed.py packet SEEDDIR
    python fuzz/fuzz_packet.py -max_total_time=60 SEEDDIR

An input is a link-type byte and one frame (``targets.packet_input``); the
kernel and the dpkt reference must decode it to the same row and neither may
raise (``targets.check_packet``). numba-compiled code is invisible to atheris,
so this script sets ``NUMBA_DISABLE_JIT=1``: the kernel's source runs as Python
and is instrumented. For each finding the input is also run through the
compiled kernel with bounds checks (``replay.compiled_outcome``) and both
outcomes are reported; ``python fuzz/replay.py packet CRASHFILE`` replays it.
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
    from fuzz.targets import check_packet


def test_one_input(data: bytes) -> None:
    try:
        check_packet(data)
    except Exception as error:
        raise AssertionError(f"{type(error).__name__}: {error}; compiled kernel: {compiled_outcome('packet', data)}") from error


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
