"""Settings for agents playing whole market games on the local server in tests: short timers, quick reconnects,
the recorded sessions the local server is checked against, and the decisions table read back."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from lib.agents.agent import Agent, AgentSettings
from lib.agents.decisions import DecisionLog
from lib.agents.transcript import Transcript
from lib.games import game_for
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.ibex.api import IbexApi
from tests.helpers.paths import FIXTURES

SESSIONS = FIXTURES / "market_sessions.json"
FAST = {"timer_phase_1": 0.2, "timer_phase_2": 1.5, "timer_phase_3": 1.5, "timer_phase_4": 0.2,
        "timer_phase_5": 0.2, "timer_phase_6": 3.0, "timer_phase_7": 1.5, "timer_phase_8": 1.5,
        "timer_phase_9": 0.2, "round_count": 1, "practice_round": False}
SETTINGS = AgentSettings(safety_margin=0.3, ready_delay=0.05, ready_resend=0.3,
                         reconnect_delays=(0.05, 0.1, 0.2, 0.4, 0.8))


def decisions(path: Path) -> list[dict[str, str]]:
    """The rows of a decisions table (lib.agents.decisions), as strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


async def play_market(folder: Path, server: Any, game_type: str, overrides: dict[str, Any] | None = None,
                      timeout: float = 180.0) -> tuple[list[Any], dict[str, Any]]:
    """Twelve baseline agents play one market game on `server` (a LocalServer) with FAST timers and `overrides`:
    (the agents, the recorded log). Transcripts and decisions.csv go into `folder`."""
    game_id = server.create_game({"game_type": game_type, **FAST, **(overrides or {})})
    params = server.game(game_id).params
    agents, tasks = [], []
    with DecisionLog(folder / "decisions.csv") as log:
        async with IbexApi(server.api_url, retries=1, backoff=0.05) as api:
            try:
                for k in range(1, 13):
                    agent = Agent(server.ws_url, game_id, f"recovery-{game_type}-{k:02d}-{'z' * 40}",
                                  MarketBaselinePolicy(MarketBaseline(seed=k)), Transcript(folder / f"agent{k}.jsonl"),
                                  game=game_for(game_type), params=params, settings=SETTINGS, name=f"agent{k}",
                                  api=api, decision_log=log, trade_interval=0.1, trade_seconds=1.0)
                    agents.append(agent)
                    tasks.append(asyncio.ensure_future(agent.run()))
                    await asyncio.wait_for(agent.joined.wait(), 60)  # one after another: agent k takes seat k
                await asyncio.wait_for(asyncio.gather(*tasks), timeout)
                recorded = await server.wait_game_over(game_id, 60)  # hang guards, all three
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for agent in agents:
                    agent.transcript.close()
    return agents, recorded
