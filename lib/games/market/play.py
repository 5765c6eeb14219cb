"""`handler.py --local --game-type harberger|futarchy`: twelve market agents play one game on the local server,
and each round is printed as it ends (declarations, winning condition, snipes, trades with their median, each
seat's profit, who decided).

Kept apart from handler.py so that the voting path stays as it is; handler.py dispatches here on the game type.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from typing import Any

from lib.agents import decisions
from lib.agents.agent import AgentSettings
from lib.agents.transcript import Transcript
from lib.games.market.agent import BaselineMarketPolicy, MarketAgent
from lib.games.market.llm import MarketLLMPolicy
from lib.games.market.policy import MarketBaseline
from lib.games.market.rules import FUTARCHY, round_profit
from lib.games.market.view import MarketView
from lib.games.voting.rules import CONDITIONS, GameParams, parse_parameters
from lib.ibex.api import IbexApi
from lib.ibex.createparams import ROW_TYPES

SEATS = 12
# The real server's web UI defaults for phases 0..9 (seconds; phase 0 waits for the players).
UI_TIMERS = (None, 15, 90, 120, 3, 3, 270, 60, 90, 15)
CONDITION_NAMES = {c["id"]: c["name"] for c in CONDITIONS}


def ui_parameters(game_type: str) -> dict[str, Any]:
    """The real server's web UI defaults for a market game (my-app/src/assets/harberger.json), flat, as a game log
    names them; lib.ibex.createparams.nested_payload turns them into create-for-llm's gameParameters."""
    flat: dict[str, Any] = {
        "game_type": game_type, "session_number": 1, "round_count": 1, "practice_round": True,
        "minutes_for_trading": 10, "minutes_for_sniping": 2, "tax_rate_initial": 1, "tax_rate_final": 33,
        "signal_low": 0.95, "signal_high": 1.05, "generate_signals": False, "agents_only": False,
        "speculators_count": 6, "speculator_balance": 50000, "speculator_shares": 5, "max_lot_purchases": 3,
        "cash_for_snipers": 250000, "speculators_base_points": 400000, "speculators_reward_scale_factor": 20000,
        "developers_count": 1, "developer_balance": 300000, "developer_shares": 30, "developers_base_points": 0,
        "developers_reward_scale_factor": 50000, "owners_count": 5, "owner_balance": 60000, "owner_shares": 6,
        "owners_base_points": 200000, "owners_reward_scale_factor": 20000, "seconds_for_deliberation": 30,
        "show_up_fee": 5,
    }
    ranges = {"developer": ((200000, 350000, 500000), (500000, 1150000, 2750000), (1500000, 1750000, 2000000)),
              "owner": ((350000, 425000, 600000), (150000, 275000, 350000), (100000, 150000, 200000))}
    for who, conditions in ranges.items():
        for cond, edges in zip(("no_project", "project_a", "project_b"), conditions, strict=True):
            for edge, value in zip(("low", "fixed", "high"), edges, strict=True):
                flat[f"{who}_{cond}_{edge}"] = value
    for phase, seconds in enumerate(UI_TIMERS):
        flat[f"timer_phase_{phase}"] = seconds
    return flat


def typed_parameters(flat: dict[str, Any]) -> GameParams:
    """GameParams of flat parameters as the server stores them (lib.ibex.createparams's row types)."""
    rows = [{"key": key, "type": ROW_TYPES[key], "value": str(v).lower() if isinstance(v, bool) else str(v)}
            for key, v in flat.items() if v is not None and key in ROW_TYPES]
    return parse_parameters(rows)


class MarketPlayError(ValueError):
    """A setting this mode cannot play with (one line for the user)."""


def market_policy(policy: Any, seed: int) -> Any:
    """The market games' counterpart of the policy handler.py chose for voting: the baseline, or the same model at
    the same endpoint with the market prompts (sharing its limit on concurrent calls)."""
    if policy.name == "baseline":
        return BaselineMarketPolicy(MarketBaseline(seed=seed))
    if policy.name == "llm":
        market = MarketLLMPolicy(api_key=policy._api_key, model=policy.model, base_url=policy.base_url,
                                 max_retries=policy.max_retries, temperature=policy.temperature)
        market.semaphore = policy.semaphore
        return market
    if policy.name == "empirical":
        return policy.market(seed)
    raise MarketPlayError(f"--policy {policy.name} has no market-game version (use baseline, empirical or llm)")


def local_overrides(game_type: str, rounds: int, practice: bool, scale: float) -> dict[str, Any]:
    """Flat parameters of a local market game: the UI's defaults, timers scaled (at least 0.05 s)."""
    overrides: dict[str, Any] = {"game_type": game_type, "round_count": rounds, "practice_round": practice}
    for phase, seconds in enumerate(UI_TIMERS):
        if seconds is not None:
            overrides[f"timer_phase_{phase}"] = max(0.05, round(seconds * scale, 3))
    return overrides


def game_timeout(params: GameParams) -> float:
    per_round = sum(params.timer(p) or 0 for p in range(1, 10))
    return 2 * per_round * len(params.rounds()) + 30


def _pair(d: Any) -> str:
    return f"{d[0]}/{d[1]}" if isinstance(d, list) and len(d) >= 2 else "-"


def round_lines(views: list[MarketView], number: int, marks: dict[tuple[int, str], str]) -> list[str]:
    """What a round showed, from every seat's view: declarations (fallbacks marked), the winning condition,
    snipes, the markets' trades and medians, the final price, and each seat's profit from its round summary."""
    recs = [(v, v.rounds.get(number)) for v in views]
    recs = [(v, r) for v, r in recs if r is not None]
    if not recs:
        return [f"round {number}: nothing seen"]
    any_rec = recs[0][1]
    tags = {p.get("number"): p.get("tag") for v, _ in recs for p in v.players}
    winning = next((r.winning for _, r in recs if r.winning is not None), None)
    head = f"round {number}{' (practice)' if number == 0 and views[0].practice_round else ''}: winning condition " \
           f"{winning} ({CONDITION_NAMES.get(winning, '?')})"
    lines = [head]
    for phase, label in ((3, "first declarations"), (8, "second declarations")):
        lots = next((r.declarations.get(phase) for _, r in recs if r.declarations.get(phase)), None) or []
        decl_phase = 2 if phase == 3 else 7
        shown = []
        for lot in lots:
            mark = marks.get((lot.get("number"), f"{decl_phase}:declare"))
            shown.append(f"{tags.get(lot.get('number'), lot.get('number'))} {_pair(lot.get('d'))}"
                         + (f" [{mark}]" if mark else ""))
        lines.append(f"  {label} (No Project/Project): {', '.join(shown) or 'none'}")
    for key, label in (("first", "first snipes"), ("second", "second snipes")):
        seen = {}
        for _, r in recs:
            for s in r.snipes.get(key, []):
                who, target = s.get("player", {}).get("number"), s.get("target", {}).get("number")
                seen[(who, target)] = s.get("profit")
        shown = [f"{tags.get(w, w)} -> lot of {tags.get(t, t)} ({p:g} each)" if isinstance(p, int | float)
                 else f"{tags.get(w, w)} -> lot of {tags.get(t, t)}" for (w, t), p in sorted(seen.items())]
        lines.append(f"  {label}: {', '.join(shown) or 'none'}")
    conditions = [0, 1] if views[0].game_type == FUTARCHY else [winning]
    for c in conditions:
        trades = any_rec.trades.get(c, [])
        median = trades[-1].get("median") if trades else None
        count = f"{len(trades)} trade{'' if len(trades) == 1 else 's'}"
        lines.append(f"  market {c} ({CONDITION_NAMES.get(c, '?')}): {count}"
                     + (f", median of the last seven {median:g}" if isinstance(median, int | float) else ""))
    price = next((r.final_price for _, r in recs if r.final_price is not None), None)
    if price is not None:
        lines.append(f"  final share price {price:g}")
    profits = []
    for v, r in sorted(recs, key=lambda x: x[0].number or 0):
        profit = round_profit(r.summary) if r.summary is not None else None
        profits.append(f"{v.tag or v.number} {profit:.0f}" if isinstance(profit, int | float) else f"{v.tag} -")
    lines.append(f"  profit: {', '.join(profits)}")
    return lines


def market_agents(ws_url: str, game_id: int, seats: Any, policy: Any, transcripts: list[Transcript], *,
                  params: GameParams | None, settings: AgentSettings, api: IbexApi, log: decisions.DecisionLog,
                  on_phase: Any, seed: int, game_type: str | None) -> list[MarketAgent]:
    """One MarketAgent per seat of a game on a real server (handler.py --game and --serve); the game type None:
    learnt from the game's events."""
    market = market_policy(policy, seed)
    pacing: dict[str, float] = {}
    market_seconds = params.timer(6) if params is not None else None
    if market_seconds:  # a short market (a created game's scaled timers) is paced as --local paces it
        pacing = {"trade_interval": min(5.0, max(0.05, market_seconds / 40)),
                  "trade_seconds": min(20.0, max(0.5, market_seconds / 4))}
    return [MarketAgent(ws_url, game_id, seat.recovery, market, transcripts[k], params=params, settings=settings,
                        name=f"agent{k + 1}", api=api, resume=seat.resumes is not None, decision_log=log,
                        on_phase=on_phase, game_type=game_type, baseline=MarketBaseline(seed=seed), **pacing)
            for k, seat in enumerate(seats)]


class MarketProgress:
    """Prints each round once every agent has its summary (or the game is over); `compact` (--serve): one line
    per round."""

    def __init__(self, say: Any, game_id: int, compact: bool = False) -> None:
        self.say = say
        self.game_id = game_id
        self.compact = compact
        self.agents: list[MarketAgent] = []
        self.log: decisions.DecisionLog | None = None
        self.printed: set[int] = set()

    def on_phase(self, _agent: Any = None) -> None:
        views = [a.view for a in self.agents]
        if not views:
            return
        rounds = sorted({n for v in views for n, r in v.rounds.items() if r.summary is not None})
        for number in rounds:
            if number in self.printed:
                continue
            if not all(v.game_over or (number in v.rounds and v.rounds[number].summary is not None) for v in views):
                continue
            self.printed.add(number)
            self.print_round(number)

    def rows(self, number: int | None = None) -> list[decisions.Decision]:
        rows = self.log.rows if self.log is not None else []
        return [r for r in rows if r.game == self.game_id and (number is None or r.round == number)]

    def shares(self, number: int | None = None) -> str:
        rows = self.rows(number)
        made_by: Counter[str] = Counter(r.made_by for r in rows)
        reasons: Counter[str] = Counter(r.fallback_reason or "?" for r in rows if r.made_by == decisions.FALLBACK)
        return decisions.shares_line(made_by, reasons)

    def print_round(self, number: int) -> None:
        rows = self.rows(number)
        marks = {(r.seat, f"{r.phase}:{r.action_type}"): f"fallback: {r.fallback_reason}" for r in rows
                 if r.made_by == decisions.FALLBACK}
        lines = round_lines([a.view for a in self.agents], number, marks)
        if self.compact:
            self.say(f"game {self.game_id} {lines[0]}; " + "; ".join(
                line.strip() for line in lines[1:] if line.strip().startswith(("market", "final"))) +
                f"; {self.shares(number)}")
            return
        for line in lines:
            self.say(line)
        self.say(f"  {self.shares(number)}")

    def stopped(self) -> None:
        """After a signal: the finished rounds (a round under way has no summaries to show)."""
        self.on_phase()


async def play_local_market(args: Any, policy: Any, env: Any, out: Any, *, run_agents: Any, stop: Any,
                            verdict: Any, fallback_limit: Any, recovery: Any, usage_error: type[Exception]) -> int:
    """Play one market game on an in-process local server with twelve agents; the exit code. handler.py passes
    its shared helpers (the agents' runner, the signal handling, the final verdict)."""
    from lib.localserver.server import LocalServer

    scale = args.timer_scale or (0.02 if policy.name == "baseline" else 0.25)
    try:
        market = market_policy(policy, args.seed)
    except MarketPlayError as exc:
        raise usage_error(str(exc)) from None
    overrides = local_overrides(args.game_type, args.rounds, args.practice, scale)
    secrets = [env.get(name, "") for name in ("OPENAI_API_KEY", "IBEX_PASSWORD")]

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        server = LocalServer(records_dir=args.records, sessions=args.sessions, strict=getattr(args, "strict", False))
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    async with server:
        try:
            game_id = server.create_game(overrides)
        except ValueError as exc:
            raise usage_error(f"the local server cannot play this {args.game_type} game: {exc}") from None
        params = server.game(game_id).params
        shortest = min(params.timer(p) or 1.0 for p in (2, 3, 6, 7, 8))
        margin = args.safety_margin if args.safety_margin is not None else min(2.0, shortest / 4)
        settings = AgentSettings(safety_margin=margin, ready_delay=min(0.2, margin))
        market_seconds = params.timer(6) or 60.0
        run_dir = args.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-local-game{game_id}"
        say(f"local server {server.ws_url}, {args.game_type} game {game_id}: {args.rounds} round"
            f"{'s' if args.rounds > 1 else ''}{' after a practice round' if args.practice else ''}, timers "
            f"x{scale:g}, safety margin {margin:g} s, 12 agents")
        say(f"transcripts: {run_dir}/ (decisions table: decisions.csv there)")
        progress = MarketProgress(say, game_id)
        with contextlib.ExitStack() as closing:
            transcripts = [closing.enter_context(Transcript(run_dir / f"agent{k}.jsonl", secrets=secrets,
                                                            flush_delay=args.transcript_batch))
                           for k in range(1, SEATS + 1)]
            log = closing.enter_context(decisions.DecisionLog(run_dir / "decisions.csv", secrets=secrets))
            progress.log = log
            async with IbexApi(server.api_url) as api:
                agents = [MarketAgent(server.ws_url, game_id, recovery(), market, transcripts[k - 1], params=params,
                                      settings=settings, name=f"agent{k}", api=api, decision_log=log,
                                      on_phase=progress.on_phase, game_type=args.game_type,
                                      baseline=MarketBaseline(seed=args.seed),
                                      trade_interval=max(0.05, market_seconds / 40),
                                      trade_seconds=max(0.5, market_seconds / 4))
                          for k in range(1, SEATS + 1)]
                progress.agents = agents
                outcome = await run_agents(agents, stop.event, game_timeout(params))
            if outcome == "stopped":
                say(f"stopped by {stop.name}: sockets closed, transcripts and decisions table complete; "
                    "the unfinished game has no log")
                verdict(log, None, out)
                return stop.exit_code
            if outcome != "game-over":
                print(f"error: {outcome}", file=sys.stderr, flush=True)
                verdict(log, None, out)
                return 1
            await server.wait_game_over(game_id, timeout=5)
            progress.on_phase()
            say(f"game log: {server.log_path(game_id)}")
            say(f"fallback actions: {sum(a.fallbacks for a in agents)}")
            return verdict(log, fallback_limit(args, market), out)
