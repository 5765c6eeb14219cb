"""Market `fitted` and `empirical`: the market baseline (lib.games.market.policy) with its parameters taken from the
recorded players of the training games.

No human Harberger or futarchy data exists: the recorded market players are scripts and agents. Everything here is
fitted on, and drawn from, "the recorded players", and says so.

The baseline's three rules have one parameter each, and each is estimated from the recorded decisions of training
market examples (lib.games.market.examples.MarketExample; lib.games.market.sidecar.market_example):

- declaration shading h: a declaration is the true value x (1 - h), rounded down to 1000, within the server's
  limits (baseline: h = 0, truthful). Samples: (condition, value v, declared d) of every recorded declaration whose
  values are known (v > 0). Fitted: the h minimising the total |d - v (1 - h)| (in effect the value-weighted median
  of d / v; lib.evaluation.fits.fit_scale, exact).
- snipe threshold t: a speculator snipes a lot under a condition that counts iff its declaration is below t x the
  value it can count on (lib.games.market.policy.sure_value): the baseline's margin is 1 - t (baseline: t = 0.95).
  Samples: (declared / sure value, sniped 0/1) of every (published lot, counted condition) choice of a recorded
  `done-speculating`. Fitted: the t that agrees with the most choices (nearest the baseline's among equals).
- order markup m per side: the trader keeps the baseline's choice of book, side and cancels (lib.games.market.policy.
  zic_trade, the same seeded draws), but posts at its signal x (1 + m_side), rounded to a whole money unit and kept
  within the price cap and, for a bid, its uncommitted money. Samples: (side, (price - signal) / signal) of every
  recorded limit order whose signal is known. Fitted: the median per side (it minimises the mean price error
  relative to the signal, the score lib.games.market.scores reports). A side without samples keeps the baseline's
  uniform draw.

A parameter with no sample keeps the baseline's rule. The empirical version draws instead of fitting: per
declaration, one shading per condition uniformly from that condition's recorded shadings (v - d) / v; per
(lot, condition) choice, a snipe with the probability the recorded players sniped at that ratio (the isotonic,
non-increasing fit of the snipe choices on the ratio, lib.evaluation.fits.isotonic_steps); per order, one markup
uniformly from its side's recorded markups. Its draws are seeded by (seed, game, round, seat, phase, decision
count), as lib.games.market.policy's are. `finetune.py --evaluate` scores both like the baseline
(lib.games.market.scores),
leaving an evaluated training game out of what it is scored with; the empirical version's samples of all training
games are the "market" section of the evaluation's one samples file (lib.evaluation.saved), which
`handler.py --policy empirical` plays in every game (`from_saved` reads the section back).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.evaluation.fits import fit_scale, isotonic_steps, step_value
from lib.evaluation.saved import SavedSamples
from lib.evaluation.saved import read as read_saved
from lib.evaluation.scores import Decision, leave_one_game_out
from lib.games.market.actions import (
    DECLARE,
    POST,
    SPECULATE,
    TRADE,
    declaration_max,
    price_cap,
    snipe_conditions,
    validate_market_action,
)
from lib.games.market.examples import KINDS, MarketExample
from lib.games.market.policy import (
    DEFAULT_SNIPE_MARGIN,
    DEFAULT_SPREAD,
    ROUND_TO,
    baseline_declaration,
    baseline_snipes,
    decision_rng,
    sure_value,
    zic_trade,
)
from lib.games.market.sidecar import is_market, market_example
from lib.games.market.view import MarketView
from lib.games.protocols import ActionError

RECORDED = "the recorded players (scripts and agents: no human market data exists)"
SECTION = "market"  # the market games' section of the empirical samples file (lib.evaluation.saved)
DEFAULT_THRESHOLD = 1 - DEFAULT_SNIPE_MARGIN
SIDES = ("bid", "ask")


# ---------------------------------------------------------------------------------------------------------------
# Samples of the recorded players' decisions


@dataclass
class MarketSamples:
    declarations: list[tuple[int, float, float]] = field(default_factory=list)  # (condition, value, declared)
    snipes: list[tuple[float, int]] = field(default_factory=list)  # (declared / sure value, sniped)
    markups: dict[str, list[float]] = field(default_factory=lambda: {"bid": [], "ask": []})
    games: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._snipe_steps = isotonic_steps(self.snipes, increasing=False) if self.snipes else []

    def shadings(self, condition: int) -> list[float]:
        return [(v - d) / v for c, v, d in self.declarations if c == condition]

    def snipe_probability(self, ratio: float) -> float | None:
        return step_value(self._snipe_steps, ratio) if self._snipe_steps else None

    def to_dict(self) -> dict[str, Any]:
        return {"recorded_players": RECORDED, "declarations": [list(t) for t in self.declarations],
                "snipes": [list(p) for p in self.snipes], "markups": self.markups,
                "n": {DECLARE: len(self.declarations), SPECULATE: len(self.snipes),
                      TRADE: sum(len(v) for v in self.markups.values())},
                "games": self.games, "left_out": self.left_out}

    @classmethod
    def from_dict(cls, record: Any) -> MarketSamples:
        """The samples to_dict wrote; ValueError (one phrase naming the field) when they do not fit."""
        if not isinstance(record, dict):
            raise ValueError("market must be an object")

        def number(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

        decl = record.get("declarations", [])
        if not isinstance(decl, list) or not all(isinstance(t, list) and len(t) == 3 and t[0] in (0, 1)
                                                 and number(t[1]) and t[1] > 0 and number(t[2]) for t in decl):
            raise ValueError("market.declarations must be a list of [condition 0 or 1, value > 0, declared]")
        snipes = record.get("snipes", [])
        if not isinstance(snipes, list) or not all(isinstance(p, list) and len(p) == 2 and number(p[0])
                                                   and p[1] in (0, 1) and not isinstance(p[1], bool)
                                                   for p in snipes):
            raise ValueError("market.snipes must be a list of [ratio, 0 or 1]")
        markups = record.get("markups", {})
        if not isinstance(markups, dict) or not all(isinstance(markups.get(s, []), list)
                                                    and all(number(m) for m in markups.get(s, [])) for s in SIDES):
            raise ValueError("market.markups must be {\"bid\": [numbers], \"ask\": [numbers]}")
        return cls([(int(c), float(v), float(d)) for c, v, d in decl], [(float(x), int(y)) for x, y in snipes],
                   {s: [float(m) for m in markups.get(s, [])] for s in SIDES},
                   games=[str(g) for g in record.get("games") or []])


def _published(view: MarketView) -> list[dict[str, Any]]:
    return view.current.declarations.get(8 if view.phase == 8 else 3, [])


def snipe_choices(view: MarketView) -> list[tuple[int, int, float]]:
    """(lot id, condition, declared / sure value) of every choice a speculator's rule looks at now."""
    lots = set(view.lot_ids())
    out = []
    for c in snipe_conditions(view):
        for lot in _published(view):
            d, value = lot.get("d"), sure_value(view, lot, c)
            declared = d[c] if isinstance(d, list) and len(d) > c else None
            if (lot.get("id") in lots and value and isinstance(declared, int | float)
                    and not isinstance(declared, bool)):
                out.append((lot["id"], c, declared / value))
    return out


def collect(examples: Iterable[tuple[str, MarketExample]], left_out: Iterable[str] = ()) -> MarketSamples:
    """The samples of these (game, example) pairs, leaving out the games in `left_out`."""
    excluded = set(left_out)
    pairs = list(examples)
    out = MarketSamples()
    used_games = set()
    for game, ex in pairs:
        if game in excluded or ex.view is None:
            continue
        used_games.add(game)
        human = json.loads(ex.messages[2]["content"])
        if ex.action_type == "declare":
            values, declared = ex.state.get("values"), human.get("declaration") or []
            for c in (0, 1):
                v = values[c] if isinstance(values, list) and len(values) > c else None
                d = declared[c] if len(declared) > c else None
                if isinstance(v, int | float) and v > 0 and isinstance(d, int | float) and not isinstance(d, bool):
                    out.declarations.append((c, float(v), float(d)))
        elif ex.action_type == "done-speculating":
            chosen = human.get("snipe") or []
            for lot, c, ratio in snipe_choices(ex.view):
                picked = chosen[c] if len(chosen) > c and isinstance(chosen[c], list) else []
                out.snipes.append((round(ratio, 9), int(lot in picked)))
        elif ex.action_type == "post-order":
            order, signals = human.get("order") or {}, ex.state.get("signals")
            c = order.get("condition")
            s = signals[c] if isinstance(signals, list) and c in (0, 1) and c < len(signals) else None
            price = order.get("price")
            if (isinstance(s, int | float) and s > 0 and order.get("type") in SIDES and not order.get("now")
                    and isinstance(price, int | float) and not isinstance(price, bool)):
                out.markups[order["type"]].append(round((price - s) / s, 9))
    out.games = sorted(used_games)
    out.left_out = sorted(excluded & {g for g, _ in pairs})
    out.__post_init__()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Fitted parameters


@dataclass
class MarketFit:
    shading: float = 0.0
    snipe_threshold: float = DEFAULT_THRESHOLD
    markup: dict[str, float | None] = field(default_factory=lambda: {"bid": None, "ask": None})
    n: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"parameters": {"declaration_shading": self.shading, "snipe_threshold": self.snipe_threshold,
                               "order_markup": self.markup},
                "n": self.n, "fitted_on": RECORDED}


def fit_snipe_threshold(choices: Sequence[tuple[float, int]], default: float = DEFAULT_THRESHOLD) -> float:
    """The t agreeing with the most choices under "snipe iff ratio < t"; nearest `default` among equals."""
    if not choices:
        return default
    xs = sorted({x for x, _ in choices})
    snipes_at = {x: 0 for x in xs}
    passes_at = {x: 0 for x in xs}
    for x, y in choices:
        (snipes_at if y else passes_at)[x] += 1
    agree = sum(passes_at.values())  # t <= xs[0]: nobody sniped
    intervals = [(-math.inf, xs[0], agree)]  # t in (low, high]: the snipes are the ratios <= low
    for i, x in enumerate(xs):
        agree += snipes_at[x] - passes_at[x]
        intervals.append((x, xs[i + 1] if i + 1 < len(xs) else math.inf, agree))
    top = max(a for _, _, a in intervals)
    candidates = [min(max(default, low + 1e-6), high) for low, high, a in intervals if a == top]
    return min(candidates, key=lambda t: abs(t - default))


def fit(samples: MarketSamples) -> MarketFit:
    """The three rules' parameters from the recorded players' samples (see the module docstring)."""
    decl = samples.declarations
    big = [10 * max(v, abs(d), 1) for _, v, d in decl]  # no cap binds: the declared amount is the observation
    scale = fit_scale([d for _, _, d in decl], [v for _, v, _ in decl], big, 1.0)
    markup = {s: (statistics.median(samples.markups[s]) if samples.markups[s] else None) for s in SIDES}
    return MarketFit(round(1 - scale, 6), round(fit_snipe_threshold(samples.snipes), 6),
                     {s: (round(m, 6) if m is not None else None) for s, m in markup.items()},
                     {DECLARE: len(decl), SPECULATE: len(samples.snipes),
                      TRADE: sum(len(v) for v in samples.markups.values())})


# ---------------------------------------------------------------------------------------------------------------
# Deciding


def declaration_with(view: MarketView, shading: Sequence[float]) -> dict[str, Any]:
    """The value x (1 - shading[c]) per condition, rounded down to 1000, within [0, the server's maximum]; the
    baseline's declaration when the values are not known."""
    values = view.current.values
    if values is None:
        return baseline_declaration(view)
    out = []
    for c in (0, 1):
        d = max(0, int(values[c] * (1 - shading[c]) // ROUND_TO * ROUND_TO))
        maximum = declaration_max(view, c)
        out.append(min(d, maximum) if maximum is not None else d)
    return {"gameId": view.game_id, "type": DECLARE, "declaration": out + [0]}


def trade_with(view: MarketView, rng: random.Random, markup_of: Any) -> dict[str, Any]:
    """The baseline trader's choice (same draws), posting at signal x (1 + markup_of(side)) where that is not None."""
    answer = zic_trade(view, rng, DEFAULT_SPREAD)
    if answer.get("type") != POST:
        return answer
    order = answer["order"]
    m = markup_of(order["type"])
    if m is None:
        return answer
    s = view.current.signals[order["condition"]]
    price = min(max(0, round(s * (1 + m))), price_cap(view, order["condition"]))
    if order["type"] == "bid":
        price = min(price, int(view.uncommitted(order["condition"])[0]))
    return {**answer, "order": {**order, "price": price}}


def _rng(seed: int, view: MarketView, count: int, what: str) -> random.Random:
    key = f"{seed}:{view.game_id}:{view.number}:{view.round}:{view.phase}:{count}:{what}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


@dataclass
class MarketFitted:
    """The fitted market rules: `decide(view, kind, count)` returns the answer message, as MarketBaseline does."""

    params: MarketFit
    seed: int = 0
    name: str = "fitted"

    def decide(self, view: MarketView, kind: str, count: int = 0) -> dict[str, Any]:
        if kind == DECLARE:
            return declaration_with(view, [self.params.shading] * 2)
        if kind == SPECULATE:
            return baseline_snipes(view, 1 - self.params.snipe_threshold)
        if kind == TRADE:
            return trade_with(view, decision_rng(self.seed, view, count), self.params.markup.get)
        raise ValueError(f"unknown market decision {kind!r}")


@dataclass
class MarketEmpirical:
    """The empirical market policy: each parameter drawn from the recorded players' samples per decision."""

    samples: MarketSamples
    seed: int = 0
    name: str = "empirical"

    def decide(self, view: MarketView, kind: str, count: int = 0) -> dict[str, Any]:
        draw = _rng(self.seed, view, count, kind)
        if kind == DECLARE:
            shading = []
            for c in (0, 1):
                sample = self.samples.shadings(c)
                shading.append(draw.choice(sample) if sample else 0.0)
            return declaration_with(view, shading)
        if kind == SPECULATE:
            if not self.samples.snipes:
                return baseline_snipes(view)
            snipe: list[list[int]] = [[], [], []]
            for lot, c, ratio in snipe_choices(view):
                if lot not in snipe[c] and draw.random() < self.samples.snipe_probability(ratio):
                    snipe[c].append(lot)
            return {"gameId": view.game_id, "type": SPECULATE, "snipe": snipe}
        if kind == TRADE:
            def markup_of(side: str) -> float | None:
                sample = self.samples.markups.get(side) or []
                return draw.choice(sample) if sample else None

            return trade_with(view, decision_rng(self.seed, view, count), markup_of)
        raise ValueError(f"unknown market decision {kind!r}")


class MarketEmpiricalAgentPolicy:
    """MarketEmpirical as a market agent's policy, its decisions counted as the baseline's; `saved`: the samples
    file it came from (another game played with it takes its own section)."""

    def __init__(self, samples: MarketSamples, seed: int = 0, saved: SavedSamples | None = None) -> None:
        self.rules = MarketEmpirical(samples, seed)
        self.name = "empirical"
        self.count = 0
        self.saved = saved

    async def decide(self, view: MarketView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Any) -> dict[str, Any] | None:
        self.count += 1
        return self.rules.decide(view, wire_type, self.count)


# ---------------------------------------------------------------------------------------------------------------
# finetune.py --evaluate


def market_pairs(examples: Iterable[Any]) -> list[tuple[str, MarketExample]]:
    """(game, MarketExample) of the market examples of a set (lib.dataset.sidecar.Example)."""
    return [(e.game, market_example(e)) for e in examples if is_market(e)]


class MarketEvalPart:
    """Decides an evaluated market example (lib.dataset.sidecar.Example) with rules made per game: `make(game)` gives a
    MarketFitted or MarketEmpirical fitted without that game when it is a training game."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def decide(self, example: Any) -> Decision:
        view = example.view()
        try:
            return Decision(validate_market_action(self.make(example.game).decide(view, KINDS[example.action]), view,
                                                   KINDS[example.action]))
        except (ActionError, ValueError) as exc:
            return Decision(None, str(exc))


def per_game(evaluated_games: Iterable[str], training: Sequence[tuple[str, MarketExample]]
             ) -> dict[str, MarketSamples]:
    """Per evaluated game, the samples it is scored with: every training game's but its own."""
    return leave_one_game_out(evaluated_games, {g for g, _ in training},
                              lambda leave: collect(training, left_out=leave))


def fitted_rules(training_examples: Sequence[Any]) -> tuple[MarketEvalPart, dict[str, Any]]:
    """The fitted market rules and what the report says of them: an evaluated game that is a training game is scored
    with the fit on the other training games, any other with the fit on all of them."""
    training = market_pairs(training_examples)
    samples = per_game(sorted({g for g, _ in training}), training)
    fits = {game: fit(s) for game, s in samples.items()}
    overall = fit(collect(training))
    info = {"recorded_players": RECORDED, "all_training_games": overall.to_dict(),
            "scored_with": {g: {**f.to_dict(), "games": samples[g].games, "left_out": samples[g].left_out}
                            for g, f in fits.items()}}
    return MarketEvalPart(lambda game: MarketFitted(fits.get(game, overall))), info


def empirical_rules(training_examples: Sequence[Any]) -> tuple[MarketEvalPart, dict[str, Any], MarketSamples]:
    """The empirical market rules: every training market game gets its leave-one-out samples, any other evaluated
    market game those of all training games (also returned: what handler.py plays)."""
    training = market_pairs(training_examples)
    samples = per_game(sorted({g for g, _ in training}), training)
    overall = collect(training)
    info = {"recorded_players": RECORDED, "all_training_games": overall.to_dict()["n"]}
    return MarketEvalPart(lambda game: MarketEmpirical(samples.get(game, overall))), info, overall


# ---------------------------------------------------------------------------------------------------------------
# The saved samples: the "market" section of empirical_policy.json (lib.evaluation.saved)


def summary(samples: MarketSamples) -> str:
    """What the empirical policy draws from in the market games, in a few words (the run's first line)."""
    n = samples.to_dict()["n"]
    return (f"market: {n[DECLARE]} declarations, {n[SPECULATE]} snipe choices, {n[TRADE]} orders of the recorded "
            "players")


def section(samples: MarketSamples) -> dict[str, Any]:
    """The samples as the market games' section of the samples file."""
    return {"rules": "lib/games/market/policy.py (the baseline's rules), draws as in lib/games/market/fitted.py",
            **samples.to_dict(), "summary": summary(samples)}


def from_saved(saved: SavedSamples | None) -> MarketSamples:
    """The market samples of a samples file: its "market" section, or the "market" object of a file of version 1;
    none when it has neither (a set without market games: the baseline's rules). SamplesError (one line) when they
    do not fit."""
    record = saved.section(SECTION) if saved is not None else None
    if saved is not None and record is None and saved.legacy is not None:
        record = saved.legacy.get("market")
    if record is None:
        return MarketSamples()
    try:
        return MarketSamples.from_dict(record)
    except ValueError as exc:
        assert saved is not None
        raise saved.error(str(exc)) from None


def playing(path: Path, seed: int) -> tuple[MarketEmpiricalAgentPolicy, str]:
    """handler.py --policy empirical in a market game: the policy of the saved samples and the run's first line;
    SamplesError (one line) when the file cannot be used."""
    saved = read_saved(path)
    samples = from_saved(saved)
    return MarketEmpiricalAgentPolicy(samples, seed=seed, saved=saved), saved.playing_line(summary(samples), seed)
