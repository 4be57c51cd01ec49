"""The lab's web service: counts each client's visits in Redis and shows the tally.

Every GET opens a connection to Redis and speaks RESP over it: ``AUTH``,
``HINCRBY ip <client> 1``, ``HGETALL ip``. The password comes from the environment
(``REDIS_PASSWORD``), as a container would get it.
"""

from __future__ import annotations

import argparse
import html
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import BinaryIO

MAX_LINE = 4096
MAX_BULK = 1 << 20
MAX_ITEMS = 10_000

Reply = bytes | int | list["Reply"] | None


class RedisError(Exception):
    """Redis answered with an error, or with something that is not RESP."""


def encode_command(*args: str) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(MAX_LINE)
    if not line.endswith(b"\r\n"):
        raise RedisError(f"reply line cut or longer than {MAX_LINE} bytes: {line[:40]!r}")
    return line[:-2]


def _length(text: bytes, limit: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RedisError(f"bad length {text[:20]!r}") from None
    if value > limit:
        raise RedisError(f"length {value} exceeds {limit}")
    return value


def read_reply(stream: BinaryIO) -> Reply:
    """One RESP2 reply; an error reply raises ``RedisError``."""
    line = _line(stream)
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return _length(rest, sys.maxsize)
    if kind == b"$":
        size = _length(rest, MAX_BULK)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2 or not data.endswith(b"\r\n"):
            raise RedisError("bulk string cut short")
        return data[:-2]
    if kind == b"*":
        count = _length(rest, MAX_ITEMS)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise RedisError(f"unknown reply type {line[:20]!r}")


def count_visit(redis: tuple[str, int], password: str, client: str) -> dict[str, int]:
    """Add one visit for ``client`` and return every client's count."""
    with socket.create_connection(redis, timeout=5) as conn, conn.makefile("rb") as stream:
        for command in (("AUTH", password), ("HINCRBY", "ip", client, "1"), ("HGETALL", "ip")):
            conn.sendall(encode_command(*command))
            reply = read_reply(stream)
    if not isinstance(reply, list) or len(reply) % 2:
        raise RedisError(f"HGETALL gave {reply!r}")
    return {bytes(k).decode(): int(v) for k, v in zip(reply[::2], reply[1::2])}


def make_handler(redis: tuple[str, int], password: str) -> type[BaseHTTPRequestHandler]:
    class VisitCounter(BaseHTTPRequestHandler):
        server_version = "lab-web/1.0"

        def do_GET(self) -> None:
            client = self.client_address[0]
            try:
                visits = count_visit(redis, password, client)
            except (OSError, RedisError) as error:
                self._send(502, f"<p>redis: {html.escape(str(error))}</p>")
                return
            rows = "".join(f"<li>{html.escape(ip)}: {n}</li>" for ip, n in sorted(visits.items()))
            self._send(200, f"<h1>Hello {html.escape(client)}</h1><p>visits: {visits[client]}</p><ul>{rows}</ul>")

        def _send(self, status: int, body: str) -> None:
            data = f"<!doctype html><title>web</title>{body}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return VisitCounter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--redis", required=True, metavar="HOST:PORT")
    args = parser.parse_args()
    host, _, port = args.redis.rpartition(":")
    server = HTTPServer(("0.0.0.0", args.port), make_handler((host, int(port)), os.environ["REDIS_PASSWORD"]))
    print(f"web listening on port {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
