"""Write a large synthetic capture fast: template frames tiled with numpy.

The capture is one block of records (about 8,000, drawn once from the traffic
model of ``benchmarks.traffic`` in the requested mix) repeated up to the
requested size. Vectorised writes then give every copy of a record its own
timestamp, overlay flow (inner client address, MAC and port, with the IPv4 and
TCP checksums updated as RFC 1624 says, and the outer UDP source port that Linux
derives from the inner flow) and ESP sequence number. No Python object is made
per packet, and memory stays bounded by one chunk of the output.

    python -m benchmarks.generate OUT.pcap --size 1G --flows 10000 \\
        --mix vxlan=70,esp=20,underlay=10 [--seed S] [--format pcap|pcapng] [--compress gzip|zstd]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard

from .traffic import (
    CLIENT_HOST_FIRST,
    CLIENT_PORT_FIRST,
    CLIENT_PORTS,
    FLOWS_PER_SERVICE,
    SECURITY_ASSOCIATIONS,
    SERVICES,
    Category,
    Template,
    build_templates,
)

MIB = 1 << 20
CHUNK_BYTES = 64 * MIB
BLOCK_RECORDS = 8192
"""Records in the repeated block, rounded up to a multiple of the mix's total weight."""
MAX_MIX_TOTAL = 10_000
START_NS = 1_714_564_800 * 10**9
"""First timestamp: 2024-05-01 12:00:00 UTC."""
LINK_BITS_PER_SECOND = 2e9
"""Mean offered load the timestamps model."""
SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
DEFAULT_MIX = {Category.VXLAN: 70, Category.ESP: 20, Category.UNDERLAY: 10}
MIN_FLOWS = len(SERVICES)
MAX_FLOWS = FLOWS_PER_SERVICE * len(SERVICES)
FLOW_FIELD_NAMES = ("client_ip", "client_mac", "client_port", "ip_checksum", "tcp_checksum", "outer_sport")
FLOW_HASH = 2654435761
"""Knuth's multiplicative hash: spreads flow numbers over outer UDP source ports."""


class Format(Enum):
    PCAP = "pcap"
    PCAPNG = "pcapng"


class Compression(Enum):
    GZIP = "gzip"
    ZSTD = "zstd"


@dataclass(frozen=True)
class GenerationResult:
    """What was written: sizes, counts per category, distinct overlay flows, and how fast."""

    path: str
    format: str
    compression: str | None
    capture_bytes: int  # uncompressed capture bytes
    file_bytes: int  # bytes on disk
    packets: int
    categories: dict[str, int]
    flows: int  # distinct (VNI, bidirectional TCP 5-tuple) of the overlay traffic
    vnis: tuple[int, ...]
    spis: tuple[int, ...]
    seconds: float

    @property
    def megabytes_per_second(self) -> float:
        return self.capture_bytes / 1e6 / self.seconds

    def summary(self) -> str:
        return (
            f"wrote {self.path}: {self.packets:,} packets, {self.capture_bytes / 1e6:,.1f} MB "
            f"({self.file_bytes / 1e6:,.1f} MB on disk), {self.flows:,} overlay flows, in {self.seconds:.2f} s: "
            f"{self.megabytes_per_second:,.0f} MB/s, {self.packets / self.seconds / 1e6:.2f} M packets/s"
        )


def parse_size(text: str) -> int:
    """``"1G"``, ``"500M"``, ``"64KiB"``, ``"1048576"``: binary multiples of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"size {text!r}: expected a number with an optional K, M, G or T suffix")
    exponent = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**exponent)


def parse_mix(text: str) -> dict[Category, int]:
    """``"vxlan=70,esp=20,underlay=10"``: relative weights; a category left out gets 0."""
    mix = dict.fromkeys(Category, 0)
    for item in text.split(","):
        name, _, weight = item.partition("=")
        try:
            category = Category[name.strip().upper()]
        except KeyError:
            raise ValueError(f"mix {text!r}: unknown category {name.strip()!r} (use vxlan, esp, underlay)") from None
        if not weight.strip().isdigit():
            raise ValueError(f"mix {text!r}: weight of {name.strip()} must be a whole number, not {weight!r}")
        mix[category] = int(weight)
    return mix


def file_header(fmt: Format) -> bytes:
    """pcap global header (microseconds), or pcapng section header and an Ethernet interface in nanoseconds."""
    if fmt is Format.PCAP:
        return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
    section = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    interface_len = 20 + len(tsresol)
    interface = struct.pack("<IIHHI", 1, interface_len, LINKTYPE_ETHERNET, 0, SNAPLEN) + tsresol
    return section + interface + struct.pack("<I", interface_len)


def record_bytes(fmt: Format, frame: bytes) -> bytes:
    """One record holding ``frame``, timestamp zero (the tiler writes it)."""
    if fmt is Format.PCAP:
        return struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    padded = frame + bytes(-len(frame) % 4)
    total = 32 + len(padded)
    return struct.pack("<IIIIIII", 6, total, 0, 0, 0, len(frame), len(frame)) + padded + struct.pack("<I", total)


def interleave(weights: list[int], n: int) -> np.ndarray:
    """``n`` category numbers in proportion to ``weights``, spread so every prefix stays in proportion.

    Each step picks the category furthest behind its share, so any prefix holds
    each category's share of the prefix within one record.
    """
    share = np.asarray(weights, dtype=np.float64) / sum(weights)
    counts = np.zeros(len(weights))
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        pick = int(np.argmax(share * (i + 1) - counts))
        counts[pick] += 1
        out[i] = pick
    return out


@dataclass(frozen=True)
class Block:
    """The repeated unit: serialized records of the chosen templates, and where each one is."""

    data: np.ndarray  # uint8: the records, record headers included
    record_start: np.ndarray  # int64: offset of each record
    record_end: np.ndarray  # int64: offset just past each record
    frame_start: np.ndarray  # int64: offset of each record's frame
    template: np.ndarray  # int64: index of each record's template
    ts_offset_ns: np.ndarray  # int64: each record's time after the block's start
    duration_ns: int


def build_block(
    templates: tuple[Template, ...], mix: dict[Category, int], fmt: Format, rng: np.random.Generator
) -> Block:
    """About ``BLOCK_RECORDS`` records: categories interleaved by the mix, templates drawn by weight."""
    total_weight = sum(mix.values())
    n = -(-BLOCK_RECORDS // total_weight) * total_weight
    categories = interleave([mix[c] for c in Category], n)
    chosen = np.empty(n, dtype=np.int64)
    for category in Category:
        where = np.flatnonzero(categories == category)
        candidates = [i for i, t in enumerate(templates) if t.category is category]
        weights = np.array([templates[i].weight for i in candidates])
        chosen[where] = rng.choice(candidates, size=len(where), p=weights / weights.sum())
    records = [record_bytes(fmt, templates[i].frame) for i in chosen]
    sizes = np.array([len(r) for r in records], dtype=np.int64)
    record_end = np.cumsum(sizes)
    frame_lens = np.array([len(templates[i].frame) for i in chosen], dtype=np.int64)
    header_len = 16 if fmt is Format.PCAP else 28
    mean_gap_ns = frame_lens.mean() * 8 / LINK_BITS_PER_SECOND * 1e9
    gaps = np.maximum(1, rng.exponential(mean_gap_ns, n)).astype(np.int64)
    arrival = np.cumsum(gaps)
    return Block(
        data=np.frombuffer(b"".join(records), dtype=np.uint8),
        record_start=record_end - sizes,
        record_end=record_end,
        frame_start=record_end - sizes + header_len,
        template=chosen,
        ts_offset_ns=arrival - arrival[0],
        duration_ns=int(arrival[-1] - arrival[0] + gaps[0]),
    )


def put(buf: np.ndarray, pos: np.ndarray, values: np.ndarray, width: int, big_endian: bool) -> None:
    """Write ``width``-byte integers ``values`` at byte offsets ``pos`` of ``buf``."""
    for k in range(width):
        shift = 8 * (width - 1 - k) if big_endian else 8 * k
        buf[pos + k] = ((values >> shift) & 0xFF).astype(np.uint8)


def checksum_update(checksum: np.ndarray, *changes: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """RFC 1624 eqn. 3: the Internet checksum after 16-bit words change from old to new."""
    total = ~checksum & 0xFFFF
    for old, new in changes:
        total = total + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ranks(key: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same key."""
    rank = np.zeros(len(key), dtype=np.int64)
    for value in np.unique(key):
        where = np.flatnonzero(key == value)
        rank[where] = np.arange(len(where))
    return rank


def template_field(templates: tuple[Template, ...], name: str) -> np.ndarray:
    """Per template: the offset of flow field ``name``, -1 for a template without a flow."""
    return np.array([getattr(t.flow, name) if t.flow else -1 for t in templates], dtype=np.int64)


def template_word(templates: tuple[Template, ...], offsets: np.ndarray) -> np.ndarray:
    """Per template: the 16-bit big-endian word at ``offsets[i]`` of its frame (0 where the offset is -1)."""
    return np.array([int.from_bytes(t.frame[o : o + 2], "big") if o >= 0 else 0 for t, o in zip(templates, offsets)])


class Tiler:
    """Patches a buffer of ``copies`` blocks so that it holds any run of consecutive blocks of the capture.

    Everything that depends only on a record's place in the buffer is worked
    out here, once; ``patch`` then computes the values of one run and writes
    them with fancy indexing.
    """

    def __init__(self, block: Block, templates: tuple[Template, ...], fmt: Format, copies: int, flows: int) -> None:
        self.block = block
        self.fmt = fmt
        n = len(block.template)
        self.copy = np.repeat(np.arange(copies, dtype=np.int64), n)
        self.index = np.tile(np.arange(n, dtype=np.int64), copies)
        template = block.template[self.index]
        shift = self.copy * len(block.data)
        self.record_pos = shift + block.record_start[self.index]
        frame_pos = shift + block.frame_start[self.index]

        # overlay flows, numbered per service
        service = np.array([t.flow.service if t.flow else -1 for t in templates])
        block_service = service[block.template]
        self.flows_per_service = np.array([len(range(s, flows, len(SERVICES))) for s in range(len(SERVICES))])
        self.service_per_block = np.bincount(block_service[block_service >= 0], minlength=len(SERVICES))
        sel = np.flatnonzero(block_service[self.index] >= 0)
        chosen = template[sel]
        self.flow_copy = self.copy[sel]
        self.flow_service = service[chosen]
        self.flow_rank = ranks(block_service)[self.index[sel]]
        offsets = {name: template_field(templates, name) for name in FLOW_FIELD_NAMES}
        self.old_ip_word = template_word(templates, offsets["client_ip"] - 1)[chosen]
        self.old_port = template_word(templates, offsets["client_port"])[chosen]
        self.old_ip_checksum = template_word(templates, offsets["ip_checksum"])[chosen]
        self.old_tcp_checksum = template_word(templates, offsets["tcp_checksum"])[chosen]
        self.flow_pos = {name: frame_pos[sel] + offset[chosen] for name, offset in offsets.items()}

        # ESP sequence numbers, counted per SA
        sa = np.array([t.sa for t in templates])
        block_sa = sa[block.template]
        self.sa_per_block = np.bincount(block_sa[block_sa >= 0], minlength=len(SECURITY_ASSOCIATIONS))
        sel = np.flatnonzero(block_sa[self.index] >= 0)
        self.esp_copy = self.copy[sel]
        self.esp_sa = sa[template[sel]]
        self.esp_rank = ranks(block_sa)[self.index[sel]]
        self.esp_seq_pos = frame_pos[sel] + np.array([t.esp_seq for t in templates])[template[sel]]

    def patch(self, buf: np.ndarray, first_block: int) -> None:
        """Make ``buf`` hold blocks ``first_block``, ``first_block + 1``, ... of the capture."""
        block = self.block
        ts = START_NS + (first_block + self.copy) * block.duration_ns + block.ts_offset_ns[self.index]
        if self.fmt is Format.PCAP:
            put(buf, self.record_pos, ts // 10**9, 4, big_endian=False)
            put(buf, self.record_pos + 4, ts % 10**9 // 1000, 4, big_endian=False)
        else:
            put(buf, self.record_pos + 12, ts >> 32, 4, big_endian=False)
            put(buf, self.record_pos + 16, ts & 0xFFFF_FFFF, 4, big_endian=False)
        self.patch_flows(buf, first_block)
        seq = (first_block + self.esp_copy) * self.sa_per_block[self.esp_sa] + self.esp_rank + 1
        put(buf, self.esp_seq_pos, seq & 0xFFFF_FFFF, 4, big_endian=True)

    def patch_flows(self, buf: np.ndarray, first_block: int) -> None:
        """Client address, MAC and port of each overlay record, the checksums they change, the outer source port."""
        service = self.flow_service
        occurrence = (first_block + self.flow_copy) * self.service_per_block[service] + self.flow_rank
        client = occurrence % self.flows_per_service[service]
        host = CLIENT_HOST_FIRST + client // CLIENT_PORTS
        port = CLIENT_PORT_FIRST + client % CLIENT_PORTS
        flow = client * len(SERVICES) + service
        ip_word = (self.old_ip_word & 0xFF00) | host
        pos = self.flow_pos
        buf[pos["client_ip"]] = host.astype(np.uint8)
        buf[pos["client_mac"]] = host.astype(np.uint8)
        put(buf, pos["client_port"], port, 2, big_endian=True)
        ip_checksum = checksum_update(self.old_ip_checksum, (self.old_ip_word, ip_word))
        put(buf, pos["ip_checksum"], ip_checksum, 2, big_endian=True)
        tcp_checksum = checksum_update(self.old_tcp_checksum, (self.old_ip_word, ip_word), (self.old_port, port))
        put(buf, pos["tcp_checksum"], tcp_checksum, 2, big_endian=True)
        sport = CLIENT_PORT_FIRST + (flow * FLOW_HASH >> 16) % CLIENT_PORTS
        put(buf, pos["outer_sport"], sport, 2, big_endian=True)


@dataclass(frozen=True)
class Written:
    """What a capture of whole blocks and a tail of the next holds."""

    categories: dict[str, int]
    flows: int
    vnis: tuple[int, ...]
    spis: tuple[int, ...]

    @classmethod
    def count(
        cls, templates: tuple[Template, ...], block: Block, full_blocks: int, tail_records: int, flows: int
    ) -> Written:
        def tally(key: list[int], n: int) -> np.ndarray:
            per_record = np.asarray(key, dtype=np.int64)[block.template]
            whole = np.bincount(per_record[per_record >= 0], minlength=n)
            tail = per_record[:tail_records]
            return whole * full_blocks + np.bincount(tail[tail >= 0], minlength=n)

        categories = tally([t.category for t in templates], len(Category))
        services = tally([t.flow.service if t.flow else -1 for t in templates], len(SERVICES))
        flows_per_service = [len(range(s, flows, len(SERVICES))) for s in range(len(SERVICES))]
        used = {templates[i] for i in (block.template if full_blocks else block.template[:tail_records])}
        return cls(
            categories={c.name.lower(): int(categories[c]) for c in Category},
            flows=sum(min(int(seen), total) for seen, total in zip(services, flows_per_service)),
            vnis=tuple(sorted({t.vni for t in used if t.vni >= 0})),
            spis=tuple(sorted({SECURITY_ASSOCIATIONS[t.sa][2] for t in used if t.sa >= 0})),
        )


@contextmanager
def open_output(path: Path, compression: Compression | None) -> Iterator[BinaryIO]:
    """The output file, compressed as asked (gzip level 1, zstd level 3 on every core)."""
    with open(path, "wb") as raw:
        if compression is None:
            yield raw
        elif compression is Compression.GZIP:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as out:
                yield out
        else:
            with zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(raw, closefd=False) as out:
                yield out


def generate(
    path: str | Path,
    *,
    size: int,
    flows: int = 10_000,
    mix: dict[Category, int] = DEFAULT_MIX,
    seed: int = 0,
    fmt: Format = Format.PCAP,
    compression: Compression | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> GenerationResult:
    """Write a capture of at most ``size`` uncompressed bytes (whole records only) to ``path``.

    Overlay flows are numbered 0 to ``flows - 1``, flow ``f`` belonging to
    service ``f % len(SERVICES)``; each service visits its flows in turn, so
    every flow appears once the capture holds as many of that service's
    packets as it has flows. The same arguments write the same bytes.
    """
    if not MIN_FLOWS <= flows <= MAX_FLOWS:
        raise ValueError(f"flows: {flows} is outside {MIN_FLOWS}-{MAX_FLOWS}")
    if min(mix.values()) < 0 or not 0 < sum(mix.values()) <= MAX_MIX_TOTAL:
        raise ValueError(f"mix: weights must be whole numbers >= 0 adding up to 1-{MAX_MIX_TOTAL}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    templates = build_templates(rng)
    block = build_block(templates, mix, fmt, rng)
    header = file_header(fmt)
    block_bytes = len(block.data)
    full_blocks, rest = divmod(size - len(header), block_bytes)
    if full_blocks < 0 or (full_blocks == 0 and rest < block.record_end[0]):
        raise ValueError(f"size: {size} bytes cannot hold a single record")
    tail_records = int(np.searchsorted(block.record_end, rest, side="right"))
    blocks = full_blocks + (1 if tail_records else 0)
    capture_bytes = (
        len(header) + full_blocks * block_bytes + (int(block.record_end[tail_records - 1]) if tail_records else 0)
    )

    copies = max(1, min(blocks, chunk_bytes // block_bytes))
    tiler = Tiler(block, templates, fmt, copies, flows)
    buf = np.tile(block.data, copies)
    path = Path(path)
    with open_output(path, compression) as out:
        out.write(header)
        for first in range(0, blocks, copies):
            tiler.patch(buf, first)
            count = min(copies, blocks - first)
            end = count * block_bytes
            if first + count > full_blocks:
                end -= block_bytes - int(block.record_end[tail_records - 1])
            out.write(memoryview(buf)[:end])

    written = Written.count(templates, block, full_blocks, tail_records, flows)
    return GenerationResult(
        path=str(path),
        format=fmt.value,
        compression=compression.value if compression else None,
        capture_bytes=capture_bytes,
        file_bytes=path.stat().st_size,
        packets=sum(written.categories.values()),
        categories=written.categories,
        flows=written.flows,
        vnis=written.vnis,
        spis=written.spis,
        seconds=time.perf_counter() - started,
    )


def argparse_type(parse):
    """``parse`` as an argparse type: its ValueError becomes a usage error with the same message."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="capture file to write")
    parser.add_argument(
        "--size", type=argparse_type(parse_size), default="1G", help="uncompressed bytes, e.g. 1G, 500M (default 1G)"
    )
    parser.add_argument(
        "--flows", type=int, default=10_000, help=f"distinct overlay flows, {MIN_FLOWS}-{MAX_FLOWS} (default 10000)"
    )
    parser.add_argument(
        "--mix",
        type=argparse_type(parse_mix),
        default="vxlan=70,esp=20,underlay=10",
        help="relative packet counts per category",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same arguments write the same bytes")
    parser.add_argument(
        "--format",
        default="pcap",
        choices=[f.value for f in Format],
        help="pcap (microseconds) or pcapng (nanoseconds)",
    )
    parser.add_argument("--compress", choices=[c.value for c in Compression], help="compress the output")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        result = generate(
            args.output,
            size=args.size,
            flows=args.flows,
            mix=args.mix,
            seed=args.seed,
            fmt=Format(args.format),
            compression=Compression(args.compress) if args.compress else None,
        )
    except (ValueError, OSError) as exc:
        parser.exit(1, f"error: {exc}\n")
    print(result.summary())
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
