"""A minimal HTTP/1.1 server on asyncio streams: enough for the local IBEX server's JSON REST API.

One request per connection (`Connection: close`), bodies by Content-Length, JSON answers. No dependency beyond
the standard library.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("lib.localserver")

MAX_BODY = 1 << 20
HEADER_TIMEOUT = 10.0


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
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


Handler = Callable[[Request], Awaitable[Response]]


async def serve_http(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Listen on host:port and answer each request with `handler`."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), HEADER_TIMEOUT)
            response = await handler(request) if request else Response(400, b"Bad Request", "text/plain")
            await _write(writer, response)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug in a route must not take the listener down
            log.exception("REST request failed")
            await _write(writer, json_response(500, {"data": {}, "status": True, "message": "Internal error"}))
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = (await reader.readline()).decode("latin-1").strip()
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    method, target, _ = parts
    headers = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        return None
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    query = {key: values[0] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
    return Request(method.upper(), url.path, query, body)


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
