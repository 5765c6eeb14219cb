"""`python handler.py --create` as a user runs it, against the local IBEX server (which now takes only the real
server's nested gameParameters): the new-game flags apply, an agents-only game the server could not get agents
for is played from here, and flags that would be ignored are refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lib.localserver.server import LocalServer
from tests.helpers.handler_runs import FULL_ROUND, Handler, actions_by_seat, env_for, free_port, run
from tests.helpers.paths import FIXTURES, REPO


def test_rounds_practice_and_timer_scale_shape_the_created_game(tmp_path):
    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw") as server:
            handler = await Handler.start(tmp_path, env_for(server), "--create", "--rounds", "1", "--no-practice",
                                          "--timer-scale", "0.01")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert "created game 1: 1 round, phase timers 1/2/1/1/1/1/1 s, title 'LLM agents " in handler.out
    stored = {row["key"]: row["value"] for row in recorded["parameters"]}
    assert (stored["round_count"], stored["practice_round"]) == ("1", "false")
    assert [stored[f"timer_phase_{n}"] for n in range(1, 8)] == ["1", "2", "1", "1", "1", "1", "1"]
    assert actions_by_seat(recorded) == FULL_ROUND


def test_agents_only_game_the_server_got_no_agents_for_is_played_from_here(tmp_path):
    # The server calls an agent manager nobody runs; this handler's own listens elsewhere. The real server then
    # answers 400 without the id although the game started: the handler finds it by its title and plays it.
    server_calls, handler_listens = free_port(), free_port()

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                               agent_manager=f"127.0.0.1:{server_calls}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(handler_listens)),
                                          "--create", "--agents-only", "--rounds", "1", "--no-practice",
                                          "--timer-scale", "0.01")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert (f"the server could not get agents (connect ECONNREFUSED 127.0.0.1:{server_calls}); playing its six "
            "seats from here") in handler.out
    assert {row["key"]: row["value"] for row in recorded["parameters"]}["agents_only"] == "true"
    assert actions_by_seat(recorded) == FULL_ROUND


MARKET_SESSIONS = FIXTURES / "market_sessions.json"
def test_agents_only_game_another_agent_manager_plays_says_where_to_follow_it(tmp_path):
    # Another agent manager (here a recording one) holds the port the server calls: it gets the game, and this
    # handler, which exits at once, says where that game's progress and transcripts go.
    from lib.agents.manager import AgentManager

    port = free_port()
    spawned: list[tuple[int, int]] = []

    async def record(game_id: int, agents: int) -> None:
        spawned.append((game_id, agents))

    async def scenario():
        other = AgentManager(record, "127.0.0.1", port)
        await other.start()
        try:
            async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                                   agent_manager=f"127.0.0.1:{port}") as server:
                handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--create",
                                              "--agents-only", "--rounds", "1", "--no-practice")
                return await handler.finish(), handler
        finally:
            await other.stop()

    code, handler = run(scenario())

    assert code == 0, handler.stderr
    assert spawned == [(1, 6)]
    [line] = [x for x in handler.out.splitlines() if "is played by the agent manager the server called" in x]
    assert str(REPO / "logs" / "handler.log") in line and "--logs-dir" in line and "-game1" in line




def market_actions(recorded):
    """(seats that declared, seats that ended their speculation) in a market game's log."""
    sent = {(e.get("number"), e["content"]["type"]) for e in recorded["log"] if e.get("type") == "message"}
    return ({n for n, kind in sent if kind == "declare"}, {n for n, kind in sent if kind == "done-speculating"})


def test_create_game_type_makes_and_plays_a_twelve_seat_market_game(tmp_path):
    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                               sessions=MARKET_SESSIONS, strict=True) as server:
            handler = await Handler.start(tmp_path, env_for(server), "--create", "--game-type", "futarchy",
                                          "--policy", "baseline", "--rounds", "1", "--no-practice",
                                          "--timer-scale", "0.01")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    # The web UI's futarchy defaults, timers scaled to whole seconds (the market's 270 s become 3).
    assert "created game 1: futarchy, 1 round, phase timers 1/1/1/1/1/3/1/1/1 s, title 'LLM agents " in handler.out
    assert "game 1: 12 agents" in handler.out and "market 1 (Project):" in handler.out
    stored = {row["key"]: row["value"] for row in recorded["parameters"]}
    assert (stored["game_type"], stored["round_count"], stored["practice_round"]) == ("futarchy", "1", "false")
    assert (stored["speculators_count"], stored["owners_count"], stored["developers_count"]) == ("6", "5", "1")
    assert (stored["speculators_base_points"], stored["cash_for_snipers"]) == ("400000", "250000")
    assert [stored[f"timer_phase_{n}"] for n in range(1, 10)] == ["1", "1", "1", "1", "1", "3", "1", "1", "1"]
    assert market_actions(recorded) == ({1, 2, 3, 4, 5, 6}, set(range(7, 13)))


def test_create_agents_only_with_a_harberger_params_file_plays_its_twelve_seats(tmp_path):
    # The game type comes from the file; the server calls an agent manager nobody runs, so this process plays.
    server_calls, handler_listens = free_port(), free_port()
    params = tmp_path / "harberger.json"
    params.write_text(json.dumps({"game_type": "harberger", "tax_rate_final": 20, "title": "harberger pilot"}))

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                               sessions=MARKET_SESSIONS, strict=True,
                               agent_manager=f"127.0.0.1:{server_calls}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(handler_listens)),
                                          "--create", "--agents-only", "--params", str(params), "--policy",
                                          "baseline", "--rounds", "1", "--no-practice", "--timer-scale", "0.01")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert "created agents-only game 1: harberger, 1 round, " in handler.out
    assert "title 'harberger pilot'" in handler.out
    assert "playing its twelve seats from here" in handler.out
    stored = {row["key"]: row["value"] for row in recorded["parameters"]}
    assert (stored["game_type"], stored["agents_only"], stored["tax_rate_final"]) == ("harberger", "true", "20")
    assert market_actions(recorded) == ({1, 2, 3, 4, 5, 6}, set(range(7, 13)))


def test_create_agents_only_market_game_is_played_by_this_process_as_the_servers_agent_manager(tmp_path):
    port = free_port()

    async def scenario():
        async with LocalServer(records_dir=tmp_path / "records", admin_password="admin-secret-pw",
                               sessions=MARKET_SESSIONS, strict=True, agent_manager=f"127.0.0.1:{port}") as server:
            handler = await Handler.start(tmp_path, env_for(server, AGENT_MANAGER_PORT=str(port)), "--create",
                                          "--agents-only", "--game-type", "harberger", "--policy", "baseline",
                                          "--rounds", "1", "--no-practice", "--timer-scale", "0.01")
            code = await handler.finish()
            return code, handler, await server.wait_game_over(1, 10)

    code, handler, recorded = run(scenario())

    assert code == 0, handler.stderr
    assert f"agent manager for this game listening on http://127.0.0.1:{port}" in handler.out
    assert "created agents-only game 1: harberger, 1 round" in handler.out and "game 1: 12 agents" in handler.out
    assert {row["key"]: row["value"] for row in recorded["parameters"]}["agents_only"] == "true"
    assert market_actions(recorded) == ({1, 2, 3, 4, 5, 6}, set(range(7, 13)))


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (["--game-type", "harberger"], {"game_type": "futarchy"},
         "{path}: game_type 'futarchy' disagrees with --game-type harberger"),
        (["--players", "7"], None, "--players 7: a voting game has 6 seats"),
        (["--chat"], {"game_type": "harberger"}, "--chat: harberger has no chat (the server has no chat handler in "
         "these games)"),
        ([], {"game_type": "harberger", "speculators_count": 4}, "{path}: parameter 'speculators_count' must be 6: "
         "the agents play the harberger game's twelve seats (one developer, five owners, six speculators), got 4"),
    ],
)
def test_market_create_settings_that_cannot_be_played_are_refused_before_any_game(tmp_path, args, params, message):
    path = tmp_path / "params.json"
    extra = []
    if params is not None:
        path.write_text(json.dumps(params))
        extra = ["--params", str(path)]
    env = {"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1", "IBEX_USERNAME": "admin",
           "IBEX_PASSWORD": "pw", "IBEX_API_URL": "http://127.0.0.1:9/api/v1", "IBEX_WS_URL": "ws://127.0.0.1:9"}
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--create", "--policy", "baseline", *args,
                             *extra], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: " + message.format(path=path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--game", "5", "--rounds", "2"], "--rounds, --practice/--no-practice and --timer-scale set up a new game: "
         "they work with --local and --create only"),
        (["--serve", "--no-practice"], "--rounds, --practice/--no-practice and --timer-scale set up a new game: "
         "they work with --local and --create only"),
        (["--create", "--sessions", "s.json"], "--sessions is the local server's private values table: it works "
         "with --local only"),
    ],
)
def test_flags_a_mode_would_ignore_are_refused(tmp_path, args, message):
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"python handler.py: error: {message}"
