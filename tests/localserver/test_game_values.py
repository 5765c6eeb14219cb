"""Each game's own private values on the local server (issue #23): a game created with its own sessions table or
session number plays exactly those values, whatever the server's table holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lib.ibex.params import parameters_from_dict
from lib.ibex.sessions import parse_sessions
from lib.localserver.server import LocalServer
from lib.study.values import fresh_sessions_table, fresh_table, session_number_of
from tests.helpers.localserver import FAST, codes
from tests.helpers.players import Behaviour, play_game

PARAMS = {**FAST, "practice_round": False, "round_count": 2}
FULL = dict(parameters_from_dict(PARAMS).values)  # what values.py draws from: every value range
QUIET = Behaviour(ready_retry=1.0)
SEATS = range(1, 7)


def played_values(recorded: dict[str, Any]) -> dict[tuple[int, int], list[int]]:
    """(round, seat) -> [v without project, v with project] as each seat's assign-role in the log gave them."""
    return {(e["meta"]["round"], e["meta"]["recipient"]): e["sent"]["data"]["property"]["v"][:2]
            for e in recorded["server-log"] if e["sent"]["type"] == "assign-role"}


def expected(table: list[dict[str, Any]], session: int) -> dict[tuple[int, int], list[int] | None]:
    sessions = parse_sessions(table)
    return {(r, seat): sessions.values(session, r, seat) for r in (1, 2) for seat in SEATS}


async def play_both(server: LocalServer, first: int, second: int) -> list[dict[str, Any]]:
    await asyncio.gather(*(play_game(server.ws_url, game, codes(), [QUIET] * 6) for game in (first, second)))
    return [await server.wait_game_over(game, timeout=60) for game in (first, second)]


def test_two_games_with_their_own_fresh_tables_each_play_their_own_values(tmp_path: Path) -> None:
    tables = [fresh_table("voting", FULL, seed=11, index=k) for k in (0, 1)]

    async def scenario() -> list[dict[str, Any]]:
        async with LocalServer(records_dir=tmp_path) as server:
            first = server.create_game(PARAMS, sessions=tables[0])
            second = server.create_game(PARAMS, sessions=parse_sessions(tables[1]))
            return await play_both(server, first, second)

    logs = asyncio.run(scenario())
    wanted = [expected(table, 1) for table in tables]
    assert wanted[0] != wanted[1] and None not in wanted[0].values()
    assert [played_values(log) for log in logs] == wanted


def test_a_study_table_on_the_server_and_a_session_number_per_game_give_game_k_its_fresh_values(
        tmp_path: Path) -> None:
    study = fresh_sessions_table("voting", FULL, seed=11, indices=range(2))

    async def scenario() -> list[dict[str, Any]]:
        async with LocalServer(records_dir=tmp_path, sessions=parse_sessions(study, "study")) as server:
            first = server.create_game(PARAMS, session_number=session_number_of(0))
            second = server.create_game(PARAMS, session_number=session_number_of(1))
            return await play_both(server, first, second)

    logs = asyncio.run(scenario())
    # the same values as the game's own fresh table: game k's values depend on the seed and k only
    assert [played_values(log) for log in logs] == [expected(fresh_table("voting", FULL, 11, k), 1) for k in (0, 1)]
    assert [[p["value"] for p in log["parameters"] if p["key"] == "session_number"] for log in logs] == [["1"], ["2"]]


def test_a_table_without_the_games_rounds_is_refused_in_one_line_naming_it() -> None:
    short = fresh_table("voting", {**FULL, "round_count": 1}, seed=11, index=0)

    async def scenario() -> None:
        async with LocalServer() as server:
            with pytest.raises(ValueError) as refused:
                server.create_game(PARAMS, sessions=short)
            assert str(refused.value) == ("game 1's sessions table: session 1 has no private values for round 2 "
                                          "(the game plays rounds 1..2)")
            with pytest.raises(ValueError, match="sessions\\[0\\] must be an object"):
                server.create_game(PARAMS, sessions=[[]])

    asyncio.run(scenario())
