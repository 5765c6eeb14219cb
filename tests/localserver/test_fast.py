"""The local server's fast mode (issue #23): a phase that only its timer ends and in which nobody can act ends at
once, every other timer stays as configured. A baseline voting game and a Harberger game, each played in normal and
in fast mode, make the same decisions, send no refused frame, and show in their logs the same events in the same
order, the idle phases' timers set to end at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from lib.games import game_for
from lib.games.voting.policy import BaselinePolicy
from lib.games.voting.rules import parameters_from_dict
from lib.localserver.server import LocalServer
from tests.helpers import market_runs
from tests.helpers.agent_games import FAST as VOTING_FAST
from tests.helpers.agent_games import assert_clean_game, play
from tests.helpers.market_runs import SESSIONS, decisions, play_market

IDLE_SECONDS = 2.0  # the idle phases' timers in both modes: a normal game waits them out
SLACK_MS = 5  # the event loop may fire a timer a clock tick early, and the ends are whole milliseconds
TIMER_EVENTS = ("phase-transition", "set-timer", "reset-timer", "round-end", "game-over")


def timer_ends(recorded: dict[str, Any]) -> dict[tuple[int, int], int]:
    """(round, phase) -> the `end` (ms) of the set-timer the server broadcast as the phase began (it goes out just
    before the phase's phase-transition)."""
    ends, pending = {}, None
    for event in recorded["server-log"]:
        kind, data = event["sent"]["type"], event["sent"]["data"]
        if kind == "set-timer":
            pending = data["end"]
        elif kind == "phase-transition":
            if pending is not None:
                ends[(data["round"], data["phase"])] = pending
            pending = None
    return ends


def sequence(recorded: dict[str, Any]) -> list[Any]:
    """The timer and phase events in their order, and the phases that ended by their timer."""
    events = [(e["sent"]["type"], e["sent"]["data"] if e["sent"]["type"] == "phase-transition" else None)
              for e in recorded["server-log"] if e["sent"]["type"] in TIMER_EVENTS]
    return [events, [(e["round"], e["phase"]) for e in recorded["log"] if e["type"] == "phase-timeout"]]


def idle_timer_bound(recorded: dict[str, Any], params: dict[str, Any], idle: int) -> list[int]:
    """For each round, an upper bound (ms) of the timer that idle phase `idle` was given: from the start of the
    phase before it (its timer's end minus its configured length) to the end of the idle phase's timer."""
    ends = timer_ends(recorded)
    before = round(params[f"timer_phase_{idle - 1}"] * 1000)
    return [ends[(r, idle)] - (ends[(r, idle - 1)] - before) for r, p in sorted(ends) if p == idle]


def test_the_games_say_which_phases_nobody_acts_in():
    voting, harberger = game_for("voting"), game_for("harberger")
    assert voting.server.idle_phases(parameters_from_dict()) == {1, 7}
    assert harberger.server.idle_phases(harberger.server.parameters()) == {1, 4, 9}
    assert game_for("futarchy").server.idle_phases(harberger.server.parameters()) == {1, 4, 9}


def test_a_baseline_voting_game_makes_the_same_decisions_in_fast_mode_without_waiting_in_idle_phases(tmp_path):
    overrides = {"round_count": 2, "timer_phase_1": IDLE_SECONDS, "timer_phase_7": IDLE_SECONDS}
    params = {**VOTING_FAST, **overrides}
    normal = play(tmp_path / "normal", BaselinePolicy(), overrides)
    fast = play(tmp_path / "fast", BaselinePolicy(), overrides, server_kwargs={"fast": True})

    for played in (normal, fast):
        assert_clean_game(played, rounds=[1, 2])  # every seat's actions, and no error frame

    def made(played: Any) -> list[tuple]:
        return sorted((r["round"], r["phase"], r["seat"], r["action_type"], r["action"], r["made_by"], r["sent"])
                      for r in played.decisions)

    assert made(fast) == made(normal) and len(made(normal)) == 2 * 11
    assert sequence(fast.recorded) == sequence(normal.recorded)
    assert (1, 7) in sequence(fast.recorded)[1] and (1, 1) in sequence(fast.recorded)[1]
    # the results phase: its whole timer in normal mode, none in fast mode (the vote before it ends at once)
    assert all(bound >= IDLE_SECONDS * 1000 - SLACK_MS for bound in idle_timer_bound(normal.recorded, params, 7))
    assert all(bound < IDLE_SECONDS * 1000 for bound in idle_timer_bound(fast.recorded, params, 7))
    # acted phases keep their timers: the request phase's timer ends as configured after the chat before it
    for played in (normal, fast):
        ends = timer_ends(played.recorded)
        for r in (1, 2):
            chat_start = ends[(r, 2)] - params["timer_phase_2"] * 1000
            assert ends[(r, 3)] - chat_start >= (params["timer_phase_2"] + params["timer_phase_3"]) * 1000 - SLACK_MS


def test_a_harberger_game_makes_the_same_decisions_in_fast_mode_without_waiting_in_idle_phases(tmp_path):
    overrides = {f"timer_phase_{n}": IDLE_SECONDS for n in (1, 4, 9)}
    params = {**market_runs.FAST, **overrides}

    async def game(folder: Path, fast: bool) -> tuple[list[Any], dict[str, Any]]:
        folder.mkdir()
        async with LocalServer(records_dir=folder, sessions=SESSIONS, strict=True, fast=fast) as server:
            return await play_market(folder, server, "harberger", overrides)

    logs, tables = [], []
    for mode in ("normal", "fast"):
        agents, recorded = asyncio.run(game(tmp_path / mode, mode == "fast"))
        for agent in agents:
            assert agent.view.game_over and agent.view.warnings == []
            assert all(rec.refusals == [] for rec in agent.view.rounds.values())
        logs.append(recorded)
        # Declarations and snipes; the market's orders depend on timing in either mode (its timer stays). By agent
        # (agent k has seat k): a speculator learns its seat number from GET /games/status, which may answer after
        # its first snipes when the presentation phase ends at once, leaving that row's seat empty.
        tables.append(sorted((r["round"], r["phase"], r["agent"], r["action_type"], r["action"], r["made_by"])
                             for r in decisions(tmp_path / mode / "decisions.csv")
                             if r["action_type"] in ("declare", "done-speculating")))
    normal, fast = logs
    assert tables[0] == tables[1] and len(tables[0]) == 24
    assert sequence(fast) == sequence(normal)
    assert {(1, n) for n in (1, 4, 6, 9)} <= set(sequence(fast)[1])
    for idle in (4, 9):
        assert all(bound >= IDLE_SECONDS * 1000 - SLACK_MS for bound in idle_timer_bound(normal, params, idle))
        assert all(bound < IDLE_SECONDS * 1000 for bound in idle_timer_bound(fast, params, idle))
    assert [json.dumps(e["sent"]) for e in fast["server-log"] if e["sent"]["type"] == "winning-condition"] == \
        [json.dumps(e["sent"]) for e in normal["server-log"] if e["sent"]["type"] == "winning-condition"]
