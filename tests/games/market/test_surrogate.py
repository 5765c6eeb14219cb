"""#20: one seat's declaration of lone surrogates must not blind the other eleven.

On the real server a seat sent `{"type":"declare","declaration":["\\ud800","\\ud800",0]}`; the server stored and
broadcast it. The agents' transcripts (strict UTF-8, `ensure_ascii=False`) failed on the frame before it reached
their views: "frame handling failed", no first declarations, no snipes, and a run that reported nothing. Here the
same game is played on the local server: seat 1 is a scripted client sending that declaration, seats 2-12 are
baseline agents (half with batched transcripts, as with --transcript-batch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lib.agents.agent import Agent
from lib.agents.decisions import DecisionLog
from lib.agents.transcript import Transcript, read_transcript
from lib.games import game_for
from lib.games.market import rules as mg
from lib.games.market.play import round_lines
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.games.market.server import MarketGame
from lib.ibex.api import IbexApi
from lib.localserver.server import LocalServer
from tests.helpers.market_players import _ready
from tests.helpers.market_runs import FAST, SESSIONS, SETTINGS, decisions
from tests.helpers.players import Client

LONE = "\ud800"
BAD = [LONE, LONE, 0]


def broadcast_string_declarations_as_the_real_server_does(monkeypatch: Any) -> None:
    """The local server refuses a declaration that is not numbers (it does not play the real server's string
    arithmetic); the real server stored and broadcast it. So here the seat's first declaration is published as
    sent, while the local game's sums, winner and profits use the role's lows in its place."""
    sent: dict[int, list] = {}
    on_declare, rows = MarketGame._on_declare, MarketGame._declaration_rows

    def declare(self: MarketGame, conn: Any, message: dict, player: Any, ref: str) -> Any:
        d = message.get("declaration")
        if self.phase == 2 and isinstance(d, list) and any(isinstance(x, str) for x in d):
            sent[player.number] = d
            message = {**message, "declaration": mg.default_declaration(player.role, self.flat)}
        return on_declare(self, conn, message, player, ref)

    def published(self: MarketGame) -> list[dict]:
        out = rows(self)
        return [{**row, "d": sent[row["number"]]} if self.phase == 3 and row["number"] in sent else row
                for row in out]

    monkeypatch.setattr(MarketGame, "_on_declare", declare)
    monkeypatch.setattr(MarketGame, "_declaration_rows", published)


async def scripted_seat(client: Client, game_id: int) -> None:
    """Seat 1: ready whenever a round starts, the surrogate declaration in phase 2, nothing else."""
    acked = asyncio.Event()
    tasks = [asyncio.create_task(_ready(client, game_id, acked))]
    index = 0
    try:
        while True:
            index, frame = await client.wait_for(lambda f: f.get("type") == "event", start=index, timeout=60)
            index += 1
            kind, data = frame["eventType"], frame["data"]
            if kind == "game-over":
                return
            if kind == "ready-received":
                acked.set()
            elif kind == "phase-transition" and data["phase"] == 0:
                tasks.append(asyncio.create_task(_ready(client, game_id, acked)))
            elif kind == "phase-transition" and data["phase"] == 2:
                await client.send({"gameId": game_id, "type": "declare", "declaration": BAD})
    finally:
        for task in tasks:
            task.cancel()


def test_a_seat_declaring_lone_surrogates_does_not_blind_the_other_agents(tmp_path: Path, monkeypatch: Any) -> None:
    broadcast_string_declarations_as_the_real_server_does(monkeypatch)
    loop_errors: list[dict] = []

    async def scenario() -> tuple[list[Agent], Client]:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
        async with LocalServer(records_dir=tmp_path, sessions=SESSIONS, strict=True) as server:
            game_id = server.create_game({"game_type": "harberger", **FAST})
            recoveries = [f"recovery-surrogate-{k:02d}-{'z' * 40}" for k in range(1, 13)]  # seats in join order
            params = server.game(game_id).params
            log = DecisionLog(tmp_path / "decisions.csv")
            client = await Client(server.ws_url).connect()
            await client.send({"gameId": game_id, "type": "join", "recovery": recoveries[0]})
            await client.wait_for(lambda f: f.get("type") == "info")
            seat1 = asyncio.ensure_future(scripted_seat(client, game_id))
            agents, tasks = [], []
            async with IbexApi(server.api_url, retries=1, backoff=0.05) as api:
                try:
                    for k in range(2, 13):
                        agent = Agent(
                            server.ws_url, game_id, recoveries[k - 1], MarketBaselinePolicy(MarketBaseline(seed=k)),
                            Transcript(tmp_path / f"agent{k}.jsonl", flush_delay=0.05 if k % 2 else 0.0),
                            game=game_for("harberger"), params=params, settings=SETTINGS, name=f"agent{k}", api=api,
                            decision_log=log, trade_interval=0.1, trade_seconds=1.0)
                        agents.append(agent)
                        tasks.append(asyncio.ensure_future(agent.run()))
                        await asyncio.wait_for(agent.joined.wait(), 5)
                    await asyncio.wait_for(asyncio.gather(*tasks, seat1), 60)
                finally:
                    for task in [*tasks, seat1]:
                        task.cancel()
                    await asyncio.gather(*tasks, seat1, return_exceptions=True)
                    for agent in agents:
                        agent.transcript.close()
                    log.close()
                    await client.close()
        return agents, client

    agents, client = asyncio.run(scenario())
    assert loop_errors == []  # no batch callback failed
    assert client.events("declaration-received"), "the server took seat 1's declaration"
    for agent in agents:
        rec = agent.view.rounds[1]
        published = {lot["number"]: lot["d"] for lot in rec.declarations.get(3, [])}
        assert sorted(published) == [1, 2, 3, 4, 5, 6], agent.name  # declarations-published reached the view
        assert published[1] == BAD
        assert agent.view.game_over and agent.frame_errors == 0 and agent.transcript.failures == 0
        records = read_transcript(agent.transcript.path)
        assert not [r for r in records if r.get("event") == "frame handling failed"]
        seen = [r["msg"]["data"] for r in records if r["kind"] == "recv"
                and r["msg"].get("eventType") == "declarations-published"]
        assert seen and seen[0]["declarations"][0]["d"] == BAD  # the transcript keeps the frame as it came
        shutdown = records[-1]
        assert shutdown["kind"] == "shutdown" and shutdown["frame_errors"] == 0
        assert shutdown["transcript_failures"] == 0
    # Every speculator decided both snipes by its rule (no fallback), and every landholder agent declared twice.
    rows = decisions(tmp_path / "decisions.csv")
    snipes = [r for r in rows if r["action_type"] == "done-speculating"]
    assert len(snipes) == 12 and {r["made_by"] for r in snipes} == {"baseline"}
    assert len([r for r in rows if r["action_type"] == "declare"]) == 10
    # The run's round summary shows the first declarations, seat 1's as it was sent.
    lines = round_lines([agent.view for agent in agents], 1, {})
    first = next(line for line in lines if "first declarations" in line)
    assert first.count("/") == 1 + 6 and f"{LONE}/{LONE}" in first
