#!/usr/bin/env python3
"""Benchmark of the market agents (lib.agents.agent with the market games' seat rules) at scale: K concurrent
Harberger or futarchy games on the local IBEX server, 12 agents each.

    .venv/bin/python bench/market_agents_bench.py                          # K = 10 (120 agents), then 50 (600)
    .venv/bin/python bench/market_agents_bench.py --games 2 --game-type futarchy
    .venv/bin/python bench/market_agents_bench.py --smoke      # smallest run: 1 game, 1 s timers (tests/scripts)

The server runs in its own process (as in agents_bench.py), so
this process holds only the agents and its CPU time is theirs; the baseline policy answers at once. Printed per K:

- overhead, event to action: from the moment an agent reads the phase-transition that makes a declaration or a
  snipe due to the moment it is on the socket, minus the time inside the policy: p50, p99, max;
- trading: decisions taken, orders and cancels sent, trades made, per agent and market second;
- missed deadlines: declaration and speculation phases (2, 3, 7, 8) that ended by their timer instead of by
  everyone's submission, plus fallbacks and answers dropped (target: zero at 600 agents);
- CPU seconds per agent per round.

Nothing asserts on timings: this prints the truth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.agents_bench import ADMIN, percentile, start_server  # noqa: E402
from lib.agents.agent import Agent, AgentSettings  # noqa: E402
from lib.agents.transcript import RawJSON, Transcript  # noqa: E402
from lib.games import game_for  # noqa: E402
from lib.games.market.play import typed_parameters, ui_parameters  # noqa: E402
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy  # noqa: E402
from lib.ibex.api import IbexApi  # noqa: E402
from lib.ibex.createparams import nested_payload  # noqa: E402

DECISION_PHASES = (2, 3, 7, 8)
ONCE = ("declare", "done-speculating")


class TimedPolicy(MarketBaselinePolicy):
    """The baseline, noting how long each decision spent inside it."""

    def __init__(self) -> None:
        super().__init__(MarketBaseline())
        self.seconds: dict[tuple[int, int, int], float] = {}

    async def decide(self, view: Any, wire_type: str, **kwargs: Any) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            return await super().decide(view, wire_type, **kwargs)
        finally:
            key = (kwargs["transcript"].agent_key, view.round, view.phase)
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started


class TimedTranscript(Transcript):
    """Notes when phase-transitions were read and declarations or snipes sent, and counts what was sent."""

    def __init__(self, path: Path, agent_key: int, batch: float) -> None:
        super().__init__(path, flush_delay=batch)
        self.agent_key = agent_key
        self.at: tuple[int, int] = (0, 0)
        self.event_read: dict[tuple[int, int], float] = {}
        self.action_sent: dict[tuple[int, int], float] = {}
        self.sent: dict[str, int] = {}

    def write(self, kind: str, **fields: Any) -> None:
        now = time.perf_counter()
        msg = fields.get("msg")
        if isinstance(msg, RawJSON):  # a received frame, as its text
            msg = json.loads(msg)
        if kind == "recv" and isinstance(msg, dict) and msg.get("eventType") == "phase-transition":
            data = msg.get("data") or {}
            self.at = (data.get("round"), data.get("phase"))
            self.event_read[self.at] = now
        elif kind == "send" and isinstance(msg, dict):
            self.sent[msg.get("type")] = self.sent.get(msg.get("type"), 0) + 1
            if msg.get("type") in ONCE:
                self.action_sent.setdefault(self.at, now)
        super().write(kind, **fields)


async def run_games(k: int, ws_url: str, api_url: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    flat = ui_parameters(args.game_type)
    flat.update({"round_count": args.rounds, "practice_round": False, "agents_only": False})
    for phase in range(1, 10):
        flat[f"timer_phase_{phase}"] = args.act if phase in DECISION_PHASES else args.market if phase == 6 \
            else args.wait
    payload = nested_payload(flat, title="market bench")
    params = typed_parameters(flat)
    policy = TimedPolicy()
    settings = AgentSettings(safety_margin=min(2.0, args.act / 4))
    async with IbexApi(api_url) as api:
        game_ids = [(await api.create_for_llm(*ADMIN, payload)).id for _ in range(k)]
        agents: list[Agent] = []
        for game_id in game_ids:
            for seat in range(12):
                transcript = TimedTranscript(logs / f"k{k}-game{game_id}-agent{seat + 1}.jsonl", len(agents),
                                             args.transcript_batch)
                agents.append(Agent(ws_url, game_id, await api.get_recovery(game_id), policy, transcript,
                                    game=game_for(args.game_type), params=params, settings=settings,
                                    name=f"g{game_id}a{seat + 1}", api=api, trade_interval=args.trade_interval,
                                    trade_seconds=args.market / 4))
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall_before = time.perf_counter()
        timeout = sum(params.timer(p) or 0 for p in range(1, 10)) * args.rounds * 2 + 60
        results = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents), return_exceptions=True), timeout)
        wall = time.perf_counter() - wall_before
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        token = await api.login(*ADMIN)
        recorded = [await api.game_json(g, token) for g in game_ids]
    for agent in agents:
        agent.transcript.close()
    overhead_ms: list[float] = []
    sent: dict[str, int] = {}
    for agent in agents:
        t: TimedTranscript = agent.transcript  # type: ignore[assignment]
        for key, count in t.sent.items():
            sent[key] = sent.get(key, 0) + count
        for at, when in t.action_sent.items():
            if at in t.event_read:
                inside = policy.seconds.get((t.agent_key, *at), 0.0)
                overhead_ms.append((when - t.event_read[at] - inside) * 1000)
    timeouts = sum(1 for log in recorded for e in log.get("log", [])
                   if e.get("type") == "phase-timeout" and e.get("phase") in DECISION_PHASES)
    trades = sum(1 for log in recorded for e in log.get("server-log", [])
                 if (e.get("sent") or {}).get("type") == "contract-fulfilled")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"games": k, "agents": len(agents), "rounds": args.rounds, "wall_s": wall, "cpu_s": cpu,
            "overhead_ms": overhead_ms, "phase_timeouts": timeouts, "sent": sent, "trades": trades,
            "decisions": policy.count, "fallbacks": sum(a.fallbacks for a in agents),
            "dropped": sum(a.dropped for a in agents), "game_over": sum(1 for a in agents if a.view.game_over),
            "failed": [r for r in results if isinstance(r, BaseException)]}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    overhead = result["overhead_ms"]
    missed = result["phase_timeouts"] + result["fallbacks"] + result["dropped"]
    per_agent_round = result["cpu_s"] / (result["agents"] * result["rounds"])
    market_s = args.market * result["rounds"]
    sent = result["sent"]
    print(f"K = {result['games']} {args.game_type} games, {result['agents']} agents, {result['rounds']} rounds each "
          f"(wall {result['wall_s']:.1f} s, {result['game_over']}/{result['agents']} agents saw game-over)")
    print(f"  overhead event -> declaration/snipe ({len(overhead)}): p50 {percentile(overhead, 50):.2f} ms, "
          f"p99 {percentile(overhead, 99):.2f} ms, max {max(overhead, default=float('nan')):.2f} ms")
    print(f"  trading: {result['decisions']} policy decisions, {sent.get('post-order', 0)} orders and "
          f"{sent.get('cancel-order', 0)} cancels sent, {result['trades']} trade{'' if result['trades'] == 1 else 's'} "
          f"({sent.get('post-order', 0) / max(1, result['agents']) / market_s:.2f} orders per agent per market s)")
    print(f"  missed deadlines: {missed} (decision phases ended by timer {result['phase_timeouts']}, fallbacks "
          f"{result['fallbacks']}, dropped {result['dropped']}; target 0 at 600 agents)")
    print(f"  CPU: {result['cpu_s']:.2f} s in all, {per_agent_round * 1000:.2f} ms per agent per round")
    if result["failed"]:
        print(f"  agents that failed: {len(result['failed'])}, first: {result['failed'][0]!r}")


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="market-bench-") as tmp:
        proc, ws_url, api_url = start_server(Path(tmp) / "records")
        try:
            print(f"local server {ws_url} (own process), {args.game_type}, baseline policy, timers: waiting phases "
                  f"{args.wait:g} s, decision phases {args.act:g} s, market {args.market:g} s, trade interval "
                  f"{args.trade_interval:g} s, {args.rounds} rounds", flush=True)
            for k in args.games:
                logs = Path(tmp) / f"logs-{k}"
                logs.mkdir()
                report(await run_games(k, ws_url, api_url, args, logs), args)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


# One game of one round with every timer at the real server's smallest unit, 1 s.
SMOKE_ARGS = ("--games", "1", "--rounds", "1", "--wait", "1", "--act", "1", "--market", "1", "--trade-interval", "0.5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, nargs="+", default=[10, 50], help="K values to run (default 10 50)")
    parser.add_argument("--game-type", choices=("harberger", "futarchy"), default="harberger")
    parser.add_argument("--rounds", type=int, default=1, help="paid rounds per game (no practice round)")
    parser.add_argument("--wait", type=float, default=1.0, help="seconds of the phases where nobody acts")
    parser.add_argument("--act", type=float, default=10.0, help="timer of the decision phases 2, 3, 7, 8 (s)")
    parser.add_argument("--market", type=float, default=20.0, help="timer of the market, phase 6 (s)")
    parser.add_argument("--trade-interval", type=float, default=1.0, help="seconds between trading decisions")
    parser.add_argument("--transcript-batch", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the smallest run, to see that the bench works (its figures mean little): "
                             f"{' '.join(SMOKE_ARGS)}; flags given as well still win")
    args = parser.parse_args(argv)
    if args.smoke:
        args = parser.parse_args([*SMOKE_ARGS, *(argv if argv is not None else sys.argv[1:])])
    if any(k < 1 or k > 100 for k in args.games) or args.rounds < 1 or min(args.wait, args.act, args.market) < 1:
        parser.error("--games from 1 to 100, --rounds >= 1, timers of at least 1 s (the real server's unit)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
