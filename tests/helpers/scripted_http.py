"""A loopback HTTP listener that answers from a script and records every request, for client tests.

Each request takes the next scripted answer (the last one repeats): `(status, body)` with a JSON-able body or raw
bytes, or `HANG` to keep the connection open without answering (a server that stopped responding).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lib.localserver.http import Request, Response, serve_http

HANG = "hang"


class ScriptedHttp:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedHttp:
        self._server = await serve_http(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _answer(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == HANG:
            await asyncio.sleep(3600)
        status, body = answer
        if isinstance(body, bytes):
            return Response(status, body, "text/html; charset=utf-8")
        return Response(status, json.dumps(body).encode())
