"""The local server under one seat's order flood (issue #20): other sockets keep being served.

Two costs besides the order book (tests/games/market/test_book_index.py) made a flood stall every game: each broadcast
was
encoded once per seat, and a socket's buffered frames were handled back to back without letting the event loop
serve anyone else. Both are counted here, never timed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lib.ibex import js
from lib.localserver.server import LocalServer
from tests.games.market.test_server import SESSIONS, close_all, run, seated
from tests.helpers.players import is_event


def test_a_broadcast_order_is_encoded_once_for_all_twelve_seats(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with LocalServer(sessions=SESSIONS) as server:
            game_id, clients = await seated(server, "futarchy", stop_at=6)
            encoded: list[Any] = []
            stringify = js.stringify_value  # every encoding of a frame ends there (js.stringify too)

            def counting(value: Any) -> str:
                encoded.append(value)
                return stringify(value)

            monkeypatch.setattr(js, "stringify_value", counting)
            starts = [len(c.frames) for c in clients]
            await clients[6].send({"gameId": game_id, "type": "post-order", "order": {
                "type": "bid", "price": 10, "quantity": 1, "condition": 0, "now": False}})
            got = [(await c.wait_for(is_event("add-order"), start=s))[1] for c, s in zip(clients, starts, strict=True)]
            monkeypatch.setattr(js, "stringify_value", stringify)
            assert len({json.dumps(f, sort_keys=True) for f in got}) == 1  # every seat, the same frame
            assert got[0]["data"]["order"]["sender"] == 7
            assert len([v for v in encoded if v.get("eventType") == "add-order"]) == 1
            await close_all(clients)

    run(scenario())


class BufferedSocket:
    """A server-side socket whose frames are all buffered already: iterating it never suspends, as websockets'
    `async for` does while its queue holds frames (a flood arrives faster than it is handled)."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames
        self.handed = 0
        self.sent: list[str] = []
        self.transport = None

    def __aiter__(self) -> Any:
        return self._frames()

    async def _frames(self) -> Any:
        for frame in self.frames:
            self.handed += 1
            yield frame

    async def send(self, text: str) -> None:
        self.sent.append(text)


def test_a_sockets_buffered_frames_let_other_sockets_in_between() -> None:
    async def scenario() -> None:
        server = LocalServer(sessions=SESSIONS)
        flood = BufferedSocket([json.dumps({"gameId": 999, "type": "post-order"})] * 500)
        seen_at: list[int] = []

        async def other_socket() -> None:
            await asyncio.sleep(0)
            seen_at.append(flood.handed)

        other = asyncio.create_task(other_socket())
        await server._ws_handler(flood)  # type: ignore[arg-type]
        await other
        assert seen_at[0] < 5, f"another socket waited for {seen_at[0]} of 500 buffered frames"

    run(scenario())
