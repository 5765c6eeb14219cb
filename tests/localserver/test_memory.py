"""In-memory connections to the local server (lib.localserver.memory), which a study's agents use: frames arrive in
order, a connection ends as a WebSocket does, and a whole baseline game played over them makes the same decisions,
and has the server send every seat the same frames, as one played over WebSockets."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from lib.agents.agent import AgentSettings
from lib.agents.decisions import DecisionLog
from lib.agents.modes import play_local
from lib.agents.transcript import read_transcript
from lib.games import game_for
from lib.localserver.memory import MemoryConnection
from lib.localserver.server import LocalServer


async def drained(end: MemoryConnection) -> list[str]:
    return [text async for text in end]


def test_frames_arrive_in_order_and_a_clean_close_ends_both_sides_after_them():
    async def scenario() -> tuple[list[str], list[str], Exception]:
        client, server = MemoryConnection.pair()
        for n in range(3):
            await client.send(f"to server {n}")
        await server.send("to client")
        await client.close(1001, "going away")
        try:
            await client.send("too late")
        except ConnectionClosedOK as exc:
            late = exc
        return await drained(server), await drained(client), late

    to_server, to_client, late = asyncio.run(scenario())
    assert to_server == ["to server 0", "to server 1", "to server 2"] and to_client == ["to client"]
    assert late.sent is not None and late.sent.code == 1001


def test_an_error_close_and_an_abort_raise_in_the_reader_as_websockets_does():
    async def scenario(cut: Any) -> BaseException | None:
        client, server = MemoryConnection.pair()
        reading = asyncio.ensure_future(drained(client))
        await asyncio.sleep(0)
        await cut(server)
        try:
            await reading
        except ConnectionClosedError as exc:
            return exc
        return None

    async def error_close(end: MemoryConnection) -> None:
        await end.close(1011, "internal error")

    async def abort(end: MemoryConnection) -> None:
        end.transport.abort()

    closed = asyncio.run(scenario(error_close))
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is not None and closed.rcvd.code == 1011
    aborted = asyncio.run(scenario(abort))
    assert isinstance(aborted, ConnectionClosedError) and aborted.rcvd is None and aborted.sent is None


def test_a_stopped_server_refuses_an_in_memory_connection_as_a_socket_would(tmp_path):
    async def scenario() -> None:
        server = LocalServer(records_dir=tmp_path)
        with pytest.raises(ConnectionRefusedError):
            await server.connect_in_memory()

    asyncio.run(scenario())


def play(tmp_path: Path, in_memory: bool) -> tuple[list[tuple], dict[int, list[str]], list[Any]]:
    """One two-round baseline game: (its decisions, the events each seat received, the events the server sent)."""
    game = game_for("voting")

    async def scenario() -> tuple[Path, Path]:
        async with LocalServer(records_dir=tmp_path / "records", fast=True) as server:
            game_id = server.create_game({**game.rules.local_parameters(2, False, 0.01),
                                          **{f"timer_phase_{p}": 30.0 for p in game.play.action_phases}},
                                         session_number=2)
            with DecisionLog(tmp_path / "decisions.csv") as log:
                policies = {seat: game.seat.baseline_policy() for seat in range(1, game.play.seats + 1)}
                result = await play_local(server, game_id, policies, run_dir=tmp_path / "run", log=log,
                                          settings=AgentSettings(safety_margin=0.05, ready_delay=0.05),
                                          stop=asyncio.Event(), say=None, seed=7, in_memory=in_memory)
            assert result.outcome == "game-over" and result.game_log is not None
            return result.game_log, result.decisions

    game_log, decisions = asyncio.run(scenario())
    with open(decisions, newline="") as f:
        made = sorted((r["round"], r["phase"], r["seat"], r["action_type"], r["made_by"],
                       json.dumps({k: v for k, v in json.loads(r["action"]).items() if k != "gameId"}))
                      for r in csv.DictReader(f))
    received = {}
    for k in range(1, game.play.seats + 1):
        records = read_transcript(tmp_path / "run" / f"agent{k}.jsonl")
        seat = records[-1]["seat"]
        # events only: the join notices come as the seats join, whichever transport (names and times are drawn anew)
        received[seat] = [r["msg"]["eventType"] for r in records if r["kind"] == "recv" and "eventType" in r["msg"]]
    # per phase, as a set: which seat's action comes first is the seats' race, whatever carries their frames
    events = sorted((e["meta"]["round"], e["meta"]["phase"], e["sent"]["type"], str(e["meta"]["recipient"]))
                    for e in json.loads(game_log.read_text())["server-log"])
    return made, received, events


def test_a_baseline_game_over_in_memory_connections_plays_as_over_websockets(tmp_path):
    over_sockets = play(tmp_path / "sockets", in_memory=False)
    in_memory = play(tmp_path / "memory", in_memory=True)
    assert len(over_sockets[0]) == 2 * 11 and {row[4] for row in over_sockets[0]} == {"baseline"}
    assert in_memory == over_sockets
