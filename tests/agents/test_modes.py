"""lib.agents.modes's reusable core: one whole game on the local server from a game, a policy per seat, settings,
an output folder, a decisions table and a stop event, reported only through `say`, with no signal handler."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from lib.agents.agent import AgentSettings
from lib.agents.decisions import DecisionLog
from lib.agents.modes import GameResult, play_local
from lib.games import game_for
from lib.localserver.server import LocalServer

FAST_SCALE = 0.005  # handler.py --local --timer-scale 0.005: a one-round voting game in a few seconds
# The phases with actions end as soon as every seat has acted: long timers there cost no time and keep the deadline
# out of the way of a busy machine (no decision falls back for time).
LONG_ACTIONS = 60.0


class Recording:
    """A policy that asks the game's baseline and records which seat each decision was for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.seats: list[int | None] = []

    async def decide(self, view: Any, wire_type: str, **kwargs: Any) -> dict[str, Any] | None:
        self.seats.append(view.number)
        return await self.inner.decide(view, wire_type, **kwargs)


def settings() -> AgentSettings:
    return AgentSettings(safety_margin=0.05, ready_delay=0.05)


async def one_game(server: LocalServer, tmp_path: Path, log: DecisionLog, name: str, lines: list[str],
                   stop: asyncio.Event, policies: dict[int, Any] | None = None) -> GameResult:
    game = game_for("voting")
    game_id = server.create_game({**game.rules.local_parameters(1, False, FAST_SCALE),
                                  **{f"timer_phase_{p}": LONG_ACTIONS for p in game.play.action_phases}})
    baseline = game.seat.baseline_policy()
    policies = policies or dict.fromkeys(range(1, game.play.seats + 1), baseline)
    return await play_local(server, game_id, policies, settings=settings(), run_dir=tmp_path / name, log=log,
                            stop=stop, say=lines.append)


def test_a_whole_game_with_a_policy_per_seat_says_everything_through_say_and_installs_no_signal_handler(
        tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    lines: list[str] = []

    async def scenario() -> tuple[GameResult, Recording]:
        game = game_for("voting")
        first = Recording(game.seat.baseline_policy())
        others = game.seat.baseline_policy()
        policies = {1: first, **dict.fromkeys(range(2, game.play.seats + 1), others)}
        async with LocalServer(records_dir=tmp_path / "records") as server:
            with DecisionLog(tmp_path / "decisions.csv") as log:
                result = await one_game(server, tmp_path, log, "run", lines, asyncio.Event(), policies)
        return result, first

    result, first = asyncio.run(scenario())

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert capsys.readouterr().out == "", "nothing printed directly"
    assert result.outcome == "game-over"
    assert result.game_log is not None and result.game_log.exists()
    assert result.decisions == tmp_path / "decisions.csv" and result.decisions.exists()
    assert len(result.views) == 6 and all(view.game_over for view in result.views)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [f"agent{k}.jsonl" for k in range(1, 7)]
    # seat 1 is agent 1's: its policy decided for that seat only, every one of that seat's decisions
    seat = result.agents[0].view.number
    assert first.seats and set(first.seats) == {seat}
    assert len(first.seats) == sum(1 for row in result.progress.rows() if row.agent == "agent1")
    assert "round 1" in lines and lines[-1].startswith("  decisions: 11: baseline 11")


def test_a_set_stop_event_ends_the_game_as_stopped_without_a_game_log(tmp_path):
    async def scenario() -> GameResult:
        stop = asyncio.Event()
        stop.set()
        async with LocalServer(records_dir=tmp_path / "records") as server:
            with DecisionLog(tmp_path / "decisions.csv") as log:
                return await one_game(server, tmp_path, log, "run", [], stop)

    result = asyncio.run(scenario())

    assert result.outcome == "stopped" and result.game_log is None


def test_two_games_at_once_share_one_decisions_table_and_each_reports_its_own_rounds(tmp_path):
    lines = {"a": [], "b": []}

    async def scenario() -> tuple[GameResult, GameResult]:
        stop = asyncio.Event()
        async with LocalServer(records_dir=tmp_path / "records") as server:
            with DecisionLog(tmp_path / "decisions.csv") as log:
                a, b = await asyncio.gather(one_game(server, tmp_path, log, "a", lines["a"], stop),
                                            one_game(server, tmp_path, log, "b", lines["b"], stop))
                assert log.total == 22 and log.listener is not None
                assert log.listener.hearers == [], "each game stops listening when it ends"
        return a, b

    a, b = asyncio.run(scenario())

    assert (a.outcome, b.outcome) == ("game-over", "game-over") and a.game_id != b.game_id
    assert a.game_log != b.game_log
    for result, said in ((a, lines["a"]), (b, lines["b"])):
        assert len(result.progress.rows()) == 11 and all(row.game == result.game_id for row in result.progress.rows())
        assert said[-1] == "  decisions: 11: baseline 11 (100.0%)"


def test_policies_must_name_the_seats_from_one_in_join_order(tmp_path):
    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path / "records") as server:
            with DecisionLog(tmp_path / "decisions.csv") as log:
                policy = game_for("voting").seat.baseline_policy()
                await one_game(server, tmp_path, log, "run", [], asyncio.Event(), {2: policy, 3: policy})

    with pytest.raises(ValueError, match=r"seats 1 to 2, in join order, got seats \[2, 3\]"):
        asyncio.run(scenario())
