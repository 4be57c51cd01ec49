"""Reused packet tables: a table is written again only once nothing refers to it."""

from __future__ import annotations

import weakref

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
    pooled = weakref.ref(first.base)
    del first
    unrelated = np.empty(1024, dtype=PACKET_DTYPE)  # the allocator may hand out freed memory: not what is tested
    again = tables.take(900)
    assert again.base is pooled() and again.base is not unrelated
    assert again.dtype == PACKET_DTYPE and len(again) == 900


def test_a_free_buffer_too_small_is_replaced_within_the_slots():
    tables = RowBuffers(slots=1)
    small = tables.take(10)
    del small
    large = tables.take(5000)
    pooled = weakref.ref(large.base)
    del large
    assert tables.take(4000).base is pooled()
    held = tables.take(4000)
    assert tables.take(4000).base is not held.base  # the one slot is in use: a fresh table, not pooled


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
    """A consumer that lets each table go gets pooled memory back, and the same rows as a fresh decode."""
    seen: list[weakref.ref] = []
    reused, rows = 0, []
    for table in decode(SAMPLE, chunk_bytes=512):
        reused += any(ref() is table.rows.base for ref in seen)
        seen.append(weakref.ref(table.rows.base))
        rows.append(table.rows.copy())
        del table
    assert len(rows) > DEFAULT_SLOTS and reused >= len(rows) - DEFAULT_SLOTS
    with open_capture(SAMPLE, chunk_bytes=512) as capture:
        for batch, copy in zip(capture.batches(), rows):
            assert np.array_equal(decode_batch(batch), copy)


def read_only(n: int) -> np.ndarray:
    table = np.empty(n, dtype=PACKET_DTYPE)
    table.setflags(write=False)
    return table


@pytest.mark.parametrize(
    "make",
    [
        lambda n: np.empty(n + 1, dtype=PACKET_DTYPE),
        lambda n: np.empty(n, dtype=np.uint8),
        lambda n: np.empty(2 * n, dtype=PACKET_DTYPE)[::2],
        read_only,
    ],
    ids=["length", "dtype", "strided", "read-only"],
)
def test_out_must_fit_the_batch(make):
    with open_capture(SAMPLE) as capture:
        batch = next(iter(capture.batches()))
        with pytest.raises(ValueError, match="contiguous, writable rows"):
            decode_batch(batch, out=make(len(batch)))
