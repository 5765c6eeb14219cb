"""`python handler.py --game / --create / --serve` as a user runs them: subprocesses against the local IBEX server,
which runs in the test's event loop (so the test can also seat scripted human players, crash a handler, and
watch what the server recorded)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from lib.agents.realserver import create_payload
from lib.agents.transcript import read_transcript
from lib.ibex.api import IbexApi
from lib.localserver.server import LocalServer
from tests.helpers.handler_runs import ACTIONS, FULL_ROUND, TIMEOUT, Handler, actions_by_seat, env_for, free_port, run
from tests.helpers.players import ScriptedPlayer

# --params files hold what the real server accepts: whole seconds (the local server alone honours 0.2 s).
FAST_FILE = {"round_count": 1, "practice_round": False, "timer_phase_1": 1, "timer_phase_2": 1, "timer_phase_3": 3,
             "timer_phase_4": 3, "timer_phase_5": 1, "timer_phase_6": 3, "timer_phase_7": 1}
FAST = {"round_count": 1, "practice_round": False, "timer_phase_1": 0.2, "timer_phase_2": 0.2, "timer_phase_3": 3,
        "timer_phase_4": 3, "timer_phase_5": 0.2, "timer_phase_6": 3, "timer_phase_7": 0.2}














def seats_file(tmp_path: Path) -> dict[str, Any]:
    [path] = (tmp_path / "logs").glob("*-game*/seats.json")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return json.loads(path.read_text())


# --- --game --------------------------------------------------------------------------------------------------


def test_game_fills_the_seats_asked_for_and_leaves_the_others_to_humans(tmp_path):
    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records") as server:
            game_id = server.create_game(FAST)
            handler = await Handler.start(tmp_path, env_for(server), "--game", str(game_id), "--players", "2")
            await handler.wait_line("transcripts:")
            while server.game(game_id).assigned < 2:
                await asyncio.sleep(0.02)
            async with IbexApi(server.api_url) as api:
                humans = [ScriptedPlayer(server.ws_url, game_id, await api.get_recovery(game_id)) for _ in range(4)]
            for human in humans:
                await human.join()
            await asyncio.gather(*(human.play(timeout=TIMEOUT) for human in humans))
            code = await handler.finish()
            return code, handler, await server.wait_game_over(game_id, 10), [h.number for h in humans]

    code, handler, recorded, human_seats = run(scenario())

    assert code == 0, handler.stderr
    assert "game 1: 2 agents: code " in handler.out and "takes a free seat" in handler.out
    assert human_seats == [3, 4, 5, 6]
    assert actions_by_seat(recorded) == FULL_ROUND
    assert "game 1 over; reconnects: 0, fallback actions: 0" in handler.out
    assert "  profit:   Owner 1 " in handler.out and ", Owner 2 -" in handler.out  # the humans' seats
    # Our two seats took three decisions (a request, the offer, a vote); the humans' are not ours to count.
    assert "decisions: 3: baseline 3 (100.0%)" in handler.lines
    assert handler.lines.index("round 1") < handler.lines.index("game 1 over; reconnects: 0, fallback actions: 0")
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    rows = table.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 3 and all(",baseline,," in row for row in rows[1:])
    assert [s["agent"] for s in seats_file(tmp_path)["seats"]] == ["agent1", "agent2"]


def test_a_crashed_handler_is_resumed_with_its_recovery_codes(tmp_path):
    """The first handler is killed mid-game (SIGKILL: no goodbye); a second one, given the codes, resumes every
    seat, resyncs and finishes the game."""

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records") as server:
            # Decision phases of a minute: they end as the seats act, and round 1's wait for the second handler
            # to start and rejoin (seconds on a busy machine) however slow that start.
            game_id = server.create_game({**FAST, "round_count": 2, "timer_phase_2": 1.0, "timer_phase_3": 60,
                                          "timer_phase_4": 60, "timer_phase_6": 60})
            first = await Handler.start(tmp_path, env_for(server), "--game", str(game_id))
            await first.wait_line("transcripts:")
            game = server.game(game_id)
            while (game.round, game.phase) != (1, 2):
                await asyncio.sleep(0.02)
            first.proc.kill()
            await first.finish()
            codes = [seat["recovery"] for seat in seats_file(tmp_path)["seats"]]
            second = await Handler.start(tmp_path / "second", env_for(server), "--game", str(game_id),
                                         "--recovery", *codes)
            code = await second.finish()
            return code, second, await server.wait_game_over(game_id, 10), codes

    (tmp_path / "second").mkdir()
    code, second, recorded, codes = run(scenario())

    assert code == 0, second.stderr
    for seat in range(1, 7):
        assert f"resumes seat {seat}" in second.out
    assert not any(code in second.out + second.stderr for code in codes), "recovery codes are never printed"
    by_round = {r: {e["number"] for e in recorded["log"] if e["type"] == "message" and e["round"] == r
                    and e["content"].get("type") in ACTIONS} for r in (1, 2)}
    assert by_round == {1: {1, 2, 3, 4, 5, 6}, 2: {1, 2, 3, 4, 5, 6}}
    [run_dir] = (tmp_path / "second" / "logs").iterdir()
    for path in run_dir.glob("agent*.jsonl"):
        records = read_transcript(path)
        assert [r["kind"] for r in records].count("resync") == 1
        assert records[-1]["kind"] == "shutdown" and records[-1]["reason"] == "game-over"


def test_game_errors_are_one_line(tmp_path):
    async def scenario():
        async with LocalServer() as server:
            missing = await Handler.start(tmp_path, env_for(server), "--game", "99")
            full_id = server.create_game(FAST)
            async with IbexApi(server.api_url) as api:
                humans = [ScriptedPlayer(server.ws_url, full_id, await api.get_recovery(full_id)) for _ in range(6)]
            for human in humans:
                await human.join()
            full = await Handler.start(tmp_path, env_for(server), "--game", str(full_id))
            bad_url = await Handler.start(tmp_path, env_for(server, IBEX_WS_URL="http://nope"), "--game", "1")
            return [(await h.finish(), h.stderr) for h in (missing, full, bad_url)]

    (missing, full, bad_url) = run(scenario())

    assert missing[0] == 1 and len(missing[1].strip().splitlines()) == 1
    assert missing[1].startswith("error: game 99 is not on the server at http://127.0.0.1:")
    assert missing[1].strip().endswith("Game with id 99 not found")
    assert full[0] == 1 and "game 1 has no free seat" in full[1] and len(full[1].strip().splitlines()) == 1
    assert bad_url[0] == 2 and bad_url[1].strip() == (
        "error: IBEX_WS_URL must be ws://HOST:PORT or wss://HOST/PATH, got 'http://nope'")


# --- --create --------------------------------------------------------------------------------------------------


def test_create_makes_the_game_from_the_params_file_and_plays_it(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(FAST_FILE))

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw") as server:
            handler = await Handler.start(tmp_path, env_for(server), "--create", "--params", str(params))
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert "created game 1: 1 round" in handler.out
    parameters = {p["key"]: p["value"] for p in recorded["parameters"]}
    assert (parameters["round_count"], parameters["timer_phase_3"], parameters["agents_only"]) == ("1", "3", "false")
    assert actions_by_seat(recorded) == FULL_ROUND
    assert "admin-secret-pw" not in handler.out + handler.stderr
    for path in (tmp_path / "logs").rglob("agent*.jsonl"):
        assert "admin-secret-pw" not in path.read_text()


def test_ctrl_c_during_a_created_game_prints_the_round_so_far_and_the_shares_and_exits_130(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**FAST_FILE, "timer_phase_5": 30}))

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw") as server:
            handler = await Handler.start(tmp_path, env_for(server), "--create", "--params", str(params))
            await handler.wait_line("created game 1")
            while server.game(1).phase != 5:  # requests and the offer are in, the votes are not
                await asyncio.sleep(0.02)
            handler.proc.send_signal(signal.SIGINT)
            return await handler.finish(), handler

    code, handler = run(scenario())

    assert code == 130, handler.stderr
    lines = handler.lines
    assert "round 1 (unfinished)" in lines
    assert "  votes:    Owner 1 -, Owner 2 -, Owner 3 -, Owner 4 -, Owner 5 -" in lines
    assert "stopped by SIGINT: sockets closed, transcripts and decisions table complete" in lines
    assert "decisions: 6: baseline 6 (100.0%)" in lines and "Traceback" not in handler.stderr
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    assert len(table.read_text(encoding="utf-8").splitlines()) == 1 + 6


def test_create_agents_only_answers_the_servers_spawn_call_itself(tmp_path):
    port = free_port()
    params = tmp_path / "params.json"
    params.write_text(json.dumps(FAST_FILE))

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                               agent_manager=f"127.0.0.1:{port}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--create",
                                          "--agents-only", "--params", str(params))
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert f"agent manager for this game listening on http://127.0.0.1:{port}" in handler.out
    assert "created agents-only game 1" in handler.out
    assert {p["key"]: p["value"] for p in recorded["parameters"]}["agents_only"] == "true"
    assert actions_by_seat(recorded) == FULL_ROUND


def test_create_errors_are_one_line(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"round_count": 2,\n "timer_phase_3": }')
    bad_value = tmp_path / "value.json"
    bad_value.write_text('{"round_count": "many"}')

    async def scenario():
        async with LocalServer(admin_password="admin-secret-pw") as server:
            no_password = await Handler.start(tmp_path, env_for(server, IBEX_PASSWORD=""), "--create")
            wrong_password = await Handler.start(tmp_path, env_for(server, IBEX_PASSWORD="wrong-pw"), "--create")
            syntax = await Handler.start(tmp_path, env_for(server), "--create", "--params", str(bad_json))
            value = await Handler.start(tmp_path, env_for(server), "--create", "--params", str(bad_value))
            return [(await h.finish(), h.stderr.strip()) for h in (no_password, wrong_password, syntax, value)]

    no_password, wrong_password, syntax, value = run(scenario())

    assert no_password == (2, "error: missing setting IBEX_PASSWORD (the admin account create-for-llm logs in "
                              "with; set it in .env)")
    assert wrong_password == (1, "error: IBEX API create-for-llm: HTTP 401: Login failed")
    assert syntax == (2, f"error: {bad_json}:2: not valid JSON (Expecting value)")
    assert value == (2, f"error: {bad_value}: parameter 'round_count' must be a number, got 'many'")


# --- --serve ---------------------------------------------------------------------------------------------------


def test_serve_plays_two_agents_only_games_at_once_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", agent_manager=f"127.0.0.1:{port}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--serve")
            await handler.wait_line("agent manager listening on")
            payload, _params = create_payload({**FAST, "agents_only": True})
            async with IbexApi(server.api_url) as api:
                created = await asyncio.gather(*(api.create_for_llm("admin", "admin", payload) for _ in range(2)))
            recorded = [await server.wait_game_over(game.id, TIMEOUT) for game in created]
            await handler.wait_line(f"game {created[0].id} over")
            await handler.wait_line(f"game {created[1].id} over")
            handler.proc.send_signal(signal.SIGTERM)
            code = await handler.finish()
            return code, handler, created, recorded

    code, handler, created, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert [game.warning for game in created] == [None, None]
    for game in recorded:
        assert actions_by_seat(game) == FULL_ROUND
    assert handler.lines[-1] == "agent manager stopped cleanly"
    run_dirs = sorted(p.name.split("-")[-1] for p in (tmp_path / "logs").iterdir())
    assert run_dirs == ["game1", "game2"]
    for game in created:  # one line per finished round per game, before the game's last line
        [line] = [n for n, text in enumerate(handler.lines) if text.startswith(f"game {game.id} round 1: offer: ")]
        assert handler.lines[line].endswith("; decisions: 11: baseline 11 (100.0%)"), handler.lines[line]
        assert "outcome: " in handler.lines[line]
        [over] = [n for n, text in enumerate(handler.lines) if text.startswith(f"game {game.id} over")]
        assert line < over and handler.lines[over].endswith("; decisions: 11: baseline 11 (100.0%)")
    for table in (tmp_path / "logs").rglob("decisions.csv"):
        assert len(table.read_text(encoding="utf-8").splitlines()) == 1 + 11


def test_serve_leaves_a_running_game_cleanly_on_sigterm(tmp_path):
    port = free_port()

    async def scenario():
        async with LocalServer(agent_manager=f"127.0.0.1:{port}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--serve")
            await handler.wait_line("agent manager listening on")
            game_id = server.create_game({**FAST, "timer_phase_2": 30, "agents_only": True})
            game = server.game(game_id)
            while game.phase != 2:
                await asyncio.sleep(0.02)
            handler.proc.send_signal(signal.SIGTERM)
            return await handler.finish(), handler

    code, handler = run(scenario())

    assert code == 0, handler.stderr
    assert "got signal 15: leaving 1 game(s), flushing transcripts" in handler.out
    paths = sorted((tmp_path / "logs").rglob("agent*.jsonl"))
    assert len(paths) == 6
    for path in paths:
        last = read_transcript(path)[-1]
        assert (last["kind"], last["reason"]) == ("shutdown", "cancelled")
