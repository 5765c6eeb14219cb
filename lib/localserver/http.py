"""A minimal HTTP/1.1 server on asyncio streams: enough for the local IBEX server's JSON REST API.

One request per connection (`Connection: close`), bodies by Content-Length, JSON answers. No dependency beyond
the standard library. Malformed HTTP gets the 4xx answer Node's parser and Express give the real IBEX server (400,
413 above Express's 100 KB JSON limit, 431 above Node's 16 KB of headers), never a 500 or a logged traceback;
the one difference is that a chunked body (which Node accepts) gets 411 Length Required.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lib.ibex.js import well_formed

log = logging.getLogger("lib.localserver.server")

MAX_BODY = 100 * 1024  # Express's express.json() limit: larger bodies get 413
MAX_HEADER = 16 * 1024  # Node's --max-http-header-size: a longer request line and headers get 431
HEADER_TIMEOUT = 10.0
LINGER_SECONDS = 1.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"[\x21-\x7e]+")
_VERSION = re.compile(r"HTTP/1\.[01]")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError with a readable message if it is not."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body.decode("utf-8"))
        except RecursionError:  # a body nested a few thousand levels deep (Express parses it)
            raise ValueError("nested too deeply") from None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


def json_response(status: int, payload: Any) -> Response:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(status, well_formed(text).encode("utf-8"))


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """The request is not HTTP we answer; `status` is the 4xx to send."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


async def serve_http(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Listen on host:port and answer each request with `handler`."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), HEADER_TIMEOUT)
            except BadRequest as exc:
                await _write(writer, Response(exc.status, b"", "text/plain"))
                await _linger(reader, writer)
                return
            await _write(writer, await handler(request))
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug in a route must not take the listener down
            log.exception("REST request failed")
            await _write(writer, json_response(500, {"data": {}, "status": True, "message": "Internal error"}))
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port, limit=MAX_HEADER + 2)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After answering a request whose rest was not read: say we are done, then read what the client still sends
    (briefly), so that closing does not reset the connection before the client has read the answer."""
    if writer.can_write_eof():
        writer.write_eof()
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(1 << 16):
                pass
    except (TimeoutError, ConnectionError):
        pass


async def _read_line(reader: asyncio.StreamReader, budget: int) -> bytes:
    """One CRLF-terminated line of the head; 431 once the head outgrows Node's limit, 400 for a bare LF."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "header too large") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise
        raise BadRequest(400, "the head ends before its blank line") from None
    if len(line) > budget:
        raise BadRequest(431, "header too large")
    if not line.endswith(b"\r\n"):
        raise BadRequest(400, "a line ends in a bare LF")
    return line[:-2]


async def _read_request(reader: asyncio.StreamReader) -> Request:
    budget = MAX_HEADER
    line = await _read_line(reader, budget)
    budget -= len(line) + 2
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or parts[0] not in METHODS or not _TARGET.fullmatch(parts[1]) or not _VERSION.fullmatch(
            parts[2]):
        raise BadRequest(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, list[str]] = {}
    while True:
        raw = await _read_line(reader, budget)
        budget -= len(raw) + 2
        if not raw:
            break
        name, colon, value = raw.decode("latin-1").partition(":")
        value = value.strip(" \t")
        if not colon or not _TOKEN.fullmatch(name) or any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
            raise BadRequest(400, "malformed header")
        headers.setdefault(name.lower(), []).append(value)
    if "transfer-encoding" in headers:
        raise BadRequest(411, "chunked bodies are not read here; send Content-Length")
    lengths = set(headers.get("content-length", []))
    if len(lengths) > 1 or any(not text.isascii() or not text.isdigit() for text in lengths):
        raise BadRequest(400, "Content-Length must be one whole number")
    length = int(lengths.pop()) if lengths else 0
    if length > MAX_BODY:
        raise BadRequest(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    query = {key: values[0] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
    return Request(method, url.path, query, body)


async def _write(writer: asyncio.StreamWriter, response: Response) -> None:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + response.body)
    try:
        await writer.drain()
    except ConnectionError:
        pass
