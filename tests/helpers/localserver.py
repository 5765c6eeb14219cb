"""Helpers shared by several test files (moved from test_server.py)."""

from __future__ import annotations

import asyncio
import difflib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lib.games.voting.server import new_recovery_code

FAST = {
    "timer_phase_1": 0.05, "timer_phase_2": 0.05, "timer_phase_3": 2, "timer_phase_4": 2,
    "timer_phase_5": 0.05, "timer_phase_6": 2, "timer_phase_7": 0.05,
}


def codes(n: int = 6) -> list[str]:
    return [new_recovery_code() for _ in range(n)]


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """An HTTP call from a worker thread (the server runs on this loop); returns (status, JSON body or text)."""

    def call() -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, text = answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    return await asyncio.to_thread(call)


def expand(entries: list[str]) -> list[str]:
    out = []
    for entry in entries:
        text, star, count = entry.rpartition(" *")
        out += [text] * int(count) if star and count.isdigit() else [entry]
    return out


def diff(expected: list[str], actual: list[str]) -> str:
    return "\n".join(difflib.unified_diff(expected, actual, "real server", "local server", lineterm="", n=2))


async def agent_manager_listener(calls: list[Any]) -> tuple[asyncio.Server, int]:
    """A stand-in agent manager that records each POST /spawn-agents and answers 200."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(next((line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith(
            "content-length")), "0"))
        body = await reader.readexactly(length)
        calls.append((head.split(" ")[0], head.split(" ")[1], json.loads(body)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return listener, listener.sockets[0].getsockname()[1]
