"""Application bytes as real clients and servers put them on the wire: curl, Express, nginx, requests, Redis."""

from __future__ import annotations

import base64
import hashlib
import json
from email.utils import formatdate


def http_date(ts_ns: int) -> str:
    return formatdate(ts_ns / 1e9, usegmt=True)


def curl_get(host: str, path: str = "/", basic_auth: tuple[str, str] | None = None) -> bytes:
    """The request ``curl http://HOST/PATH`` (with ``-u USER:PASSWORD``) sends, curl 7.88 header order."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if basic_auth is not None:
        token = base64.b64encode(":".join(basic_auth).encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    lines += ["User-Agent: curl/7.88.1", "Accept: */*"]
    return _message(lines)


def express_response(body: str, ts_ns: int) -> bytes:
    """An Express 4 ``res.send(html)``: its headers, and its weak ETag (length, then SHA-1 in base64)."""
    data = body.encode()
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()[:27]
    lines = [
        "HTTP/1.1 200 OK",
        "X-Powered-By: Express",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(data)}",
        f'ETag: W/"{len(data):x}-{digest}"',
        f"Date: {http_date(ts_ns)}",
        "Connection: keep-alive",
        "Keep-Alive: timeout=5",
    ]
    return _message(lines, data)


NGINX_WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

NGINX_PAGE_MTIME = 1707927636
"""When the nginx image's index.html was written: its Last-Modified and ETag come from it."""

NGINX_NOT_FOUND = """<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx/1.25.4</center>
</body>
</html>
"""


def nginx_response(status: int, ts_ns: int) -> bytes:
    """nginx 1.25.4 serving its welcome page (200) or its error page (404)."""
    body = (NGINX_WELCOME if status == 200 else NGINX_NOT_FOUND).encode()
    lines = [
        "HTTP/1.1 200 OK" if status == 200 else "HTTP/1.1 404 Not Found",
        "Server: nginx/1.25.4",
        f"Date: {http_date(ts_ns)}",
        "Content-Type: text/html",
        f"Content-Length: {len(body)}",
    ]
    if status == 200:
        lines += [
            f"Last-Modified: {formatdate(NGINX_PAGE_MTIME, usegmt=True)}",
            "Connection: keep-alive",
            f'ETag: "{NGINX_PAGE_MTIME:x}-{len(body):x}"',
            "Accept-Ranges: bytes",
        ]
    else:
        lines.append("Connection: keep-alive")
    return _message(lines, body)


def requests_post(host: str, path: str, document: dict[str, object], bearer: str) -> bytes:
    """A python-requests 2.31 ``post(url, json=document, headers={"Authorization": ...})``."""
    body = json.dumps(document).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: python-requests/2.31.0",
        "Accept-Encoding: gzip, deflate",
        "Accept: */*",
        "Connection: keep-alive",
        f"Authorization: Bearer {bearer}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    return _message(lines, body)


def gunicorn_json(status: str, document: dict[str, object], ts_ns: int) -> bytes:
    """A Flask app behind gunicorn answering with JSON."""
    body = (json.dumps(document) + "\n").encode()
    lines = [
        f"HTTP/1.1 {status}",
        "Server: gunicorn",
        f"Date: {http_date(ts_ns)}",
        "Connection: keep-alive",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    return _message(lines, body)


def resp_command(*arguments: str) -> bytes:
    """A Redis command as clients send it: an array of bulk strings."""
    parts = [f"*{len(arguments)}\r\n".encode()]
    for argument in arguments:
        data = argument.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def resp_integer(value: int) -> bytes:
    return b":%d\r\n" % value


def resp_ok() -> bytes:
    return b"+OK\r\n"


def resp_bulk_array(items: list[str]) -> bytes:
    """A reply of bulk strings (HGETALL's): the same form as a command."""
    return resp_command(*items)


def _message(lines: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
