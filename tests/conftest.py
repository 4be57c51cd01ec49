"""Shared fixtures: the third-party capture corpus beside the repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "external"
SAMPLES = REPO / "samples"


def corpus_captures() -> list[Path]:
    """Every capture in the shared corpus, sorted; empty when the corpus is absent."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng") or ".pcap" in p.name)


@pytest.fixture
def corpus() -> Path:
    """The corpus directory; the test is skipped when it is not beside the repository."""
    if not CORPUS.is_dir():
        pytest.skip(f"capture corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def tshark() -> str:
    """Path of tshark; the README's test command installs it, so its absence is an error in CI."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: run the README's test command (it installs tshark)")
    return path
