"""Scripted WebSocket players for tests: real sockets against a local (or any) IBEX server.

`Client` is one WebSocket with a record of every frame received and sent. `ScriptedPlayer` plays a whole game
with a `Behaviour` (what to request, offer, vote and say), answering the server's phase transitions the way a
careful agent does: it re-sends `player-is-ready` until the server acknowledges it (the round-start race of
docs/protocol.md section 4). `play_game` joins six players in seat order and plays to game-over.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEVELOPER_SEAT = 2
OWNER_SEATS = (1, 3, 4, 5, 6)


class Client:
    """One WebSocket connection that records what it receives (`frames`) and sends (`sent`)."""

    def __init__(self, url: str, arrived: asyncio.Condition | None = None) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.frames: list[dict[str, Any]] = []
        self.arrival: list[int] = []  # time.monotonic_ns() of each frame, to merge several sockets in order
        self.sent: list[Any] = []
        self._arrived = arrived or asyncio.Condition()  # shared by clients that wait on each other
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> Client:
        self.ws = await connect(self.url, open_timeout=30, ping_interval=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for text in self.ws:
                frame = json.loads(text)
                async with self._arrived:
                    self.frames.append(frame)
                    self.arrival.append(time.monotonic_ns())
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, message: Any) -> None:
        """Send a frame: a dict or list as JSON, a str as is (for malformed JSON)."""
        assert self.ws is not None
        self.sent.append(message)
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], start: int = 0, timeout: float = 10.0
    ) -> tuple[int, dict[str, Any]]:
        """The first frame from index `start` on that satisfies `predicate`, and its index."""

        async def scan() -> tuple[int, dict[str, Any]]:
            index = start
            async with self._arrived:
                while True:
                    while index < len(self.frames):
                        if predicate(self.frames[index]):
                            return index, self.frames[index]
                        index += 1
                    if self.closed.is_set():
                        raise ConnectionError(f"socket closed before the awaited frame (got {len(self.frames)})")
                    await self._arrived.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def wait_count(self, count: int, timeout: float = 10.0) -> None:
        """Until at least `count` frames have arrived."""

        async def scan() -> None:
            async with self._arrived:
                while len(self.frames) < count:
                    if self.closed.is_set():
                        raise ConnectionError(f"socket closed after {len(self.frames)} of {count} frames")
                    await self._arrived.wait()

        await asyncio.wait_for(scan(), timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Received events (optionally of one eventType)."""
        return [f for f in self.frames if f.get("type") == "event" and (kind is None or f.get("eventType") == kind)]


def is_event(kind: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    def check(frame: dict[str, Any]) -> bool:
        if frame.get("type") != "event" or frame.get("eventType") != kind:
            return False
        return all(frame.get("data", {}).get(k) == v for k, v in data.items())

    return check


def is_message(kind: str, text: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind and (text is None or f.get("message") == text)


@dataclass
class Behaviour:
    """What a scripted player does; each hook may return None to stay silent.

    request(values, round) -> amount asked by an owner; offer(requests, values, round) -> developer's offer;
    vote(offer, values, round) -> 0 or 1; chat(phase, round) -> list of (recipients, text).
    """

    request: Callable[[list[int], int], int | None] = lambda values, _r: max(0, values[0] - values[1]) + 10000
    offer: Callable[[list[int], list[int], int], int | None] = lambda requests, _v, _r: sorted(requests)[2]
    vote: Callable[[int, list[int], int], int | None] = lambda offer, values, _r: int(values[1] + offer >= values[0])
    chat: Callable[[int, int], list[tuple[list[int], str]]] = lambda _phase, _round: []
    ready_retry: float = 0.05  # seconds before re-sending player-is-ready when no ready-received came


@dataclass
class ScriptedPlayer:
    """A player that joins with `recovery` and plays every round with its `behaviour`."""

    url: str
    game_id: int
    recovery: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    client: Client | None = None
    number: int | None = None
    values: dict[int, list[int]] = field(default_factory=dict)  # round -> [v0, v1]
    actions: list[dict[str, Any]] = field(default_factory=list)  # game actions sent (requests, offers, votes, chats)

    def message(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"gameId": self.game_id, "type": kind, **fields}

    async def join(self) -> None:
        """Connect and join; returns once the server has announced it (seat numbers follow join order)."""
        self.client = await Client(self.url).connect()
        await self.client.send(self.message("join", recovery=self.recovery))
        await self.client.wait_for(lambda f: f.get("type") in ("info", "error"))

    async def act(self, message: dict[str, Any]) -> None:
        assert self.client is not None
        self.actions.append(message)
        await self.client.send(message)

    async def play(self, timeout: float = 60.0, resume_from: str | None = None) -> None:
        """Play until game-over.

        A fresh player starts in phase 0 (the first phase-0 transition came before anyone joined). A player that
        rejoins a running game passes `resume_from` (the REST base URL): it reads seat and values from
        GET /games/status, as an agent must, and acts from the next phase on.
        """
        assert self.client is not None
        await asyncio.wait_for(self._play(resume_from), timeout)

    async def resume(self, api_url: str) -> dict[str, Any]:
        """Seat, values and game position from GET /games/status (the real server replays nothing)."""
        query = urllib.parse.urlencode({"id": self.game_id, "recovery": self.recovery})

        def fetch() -> dict[str, Any]:
            with urllib.request.urlopen(f"{api_url}/games/status?{query}", timeout=30) as answer:
                return json.loads(answer.read())["data"]["gameData"]

        data = await asyncio.to_thread(fetch)
        self.number = data["player"]["number"]
        self.values[data["game"]["round"]] = list(data["player"]["property"]["v"][:2])
        return data

    async def _play(self, resume_from: str | None) -> None:
        assert self.client is not None
        client = self.client
        cursor = len(client.frames)
        if resume_from is None:
            await self._ready(cursor)
        else:
            await self.resume(resume_from)
        round_number = 0
        while True:
            index, frame = await client.wait_for(
                lambda f: f.get("eventType") in ("phase-transition", "game-over", "assign-role"), cursor, timeout=30
            )
            cursor = index + 1
            data = frame.get("data", {})
            if frame["eventType"] == "game-over":
                return
            if frame["eventType"] == "assign-role":
                self.number = data["number"]
                continue
            round_number, phase = data["round"], data["phase"]
            if phase == 0:
                await self._ready(cursor)
            elif phase == 1:
                self.values[round_number] = self._round_values(round_number)
            elif phase in (2, 5):
                for to, text in self.behaviour.chat(phase, round_number):
                    await self.act(self.message("chat-with-players", to=to, text=text))
            elif phase == 3 and self.number != DEVELOPER_SEAT:
                amount = self.behaviour.request(self.values[round_number], round_number)
                if amount is not None:
                    await self.act(self.message("compensation-request", compensationRequests=[None, amount]))
            elif phase == 4 and self.number == DEVELOPER_SEAT:
                requests = self._requests(cursor)
                amount = self.behaviour.offer(requests, self.values[round_number], round_number)
                if amount is not None:
                    await self.act(self.message("compensation-offer", compensationOffers=[None, amount]))
            elif phase == 6 and self.number != DEVELOPER_SEAT:
                offer = self._offer()
                choice = self.behaviour.vote(offer, self.values[round_number], round_number)
                if choice is not None:
                    await self.act(self.message("compensation-decision", compensationDecisions=[choice]))

    async def _ready(self, cursor: int) -> None:
        """Send player-is-ready until ready-received comes (the server may drop it at round start)."""
        assert self.client is not None
        while True:
            await self.client.send(self.message("player-is-ready"))
            try:
                await self.client.wait_for(is_event("ready-received"), cursor, timeout=self.behaviour.ready_retry)
                return
            except TimeoutError:
                continue

    def _round_values(self, round_number: int) -> list[int]:
        assert self.client is not None
        roles = [f for f in self.client.events("assign-role")]
        return list(roles[-1]["data"]["property"]["v"][:2])

    def _requests(self, cursor: int) -> list[int]:
        assert self.client is not None
        received = self.client.events("compensation-requests-received")
        amounts = []
        for entry in received[-1]["data"]["compensationRequests"] if received else []:
            value = entry.get("compensationRequests")
            if entry.get("number") != DEVELOPER_SEAT and isinstance(value, list) and isinstance(value[-1], int):
                amounts.append(value[-1])
        return amounts or [0]

    def _offer(self) -> int:
        assert self.client is not None
        made = self.client.events("compensation-offer-made")
        offers = made[-1]["data"]["compensationOffers"] if made else [0, 0]
        return offers[1] if isinstance(offers, list) and len(offers) > 1 and isinstance(offers[1], int) else 0

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def join_all(url: str, game_id: int, recoveries: list[str], behaviours: list[Behaviour] | None = None
                   ) -> list[ScriptedPlayer]:
    """Six players joined in seat order (seat i+1 gets recoveries[i])."""
    players = []
    for index, recovery in enumerate(recoveries):
        behaviour = behaviours[index] if behaviours else Behaviour()
        player = ScriptedPlayer(url, game_id, recovery, behaviour)
        await player.join()
        players.append(player)
    return players


async def play_game(url: str, game_id: int, recoveries: list[str], behaviours: list[Behaviour] | None = None,
                    timeout: float = 60.0) -> list[ScriptedPlayer]:
    """Join six scripted players and play to game-over; returns the players (their clients hold every frame)."""
    players = await join_all(url, game_id, recoveries, behaviours)
    try:
        await asyncio.gather(*(player.play(timeout) for player in players))
    finally:
        for player in players:
            await player.close()
    return players
