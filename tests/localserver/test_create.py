"""The local server's create-for-llm answers as the real server's does (answers recorded from the real server,
master 92735655, on loopback): the web UI's nested gameParameters create a game, a flat object gets HTTP 400
"Cannot read properties of undefined (reading 'initial')" and still uses a game id, and so on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lib.agents.realserver import create_payload
from lib.ibex.params import parse_parameters
from lib.localserver.server import LocalServer
from tests.helpers.games import registered_copy
from tests.helpers.localserver import codes, http
from tests.helpers.paths import FIXTURES
from tests.helpers.players import Behaviour, play_game

RECORDED = json.loads((FIXTURES / "create_for_llm" / "real_server_rows.json").read_text())
UI_DEFAULT = RECORDED["ui_default_voting"]["gameParameters"]
CREDENTIALS = {"username": "admin", "password": "admin"}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def ui(change: Any) -> dict[str, Any]:
    """The web UI's default payload with one change made by `change(payload)`."""
    payload = json.loads(json.dumps(UI_DEFAULT))
    change(payload)
    return payload


async def create(server: LocalServer, game_parameters: Any = None, *, missing: bool = False) -> tuple[int, Any]:
    body = dict(CREDENTIALS) if missing else {**CREDENTIALS, "gameParameters": game_parameters}
    return await http("POST", f"{server.api_url}/games/create-for-llm", body)


def test_the_exact_payload_of_the_web_ui_creates_the_game_the_real_server_stores():
    async def scenario():
        async with LocalServer() as server:
            answer = await create(server, UI_DEFAULT)
            _status, lobby = await http("GET", f"{server.api_url}/games/started")
            return answer, lobby["data"], server.game(1)

    answer, lobby, game = run(scenario())

    assert answer == (200, {"data": {"id": 1}, "status": True, "message": "Game created and started"})
    assert list(reversed(game.parameter_rows)) == RECORDED["ui_default_voting"]["rows"]
    assert game.params.values == parse_parameters(RECORDED["ui_default_voting"]["rows"]).values
    assert (game.round, game.phase, game.params.timer(2)) == (0, 0, 180.0)
    assert lobby[0]["title"] == UI_DEFAULT["title"]


# (what the call sends, the real server's message, whether it used a game id), as the real server answered.
REFUSED = [
    ("flat names", {"round_count": 3, "timer_phase_3": 60}, "Cannot read properties of undefined (reading 'initial')",
     True),
    ("empty object", {}, "Cannot read properties of undefined (reading 'initial')", True),
    ("a string", "x", "Cannot read properties of undefined (reading 'initial')", True),
    ("a list", [], "Cannot read properties of undefined (reading 'initial')", True),
    ("null", None, "Cannot create a new user without game parameters", False),
    ("title with apostrophe", ui(lambda p: p.update(title="it's")), 'syntax error at or near "s"', False),
    ("title of 65", ui(lambda p: p.update(title="t" * 65)), "value too long for type character varying(64)", False),
    ("signal null", ui(lambda p: p.update(signal=None)), "Cannot read properties of null (reading 'low')", True),
    ("no profits", ui(lambda p: p["owners"].pop("profit")),
     "Cannot read properties of undefined (reading 'no_project')", True),
    ("no timers", ui(lambda p: p.pop("timers")), "Cannot read properties of undefined (reading 'phase_0')", True),
    ("two developers", ui(lambda p: p["developers"].update(count=2)),
     "Game {id} has 6 players but 7 were expected. This is most likely a player generation a bug", True),
    ("balance abc", ui(lambda p: p["owners"].update(balance="abc")), 'invalid input syntax for type bigint: "abc"',
     True),
    ("balance 1.5", ui(lambda p: p["owners"].update(balance=1.5)), 'invalid input syntax for type bigint: "1.5"',
     True),
    ("apostrophe in a value", ui(lambda p: p.update(game_type="vot'ing")), 'syntax error at or near "ing"', True),
    ("value of 300", ui(lambda p: p.update(minutes_for_trading="9" * 300)),
     "value too long for type character varying(256)", True),
    ("unknown game type", ui(lambda p: p.update(game_type="chess")),
     "Cannot read properties of undefined (reading 'start')", True),
]


@pytest.mark.parametrize(("sent", "message", "uses_id"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_what_the_real_server_refuses_is_refused_with_its_words_and_the_same_game_ids(sent, message, uses_id):
    async def scenario():
        async with LocalServer() as server:
            refused = await create(server, sent)
            after = await create(server, UI_DEFAULT)
            return refused, after

    refused, after = run(scenario())

    assert refused == (400, {"data": {}, "status": True, "message": message.format(id=1)})
    assert after[1]["data"] == {"id": 2 if uses_id else 1}


def test_a_call_without_game_parameters_uses_no_id():
    async def scenario():
        async with LocalServer() as server:
            return await create(server, missing=True), await create(server, UI_DEFAULT)

    missing, after = run(scenario())

    assert missing[0] == 400 and missing[1]["message"] == "Cannot create a new user without game parameters"
    assert after[1]["data"] == {"id": 1}


def test_what_the_real_server_accepts_with_javascripts_types_is_accepted():
    # The real server answered 200 to a round count sent as a string (the web UI sends one once it is edited).
    async def scenario():
        async with LocalServer() as server:
            answer = await create(server, ui(lambda p: p.update(round_count="3", title="edited")))
            return answer, server.game(1).params

    answer, params = run(scenario())

    assert answer[0] == 200 and params.round_count == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(game_type="market"), "game_type 'market': the local server plays voting, harberger and "
         "futarchy games only"),
        (lambda p: p.update(game_type="goods-market"), "game_type 'goods-market': the local server plays voting, "
         "harberger and futarchy games only"),
        (lambda p: (p["owners"].update(count=3)), "the local server plays one developer and five owners "
         "(developers.count 1, owners.count 5, speculators.count 0)"),
        (lambda p: p.update(round_count="many"), "parameter 'round_count' is NaN on the server: the local server "
         "plays only games where it is a whole number"),
    ],
)
def test_what_the_real_server_would_start_but_the_local_one_cannot_play_is_refused_by_name(change, message):
    async def scenario():
        async with LocalServer() as server:
            return await create(server, ui(change))

    assert run(scenario()) == (400, {"data": {}, "status": True, "message": message})


def test_a_created_games_log_lists_the_stored_rows_as_the_real_server_does(tmp_path):
    flat = {"round_count": 1, "practice_round": False, "timer_phase_1": 0.05, "timer_phase_2": 0.05,
            "timer_phase_3": 2, "timer_phase_4": 2, "timer_phase_5": 0.05, "timer_phase_6": 2, "timer_phase_7": 0.05}
    payload, params = create_payload(flat, title="logged")

    async def scenario():
        async with LocalServer(records_dir=tmp_path) as server:
            status, body = await create(server, payload)
            game_id = body["data"]["id"]
            await play_game(server.ws_url, game_id, codes(), [Behaviour()] * 6)
            return status, await server.wait_game_over(game_id, timeout=60), server.game(game_id)

    status, recorded, game = run(scenario())

    assert status == 200
    rows = recorded["parameters"]
    assert rows[:-2] == list(reversed(game.parameter_rows))
    assert [row["key"] for row in rows[-2:]] == ["simulation_parent_id", "simulation_reward_round"]
    assert {row["key"]: row["value"] for row in rows}["timer_phase_2"] == "0.05"  # honoured here, not on the real one
    assert parse_parameters(rows[:-2]).values == params.values
    assert json.loads((tmp_path / "1.log.json").read_text()) == recorded


def test_a_registered_game_is_created_and_refused_by_its_own_server_rules():
    payload = ui(lambda p: p.update(game_type="voting-copy"))

    async def scenario():
        async with LocalServer(strict=True) as server:
            created = await create(server, payload)
            _status, status = await http("GET", f"{server.api_url}/games/status?id=1&recovery=nobody")
            rules.refuse = "the copy refuses this one"
            refused = await create(server, payload)
            return created, status["data"]["ruleset"], server.game(1).params.game_type, refused

    with registered_copy("voting", "voting-copy") as rules:
        created, ruleset, game_type, refused = run(scenario())
    unplayed = run(_create_once(payload))

    assert created == (200, {"data": {"id": 1}, "status": True, "message": "Game created and started"})
    assert (ruleset, game_type) == ("Voting", "voting-copy")
    assert rules.calls == [("refusal", "voting-copy", True), ("new_game", 1, "voting-copy"),
                           ("refusal", "voting-copy", True)]
    assert refused == (400, {"data": {}, "status": True, "message": "the copy refuses this one"})
    # once unregistered, the type is unknown again and fails as on the real server
    assert unplayed == (400, {"data": {}, "status": True,
                              "message": "Cannot read properties of undefined (reading 'start')"})


async def _create_once(payload: Any) -> tuple[int, Any]:
    async with LocalServer() as server:
        return await create(server, payload)
