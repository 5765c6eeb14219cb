#!/usr/bin/env python3
"""Benchmark of the agents (lib.agents.agent) at scale: K concurrent games on the local IBEX server, 6 agents each.

    .venv/bin/python bench/agents_bench.py                      # K = 10 (60 agents), then K = 50 (300 agents)
    .venv/bin/python bench/agents_bench.py --games 10 --policy fake-llm
    .venv/bin/python bench/agents_bench.py --smoke                # smallest run: 1 game, 1 round (tests/scripts)

The server runs in its own process (python -m lib.localserver.server), so this process holds only the agents and its
CPU time is theirs. The model answers instantly: `baseline` is the built-in rule set, `fake-llm` is the real
LLMPolicy and openai SDK against tests/fakeopenai.py's server answering at once. Printed per K:

- overhead, event to action: from the moment an agent reads the phase-transition that makes an action due to
  the moment the action is on the socket, minus the time spent inside the policy (the model's latency): p50, p99
  and max, over every request, offer and vote (targets: p99 under 10 ms at 60 agents);
- event-loop lag: from the server starting the phase (its set-timer end minus the phase timer, server clock) to
  the agent reading it, in ms (whole milliseconds: the server's clock has no finer grain);
- missed deadlines: action phases (3, 4, 6) that ended by their timer instead of by everyone's submission, plus
  actions dropped or replaced by a fallback (target: zero at 300 agents);
- CPU seconds per agent per round: this process's user+system CPU time over agents x rounds.

Bounded: every game has a timeout and the whole run ends within a few minutes on 2 cores. Nothing asserts on
timings: this prints the truth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lib.agents.agent import Agent, AgentSettings  # noqa: E402
from lib.agents.realserver import create_payload  # noqa: E402
from lib.agents.transcript import RawJSON, Transcript  # noqa: E402
from lib.games.voting.actions import DECISION, OFFER, REQUEST  # noqa: E402
from lib.games.voting.policy import BaselinePolicy, Policy  # noqa: E402
from lib.games.voting.view import PlayerView  # noqa: E402
from lib.ibex.api import IbexApi  # noqa: E402

ACTIONS = (REQUEST, OFFER, DECISION)
ACTION_PHASES = (3, 4, 6)
ADMIN = ("bench-admin", "bench-password")
SERVER_START_TIMEOUT = 20.0


def game_parameters(rounds: int, wait: float, act: float) -> dict[str, Any]:
    """Short waiting phases (nobody acts), long action phases: with an instant model they end by submission."""
    timers = {f"timer_phase_{p}": (act if p in ACTION_PHASES else wait) for p in range(1, 8)}
    return {"round_count": rounds, "practice_round": True, **timers}


class TimedPolicy:
    """Wraps a policy and records how long each decision spent inside it (the model's latency)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = getattr(inner, "model", None)
        self.seconds: dict[tuple[int, int, int], float] = {}  # (agent key, round, phase) -> seconds

    async def decide(self, view: PlayerView, wire_type: str, **kwargs: Any) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            return await self.inner.decide(view, wire_type, **kwargs)
        finally:
            key = (kwargs["transcript"].agent_key if kwargs.get("transcript") is not None else 0, view.round,
                   view.phase)
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started


class TimedTranscript(Transcript):
    """A transcript that also notes, with perf_counter, when phase-transitions were read and actions sent."""

    def __init__(self, path: Path, agent_key: int, timers: dict[int, float], batch: float) -> None:
        super().__init__(path, flush_delay=batch)
        self.agent_key = agent_key
        self.timers = timers  # phase -> seconds, to date a phase's start from its set-timer end
        self.at: tuple[int, int] = (0, 0)
        self.event_read: dict[tuple[int, int], float] = {}
        self.action_sent: dict[tuple[int, int], float] = {}
        self.lag_ms: list[int] = []
        self._timer_end: int | None = None

    def write(self, kind: str, **fields: Any) -> None:
        now = time.perf_counter()
        msg = fields.get("msg")
        if isinstance(msg, RawJSON):  # a received frame, as its text
            msg = json.loads(msg)
        if kind == "recv" and isinstance(msg, dict) and msg.get("type") == "event":
            data = msg.get("data") or {}
            if msg.get("eventType") == "set-timer":
                self._timer_end = data.get("end")
            elif msg.get("eventType") == "phase-transition":
                self.at = (data.get("round"), data.get("phase"))
                self.event_read[self.at] = now
                if self._timer_end is not None and self.at[1] in self.timers:
                    started_ms = self._timer_end - self.timers[self.at[1]] * 1000
                    self.lag_ms.append(int(time.time() * 1000 - started_ms))
                self._timer_end = None
        elif kind == "send" and isinstance(msg, dict) and msg.get("type") in ACTIONS:
            self.action_sent.setdefault(self.at, now)
        super().write(kind, **fields)


FAKE_OPENAI_SCRIPT = """
import json, sys
from tests.helpers.fakeopenai import FAKE_API_KEY, FakeOpenAI

ANSWERS = {
    "compensation-request": {"type": "compensation-request", "compensationRequests": [None, 300000]},
    "compensation-offer": {"type": "compensation-offer", "compensationOffers": [None, 200000]},
    "compensation-decision": {"type": "compensation-decision", "compensationDecisions": [1]},
}

def answer(body):
    name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
    return json.dumps({"gameId": 0, **ANSWERS.get(name.replace("_", "-"), ANSWERS["compensation-decision"])})

fake = FakeOpenAI().start()
fake.chat_default = answer
print(fake.base_url, FAKE_API_KEY, flush=True)
sys.stdin.read()  # until the bench closes our stdin
"""


def start_fake_openai() -> tuple[subprocess.Popen[str], str, str]:
    """tests/fakeopenai.py answering every action at once, in its own process (its threads would otherwise take
    the agents' CPU and GIL, which a real model endpoint never does)."""
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", FAKE_OPENAI_SCRIPT], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base_url, api_key = proc.stdout.readline().split()
    return proc, base_url, api_key


def start_server(records: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib.localserver.server", "--ws-port", "0", "--api-port", "0", "--records", str(records),
         "--admin-user", ADMIN[0], "--admin-password", ADMIN[1]],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    give_up = time.monotonic() + SERVER_START_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < give_up:
        line = proc.stdout.readline()
        if line.startswith("IBEX local server:"):
            parts = line.split()
            return proc, parts[3], parts[5]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("bench: the local server did not start")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run_games(k: int, ws_url: str, api_url: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    # create-for-llm takes the web UI's nested gameParameters only (as the real server), the defaults filled in
    payload, params = create_payload(game_parameters(args.rounds, args.wait, args.act), title="agents bench")
    timers = {p: params.timer(p) or 0.0 for p in range(1, 8)}
    fake = None
    inner: Policy
    if args.policy == "fake-llm":
        from lib.agents.llm import LLMPolicy

        fake, base_url, api_key = start_fake_openai()
        inner = LLMPolicy(api_key=api_key, model="fake-instant", base_url=base_url, max_concurrent_calls=64)
    else:
        inner = BaselinePolicy()
    policy = TimedPolicy(inner)
    settings = AgentSettings(safety_margin=min(2.0, args.act / 4))
    async with IbexApi(api_url) as api:
        game_ids = [(await api.create_for_llm(*ADMIN, payload)).id for _ in range(k)]
        agents: list[Agent] = []
        for game_id in game_ids:
            for seat in range(6):
                transcript = TimedTranscript(logs / f"k{k}-game{game_id}-agent{seat + 1}.jsonl", len(agents), timers,
                                             args.transcript_batch)
                agents.append(Agent(ws_url, game_id, await api.get_recovery(game_id), policy, transcript,
                                    params=params, settings=settings, name=f"g{game_id}a{seat + 1}"))
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall_before = time.perf_counter()
        timeout = (sum(params.timer(p) or 0 for p in range(1, 8)) * len(params.rounds())) * 2 + 30
        results = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents), return_exceptions=True), timeout)
        wall = time.perf_counter() - wall_before
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        token = await api.login(*ADMIN)
        recorded = [await api.game_json(g, token) for g in game_ids]
    for agent in agents:
        agent.transcript.close()
    if fake is not None:
        await inner.close()  # type: ignore[attr-defined]
        fake.stdin.close()  # type: ignore[union-attr]
        fake.wait(10)

    overhead_ms: list[float] = []
    lag_ms: list[int] = []
    for agent in agents:
        transcript: TimedTranscript = agent.transcript  # type: ignore[assignment]
        lag_ms.extend(transcript.lag_ms)
        for at, sent in transcript.action_sent.items():
            if at in transcript.event_read:
                model = policy.seconds.get((transcript.agent_key, *at), 0.0)
                overhead_ms.append((sent - transcript.event_read[at] - model) * 1000)
    timeouts = sum(1 for log in recorded for entry in log.get("log", [])
                   if entry.get("type") == "phase-timeout" and entry.get("phase") in ACTION_PHASES)
    failed = [r for r in results if isinstance(r, BaseException)]
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "games": k, "agents": len(agents), "rounds": len(params.rounds()), "wall_s": wall, "cpu_s": cpu,
        "overhead_ms": overhead_ms, "lag_ms": lag_ms, "phase_timeouts": timeouts,
        "fallbacks": sum(a.fallbacks for a in agents), "dropped": sum(a.dropped for a in agents),
        "failed": failed, "game_over": sum(1 for a in agents if a.view.game_over),
    }


def report(result: dict[str, Any]) -> None:
    overhead, lag = result["overhead_ms"], result["lag_ms"]
    missed = result["phase_timeouts"] + result["fallbacks"] + result["dropped"]
    per_agent_round = result["cpu_s"] / (result["agents"] * result["rounds"])
    print(f"K = {result['games']} games, {result['agents']} agents, {result['rounds']} rounds each "
          f"(wall {result['wall_s']:.1f} s, {result['game_over']}/{result['agents']} agents saw game-over)")
    print(f"  overhead event -> action ({len(overhead)} actions): p50 {percentile(overhead, 50):.2f} ms, "
          f"p99 {percentile(overhead, 99):.2f} ms, max {max(overhead, default=float('nan')):.2f} ms "
          f"(target p99 < 10 ms at 60 agents)")
    print(f"  event-loop lag server -> agent ({len(lag)} phase starts): p50 {percentile(lag, 50):.0f} ms, "
          f"p99 {percentile(lag, 99):.0f} ms, max {max(lag, default=0)} ms")
    print(f"  missed deadlines: {missed} (action phases ended by timer {result['phase_timeouts']}, fallbacks "
          f"{result['fallbacks']}, dropped {result['dropped']}; target 0 at 300 agents)")
    print(f"  CPU: {result['cpu_s']:.2f} s in all, {per_agent_round:.4f} s ({per_agent_round * 1000:.2f} ms) per "
          "agent per round")
    if result["failed"]:
        print(f"  agents that failed: {len(result['failed'])}, first: {result['failed'][0]!r}")
    if overhead:
        print(f"  (mean overhead {statistics.fmean(overhead):.2f} ms)")


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="agents-bench-") as tmp:
        proc, ws_url, api_url = start_server(Path(tmp) / "records")
        try:
            print(f"local server {ws_url} (own process), policy {args.policy}, timers: waiting phases {args.wait:g} s, "
                  f"action phases {args.act:g} s, {args.rounds} rounds + practice", flush=True)
            for k in args.games:
                logs = Path(tmp) / f"logs-{k}"
                logs.mkdir()
                report(await run_games(k, ws_url, api_url, args, logs))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


# One game of one round: phases where nobody acts last 0.05 s; the action phases end as soon as all six have acted.
SMOKE_ARGS = ("--games", "1", "--rounds", "1", "--wait", "0.05", "--act", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, nargs="+", default=[10, 50], help="K values to run (default 10 50)")
    parser.add_argument("--policy", choices=("baseline", "fake-llm"), default="baseline",
                        help="instant model: the baseline rules, or LLMPolicy against a fake OpenAI server")
    parser.add_argument("--rounds", type=int, default=2, help="paid rounds per game, after a practice round")
    parser.add_argument("--wait", type=float, default=0.5, help="seconds of the phases where nobody acts")
    parser.add_argument("--transcript-batch", type=float, default=0.0, metavar="SECONDS",
                        help="handler.py's --transcript-batch (default 0: line by line, as handler.py by default)")
    parser.add_argument("--act", type=float, default=10.0, help="timer of the action phases 3, 4, 6 (seconds)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the smallest run, to see that the bench works (its figures mean little): "
                             f"{' '.join(SMOKE_ARGS)}; flags given as well still win")
    args = parser.parse_args(argv)
    if args.smoke:
        args = parser.parse_args([*SMOKE_ARGS, *(argv if argv is not None else sys.argv[1:])])
    if any(k < 1 or k > 200 for k in args.games) or args.rounds < 1 or args.wait <= 0 or args.act <= 0:
        parser.error("--games from 1 to 200, --rounds >= 1, --wait and --act > 0")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
