"""Wireshark's view of a capture: ``tshark -T fields`` run as a subprocess, streamed frame by frame.

tshark prints one line per frame, one tab-separated column per field, and every
occurrence of a field (outer and inner ``ip.src``) comma-separated in layer
order. ``frame.protocols`` names the layers in order, so a reader can tell
which occurrence belongs to which layer (``verify_views``).

tshark is told what the decoder's configuration says: each configured tunnel
port is decoded as its tunnel (``-d udp.port==P,...``), and each port tshark
knows as a tunnel by default but the configuration does not, as plain data. It
decodes each packet alone, as the decoder does: no TCP or IP reassembly.
tshark reads plain, gzip and zstd captures itself; xz and bz2 captures are
decompressed here and piped to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import BinaryIO

from .compression import BZ2, MAGIC_BYTES, XZ, DecompressingReader, StreamDamage, sniff_compression
from .config import DecodeConfig

FIELDS = (
    "frame.number",
    "frame.protocols",
    "frame.len",
    "frame.cap_len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.hopopts.nxt",
    "ipv6.routing.nxt",
    "ipv6.fraghdr.nxt",
    "ipv6.dstopts.nxt",
    "ah.next_header",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "vxlan.vni",
    "vxlan.flags",
    "geneve.vni",
    "esp.spi",
    "esp.sequence",
    "udpencap.nat_keepalive",
    "http.request.method",
    "http.response.code",
    "tls.record.content_type",
    "resp.array",
    "resp.bulk_string",
    "_ws.short",
    "_ws.expert.severity",
    "_ws.unreassembled",
    "ssh.protocol",  # last: a string field, so stray separators in it cannot shift other columns
)
"""The fields asked of tshark, in column order."""

OPTIONS = (
    "-o", "tcp.desegment_tcp_streams:FALSE",
    "-o", "ip.defragment:FALSE",
    "-o", "ipv6.defragment:FALSE",
    "-o", "tcp.analyze_sequence_numbers:FALSE",
)  # fmt: skip
"""Each packet dissected alone, as the decoder sees it (a segment taken for a retransmission would not reach
the application dissectors)."""

TSHARK_TUNNEL_PORTS = {4789: "vxlan", 4790: "vxlan_gpe", 6081: "geneve", 4500: "udpencap"}
"""UDP ports tshark 4.0 decodes as a tunnel without being told."""

PI_WARN = 0x00600000
PI_ERROR = 0x00800000
"""Wireshark's expert-info severity of an error."""

_DISSECTOR_OF = (
    ("vxlan_ports", "vxlan"),
    ("geneve_ports", "geneve"),
    ("gpe_ports", "vxlan_gpe"),
    ("esp_udp_ports", "udpencap"),
)
_PIPED = (XZ, BZ2)
"""Compressions tshark 4.0 cannot read itself."""
_PIPE_BYTES = 1 << 20
_STDERR_KEPT = 4096
_ROOT_WARNING = "Running as user"


class TsharkError(Exception):
    """tshark could not be run, or failed before it printed a frame."""


class TsharkNotFound(TsharkError):
    """The tshark program is not installed (or not where it was said to be)."""

    def __init__(self, tshark: str) -> None:
        super().__init__(
            f"tshark not found ({tshark!r}): install Wireshark's command-line tools "
            "(Debian/Ubuntu: apt-get install tshark) or give the path of tshark"
        )


class TsharkFailed(TsharkError):
    """tshark ran but produced no usable output; ``message`` is what it said."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"tshark failed on {path}: {message}")


@dataclass(frozen=True)
class TsharkFrame:
    """One frame as tshark printed it: the layer names, and every field's values in layer order."""

    number: int
    protocols: tuple[str, ...]
    values: MappingProxyType[str, tuple[str, ...]]

    def get(self, field: str) -> tuple[str, ...]:
        return self.values.get(field, ())

    @property
    def has_error(self) -> bool:
        """Whether tshark reported an error (a malformed or impossible field) on the frame."""
        return self._worst_severity() >= PI_ERROR

    @property
    def has_warning(self) -> bool:
        """Whether tshark reported a warning or worse on the frame."""
        return self._worst_severity() >= PI_WARN

    def _worst_severity(self) -> int:
        return max((int(severity, 0) for severity in self.get("_ws.expert.severity")), default=0)


def decode_as_options(config: DecodeConfig) -> tuple[str, ...]:
    """``-d`` options that make tshark take the same UDP ports as tunnels as ``config`` does.

    A port listed under two tunnel types goes to the first in ``config``'s order, as in the decoder.
    """
    chosen: dict[int, str] = {}
    for attribute, dissector in _DISSECTOR_OF:
        for port in getattr(config, attribute):
            chosen.setdefault(port, dissector)
    for port in TSHARK_TUNNEL_PORTS:
        chosen.setdefault(port, "data")
    options: list[str] = []
    for port, dissector in sorted(chosen.items()):
        if TSHARK_TUNNEL_PORTS.get(port) != dissector:
            options += ["-d", f"udp.port=={port},{dissector}"]
    return tuple(options)


def tshark_command(
    tshark: str, source: str, config: DecodeConfig, *, max_packets: int | None = None
) -> list[str]:
    """The tshark command line that prints ``FIELDS`` for each frame of ``source`` (``"-"``: standard input)."""
    command = [tshark, "-n", "-r", source, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
    command += ["-E", "aggregator=,", "-E", "quote=n", *OPTIONS, *decode_as_options(config)]
    if max_packets is not None:
        command += ["-c", str(max_packets)]
    for field in FIELDS:
        command += ["-e", field]
    return command


def parse_line(line: str) -> TsharkFrame:
    """A ``TsharkFrame`` from one line of ``tshark -T fields`` output with the ``FIELDS`` columns."""
    columns = line.rstrip("\r\n").split("\t", len(FIELDS) - 1)
    if len(columns) != len(FIELDS) or not columns[0].isdigit():
        raise ValueError(f"not a line of {len(FIELDS)} tshark fields: {line[:200]!r}")
    values = {field: tuple(column.split(",")) if column else () for field, column in zip(FIELDS, columns)}
    return TsharkFrame(int(columns[0]), tuple(columns[1].split(":")) if columns[1] else (), MappingProxyType(values))


class TsharkRun:
    """tshark running on a capture; iterate for its frames, then read ``error``.

    Use as a context manager: leaving it stops tshark if it is still running.
    """

    def __init__(
        self, path: str | os.PathLike[str], config: DecodeConfig, tshark: str = "tshark", *, max_packets: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        program = shutil.which(tshark)
        if program is None:
            raise TsharkNotFound(tshark)
        self.error: str | None = None
        """What tshark said when it stopped with an error status (a capture cut short, ...)."""
        self._stderr = tempfile.TemporaryFile()
        piped = _piped_compression(self.path)
        command = tshark_command(program, "-" if piped else self.path, config, max_packets=max_packets)
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as error:
            self._stderr.close()
            raise TsharkFailed(self.path, f"cannot run {program}: {error.strerror or error}") from None
        self._feeder: threading.Thread | None = None
        if piped:
            self._feeder = threading.Thread(target=self._feed, args=(piped,), daemon=True)
            self._feeder.start()

    def __iter__(self) -> Iterator[TsharkFrame]:
        assert self._process.stdout is not None
        printed = 0
        for line in self._process.stdout:
            if line.strip():
                printed += 1
                yield parse_line(line)
        status = self._process.wait()
        if self._feeder is not None:
            self._feeder.join()
        if status != 0:
            message = self._messages()
            if printed == 0:
                raise TsharkFailed(self.path, message or f"exit status {status}")
            self.error = message or f"exit status {status}"

    def _messages(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read(_STDERR_KEPT).decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if line and not line.startswith(_ROOT_WARNING))

    def _feed(self, compression: str) -> None:
        """Write the decompressed capture to tshark's standard input."""
        assert self._process.stdin is not None
        pipe: BinaryIO = self._process.stdin.buffer
        try:
            with open(self.path, "rb") as raw:
                reader = DecompressingReader(raw, compression)
                buffer = bytearray(_PIPE_BYTES)
                with memoryview(buffer) as view:
                    while count := reader.readinto(view):
                        pipe.write(view[:count])
                reader.close()
        except (OSError, StreamDamage):
            pass  # tshark reports the capture cut short; the decoder reports the damage itself
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        if self._feeder is not None:
            self._feeder.join()
        self._stderr.close()

    def __enter__(self) -> TsharkRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _piped_compression(path: str) -> str | None:
    """The compression of ``path`` when tshark cannot read it itself, else None."""
    try:
        with open(path, "rb") as file:
            compression = sniff_compression(file.read(MAGIC_BYTES))
    except OSError:
        return None  # tshark names the problem itself
    return compression if compression in _PIPED else None
