"""lib.agents.realserver: server URLs, the parameters of a game to create, and which seats an agent run takes (against
the
local IBEX server's REST API, with scripted players holding seats)."""

from __future__ import annotations

import asyncio
import json

import pytest

from lib.agents.realserver import PlayError, Seat, game_of, load_game_parameters, prepare_seats, server_urls
from lib.games import game_for
from lib.games.market.play import ui_parameters
from lib.ibex.api import IbexApi, Status
from lib.ibex.createparams import nested_payload, stored_rows
from lib.ibex.params import DEFAULT_PARAMETERS
from lib.localserver.server import LocalServer
from tests.helpers.players import ScriptedPlayer

# --- server_urls -----------------------------------------------------------------------------------------------


def test_flags_win_over_the_environment_and_a_trailing_slash_goes():
    env = {"IBEX_WS_URL": "ws://env:3088", "IBEX_API_URL": "http://env:3080/api/v1/"}

    assert server_urls(env).api_url == "http://env:3080/api/v1"
    urls = server_urls(env, "wss://ibex.example.org/wss", "https://ibex.example.org/api/v1")
    assert (urls.ws_url, urls.api_url) == ("wss://ibex.example.org/wss", "https://ibex.example.org/api/v1")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IBEX_API_URL": "http://h/api/v1"}, "missing setting IBEX_WS_URL"),
        ({"IBEX_WS_URL": "ws://h:3088"}, "missing setting IBEX_API_URL"),
        ({"IBEX_WS_URL": "http://h:3088", "IBEX_API_URL": "http://h/api/v1"},
         "IBEX_WS_URL must be ws://HOST:PORT or wss://HOST/PATH, got 'http://h:3088'"),
        ({"IBEX_WS_URL": "ws://h:3088", "IBEX_API_URL": "h:3080/api/v1"},
         "IBEX_API_URL must be http://HOST:PORT/api/v1 or https://HOST/api/v1, got 'h:3080/api/v1'"),
    ],
)
def test_missing_or_malformed_urls_are_named(env, message):
    with pytest.raises(PlayError, match="^" + message.replace("(", r"\(").replace("?", r"\?")):
        server_urls(env)


# --- load_game_parameters --------------------------------------------------------------------------------------


def test_without_a_file_the_real_servers_defaults_are_sent_in_its_nested_form():
    sent, params = load_game_parameters(None, agents_only=False, title="run 1")

    # The rows the real server stores from it are its defaults (what its web UI sends), newest first in a log.
    assert stored_rows(sent)[::-1] == [{"key": k, "type": t, "value": v} for k, t, v in DEFAULT_PARAMETERS]
    assert (sent["round_count"], sent["practice"], sent["timers"]["phase_3"]) == (5, True, 120)
    assert sent["tax_rate"] == {"initial": 1, "final": 33} and sent["title"] == "run 1"
    assert sent["agents_only"] is False and params.round_count == 5


def test_each_run_gets_a_title_of_its_own():
    first, _ = load_game_parameters(None, agents_only=False)
    second, _ = load_game_parameters(None, agents_only=False)

    assert first["title"] != second["title"] and len(first["title"]) <= 64


def test_an_object_file_overrides_and_agents_only_comes_from_the_flag(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"round_count": 3, "timer_phase_3": 45, "agents_only": False, "title": "pilot A"}))

    sent, params = load_game_parameters(path, agents_only=True)

    assert (sent["round_count"], sent["timers"]["phase_3"], sent["agents_only"]) == (3, 45, True)
    assert sent["title"] == "pilot A" and params.timer(3) == 45.0


def test_a_recorded_logs_parameter_list_is_accepted_without_its_game_over_rows(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps([{"key": "round_count", "type": "number", "value": "2"},
                                {"key": "practice_round", "type": "boolean", "value": "false"},
                                {"key": "simulation_parent_id", "type": "number", "value": "12"},
                                {"key": "simulation_reward_round", "type": "number", "value": "1"}]))

    sent, params = load_game_parameters(path, agents_only=False)

    assert (sent["round_count"], sent["practice"]) == (2, False)
    assert "simulation_parent_id" not in params.values


def test_rounds_practice_and_timer_scale_apply_over_the_file(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"round_count": 3, "timer_phase_3": 45}))

    sent, params = load_game_parameters(path, agents_only=False, rounds=1, practice=False, timer_scale=0.1)

    assert (sent["round_count"], sent["practice"]) == (1, False)
    # Scaled like --local's timers, but whole seconds and at least 1: the real server parseInts them.
    assert sent["timers"] == {"phase_1": 2, "phase_2": 18, "phase_3": 5, "phase_4": 12, "phase_5": 12,
                              "phase_6": 6, "phase_7": 2}
    assert [params.timer(p) for p in range(1, 8)] == [2, 18, 5, 12, 12, 6, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"round_count": 2,\n"timer_phase_3": }', "{path}:2: not valid JSON (Expecting value)"),
        ('"voting"', "{path}: expected a JSON object of parameters or a list of {{key, type, value}}, got str"),
        ('{"round_count": "many"}', "{path}: parameter 'round_count' must be a number, got 'many'"),
        ('{"timer_phase_4": 0}', "{path}: parameter 'timer_phase_4' must be a positive number of seconds (the server "
         "runs a phase without a timer when it reads 0)"),
        ('[{"value": "2"}]', "{path}[0]: expected an object with string 'key' and a 'value', got {{'value': '2'}}"),
        ('{"game_type": "futarchy", "round_count": 0}', "{path}: parameter 'round_count' must be from 1 to 1,000, "
         "got 0"),
        ('{"game_type": "market"}', "{path}: game_type 'market' is not supported (voting, harberger or futarchy)"),
        # the bounds of every game's parameters (lib.ibex.params) come before --create's own checks
        ('{"game_type": "harberger", "timer_phase_9": 0}', "{path}: parameter 'timer_phase_9' must be a positive "
         "number of seconds (the server runs a phase without a timer when it reads 0)"),
        ('{"rounds": 3, "tax_rate": {"initial": 1}}', "{path}: 'rounds', 'tax_rate': not a parameter create-for-llm "
         "sets (the server would ignore it; the names are those of lib/ibex/createparams.py)"),
        ('{"timer_phase_2": 0.5}', "{path}: parameter 'timer_phase_2' must be a whole number (the server keeps only "
         "the integer part), got 0.5"),
        ('{"owners_count": 4}', "{path}: parameter 'owners_count' must be 5: the agents play the voting game's six "
         "seats (one developer, five owners), got 4"),
        ('{"speculators_count": 2}', "{path}: parameter 'speculators_count' must be 0: the agents play the voting "
         "game's six seats (one developer, five owners), got 2"),
        ('{"title": "Anne\'s pilot"}', "{path}: the title must hold no apostrophe and at most 64 characters (the "
         "server pastes it into SQL)"),
        ('{"title": 7}', "{path}: 'title' must be a string, got 7"),
    ],
)
def test_bad_parameter_files_name_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "params.json"
    path.write_text(text)

    with pytest.raises(PlayError) as caught:
        load_game_parameters(path, agents_only=False)

    assert str(caught.value) == message.format(path=path)


@pytest.mark.parametrize("game_type", ["harberger", "futarchy"])
def test_a_market_game_gets_the_web_uis_market_defaults_and_its_nine_timers_scaled(game_type):
    sent, params = load_game_parameters(None, agents_only=False, rounds=2, practice=False, timer_scale=0.1,
                                        game_type=game_type, title="market run")

    expected = {k: v for k, v in ui_parameters(game_type).items() if v is not None}
    expected.update(round_count=2, practice_round=False, **{f"timer_phase_{p}": t for p, t in enumerate(
        (2, 9, 12, 1, 1, 27, 6, 9, 2), 1)})
    assert sent == nested_payload(expected, "market run")
    assert stored_rows(sent)[0] == {"key": "game_type", "type": "string", "value": game_type}
    assert (params.game_type, params.get("speculators_count"), params.timer(9)) == (game_type, 6, 2.0)


def test_a_files_game_type_chooses_the_defaults_and_agrees_with_the_flag(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"game_type": "futarchy", "tax_rate_final": 20}))

    sent, params = load_game_parameters(path, agents_only=True)
    again, _ = load_game_parameters(path, agents_only=True, game_type="futarchy", title=sent["title"])

    assert again == sent
    assert (sent["game_type"], sent["tax_rate"], sent["agents_only"]) == ("futarchy", {"initial": 1, "final": 20}, True)
    assert sent["speculators"]["base_points"] == 400000 and sent["timers"]["phase_6"] == 270
    with pytest.raises(PlayError, match="game_type 'futarchy' disagrees with --game-type harberger"):
        load_game_parameters(path, agents_only=False, game_type="harberger")


def test_a_timer_scale_never_makes_a_phase_without_timer():
    sent, _ = load_game_parameters(None, agents_only=False, timer_scale=0.001)

    assert set(sent["timers"].values()) == {1}


def test_a_missing_parameter_file_is_named(tmp_path):
    with pytest.raises(PlayError, match="params.json: cannot read the game parameters: No such file"):
        load_game_parameters(tmp_path / "params.json", agents_only=False)


# --- prepare_seats ---------------------------------------------------------------------------------------------


async def _with_game(scenario, joined: int = 0):
    """Run scenario(api, game_id, held) on a fresh game where `joined` scripted players hold the first seats."""
    async with LocalServer() as server, IbexApi(server.api_url) as api:
        game_id = server.create_game({})
        held = [await api.get_recovery(game_id) for _ in range(joined)]
        players = [ScriptedPlayer(server.ws_url, game_id, code) for code in held]
        for player in players:
            await player.join()
        try:
            return await scenario(api, game_id, held)
        finally:
            for player in players:
                await player.client.close()


def seats(scenario, joined: int = 0):
    return asyncio.run(asyncio.wait_for(_with_game(scenario, joined), 20))


def test_by_default_every_free_seat_is_taken_with_fresh_codes():
    taken = seats(lambda api, game_id, held: prepare_seats(api, game_id, None, []), joined=2)

    assert len(taken) == 4 and len({s.recovery for s in taken}) == 4
    assert all(s.resumes is None and not s.given for s in taken)


def test_known_codes_resume_their_seats_and_fresh_ones_fill_up_to_players():
    async def scenario(api, game_id, held):
        return held, await prepare_seats(api, game_id, 4, [held[1], held[0]])

    held, taken = seats(scenario, joined=2)

    assert taken[:2] == [Seat(held[1], resumes=2, given=True), Seat(held[0], resumes=1, given=True)]
    assert [s.resumes for s in taken[2:]] == [None, None] and len(taken) == 4
    assert taken[0].describe() == f"code {held[1][:6]}… resumes seat 2"


def test_a_given_code_the_server_does_not_know_takes_a_free_seat():
    taken = seats(lambda api, game_id, held: prepare_seats(api, game_id, None, ["my-own-code-123456"]))

    assert taken == [Seat("my-own-code-123456", given=True)]
    assert taken[0].describe() == "code my-own… takes a free seat (given)"


@pytest.mark.parametrize(
    ("players", "codes", "joined", "message"),
    [
        (None, ["unknown-code-123456"], 6, "game 1 is full and recovery code unknow… is none of its players"),
        (None, [], 6, "game 1 has no free seat: pass the recovery codes of its agents (--recovery) to resume them"),
        (5, [], 3, "game 1 has 3 free seat(s), 5 asked for"),
        (1, ["code-one-123456", "code-two-123456"], 0, "--players 1 is fewer than the 2 recovery codes given"),
        (None, ["same-code-123456", "same-code-123456"], 0, "the same recovery code is given twice (--recovery)"),
        (13, [], 0, "--players must be from 1 to 12, got 13"),
    ],
)
def test_seats_that_cannot_be_had_are_a_clear_error(players, codes, joined, message):
    async def scenario(api, game_id, held):
        with pytest.raises(PlayError) as caught:
            await prepare_seats(api, game_id, players, codes)
        return str(caught.value)

    assert seats(scenario, joined=joined) == message


def test_a_game_that_does_not_exist_is_named():
    async def scenario(api, game_id, held):
        with pytest.raises(PlayError) as caught:
            await prepare_seats(api, 42, None, [])
        return str(caught.value), api.base_url

    message, base = seats(scenario)

    assert message == f"game 42 is not on the server at {base}: Game with id 42 not found"


@pytest.mark.parametrize("count, said", [(0, "0 trades"), (1, "1 trade,"), (2, "2 trades")])
def test_the_market_round_report_counts_trades_in_good_english(count, said):
    from lib.games.market.play import round_lines
    from lib.games.market.view import MarketView

    view = MarketView(game_type="harberger", number=1, tag="A")
    rec = view.record(1)
    rec.winning = 1
    rec.trades[1] = [{"median": 50} for _ in range(count)]
    market = next(line for line in round_lines([view], 1, {}) if line.startswith("  market 1"))
    assert said in market + ","


# --- game_of ---------------------------------------------------------------------------------------------------


class LobbyAndStatus:
    """A REST client that records its calls: the lobby lists `lobby`, GET /games/status answers `ruleset`."""

    def __init__(self, lobby: list[dict], ruleset: str | None) -> None:
        self.lobby = lobby
        self.ruleset = ruleset
        self.calls: list[str] = []

    async def started(self) -> list[dict]:
        self.calls.append("started")
        return self.lobby

    async def status(self, game_id: int, code: str) -> Status:
        self.calls.append("status")
        return Status(True, False, {}, self.ruleset, "")


@pytest.mark.parametrize(("lobby", "ruleset", "game", "known", "calls"), [
    ([{"id": 7, "type": "futarchy"}], "Harberger", "futarchy", True, ["started"]),
    ([{"id": 8, "type": "futarchy"}], "Harberger", "harberger", False, ["started", "status"]),
    ([], "Harberger", "harberger", False, ["started", "status"]),
    ([], "Voting", "voting", True, ["started", "status"]),
    ([{"id": 7, "type": "chess"}], None, "voting", True, ["started", "status"]),
], ids=["listed", "other-game-listed", "market-ruleset", "other-ruleset", "unknown-type"])
def test_the_game_of_a_running_game_comes_from_the_lobby_else_from_the_status_ruleset(lobby, ruleset, game, known,
                                                                                      calls):
    """Both market games report the ruleset "Harberger": the first of them plays, not known, and its agents tell
    them apart by the game's events."""
    api = LobbyAndStatus(lobby, ruleset)
    assert asyncio.run(game_of(api, 7, "code")) == (game_for(game), known)
    assert api.calls == calls
