"""The capture reader against tshark and dpkt, on corpus captures converted by real tools into every variant."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from tests.conftest import corpus_captures
from tests.test_capture_support import (
    ETHERNET_FILE,
    SLL_FILE,
    Record,
    corpus_file,
    dpkt_packets,
    pcapng_blocks,
    read_capture,
    require_tool,
    run_tool,
    swap_pcap_byte_order,
    tshark_frames,
    walk_pcap,
)
from vxlaninspect.capture import open_capture

CORPUS_NAMES = [path.name for path in corpus_captures()]

# variant name -> (format, compression) the reader must report
VARIANTS = {
    "original": ("pcap", "none"),
    "editcap-pcap": ("pcap", "none"),
    "editcap-nsecpcap": ("pcap", "none"),
    "editcap-pcapng": ("pcapng", "none"),
    "big-endian": ("pcap", "none"),
    "big-endian-nsec": ("pcap", "none"),
    "gzip": ("pcap", "gzip"),
    "gzip-pcapng": ("pcapng", "gzip"),
    "gzip-two-members": ("pcap", "gzip"),
    "bzip2": ("pcap", "bz2"),
    "bzip2-pcapng": ("pcapng", "bz2"),
    "xz": ("pcap", "xz"),
    "xz-pcapng": ("pcapng", "xz"),
    "zstd": ("pcap", "zstd"),
    "zstd-pcapng": ("pcapng", "zstd"),
    "zstd-two-frames": ("pcapng", "zstd"),
}


class Variants:
    """Builds, on first use, each variant of a corpus capture with real tools."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._built: dict[tuple[str, str], Path] = {}

    def path(self, name: str, variant: str) -> Path:
        key = (name, variant)
        if key not in self._built:
            self._built[key] = self._build(corpus_file(name), variant)
        return self._built[key]

    def _build(self, original: Path, variant: str) -> Path:
        out = self.directory / f"{original.stem}.{variant}"
        if variant == "original":
            return original
        if variant.startswith("editcap-"):
            run_tool(require_tool("editcap"), "-F", variant.removeprefix("editcap-"), original, out)
        elif variant == "big-endian":
            out.write_bytes(swap_pcap_byte_order(original.read_bytes()))
        elif variant == "big-endian-nsec":
            out.write_bytes(swap_pcap_byte_order(self.path(original.name, "editcap-nsecpcap").read_bytes()))
        elif variant == "gzip-two-members":
            raw = original.read_bytes()
            out.write_bytes(gzip.compress(raw[: len(raw) // 2]) + gzip.compress(raw[len(raw) // 2 :]))
        elif variant == "zstd-two-frames":
            raw = self.path(original.name, "editcap-pcapng").read_bytes()
            compressor = zstandard.ZstdCompressor()
            out.write_bytes(compressor.compress(raw[:100]) + compressor.compress(raw[100:]))
        else:
            tool, _, base = variant.partition("-")
            source = self.path(original.name, "editcap-pcapng" if base == "pcapng" else "original")
            with open(out, "wb") as sink:
                subprocess.run([require_tool(tool), "-c", str(source)], check=True, stdout=sink)
        return out


@pytest.fixture(scope="session")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Variants:
    return Variants(tmp_path_factory.mktemp("capture-variants"))


def expected_records(original: Path) -> list[Record]:
    """The records of a corpus pcap per tshark (timestamps, lengths) and dpkt (link type, bytes)."""
    frames = tshark_frames(original)
    packets = dpkt_packets(original)
    offsets = [record.offset for record in walk_pcap(original.read_bytes()).records]
    assert len(frames) == len(packets) == len(offsets)
    return [
        Record(frame.ts_ns, frame.caplen, frame.wirelen, linktype, data, offset)
        for frame, (linktype, data), offset in zip(frames, packets, offsets, strict=True)
    ]


_EXPECTED: dict[str, list[Record]] = {}


def expected(name: str) -> list[Record]:
    if name not in _EXPECTED:
        _EXPECTED[name] = expected_records(corpus_file(name))
    return _EXPECTED[name]


def without_offsets(records: list[Record]) -> list[tuple[int, int, int, int, bytes]]:
    return [(r.ts_ns, r.caplen, r.wirelen, r.linktype, r.data) for r in records]


@pytest.mark.tshark
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_every_variant_yields_the_records_tshark_reads(variants: Variants, name: str, variant: str) -> None:
    path = variants.path(name, variant)
    reading = read_capture(path)
    assert reading.error is None
    assert without_offsets(reading.records) == without_offsets(expected(name))
    capture = reading.capture
    assert (capture.format, capture.compression) == VARIANTS[variant]
    assert capture.path == str(path)
    assert capture.packets == len(expected(name))
    assert capture.bytes == sum(r.caplen for r in expected(name))
    assert capture.linktypes == {r.linktype for r in expected(name)}
    assert capture.first_ts_ns == min(r.ts_ns for r in expected(name))
    assert capture.last_ts_ns == max(r.ts_ns for r in expected(name))


@pytest.mark.tshark
@pytest.mark.parametrize("variant", ["original", "editcap-nsecpcap", "big-endian", "gzip", "xz-pcapng"])
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_record_offsets_point_at_record_headers(variants: Variants, name: str, variant: str) -> None:
    """In pcap variants the offsets equal the struct walker's; in pcapng each points at a packet block."""
    records = read_capture(variants.path(name, variant)).records
    if variant.endswith("pcapng"):
        raw = variants.path(name, "editcap-pcapng").read_bytes()
        packet_blocks = [block.offset for block in pcapng_blocks(raw) if block.kind == 6]
        assert [r.offset for r in records] == packet_blocks
    else:
        assert [r.offset for r in records] == [r.offset for r in expected(name)]


def test_record_bytes_are_views_of_the_batch_buffer() -> None:
    path = corpus_file(ETHERNET_FILE)
    with open_capture(path) as capture:
        batch = next(capture.batches())
        assert batch.data.dtype.name == "uint8" and batch.data.ndim == 1
        assert not batch.data.flags.writeable
        ends = batch.data_start + batch.caplen
        assert int(batch.data_start.min()) >= 0 and int(ends.max()) <= len(batch.data)
        assert (batch.data_start.dtype.name, batch.caplen.dtype.name, batch.wirelen.dtype.name) == (
            "int64",
            "uint32",
            "uint32",
        )
        assert (batch.ts_ns.dtype.name, batch.linktype.dtype.name, batch.rec_offset.dtype.name) == (
            "int64",
            "uint16",
            "int64",
        )


def test_header_only_pcap_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(corpus_file(ETHERNET_FILE).read_bytes()[:24])
    with open_capture(path) as capture:
        assert list(capture.batches()) == []
        assert (capture.packets, capture.bytes, capture.first_ts_ns, capture.last_ts_ns) == (0, 0, None, None)
        assert capture.linktypes == {1}


@pytest.mark.tshark
def test_header_only_files_agree_with_tshark(tmp_path: Path) -> None:
    """A pcap header alone, and a pcapng section with its interface but no packets."""
    pcap = tmp_path / "empty.pcap"
    pcap.write_bytes(corpus_file(ETHERNET_FILE).read_bytes()[:24])
    pcapng = tmp_path / "empty.pcapng"
    run_tool(require_tool("editcap"), "-F", "pcapng", corpus_file(ETHERNET_FILE), tmp_path / "full.pcapng")
    raw = (tmp_path / "full.pcapng").read_bytes()
    first_packet = next(block.offset for block in pcapng_blocks(raw) if block.kind == 6)
    pcapng.write_bytes(raw[:first_packet])
    for path in (pcap, pcapng):
        assert tshark_frames(path) == []
        reading = read_capture(path)
        assert reading.records == [] and reading.error is None


@pytest.mark.tshark
def test_concatenated_pcapng_files_are_sections(variants: Variants, tmp_path: Path) -> None:
    """``cat a.pcapng b.pcapng`` is one file of two sections, each with its own interface and link type."""
    first = variants.path(ETHERNET_FILE, "editcap-pcapng")
    second = variants.path(SLL_FILE, "editcap-pcapng")
    both = tmp_path / "two-sections.pcapng"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    reading = read_capture(both)
    assert reading.error is None
    assert without_offsets(reading.records) == without_offsets(expected(ETHERNET_FILE) + expected(SLL_FILE))
    assert [(r.ts_ns, r.caplen, r.wirelen) for r in reading.records] == [
        (f.ts_ns, f.caplen, f.wirelen) for f in tshark_frames(both)
    ]
    assert reading.capture.linktypes == {1, 113}


@pytest.mark.tshark
def test_mergecap_interfaces_keep_their_link_types(tmp_path: Path) -> None:
    """``mergecap -F pcapng`` of an Ethernet and an SLL capture: one section, two interfaces."""
    ethernet, sll = corpus_file(ETHERNET_FILE), corpus_file(SLL_FILE)
    merged = tmp_path / "merged.pcapng"
    run_tool(require_tool("mergecap"), "-F", "pcapng", "-w", merged, ethernet, sll)
    frames = tshark_frames(merged)
    interface_linktype = {0: dpkt_packets(ethernet)[0][0], 1: dpkt_packets(sll)[0][0]}
    records = read_capture(merged).records
    assert [(r.ts_ns, r.caplen, r.wirelen, r.linktype) for r in records] == [
        (f.ts_ns, f.caplen, f.wirelen, interface_linktype[f.interface]) for f in frames
    ]
    originals = sorted(without_offsets(expected(ETHERNET_FILE) + expected(SLL_FILE)))
    assert sorted(without_offsets(records)) == originals


def test_snaplen_below_record_lengths_is_tolerated(tmp_path: Path) -> None:
    """Real tools write records longer than the header's snaplen; only MAX_RECORD_BYTES is a limit."""
    raw = bytearray(corpus_file(ETHERNET_FILE).read_bytes())
    raw[16:20] = (60).to_bytes(4, "little")
    path = tmp_path / "small-snaplen.pcap"
    path.write_bytes(bytes(raw))
    original = walk_pcap(bytes(raw))
    assert max(r.caplen for r in original.records) > 60
    reading = read_capture(path)
    assert reading.error is None
    assert [r.data for r in reading.records] == [r.data for r in original.records]


def _digest(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.ts_ns},{r.caplen},{r.wirelen},{r.linktype},".encode())
        digest.update(r.data)
    return digest.hexdigest()


_STDIN_READER = """
import hashlib, sys
from vxlaninspect.capture import open_capture
digest = hashlib.sha256()
with open_capture("-", chunk_bytes=int(sys.argv[1])) as capture:
    for batch in capture.batches():
        for i in range(len(batch)):
            digest.update(f"{batch.ts_ns[i]},{batch.caplen[i]},{batch.wirelen[i]},{batch.linktype[i]},".encode())
            digest.update(batch.record(i))
    print(capture.path, capture.format, capture.compression, capture.packets, digest.hexdigest())
"""


@pytest.mark.tshark
@pytest.mark.parametrize(
    ("variant", "how"),
    [("original", "pipe"), ("editcap-pcapng", "redirect"), ("gzip", "redirect"), ("zstd-pcapng", "pipe")],
)
def test_standard_input(variants: Variants, variant: str, how: str) -> None:
    """``"-"`` reads standard input, whether a redirected file or a pipe, plain or compressed."""
    path = variants.path(ETHERNET_FILE, variant)
    want = f"- {' '.join(VARIANTS[variant])} {len(expected(ETHERNET_FILE))} {_digest(expected(ETHERNET_FILE))}"
    command = [sys.executable, "-c", _STDIN_READER, "1000"]
    if how == "redirect":
        with open(path, "rb") as stdin:
            result = subprocess.run(command, stdin=stdin, capture_output=True, text=True, check=True)
    else:
        cat = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
        result = subprocess.run(command, stdin=cat.stdout, capture_output=True, text=True, check=True)
        cat.wait()
    assert result.stdout.split() == want.split()


@pytest.mark.tshark
@pytest.mark.parametrize("variant", ["original", "editcap-pcapng", "bzip2"])
def test_binary_file_objects(variants: Variants, variant: str) -> None:
    path = variants.path(ETHERNET_FILE, variant)
    want = without_offsets(expected(ETHERNET_FILE))
    assert without_offsets(read_capture(io.BytesIO(path.read_bytes()), chunk_bytes=999).records) == want
    with open(path, "rb") as file:
        reading = read_capture(file)
        assert not file.closed, "a file object given by the caller stays open"
    assert without_offsets(reading.records) == want
    with open(path, "rb") as file, open_capture(file) as capture:
        assert capture.path == str(path)
    assert open_capture(io.BytesIO(path.read_bytes())).path == "<stream>"


def test_batches_iterate_once() -> None:
    with open_capture(corpus_file(ETHERNET_FILE)) as capture:
        list(capture.batches())
        with pytest.raises(RuntimeError):
            list(capture.batches())


@pytest.mark.parametrize("compressed", [False, True])
def test_closing_mid_capture_keeps_the_batches_delivered(tmp_path: Path, compressed: bool) -> None:
    """The next batch is read ahead on a thread: closing waits for it, and what was delivered stays valid."""
    raw = corpus_file(ETHERNET_FILE).read_bytes()
    path = tmp_path / "capture.pcap.gz" if compressed else corpus_file(ETHERNET_FILE)
    if compressed:
        path.write_bytes(gzip.compress(raw))
    capture = open_capture(path, chunk_bytes=256)
    batches = capture.batches()
    first, second = next(batches), next(batches)
    capture.close()
    assert next(batches, None) is None
    for batch in (first, second):
        for start, length, offset in zip(batch.data_start.tolist(), batch.caplen.tolist(), batch.rec_offset.tolist()):
            assert batch.data[start : start + length].tobytes() == raw[offset + 16 : offset + 16 + length]
