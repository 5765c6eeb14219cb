"""Helpers shared by several test files (moved from test_agent.py)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.agents.agent import Agent, AgentSettings
from lib.agents.decisions import DecisionLog
from lib.agents.llm import LLMPolicy
from lib.agents.transcript import Transcript, read_transcript
from lib.games.voting.rules import SEATS
from lib.ibex.params import parameters_from_dict
from lib.localserver.server import LocalServer

# The decision phases (3, 4, 6) end as soon as every seat has acted, so their long timers cost a game nothing; they
# keep the deadline far from any decision that is meant to be in time, however slow or busy the machine (with 1.5 s
# and a 0.4 s margin, two quick model calls missed it on a loaded 2-core machine). A test that wants a decision to
# miss its deadline makes it much slower than that (LATE).
FAST = {"timer_phase_1": 0.1, "timer_phase_2": 0.2, "timer_phase_3": 6.0, "timer_phase_4": 6.0,
        "timer_phase_5": 0.2, "timer_phase_6": 6.0, "timer_phase_7": 0.1, "round_count": 1, "practice_round": False}


SETTINGS = AgentSettings(safety_margin=0.4, ready_delay=0.05, ready_resend=0.3, reconnect_delays=(0.05, 0.1))

LATE = 60.0  # seconds a model answer takes that must miss a decision phase's deadline (its call is cut before)


CAP = parameters_from_dict().amount_cap()


ACTIONS = ("compensation-request", "compensation-offer", "compensation-decision", "chat-with-players")


@dataclass
class Played:
    recorded: dict[str, Any]  # the log the server wrote at game-over
    agents: list[Agent]
    transcripts: dict[int, list[dict[str, Any]]]  # seat -> records
    decisions: list[dict[str, str]] = dataclasses.field(default_factory=list)  # the rows of decisions.csv

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Client messages the server logged (its handlers saw them), joins and readies left out."""
        return [e for e in self.recorded["log"] if e["type"] == "message" and e["content"].get("type") in ACTIONS
                and (kind is None or e["content"]["type"] == kind)]


async def _play(tmp_path: Path, policy: Any, overrides: dict[str, Any], settings: AgentSettings,
                server_kwargs: dict[str, Any], during: Any, agent_params: bool) -> Played:
    params = parameters_from_dict(overrides)
    async with LocalServer(records_dir=tmp_path / "records", **server_kwargs) as server:
        game_id = server.create_game(overrides)
        agents = []
        log = DecisionLog(tmp_path / "logs" / "decisions.csv")
        for k in range(1, SEATS + 1):
            transcript = Transcript(tmp_path / "logs" / f"agent{k}.jsonl")
            agents.append(Agent(server.ws_url, game_id, f"recovery-code-{k:02d}-{'x' * 40}", policy, transcript,
                                params=params if agent_params else None, settings=settings, name=f"agent{k}",
                                decision_log=log))
        tasks = []
        try:
            for agent in agents:  # one after another, so agent k takes seat k
                tasks.append(asyncio.ensure_future(agent.run()))
                await asyncio.wait_for(agent.joined.wait(), 60)  # hang guards, all three
            if during is not None:
                await during(server, game_id)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            recorded = await server.wait_game_over(game_id, 60)
            assert server.log_path(game_id).exists()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for agent in agents:
                agent.transcript.close()
            log.close()
            if isinstance(policy, LLMPolicy):
                await policy.close()
    transcripts = {a.view.number: read_transcript(a.transcript.path) for a in agents}
    with open(log.path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return Played(recorded, agents, transcripts, rows)


def play(tmp_path: Path, policy: Any, overrides: dict[str, Any] | None = None, *,
         settings: AgentSettings = SETTINGS, server_kwargs: dict[str, Any] | None = None, during: Any = None,
         agent_params: bool = True) -> Played:
    return asyncio.run(_play(tmp_path, policy, {**FAST, **(overrides or {})}, settings, server_kwargs or {},
                             during, agent_params))


def assert_clean_game(played: Played, rounds: list[int]) -> None:
    """Every seat played every round with exactly one well-formed action of its own role, and the server refused
    nothing it sent: an error frame is allowed only as a race no client can avoid (a ready re-sent as the round
    started, on a busy machine), which the agent names."""
    for agent in played.agents:
        assert agent.view.game_over and agent.refusals == 0, (agent.name, agent.view.errors)
        assert len(agent.view.errors) == sum(agent.races.values()), (agent.name, agent.view.errors, agent.races)
    for seat, records in played.transcripts.items():
        assert records[-1]["kind"] == "shutdown" and records[-1]["reason"] == "game-over", seat
    expected = {("compensation-request", 3, seat) for seat in (1, 3, 4, 5, 6)}
    expected |= {("compensation-offer", 4, 2)} | {("compensation-decision", 6, seat) for seat in (1, 3, 4, 5, 6)}
    for number in rounds:
        got = [(e["content"]["type"], e["phase"], e["number"]) for e in played.received() if e["round"] == number
               and e["content"]["type"] != "chat-with-players"]
        assert sorted(got) == sorted(expected), f"round {number}: {got}"
    assert {e["round"] for e in played.received()} == set(rounds)
    for entry in played.received():
        content = entry["content"]
        assert content["gameId"] == played.agents[0].game_id
        for field in ("compensationRequests", "compensationOffers"):
            if field in content:
                first, amount = content[field]
                assert first is None and type(amount) is int and 0 <= amount <= CAP, content
        if "compensationDecisions" in content:
            assert content["compensationDecisions"] in ([0], [1]), content


def sent_by(played: Played, seat: int) -> list[dict[str, Any]]:
    return [r["msg"] for r in played.transcripts[seat] if r["kind"] == "send"]
