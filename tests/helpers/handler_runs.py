"""Helpers shared by several test files (moved from test_handler_real.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

from lib.localserver.server import LocalServer
from tests.helpers.paths import REPO

ACTIONS = ("compensation-request", "compensation-offer", "compensation-decision")


TIMEOUT = 120  # seconds: a hang guard for a handler's line or exit, never a speed limit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(server: LocalServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_", "AGENT_MANAGER_"))}
    env.update({"PYTHON_DOTENV_DISABLED": "1", "IBEX_WS_URL": server.ws_url, "IBEX_API_URL": server.api_url,
                "IBEX_USERNAME": "admin", "IBEX_PASSWORD": "admin-secret-pw", **extra})
    return env


class Handler:
    """One handler.py subprocess; its output lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = ""
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, tmp_path: Path, env: dict[str, str], *args: str) -> Handler:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "handler.py"), *args, "--logs-dir", str(tmp_path / "logs"),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    async def wait_line(self, text: str) -> str:
        async def scan() -> str:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if self._reader.done():
                    raise AssertionError(f"{text!r} never came: {self.lines} {await self._stderr()}")
                await asyncio.sleep(0.02)
        return await asyncio.wait_for(scan(), TIMEOUT)

    async def _stderr(self) -> str:
        assert self.proc.stderr is not None
        if not self.stderr:
            self.stderr = (await self.proc.stderr.read()).decode()
        return self.stderr

    async def finish(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), TIMEOUT)
        await self._reader
        await self._stderr()
        return code

    @property
    def out(self) -> str:
        return "\n".join(self.lines)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 2 * TIMEOUT))


def actions_by_seat(recorded: dict[str, Any]) -> dict[int, list[str]]:
    seats: dict[int, list[str]] = {}
    for entry in recorded["log"]:
        if entry["type"] == "message" and entry["content"].get("type") in ACTIONS:
            seats.setdefault(entry["number"], []).append(entry["content"]["type"])
    return seats


FULL_ROUND = {1: ["compensation-request", "compensation-decision"], 2: ["compensation-offer"],
              **{n: ["compensation-request", "compensation-decision"] for n in (3, 4, 5, 6)}}
