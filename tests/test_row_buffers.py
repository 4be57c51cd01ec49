"""Reused packet tables: a table is written again only once nothing refers to it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SAMPLES
from vxlaninspect.capture import open_capture
from vxlaninspect.decoding import decode
from vxlaninspect.kernel import decode_batch
from vxlaninspect.row_buffers import DEFAULT_SLOTS, RowBuffers
from vxlaninspect.schema import PACKET_DTYPE

SAMPLE = SAMPLES / "swarm-plaintext" / "capture.pcap"


def test_a_table_let_go_is_handed_out_again():
    tables = RowBuffers()
    first = tables.take(1000)
    memory = first.__array_interface__["data"][0]
    del first
    again = tables.take(900)
    assert again.__array_interface__["data"][0] == memory
    assert again.dtype == PACKET_DTYPE and len(again) == 900


def test_a_table_still_held_is_never_handed_out():
    tables = RowBuffers()
    kept = [tables.take(100) for _ in range(DEFAULT_SLOTS + 2)]
    starts = {table.__array_interface__["data"][0] for table in kept}
    assert len(starts) == len(kept)


def test_a_view_of_a_table_holds_it_too():
    tables = RowBuffers()
    table = tables.take(100)
    vnis = table["vni"]  # a field view: it refers to the pooled buffer
    del table
    others = [tables.take(100) for _ in range(DEFAULT_SLOTS)]
    assert not any(np.shares_memory(vnis, other) for other in others)


def test_tables_kept_from_decode_are_never_overwritten():
    """Every table of a capture, all kept, equals the table of the same batch decoded on its own."""
    kept = [table.rows for table in decode(SAMPLE, chunk_bytes=512)]
    assert len(kept) > DEFAULT_SLOTS
    with open_capture(SAMPLE, chunk_bytes=512) as capture:
        alone = [decode_batch(batch) for batch in capture.batches()]
    assert len(kept) == len(alone)
    for table, expected in zip(kept, alone):
        assert np.array_equal(table, expected)


def test_decode_writes_into_released_tables():
    """A consumer that lets each table go gets the same memory back, and the same rows as a fresh decode."""
    seen, rows = set(), []
    for table in decode(SAMPLE, chunk_bytes=512):
        seen.add(table.rows.__array_interface__["data"][0])
        rows.append(table.rows.copy())
        del table
    assert len(seen) <= DEFAULT_SLOTS < len(rows)
    with open_capture(SAMPLE, chunk_bytes=512) as capture:
        for batch, copy in zip(capture.batches(), rows):
            assert np.array_equal(decode_batch(batch), copy)


def test_out_must_fit_the_batch():
    with open_capture(SAMPLE) as capture:
        batch = next(iter(capture.batches()))
        with pytest.raises(ValueError, match="contiguous, writable rows"):
            decode_batch(batch, out=np.empty(len(batch) + 1, dtype=PACKET_DTYPE))
