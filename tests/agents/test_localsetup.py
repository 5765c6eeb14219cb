"""A --local game set up as a study's arm is (lib/agents/localsetup.py): --params, --values fresh|session N and
--seat-policy, parsed, refused in one line, and played through handler.py against the fake OpenAI server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.agents.localsetup import local_values, parse_seat_policies, parse_values, seat_policies
from lib.agents.run import UsageError
from lib.games import game_for
from lib.games.voting.policy import BaselinePolicy
from lib.ibex.sessions import load_sessions
from lib.study.logtables import tables_from_log
from lib.study.values import fresh_table
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.paths import REPO
from tests.helpers.scripted_answers import player

# The decision phases (3, 4, 6) end as soon as every seat has acted: their long timers cost nothing and keep the
# deadline out of the way on a busy machine (with 1.5 s, a starved handler's baseline seats fell back for timeout).
FAST = {"round_count": 1, "practice_round": False, "timer_phase_1": 0.1, "timer_phase_2": 0.2, "timer_phase_3": 30,
        "timer_phase_4": 30, "timer_phase_5": 0.2, "timer_phase_6": 30, "timer_phase_7": 0.1}


def test_values_and_seat_policies_are_parsed_or_refused_in_one_line():
    assert parse_values(None) is None
    assert parse_values(["fresh"]) == ("fresh", None)
    assert parse_values(["session", "3"]) == ("session", 3)
    for bad in (["fresh", "2"], ["session"], ["session", "0"], ["sessions", "2"]):
        with pytest.raises(UsageError, match="use --values fresh or --values session N"):
            parse_values(bad)
    assert parse_seat_policies(["developer=llm", "3=fitted"]) == [("developer", "llm"), ("3", "fitted")]
    for bad in ("developer", "=baseline", "owners=smart"):
        with pytest.raises(UsageError, match="use WHO=POLICY"):
            parse_seat_policies([bad])


def test_a_seat_number_overrides_its_group_and_unknown_groups_or_seats_are_refused():
    game = game_for("voting")
    params = game.rules.parameters(FAST)
    made: list[str] = []
    default = BaselinePolicy(seed=0)

    def make(name: str) -> BaselinePolicy:
        made.append(name)
        return BaselinePolicy(seed=0, name=name)

    seats = seat_policies([("3", "empirical"), ("owners", "fitted")], game, params, default, make)
    assert {seat: p.name for seat, p in seats.items()} == {1: "fitted", 2: "baseline", 3: "empirical", 4: "fitted",
                                                         5: "fitted", 6: "fitted"}
    assert sorted(made) == ["empirical", "fitted"]  # one policy per name, shared by its seats
    with pytest.raises(UsageError, match="'speculators' is not a seat group of a voting game"):
        seat_policies([("speculators", "baseline")], game, params, default, make)
    with pytest.raises(UsageError, match="seats 1-6"):
        seat_policies([("7", "baseline")], game, params, default, make)


def test_fresh_values_are_a_studys_game_0_and_a_session_is_passed_on():
    game = game_for("voting")
    flat = dict(game.rules.parameters(FAST).values)
    fresh = local_values(("fresh", None), game, FAST, 11)
    assert fresh == {"sessions": fresh_table("voting", flat, 11, 0), "session_number": 1}
    assert local_values(("session", 3), game, FAST, 11) == {"session_number": 3}
    assert local_values(None, game, FAST, 11) == {}


def valid_answer(body: dict) -> str:
    game, _seat, action = player(body)
    if action == "SubmitCompensationRequest":
        return json.dumps({"gameId": game, "type": "compensation-request", "compensationRequests": [None, 300000]})
    if action == "SubmitCompensationOffer":
        return json.dumps({"gameId": game, "type": "compensation-offer", "compensationOffers": [None, 100000]})
    return json.dumps({"gameId": game, "type": "compensation-decision", "compensationDecisions": [1]})


def handler(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    params = tmp_path / "params.json"
    params.write_text(json.dumps(FAST))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))}
    return subprocess.run([sys.executable, "handler.py", "--local", "--params", str(params), "--records",
                           str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs"), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHON_DOTENV_DISABLED": "1", **(env or {})})


def test_a_local_game_with_fresh_values_and_a_model_on_one_seat(tmp_path):
    with FakeOpenAI() as fake:
        fake.chat_default = valid_answer
        done = handler(tmp_path, "--policy", "baseline", "--values", "fresh", "--seed", "11", "--seat-policy",
                       "1=llm", "--no-preflight",
                       env={"OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.base_url,
                            "OPENAI_MODEL": "gpt-4.1-mini"})
        asked = fake.calls_to("POST", "/chat/completions")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "values: fresh (seed 11); seat 1 llm, seat 2 baseline" in done.stdout
    assert len(asked) == 2  # seat 1's request and vote
    [log] = (tmp_path / "records").glob("*.log.json")
    session = fresh_table("voting", dict(game_for("voting").rules.parameters(FAST).values), 11, 0)
    table = load_sessions_from(session, tmp_path)
    for row in tables_from_log(log).seat_rounds:
        assert [row["value_0"], row["value_1"]] == table.values(1, 1, row["seat"])
    [decisions] = (tmp_path / "logs").glob("*/decisions.csv")
    made = {(r["seat"], r["made_by"]) for r in csv.DictReader(decisions.open())}
    assert made == {("1", "model"), ("2", "baseline"), ("3", "baseline"), ("4", "baseline"), ("5", "baseline"),
                    ("6", "baseline")}


def load_sessions_from(data: list, folder: Path):
    path = folder / "fresh-sessions.json"
    path.write_text(json.dumps(data))
    return load_sessions(path)


def test_a_local_game_plays_the_session_asked_for(tmp_path):
    done = handler(tmp_path, "--policy", "baseline", "--values", "session", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    [log] = (tmp_path / "records").glob("*.log.json")
    table = load_sessions(REPO / "jsonFiles" / "sessions.json")
    for row in tables_from_log(log).seat_rounds:
        assert [row["value_0"], row["value_1"]] == table.values(3, 1, row["seat"])


def test_the_new_options_are_refused_outside_local(tmp_path):
    done = subprocess.run([sys.executable, "handler.py", "--game", "4", "--values", "fresh"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "work with --local only" in done.stderr


def test_seat_groups_are_the_game_s_own():
    """--seat-policy names a seat group of the game being played: the ultimatum test game's are proposer and
    responder, not the IBEX games' developer, owners and speculators."""
    from lib.games import register, unregister
    from tests.games.ultimatum.game import GAME

    register(GAME)
    try:
        params = GAME.rules.parameters(GAME.rules.local_parameters(rounds=1, practice=False, timer_scale=0.1))
        default = BaselinePolicy(seed=0)

        def make(name: str) -> BaselinePolicy:
            return BaselinePolicy(seed=0, name=name)

        seats = seat_policies([("responder", "fitted")], GAME, params, default, make)
        assert {seat: p.name for seat, p in seats.items()} == {1: "baseline", 2: "fitted"}
        with pytest.raises(UsageError, match=r"'owners' is not a seat group of a ultimatum game \(proposer, "
                                             r"responder, or a seat number\)"):
            seat_policies([("owners", "baseline")], GAME, params, default, make)
    finally:
        unregister(GAME.name)
