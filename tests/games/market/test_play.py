"""Market agents play whole Harberger and futarchy games on the local server, in --strict mode (the server refuses
anything out of range or out of turn with an error frame, so an invalid frame shows up in the transcripts): the
baseline, a model through the real openai SDK against the fake OpenAI server (valid, invalid and slow answers),
the round-start ready race, and a connection cut during the market. And `handler.py --local --game-type`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lib.agents.agent import Agent
from lib.agents.decisions import DecisionLog
from lib.agents.llm import LLMPolicy
from lib.agents.transcript import Transcript, read_transcript
from lib.games import game_for
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.games.market.rules import round_profit
from lib.ibex.api import IbexApi
from lib.localserver.server import LocalServer
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.market_runs import FAST, SESSIONS, SETTINGS, decisions
from tests.helpers.paths import REPO
from tests.helpers.tlsproxy import Proxy

ROOT = REPO


async def play(tmp_path: Path, server: LocalServer, game_type: str, *, policy: Any = None,
               overrides: dict[str, Any] | None = None, ws_url: Any = None, during: Any = None,
               trade_interval: float = 0.1, trade_seconds: float = 1.0) -> tuple[list[Agent], Path]:
    game_id = server.create_game({"game_type": game_type, **FAST, **(overrides or {})})
    params = server.game(game_id).params
    log = DecisionLog(tmp_path / "decisions.csv")
    agents = []
    async with IbexApi(server.api_url, retries=1, backoff=0.05) as api:
        for k in range(1, 13):
            agents.append(Agent(
                ws_url(k) if ws_url else server.ws_url, game_id, f"recovery-{game_type}-{k:02d}-{'z' * 40}",
                policy or MarketBaselinePolicy(MarketBaseline(seed=k)), Transcript(tmp_path / f"agent{k}.jsonl"),
                game=game_for(game_type), params=params, settings=SETTINGS, name=f"agent{k}", api=api,
                decision_log=log, trade_interval=trade_interval, trade_seconds=trade_seconds))
        tasks = []
        try:
            for agent in agents:  # one after another: agent k takes seat k
                tasks.append(asyncio.ensure_future(agent.run()))
                await asyncio.wait_for(agent.joined.wait(), 60)  # hang guards, all three
            if during is not None:
                await during(game_id)
            await asyncio.wait_for(asyncio.gather(*tasks), 180)
            await server.wait_game_over(game_id, 60)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for agent in agents:
                agent.transcript.close()
            log.close()
    return agents, tmp_path / "decisions.csv"


def assert_clean(agents: list[Agent]) -> None:
    """Every agent reached game-over, each round's wallet matches its summary, and no frame was refused: the only
    error allowed is a cancel that met its order already filled (the server's "Order not found"), which no
    client can avoid in a continuous market."""
    numbers = sorted(a.view.number for a in agents)
    assert numbers == list(range(1, 13))
    for agent in agents:
        view = agent.view
        assert view.game_over and view.reward is not None
        for rec in view.rounds.values():
            if rec.summary is None:
                continue
            w = rec.wallets[rec.winning]
            assert (w["balance"], w["shares"]) == (rec.summary["market"]["balance"], rec.summary["market"]["shares"])
            assert isinstance(round_profit(rec.summary), int | float)
            assert rec.refusals == [], rec.refusals
        records = read_transcript(agent.transcript.path)
        sent_cancels = {r["msg"]["order"]["id"] for r in records
                        if r["kind"] == "send" and r["msg"].get("type") == "cancel-order"}
        for r in records:
            msg = r.get("msg") if r["kind"] == "recv" else None
            if isinstance(msg, dict) and msg.get("type") in ("error", "warning"):
                text = msg.get("message", "")
                assert text.startswith("Order not found.") and int(text.split(".")[1]) in sent_cancels, text
        assert view.warnings == []


@pytest.mark.parametrize("game_type", ["harberger", "futarchy"])
def test_twelve_baseline_agents_play_a_whole_game_in_strict_mode(tmp_path, game_type):
    async def scenario():
        async with LocalServer(records_dir=tmp_path, sessions=SESSIONS, strict=True) as server:
            # A market of 8 s (FAST: 3 s): the zero-intelligence traders' orders cross by chance, once or twice
            # in a game, and a busy machine makes fewer of them in a second (3 s: no trade in two of three
            # Harberger games at a load of 10 on two cores; 8 s: a trade in every one).
            return await play(tmp_path, server, game_type, overrides={"timer_phase_6": 8.0})

    agents, table = asyncio.run(scenario())
    assert_clean(agents)
    rows = decisions(table)
    kinds = {(r["action_type"], r["made_by"]) for r in rows}
    assert ("declare", "baseline") in kinds and ("done-speculating", "baseline") in kinds
    assert ("post-order", "baseline") in kinds
    declared = [r for r in rows if r["action_type"] == "declare"]
    assert len(declared) == 12  # 6 landholders x 2 declaration phases
    snipes = [r for r in rows if r["action_type"] == "done-speculating"]
    assert len(snipes) == 12  # 6 speculators x 2 speculation phases, each exactly once
    # The baseline declares the true values (rounded down to 1000).
    for r in declared:
        values = json.loads(r["private_values"])["values"]
        assert json.loads(r["action"])["declaration"][:2] == [v // 1000 * 1000 for v in values]
    trades = [r for r in rows if r["action_type"] == "post-order"]
    for r in trades:
        order = json.loads(r["action"])["order"]
        signal = json.loads(r["private_values"])["signals"][order["condition"]]
        assert order["price"] <= signal if order["type"] == "bid" else order["price"] >= signal
    # The market really ran: trades happened, and nobody had more than one trading decision at a time.
    assert any(rec.trades for a in agents for rec in a.view.rounds.values())
    recorded = json.loads(next(tmp_path.glob("*.log.json")).read_text())
    assert any(e["content"].get("type") == "post-order" for e in recorded["log"] if e.get("type") == "message")


class ScriptedModel:
    """Fake-model answers from the action-required in the prompt: declarations valid, snipes invalid once (a lot
    that does not exist) then valid, trades a valid bid at the signal or, for seat 12, too slow to count."""

    def __init__(self) -> None:
        self.snipe_attempts: dict[str, int] = {}

    def __call__(self, body: dict) -> dict:
        user = body["messages"][1]["content"]
        required = json.loads(user.rsplit("Action required:\n", 1)[1])["data"]
        kind = required["actionType"]
        game_id = int(required["format"].split('"gameId":')[1].split(",")[0])
        if kind == "SubmitDeclaration":
            return {"content": json.dumps({"gameId": game_id, "type": "declare", "declaration": [400000, 200000, 0]})}
        if kind == "SubmitSnipes":
            me = user.split("(player ")[1].split(")")[0]
            self.snipe_attempts[me] = self.snipe_attempts.get(me, 0) + 1
            lots = [[99], [], []] if self.snipe_attempts[me] == 1 else [[], [], []]
            return {"content": json.dumps({"gameId": game_id, "type": "done-speculating", "snipe": lots})}
        if "(player 12)" in required["instructions"]:
            return {"content": json.dumps({"gameId": game_id, "type": "wait", "order": None}), "delay": 3}
        return {"content": json.dumps({"gameId": game_id, "type": "wait", "order": None})}


def test_a_model_plays_through_the_openai_sdk_with_invalid_and_slow_answers(tmp_path):
    async def scenario():
        with FakeOpenAI() as fake:
            fake.chat_default = ScriptedModel()
            policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:test", max_retries=2,
                               game=game_for("harberger"))
            try:
                async with LocalServer(records_dir=tmp_path, sessions=SESSIONS, strict=True) as server:
                    # Declaration and speculation phases of 30 s: they end once every seat has acted, and give
                    # the model's answers (a snipe takes two calls) time however busy the machine.
                    return await play(tmp_path, server, "harberger", policy=policy, trade_interval=0.5,
                                      trade_seconds=1.0, overrides={f"timer_phase_{n}": 30 for n in (2, 3, 7, 8)})
            finally:
                await policy.close()

    agents, table = asyncio.run(scenario())
    assert_clean(agents)
    rows = decisions(table)
    made = {(r["action_type"], r["made_by"], r["fallback_reason"]) for r in rows}
    assert ("declare", "model", "") in made
    assert ("done-speculating", "model-after-retries", "") in made  # lot 99 refused, fed back, then valid
    assert ("wait", "model", "") in made
    slow = [r for r in rows if r["seat"] == "12" and r["made_by"] == "fallback"]
    assert slow and all(r["fallback_reason"] == "timeout" for r in slow)  # the baseline traded instead
    assert all(r["model"] == "ft:test" for r in rows if r["made_by"].startswith("model"))


def test_the_ready_race_at_a_round_start_is_survived(tmp_path):
    """The real server drops a ready sent while it saves the new round: the agents re-send until acknowledged."""
    async def scenario():
        async with LocalServer(records_dir=tmp_path, sessions=SESSIONS, strict=True,
                               ready_race_window=0.3) as server:
            return await play(tmp_path, server, "futarchy", overrides={"practice_round": True})

    agents, _ = asyncio.run(scenario())
    assert_clean(agents)
    assert all(sorted(a.view.rounds) == [0, 1] for a in agents)


def test_a_connection_cut_during_the_market_is_rejoined_and_resynced(tmp_path):
    """Seat 9 loses its connection in the middle of the market: it rejoins, takes the books and its wallet from
    the status snapshot, goes on trading, and its wallet at the end is the one the server settled.

    The cut comes when the server has seat 9's first order of the market (an event, not a pause that a loaded
    machine stretches). Twelve seats trading every 0.1 s in one event loop saturate a loaded machine, whose
    replies then lag by seconds: at 3 s, a cut 0.8 s in left the rejoined seat no time to trade. Trading every
    0.5 s in a 6 s market leaves the rejoin, the resync and the trading after it seconds to spare even when
    every line runs several times slower."""
    async def scenario():
        async with LocalServer(records_dir=tmp_path, sessions=SESSIONS, strict=True) as server, \
                Proxy(server.ws_port) as flaky:
            async def cut(game_id: int) -> None:
                game = server.game(game_id)
                while not (game.phase == 6 and any(
                        e.get("type") == "message" and e.get("number") == 9
                        and e["content"].get("type") == "post-order" for e in game.log)):
                    await asyncio.sleep(0.01)
                await flaky.outage(0.4)

            return await play(tmp_path, server, "harberger", during=cut, overrides={"timer_phase_6": 6.0},
                              trade_interval=0.5,
                              ws_url=lambda k: f"ws://127.0.0.1:{flaky.port}" if k == 9 else server.ws_url)

    agents, table = asyncio.run(scenario())
    assert_clean(agents)
    seat9 = read_transcript(agents[8].transcript.path)
    resyncs = [r for r in seat9 if r["kind"] == "resync"]
    assert agents[8].reconnects == 1 and resyncs and resyncs[0]["phase"] == 6
    after = seat9[seat9.index(resyncs[0]):]
    assert any(r["kind"] == "send" and r["msg"].get("type") in ("post-order", "cancel-order") for r in after)
    # No decision is labelled sent that never went out (one decided while the socket was down is "not sent").
    went_out = Counter(json.dumps(r["msg"], separators=(",", ":")) for r in seat9 if r["kind"] == "send")
    labelled = Counter(r["action"] for r in decisions(table) if r["agent"] == "agent9" and r["sent"] == "yes")
    assert labelled and labelled <= went_out


def test_handler_local_plays_both_market_games_and_prints_each_round(tmp_path):
    for game_type in ("harberger", "futarchy"):
        out = subprocess.run(
            [sys.executable, "handler.py", "--local", "--game-type", game_type, "--policy", "baseline", "--rounds", "1",
             "--no-practice", "--timer-scale", "0.01", "--records", str(tmp_path / "rec"), "--logs-dir",
             str(tmp_path / "logs"), "--sessions", str(SESSIONS)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                                       "PYTHONDONTWRITEBYTECODE": "1",
                                                                       "PYTHON_DOTENV_DISABLED": "1"})
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert f"{game_type} game" in text and "round 1: winning condition" in text
        for part in ("first declarations (No Project/Project): Owner 1 ", "first snipes:", "second snipes:",
                     "market 0 (No Project):", "final share price", "profit: Owner 1 ", "Speculator 6 ",
                     "decisions: ", "game log: "):
            assert part in text, part
        if game_type == "futarchy":
            assert "market 1 (Project):" in text


def test_market_options_are_refused_where_they_do_not_apply():
    for args, words in ((["--game", "3", "--game-type", "harberger"], "--game-type chooses the game of --local"),
                        (["--local", "--game-type", "futarchy", "--chat"], "has no chat")):
        out = subprocess.run([sys.executable, "handler.py", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env={"PYTHONPATH": str(ROOT), "PYTHON_DOTENV_DISABLED": "1"})
        assert out.returncode == 2 and words in out.stderr


# --- on a server: --game and the agent manager (--serve), the game type from the server ------------------------


def test_game_mode_plays_all_twelve_seats_of_a_market_game(tmp_path):
    from tests.helpers.handler_runs import Handler, env_for, run

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", sessions=SESSIONS, strict=True) as server:
            game_id = server.create_game({"game_type": "futarchy", **FAST})
            handler = await Handler.start(tmp_path, env_for(server), "--game", str(game_id), "--policy", "baseline")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(game_id, 5)

    code, handler, recorded = run(scenario())
    assert code == 0, handler.stderr
    assert "game 1: 12 agents" in handler.out and "round 1: winning condition" in handler.out
    assert "market 1 (Project):" in handler.out  # futarchy's second market: the type came from the server
    sent = {(e.get("number"), e["content"]["type"]) for e in recorded["log"] if e.get("type") == "message"}
    assert {n for n, kind in sent if kind == "declare"} == {1, 2, 3, 4, 5, 6}
    assert {n for n, kind in sent if kind == "done-speculating"} == set(range(7, 13))


def test_serve_plays_an_agents_only_market_game(tmp_path):
    import signal

    from tests.helpers.handler_runs import Handler, env_for, free_port, run

    port = free_port()

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", sessions=SESSIONS, strict=True,
                               agent_manager=f"127.0.0.1:{port}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--serve",
                                          "--policy", "baseline")
            await handler.wait_line("agent manager listening on")
            game_id = server.create_game({"game_type": "harberger", "agents_only": True, **FAST})
            recorded = await server.wait_game_over(game_id, 60)
            await handler.wait_line(f"game {game_id} over")
            handler.proc.send_signal(signal.SIGTERM)
            return await handler.finish(), handler, game_id, recorded

    code, handler, game_id, recorded = run(scenario())
    assert code == 0, handler.stderr
    [line] = [t for t in handler.lines if t.startswith(f"game {game_id} round 1: winning condition")]
    assert "market " in line and "decisions: " in line
    assert len({e["number"] for e in recorded["log"] if e.get("type") == "message" and e.get("number")}) == 12


def test_the_ui_defaults_are_the_payload_the_real_server_was_recorded_with():
    """lib.games.market.play's flat UI defaults make, through lib.ibex.createparams, the nested gameParameters that
    tests/fixtures/record_market_probes.py sent to the real server (timers, rounds and practice aside)."""
    from lib.games.market.play import typed_parameters, ui_parameters
    from lib.ibex.createparams import nested_payload
    from tests.fixtures.record_market_probes import payload

    for game_type in ("harberger", "futarchy"):
        ours, recorded = nested_payload(ui_parameters(game_type)), payload(game_type)
        for key in ("timers", "round_count", "practice"):
            ours.pop(key), recorded.pop(key)
        assert ours == recorded
        params = typed_parameters(ui_parameters(game_type))
        assert params.game_type == game_type and params.timer(6) == 270 and params.timer(0) is None
