"""Scripted players for Harberger and futarchy games: real sockets against a local (or any) IBEX server.

`play_market_game` joins twelve seats in order and plays every round to game-over the way a careful client does
(docs/protocol.md section 15): ready after each phase-0 transition, re-sent until acknowledged; landholders
declare their true values in phases 2 and 7; speculators snipe in phases 3 and 8 (the lots declared within 10 % of
the lowest declaration); in phase 6 Owner 1 offers one share and Speculator 1 bids for it at the public signal of
the market's condition (Harberger: the winning one; futarchy: both). Returns each seat's Client with every frame it
received.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers.players import Client, is_event

SEATS = 12
SPECULATORS = range(7, 13)


async def _ready(client: Client, game_id: int, acked: asyncio.Event) -> None:
    acked.clear()
    while not acked.is_set():
        await client.send({"gameId": game_id, "type": "player-is-ready"})
        try:
            await asyncio.wait_for(acked.wait(), 0.5)
        except TimeoutError:
            pass


async def _seat(client: Client, number: int, game_id: int, game_type: str) -> None:
    acked = asyncio.Event()
    state: dict[str, Any] = {}
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(_ready(client, game_id, acked))]
    index = 0
    while True:
        index, frame = await client.wait_for(lambda f: f.get("type") == "event", start=index, timeout=60)
        index += 1
        kind, data = frame["eventType"], frame["data"]
        if kind == "game-over":
            break
        if kind == "ready-received":
            acked.set()
        elif kind == "assign-role":
            state["v"] = data.get("property", {}).get("v")
        elif kind == "declarations-published":
            state["declarations"] = data["declarations"]
            state["winning"] = data.get("winningCondition")
        elif kind == "value-signals":
            state["public"] = data["publicSignal"]
        elif kind == "winning-condition":
            state["winning"] = data["winningCondition"]
        elif kind == "phase-transition":
            phase = data["phase"]
            if phase == 0:
                tasks.append(asyncio.create_task(_ready(client, game_id, acked)))
            elif phase in (2, 7) and state.get("v"):
                await client.send({"gameId": game_id, "type": "declare", "declaration": state["v"][:2] + [0]})
            elif phase in (3, 8) and number in SPECULATORS:
                await client.send({"gameId": game_id, "type": "done-speculating", "snipe": _snipes(state, phase,
                                                                                                  game_type)})
            elif phase == 6 and number in (1, 7):
                conditions = [0, 1] if game_type == "futarchy" else [state["winning"]]
                for condition in conditions:
                    price = max(1, round(state["public"][condition]))
                    order = {"price": price, "quantity": 1, "condition": condition,
                             "type": "ask" if number == 1 else "bid", "now": False}
                    await client.send({"gameId": game_id, "type": "post-order", "order": order})
    for task in tasks:
        task.cancel()


def _snipes(state: dict[str, Any], phase: int, game_type: str) -> list[list[int]]:
    """A speculator does not know the values: it snipes the lots declared within 10 % of the lowest declaration
    under each condition that counts (a cheap, deterministic rule)."""
    snipe: list[list[int]] = [[], [], []]
    conditions = [0, 1] if game_type == "futarchy" and phase == 3 else [state.get("winning") or 0]
    for c in conditions:
        declared = [d["d"][c] for d in state.get("declarations", [])]
        if declared:
            floor = min(declared) * 1.1
            snipe[c] = [d["id"] for d in state["declarations"] if d["d"][c] <= floor]
    return snipe


async def play_market_game(url: str, game_id: int, recoveries: list[str], game_type: str,
                           timeout: float = 120) -> list[Client]:
    """Join `len(recoveries)` seats in order and play to game-over; the clients, still open."""
    clients = []
    for recovery in recoveries:
        client = await Client(url).connect()
        start = len(client.frames)
        await client.send({"gameId": game_id, "type": "join", "recovery": recovery})
        await client.wait_for(lambda f: f.get("type") == "info", start=start)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(
        _seat(client, n, game_id, game_type) for n, client in enumerate(clients, start=1))), timeout)
    for client in clients:
        await client.wait_for(is_event("game-over"))
    return clients
