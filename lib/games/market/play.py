"""The market games' PlayRules (lib.games.protocols): what the run modes (lib.agents.modes) ask of Harberger and
futarchy — their policies, the agents' trading pace, what the real server says of them, and the round report
printed as each round ends (declarations, winning condition, snipes, trades with their median, each seat's
profit) — and the real server's web UI defaults these games start from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.games.market.rules import FUTARCHY, round_profit
from lib.games.market.view import MarketView
from lib.games.protocols import Policy, PolicyRefused
from lib.ibex.createparams import ROW_TYPES
from lib.ibex.params import CONDITIONS, GameParams, parse_parameters

if TYPE_CHECKING:
    from lib.agents.decisions import Decision

SEATS = 12  # 5 owners, the developer, 6 speculators
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


class MarketPlay:
    """lib.games.protocols.PlayRules for a market game: twelve seats, no chat, actions in phases 2, 3, 6, 7, 8."""

    seats = SEATS
    chat = False  # the server has no chat handler in these games
    action_phases = (2, 3, 6, 7, 8)  # declarations, snipes, the market
    ruleset = "Harberger"  # GET /games/status says so for both market games
    seat_counts: Mapping[str, int] = {"developers_count": 1, "owners_count": 5, "speculators_count": 6}

    def __init__(self, game_type: str) -> None:
        self.game_type = game_type
        self.seats_description = (f"the {game_type} game's twelve seats (one developer, five owners, six "
                                  "speculators)")

    def timer_scale(self, policy_name: str) -> float:
        return 0.02 if policy_name == "baseline" else 0.25

    def policy_refusal(self, policy_name: str) -> str | None:
        if policy_name == "fitted":
            return (f"--policy fitted plays voting games only; {self.game_type} has no fitted version (use "
                    "--policy baseline or llm)")
        return None

    def rule_policy(self, name: str, *, seed: int, path: Path | None, data_dir: Path) -> tuple[Policy, str | None]:
        if name == "baseline":
            return MarketBaselinePolicy(MarketBaseline(seed=seed)), None
        if name == "empirical":
            from lib.evaluation.saved import SAMPLES_FILE, SamplesError, newest_saved
            from lib.games.market import fitted

            try:
                return fitted.playing(path or newest_saved(data_dir, SAMPLES_FILE), seed)
            except SamplesError as exc:
                raise PolicyRefused(str(exc)) from None
        raise PolicyRefused(self.policy_refusal(name) or f"--policy {name} is no rule-based policy of "
                            f"{self.game_type} (baseline or empirical)")

    def policy(self, chosen: Policy, seed: int) -> Policy:
        """The same model at the same endpoint with the market prompts (sharing its limit on concurrent calls), or
        the market games' own rules."""
        from lib.games import game_for

        if chosen.name == "baseline":
            return MarketBaselinePolicy(MarketBaseline(seed=seed))
        if chosen.name == "llm":
            model: Any = chosen  # lib.agents.llm.LLMPolicy
            return model.for_game(game_for(self.game_type))
        if chosen.name == "empirical":
            from lib.evaluation.saved import SamplesError
            from lib.games.market import fitted

            # The run's empirical policy (whichever game loaded it) keeps its samples file: this game's section of it.
            saved = getattr(chosen, "saved", None)
            try:
                return fitted.MarketEmpiricalAgentPolicy(fitted.from_saved(saved), seed=seed, saved=saved)
            except SamplesError as exc:
                raise PolicyRefused(str(exc)) from None
        raise PolicyRefused(f"--policy {chosen.name} has no market-game version (use baseline, empirical or llm)")

    def agent_options(self, params: GameParams | None, *, seed: int, local: bool, known: bool = True) -> dict[str, Any]:
        """The seat's game type (None when the server did not say which market game: learnt from its events), the
        rules' fallbacks, and the trading pace: a short market (scaled timers) is traded in shorter steps."""
        options: dict[str, Any] = {"game_type": self.game_type if known else None,
                                   "baseline": MarketBaseline(seed=seed)}
        market_seconds = params.timer(6) if params is not None else None
        if local:
            market_seconds = market_seconds or 60.0
            options.update(trade_interval=max(0.05, market_seconds / 40), trade_seconds=max(0.5, market_seconds / 4))
        elif market_seconds:
            options.update(trade_interval=min(5.0, max(0.05, market_seconds / 40)),
                           trade_seconds=min(20.0, max(0.5, market_seconds / 4)))
        return options

    def deciding_line(self, round_number: int, phase: int) -> str | None:
        return None  # the market's many decisions would drown the rounds

    def finished_rounds(self, views: list[Any], params: GameParams | None) -> list[int]:
        rounds = sorted({n for v in views for n, r in v.rounds.items() if r.summary is not None})
        return [n for n in rounds
                if all(v.game_over or (n in v.rounds and v.rounds[n].summary is not None) for v in views)]

    def unfinished_round(self, views: list[Any]) -> int | None:
        return None  # a round under way has no summaries to show

    def round_lines(self, views: list[Any], number: int, fallbacks: list[Decision],
                    unfinished: bool = False) -> list[str]:
        marks = {(r.seat, f"{r.phase}:{r.action_type}"): f"fallback: {r.fallback_reason}" for r in fallbacks}
        return round_lines(views, number, marks)

    def compact_line(self, lines: list[str]) -> str:
        return f"{lines[0]}; " + "; ".join(
            line.strip() for line in lines[1:] if line.strip().startswith(("market", "final")))
