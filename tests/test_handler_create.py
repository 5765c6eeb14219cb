"""`python handler.py --create` as a user runs it, against the local IBEX server (which now takes only the real
server's nested gameParameters): the new-game flags apply, an agents-only game the server could not get agents
for is played from here, and flags that would be ignored are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lib.localserver import LocalServer
from tests.test_handler_real import FULL_ROUND, REPO, Handler, actions_by_seat, env_for, free_port, run


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
                            text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"python handler.py: error: {message}"
