"""Agents on a network that fails: dropped connections, outages across a phase change, a server restart, a game
that disappears, a server that never comes back, TLS behind a reverse-proxy path, and every bad frame a server
can send. Real sockets on loopback: the local IBEX server, a TCP proxy that can cut one agent off
(tests/tlsproxy.py), and a scripted WebSocket server for the bad frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from lib.agents.agent import Agent, AgentError, AgentSettings
from lib.agents.transcript import Transcript, read_transcript
from lib.games.voting.policy import BaselinePolicy
from lib.games.voting.rules import SEATS
from lib.ibex.api import IbexApi
from lib.ibex.params import parameters_from_dict
from lib.localserver.server import LocalServer
from tests.helpers.agent_games import Played, assert_clean_game, sent_by
from tests.helpers.tlsproxy import Proxy, make_certificate

FAST = {"timer_phase_1": 0.1, "timer_phase_2": 0.3, "timer_phase_3": 2.5, "timer_phase_4": 2.5,
        "timer_phase_5": 0.2, "timer_phase_6": 2.5, "timer_phase_7": 0.1, "round_count": 1, "practice_round": False}
SETTINGS = AgentSettings(safety_margin=0.4, ready_delay=0.05, ready_resend=0.3,
                         reconnect_delays=(0.05, 0.1, 0.2, 0.4, 0.8))


class SlowPolicy(BaselinePolicy):
    """The baseline's answers, `delay` seconds late for one action type: a model that takes its time."""

    def __init__(self, wire_type: str, delay: float) -> None:
        super().__init__()
        self.wire_type = wire_type
        self.delay = delay
        self.deciding = asyncio.Event()  # set when the slow decision has begun

    async def decide(self, view, wire_type, **kwargs):
        if wire_type == self.wire_type:
            self.deciding.set()
            await asyncio.sleep(self.delay)
        return await super().decide(view, wire_type, **kwargs)


async def wait_for(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def play_game(tmp_path: Path, server: LocalServer, *, ws_url: Callable[[int], str] | None = None,
                    api_url: str | None = None, policies: dict[int, Any] | None = None,
                    during: Callable[[int], Awaitable[None]] | None = None, overrides: dict[str, Any] | None = None,
                    expect_errors: bool = False,
                    settings: AgentSettings = SETTINGS) -> tuple[Played | None, list[Any]]:
    """Six agents (agent k in seat k) play one game; `during(game_id)` runs meanwhile. (what was played, each
    agent's result or exception)."""
    settings_overrides = {**FAST, **(overrides or {})}
    params = parameters_from_dict(settings_overrides)
    game_id = server.create_game(settings_overrides)
    agents, tasks = [], []
    async with IbexApi(api_url or server.api_url, retries=1, backoff=0.05) as api:
        try:
            for k in range(1, SEATS + 1):
                transcript = Transcript(tmp_path / "logs" / f"agent{k}.jsonl")
                agent = Agent(ws_url(k) if ws_url else server.ws_url, game_id, f"recovery-{k:02d}-{'z' * 50}",
                              (policies or {}).get(k, BaselinePolicy()), transcript, params=params,
                              settings=settings, name=f"agent{k}", api=api)
                agents.append(agent)
                tasks.append(asyncio.ensure_future(agent.run()))
                await asyncio.wait_for(agent.joined.wait(), 60)  # hang guards, all three
            if during is not None:
                await during(game_id)
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
            recorded = None if expect_errors else await server.wait_game_over(game_id, 60)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for agent in agents:
                agent.transcript.close()
    transcripts = {a.view.number or k: read_transcript(a.transcript.path) for k, a in enumerate(agents, 1)}
    return (Played(recorded, agents, transcripts) if recorded else None), list(results)


def events(records: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [r for r in records if text in str(r.get("event", ""))]


# --- a lost connection ------------------------------------------------------------------------------------------


def test_an_outage_across_the_request_phase_start_is_rejoined_resynced_and_the_request_still_sent(tmp_path):
    """Seat 4 is cut off during the chat phase and misses the request phase's start: it learns of it from the
    status snapshot and still sends its request, with the values of this round."""

    async def scenario():
        async with LocalServer() as server, Proxy(server.ws_port) as flaky:
            async def cut(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.phase == 2)
                await flaky.outage(0.5)  # phase 2 lasts 0.3 s: phase 3 begins while seat 4 is away

            return await play_game(tmp_path, server, during=cut,
                                   ws_url=lambda k: f"ws://127.0.0.1:{flaky.port}" if k == 4 else server.ws_url)

    played, results = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    seat4 = played.transcripts[4]
    assert events(seat4, "connection lost")
    [resync] = [r for r in seat4 if r["kind"] == "resync"]
    assert (resync["round"], resync["phase"]) == (1, 3) and resync["acted"] == []
    missed = [r for r in seat4 if r["kind"] == "recv" and r["msg"].get("data") == {"round": 1, "phase": 3}]
    assert missed == [], "the phase-3 transition was never received: only the snapshot told the agent"
    assigned = next(e["sent"]["data"] for e in played.recorded["server-log"]
                    if e["sent"]["type"] == "assign-role" and e["meta"]["recipient"] == 4)
    assert played.agents[3].view.rounds[1].values == assigned["property"]["v"][:2]
    assert played.agents[3].reconnects == 1


def test_an_answer_decided_while_cut_off_is_sent_again_after_the_rejoin(tmp_path):
    """Seat 3's model answers while its connection is down: it is not sent (the agent knows the socket is lost, or
    the send fails if the loss is not noticed yet), the answer is kept, and after the rejoin the snapshot shows the
    server lacks it, so the same answer is sent (the model is not asked twice)."""

    async def scenario():
        slow = SlowPolicy("compensation-request", 0.3)
        async with LocalServer() as server, Proxy(server.ws_port) as flaky:
            async def cut(game_id: int) -> None:
                # Cut only once seat 3 has seen phase 3 and is deciding: cut earlier, and it would learn of the
                # phase from the snapshot after the rejoin and decide then, with nothing to re-send.
                await asyncio.wait_for(slow.deciding.wait(), 10)
                await flaky.outage(0.6)  # the answer comes 0.3 s after the decision began, inside the outage

            return await play_game(tmp_path, server, during=cut, policies={3: slow},
                                   ws_url=lambda k: f"ws://127.0.0.1:{flaky.port}" if k == 3 else server.ws_url)

    played, _results = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    seat3 = played.transcripts[3]
    assert events(seat3, "not sent: the connection was lost") or events(seat3, "send failed: connection closed")
    assert events(seat3, "re-sending an answer the server may not have")
    decided = [r for r in seat3 if r["kind"] == "decide" and r["wire_type"] == "compensation-request"]
    assert len(decided) == 1
    sent = [m for m in sent_by(played, 3) if m["type"] == "compensation-request"]
    assert len(sent) == 1 and [e["content"] for e in played.received("compensation-request")
                               if e["number"] == 3] == sent


def test_a_request_already_at_the_server_is_not_sent_again_after_a_drop(tmp_path):
    async def scenario():
        async with LocalServer() as server:
            async def drop(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.players[5].requests not in (None, js_missing()))
                await server.drop_connection(game_id, 5)

            # Seat 1's request, 8 s late in a 30 s phase, keeps phase 3 open while seat 5 reconnects and resyncs
            # (0.5 s did not: on a busy machine seat 5 came back in phase 5, and had nothing left to resend).
            return await play_game(tmp_path, server, during=drop, overrides={"timer_phase_3": 30.0},
                                   policies={1: SlowPolicy("compensation-request", 8.0)})

    played, _results = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    seat5 = played.transcripts[5]
    resyncs = [r for r in seat5 if r["kind"] == "resync"]
    assert resyncs and resyncs[0]["phase"] == 3 and resyncs[0]["acted"] == ["compensation-request"]
    assert len([m for m in sent_by(played, 5) if m["type"] == "compensation-request"]) == 1


def test_chat_already_sent_is_not_sent_again_when_the_status_snapshot_fails_after_a_rejoin(tmp_path):
    """Issue 12, item 7: seat 2's chat reached the server, then its connection drops; after the rejoin
    GET /games/status fails (nothing listens at the REST address), so nothing says whether the chat arrived.
    A second copy would reach every recipient: it must not be sent."""
    chat_settings = AgentSettings(chat=True, safety_margin=0.4, ready_delay=0.05, ready_resend=0.3,
                                  reconnect_delays=(0.05, 0.1, 0.2, 0.4, 0.8))

    async def scenario():
        async with LocalServer() as server:
            async def drop(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: any(m["sender"] == 2 for m in game.chat_logs.get((1, 2), [])))
                await server.drop_connection(game_id, 2)

            return await play_game(tmp_path, server, during=drop, api_url="http://127.0.0.1:9/api/v1",
                                   overrides={"timer_phase_2": 2.0}, settings=chat_settings)

    played, _results = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    seat2 = played.transcripts[2]
    assert events(seat2, "connection lost") and events(seat2, "resync failed")
    phase2 = [e for e in played.received("chat-with-players") if e["number"] == 2 and e["phase"] == 2]
    assert len(phase2) == 1, "the chat reached the server once"
    assert events(seat2, "chat not re-sent")


def js_missing() -> Any:
    from lib.ibex.js import MISSING

    return MISSING


def test_a_server_restart_between_phases_is_survived_by_every_agent(tmp_path):
    async def scenario():
        async with LocalServer() as server:
            async def restart(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.phase == 2)
                await server.restart(pause=0.4)

            return await play_game(tmp_path, server, during=restart)

    played, _results = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    assert [a.reconnects for a in played.agents] == [1] * SEATS
    for records in played.transcripts.values():
        assert events(records, "connect failed"), "the first attempts met the closed port"
        assert [r["kind"] for r in records].count("resync") == 1


# --- the end of a game without game-over ---------------------------------------------------------------------------


def test_a_game_deleted_on_the_server_ends_every_agent_with_a_clear_message(tmp_path):
    async def scenario():
        async with LocalServer() as server:
            async def delete(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.phase == 2)
                await server.delete_game(game_id)

            return await play_game(tmp_path, server, during=delete, expect_errors=True)

    _played, results = asyncio.run(scenario())

    assert all(isinstance(r, AgentError) for r in results), results
    assert {str(r) for r in results} == {"game 1 is gone from the server: Game 1 not found"}
    for path in sorted((tmp_path / "logs").glob("agent*.jsonl")):
        records = read_transcript(path)
        assert records[-1]["kind"] == "shutdown" and "gone from the server" in records[-1]["reason"]


def test_a_server_that_never_comes_back_gets_bounded_retries_and_a_clear_error(tmp_path):
    async def scenario():
        async with LocalServer() as server:
            async def vanish(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.phase == 2)
                await server.stop()

            return await play_game(tmp_path, server, during=vanish, expect_errors=True)

    _played, results = asyncio.run(scenario())

    attempts = len(SETTINGS.reconnect_delays) + 1
    for result in results:
        assert isinstance(result, AgentError)
        assert str(result).startswith("cannot connect to ws://127.0.0.1:")
        assert f"gave up after {attempts} attempts" in str(result)


# --- TLS and a reverse-proxy path -----------------------------------------------------------------------------------


def test_wss_behind_a_reverse_proxy_path_and_https_rest_work_including_a_rejoin(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def scenario():
        async with LocalServer() as server, Proxy(server.ws_port, cert, key) as wss, \
                Proxy(server.api_port, cert, key) as https:
            async def drop(game_id: int) -> None:
                game = server.game(game_id)
                await wait_for(lambda: game.phase == 2)
                await server.drop_connection(game_id, 2)

            played, _ = await play_game(tmp_path, server, during=drop,
                                        ws_url=lambda k: f"wss://127.0.0.1:{wss.port}/wss",
                                        api_url=f"https://127.0.0.1:{https.port}/api/v1")
            return played, wss.connections, https.connections

    played, ws_connections, rest_calls = asyncio.run(scenario())

    assert_clean_game(played, rounds=[1])
    assert ws_connections == SEATS + 1
    assert rest_calls >= 1
    assert [r["kind"] for r in played.transcripts[2]].count("resync") == 1


def test_a_handshake_refused_with_a_4xx_fails_at_once(tmp_path):
    async def refuse(connection: ServerConnection, request: Any) -> Response:
        return connection.respond(404, "no WebSocket here\n")

    async def scenario():
        async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as wrong:
            port = wrong.sockets[0].getsockname()[1]
            with Transcript(tmp_path / "agent.jsonl") as transcript:
                agent = Agent(f"ws://127.0.0.1:{port}/wrong-path", 1, "c" * 64, BaselinePolicy(), transcript,
                              settings=SETTINGS)
                with pytest.raises(AgentError) as caught:
                    await asyncio.wait_for(agent.run(), 10)
            return str(caught.value)

    message = asyncio.run(scenario())

    assert "answered HTTP 404 to the WebSocket handshake" in message
    assert "connect failed" not in (tmp_path / "agent.jsonl").read_text()


# --- every bad frame a server can send ------------------------------------------------------------------------------

GAME = 7
OWNER_ROLE = {"role": 3, "number": 4, "tag": "Owner 3",
              "property": {"id": 4, "owner": 4, "name": "Lot", "v": [500000, 250000, 150000]},
              "boundaries": {"developer": {"noProject": {"low": 200000, "high": 500000},
                                           "projectA": {"low": 500000, "high": 2750000}},
                             "owner": {"noProject": {"low": 350000, "high": 600000},
                                       "projectA": {"low": 150000, "high": 350000}}}}

BAD_FRAMES: list[Any] = [
    "not json {",
    b"\x00\xff\xfe binary",
    "[1, 2, 3]",
    "42",
    "null",
    '"a string"',
    "{}",
    "[" * 100000 + "]" * 100000,
    '{"type": "event"}',
    '{"type": "event", "eventType": "set-timer", "data": {"end": NaN}}',
    '{"type": "event", "eventType": "set-timer", "data": {"end": Infinity}}',
    '{"type": "event", "eventType": "set-timer", "data": {"end": "soon"}}',
    '{"type": "event", "eventType": "phase-transition", "data": null}',
    '{"type": "event", "eventType": "phase-transition", "data": {"round": "1", "phase": 3}}',
    '{"type": "event", "eventType": "phase-transition", "data": {"round": 1, "phase": 99}}',
    '{"type": "event", "eventType": "assign-role", "data": {"number": "x", "property": {"v": ["a", "b"]}}}',
    '{"type": "event", "eventType": "assign-role", "data": [1]}',
    '{"type": "event", "eventType": "players-known", "data": {"players": "everyone"}}',
    '{"type": "event", "eventType": "compensation-offer-made", "data": {"compensationOffers": "lots"}}',
    '{"type": "event", "eventType": "compensation-requests-received", "data": {"compensationRequests": 5}}',
    '{"type": "event", "eventType": "message-received", "data": {"sender": null, "to": "all", "text": 5}}',
    '{"type": "event", "eventType": "action-required", "data": {"actionType": "MakeMeRich"}}',
    '{"type": "event", "eventType": "instruction", "data": "do things"}',
    '{"type": "event", "eventType": "round-summary", "data": {"round": [], "profit": "much"}}',
    '{"type": "event", "eventType": "no-such-event", "data": {}}',
    '{"type": "error", "message": "Game 7: could not find an handler for compensation-request"}',
    '{"type": "error", "message": null}',
    '{"error": "Cannot read properties of null (reading \'gameId\')"}',
    '{"type": "notice", "message": ["not", "text"]}',
    '{"type": "info"}',
]


class ScriptedServer:
    """A WebSocket server that answers a join with bad frames, then plays one request phase for seat 4."""

    def __init__(self, bad: list[Any], oversized_first: bool = False) -> None:
        self.bad = bad
        self.oversized_first = oversized_first
        self.received: list[list[Any]] = []  # per connection, the client's frames

    async def handler(self, ws: ServerConnection) -> None:
        got: list[Any] = []
        self.received.append(got)
        try:
            got.append(json.loads(await ws.recv()))  # the join
            if self.oversized_first and len(self.received) == 1:
                await ws.send("x" * (17 * 1024 * 1024))
                await ws.wait_closed()
                return
            for frame in self.bad:
                await ws.send(frame)
            end = int(__import__("time").time() * 1000) + 3000
            for kind, data in (("set-timer", {"end": end}), ("assign-role", OWNER_ROLE),
                               ("phase-transition", {"round": 1, "phase": 3})):
                await ws.send(json.dumps({"type": "event", "eventType": kind, "data": data}))
            async for text in ws:
                got.append(json.loads(text))
                if got[-1].get("type") == "compensation-request":
                    await ws.send(json.dumps({"type": "event", "eventType": "game-over", "data": {}}))
        except ConnectionClosed:
            pass


async def run_against(server: ScriptedServer, tmp_path: Path) -> tuple[Agent, list[dict[str, Any]]]:
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        with Transcript(tmp_path / "agent.jsonl") as transcript:
            agent = Agent(f"ws://127.0.0.1:{port}", GAME, "b" * 64, BaselinePolicy(), transcript, settings=SETTINGS)
            await asyncio.wait_for(agent.run(), 20)
    return agent, read_transcript(tmp_path / "agent.jsonl")


def test_bad_frames_are_logged_and_the_agent_still_acts(tmp_path):
    agent, records = asyncio.run(run_against(ScriptedServer(BAD_FRAMES), tmp_path))

    assert agent.view.game_over
    requests = [m for m in agent.sent if m["type"] == "compensation-request"]
    assert requests == [{"gameId": GAME, "type": "compensation-request", "compensationRequests": [None, 275000]}]
    errors = [r["message"] for r in records if r["kind"] == "server-error"]
    assert errors == ["Game 7: could not find an handler for compensation-request", None,
                      "Cannot read properties of null (reading 'gameId')"]
    not_json = [r for r in records if r["kind"] == "recv" and r.get("error") == "not JSON"]
    assert len(not_json) == 3  # the text, the binary frame, the nesting too deep to parse
    assert records[-1]["kind"] == "shutdown" and records[-1]["reason"] == "game-over"
    assert agent.reconnects == 0


def test_a_frame_above_the_size_limit_costs_a_reconnect_not_the_game(tmp_path):
    server = ScriptedServer([], oversized_first=True)

    agent, records = asyncio.run(run_against(server, tmp_path))

    assert agent.view.game_over and agent.reconnects == 1
    assert [m["type"] for m in server.received[1]] == ["join", "compensation-request"]
    [closed] = [r for r in records if r.get("event") == "connection closed"]
    assert (closed["code"], closed["by"]) == (1009, "agent")
