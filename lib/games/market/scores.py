"""How human-like a policy is on the market games' decisions, scored on the examples of lib/games/market/examples.py.

Each example holds the seat's view when it decided; the policy decides on that view (`decide(view, kind)`, its
answer checked as at play time, strict) and is compared with what the recorded player sent (the report's keys say
`human_*` for that side, and the table "the recorded players": see MARKET_WARNING). What is comparable is scored:

- declarations: the error of the policy's declaration against the recorded one, relative to the true value
  (|d_policy - d_human| / v, per condition, averaged; examples whose values are unknown are not scored), with
  each side's mean shading (v - d) / v;
- snipes: agreement on every (lot, condition whose snipes count) choice, with each side's snipe rate;
- orders: for each order the recorded player posted, whether the policy also posts on the same side, and where
  both post, the price error relative to the seat's signal (|p_policy - p_human| / S), with each side's mean markup
  (p - S) / S by side.

Not scored, and said so in the report: cancels (which order to cancel depends on a book the policy would itself
have changed), the timing and the number of orders (the log holds no "waits" of the recorded players), and orders
the server refused (not examples). An answer the checks refuse counts as `invalid` and as a disagreement.

`MarketScores` is Harberger's and futarchy's lib.games.protocols.ScoreRules: `finetune.py --evaluate` asks it for the
rule policies (the baseline, lib.games.market.policy; fitted and empirical, lib.games.market.fitted), checks a model's
answer with lib.games.market.actions.parse_market_answer, and reports its section as "market", compared with "the
recorded players" (MARKET_WARNING), with the intervals, paired differences and sign tests of
lib.games.market.fidelity.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lib.evaluation.scores import RULES, TEXT, Kind
from lib.games.market.actions import DECLARE, SPECULATE, TRADE, snipe_conditions, validate_market_action
from lib.games.market.examples import KINDS as DECISION_KINDS
from lib.games.market.examples import MarketExample
from lib.games.market.sidecar import market_example
from lib.games.protocols import ActionError
from lib.ibex.params import ROLE_NAMES

NOT_SCORED = ("cancel-order: which order to cancel depends on a book the policy would itself have changed",
              "the timing and number of orders: the log holds no waits of the recorded players",
              "orders the server refused: they give no example")


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def score_market(examples: Iterable[MarketExample], decide: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
    """Scores per decision type (see the module docstring); `decide(view, kind)` is the policy."""
    declare = {"n": 0, "invalid": 0, "rel_errors": [], "human_shading": [], "policy_shading": [], "unknown": 0}
    snipe = {"n": 0, "invalid": 0, "choices": 0, "agree": 0, "human": 0, "policy": 0}
    order = {"n": 0, "invalid": 0, "same_side": 0, "rel_errors": [], "human_markup": {"bid": [], "ask": []},
             "policy_markup": {"bid": [], "ask": []}}
    cancels = 0
    for ex in examples:
        view = ex.view
        human = json.loads(ex.messages[2]["content"])
        kind = {"declare": DECLARE, "done-speculating": SPECULATE}.get(ex.action_type, TRADE)
        if ex.action_type == "cancel-order":
            cancels += 1
            continue
        if view is None:
            continue
        try:
            answer = validate_market_action(decide(view, kind), view, kind)
        except (ActionError, ValueError):
            answer = None
        if kind == DECLARE:
            values = ex.state.get("values")
            if values is None:
                declare["unknown"] += 1
                continue
            declare["n"] += 1
            d_h = human.get("declaration") or []
            for c in (0, 1):
                if values[c] and isinstance(d_h[c] if len(d_h) > c else None, int | float):
                    declare["human_shading"].append((values[c] - d_h[c]) / values[c])
                    if answer is not None:
                        d_p = answer["declaration"][c]
                        declare["rel_errors"].append(abs(d_p - d_h[c]) / values[c])
                        declare["policy_shading"].append((values[c] - d_p) / values[c])
            declare["invalid"] += answer is None
        elif kind == SPECULATE:
            snipe["n"] += 1
            snipe["invalid"] += answer is None
            counted, lots = snipe_conditions(view), view.lot_ids()
            chosen_h = human.get("snipe") or []
            chosen_p = answer["snipe"] if answer is not None else None
            for c in counted:
                for lot in lots:
                    h = lot in (chosen_h[c] if len(chosen_h) > c and isinstance(chosen_h[c], list) else [])
                    p = chosen_p is not None and lot in chosen_p[c]
                    snipe["choices"] += 1
                    snipe["agree"] += (h == p) and chosen_p is not None
                    snipe["human"] += h
                    snipe["policy"] += p
        else:
            o_h = human.get("order") or {}
            signals = ex.state.get("signals")
            c = o_h.get("condition")
            s = signals[c] if isinstance(signals, list) and c in (0, 1) else None
            if not isinstance(s, int | float) or not s or o_h.get("type") not in ("bid", "ask"):
                continue
            order["n"] += 1
            order["invalid"] += answer is None
            if isinstance(o_h.get("price"), int | float) and not o_h.get("now"):
                order["human_markup"][o_h["type"]].append((o_h["price"] - s) / s)
            if answer is not None and answer["type"] == "post-order":
                o_p = answer["order"]
                s_p = signals[o_p["condition"]] if isinstance(signals, list) else None
                if isinstance(s_p, int | float) and s_p:
                    order["policy_markup"][o_p["type"]].append((o_p["price"] - s_p) / s_p)
                if o_p["type"] == o_h["type"]:
                    order["same_side"] += 1
                    if isinstance(o_h.get("price"), int | float) and not o_h.get("now"):
                        order["rel_errors"].append(abs(o_p["price"] - o_h["price"]) / s)
    return {
        "declare": {"n": declare["n"], "invalid": declare["invalid"], "values_unknown": declare["unknown"],
                    "mean_rel_error": _mean(declare["rel_errors"]),
                    "median_rel_error": statistics.median(declare["rel_errors"]) if declare["rel_errors"] else None,
                    "human_shading": _mean(declare["human_shading"]),
                    "policy_shading": _mean(declare["policy_shading"])},
        "done-speculating": {"n": snipe["n"], "invalid": snipe["invalid"], "choices": snipe["choices"],
                             "agreement": snipe["agree"] / snipe["choices"] if snipe["choices"] else None,
                             "human_snipe_rate": snipe["human"] / snipe["choices"] if snipe["choices"] else None,
                             "policy_snipe_rate": snipe["policy"] / snipe["choices"] if snipe["choices"] else None},
        "post-order": {"n": order["n"], "invalid": order["invalid"],
                       "same_side": order["same_side"] / order["n"] if order["n"] else None,
                       "mean_rel_price_error": _mean(order["rel_errors"]),
                       "human_markup": {k: _mean(v) for k, v in order["human_markup"].items()},
                       "policy_markup": {k: _mean(v) for k, v in order["policy_markup"].items()}},
        "cancel-order": {"n": cancels, "scored": False},
        "not_scored": list(NOT_SCORED),
    }


# ---------------------------------------------------------------------------------------------------------------
# finetune.py --evaluate: the market games' lib.games.protocols.ScoreRules

# No human Harberger or futarchy log is public and a log does not say who played it: the market numbers compare with
# whoever did, and must not pass for a measure of human-likeness.
MARKET_WARNING = ("the market scores compare with the recorded players, not with humans: no human Harberger or "
                  "futarchy data is public, and logs recorded with agents or scripts (as the real-server recordings "
                  "were) measure likeness to those agents or scripts")


def market_section(names: Sequence[str], examples: Sequence[Any], decisions: Mapping[str, Sequence[Any]]
                   ) -> dict[str, Any]:
    """The report's "market": score_market per policy asked on these examples (its `decisions`, one per example,
    already checked strictly: None when invalid), with the intervals, paired differences and sign tests of
    lib.games.market.fidelity, and what is not scored, naming the policies of `names` that have no market version."""
    from lib.games.market import fidelity as marketstats

    per_action: dict[str, int] = {}
    per_type: dict[str, int] = {}
    for e in examples:
        per_action[e.action] = per_action.get(e.action, 0) + 1
        per_type[e.game_type] = per_type.get(e.game_type, 0) + 1
    made = [market_example(e) for e in examples]
    scores, not_scored, answers = {}, list(NOT_SCORED), {}
    for name in names:
        if name in decisions:
            # score_market asks decide(view, kind) example by example; each made example has its own view object,
            # so the view says which example's decision it wants
            decided = {id(m.view): d.action for m, d in zip(made, decisions[name], strict=True)}
            scores[name] = score_market(made, lambda view, kind, decided=decided: decided[id(view)])
            scores[name].pop("not_scored", None)
            answers[name] = decided
        else:
            not_scored.append(f"policy {name}: no market version in --evaluate yet (only the baseline, "
                              "lib/games/market/policy.py, fitted, empirical and llm are scored on market examples)")
    return {"examples": len(examples), "per_game_type": per_type, "per_action": per_action, "policies": scores,
            "compared_with": "the recorded players", "warning": MARKET_WARNING,
            "uncertainty": marketstats.analyse(examples, made, answers),
            "not_scored": not_scored}


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def market_table(section: dict[str, Any]) -> str:
    """The market scores in a few lines per policy."""
    from lib.games.market import fidelity as marketstats

    lines = [f"market decisions (n={section['examples']}: " + ", ".join(
        f"{a} {n}" for a, n in section["per_action"].items()) + "), compared with the recorded players",
             f"  warning: {section.get('warning', MARKET_WARNING)}"]
    lines += [f"  {note}" for note in section.get("uncertainty", {}).get("notes", [])]
    for name, s in section["policies"].items():
        d, sn, o = s["declare"], s["done-speculating"], s["post-order"]
        lines.append(f"  {name}: declarations n={d['n']} (values unknown {d['values_unknown']}), invalid "
                     f"{d['invalid']}, mean error {_pct(d['mean_rel_error'])} of the true value, shading "
                     f"recorded players {_pct(d['human_shading'])} / policy {_pct(d['policy_shading'])}")
        lines.append(f"  {name}: snipes n={sn['n']}, invalid {sn['invalid']}, agreement {_pct(sn['agreement'])} "
                     f"of {sn['choices']} choices, snipe rate recorded players {_pct(sn['human_snipe_rate'])} / policy "
                     f"{_pct(sn['policy_snipe_rate'])}")
        lines.append(f"  {name}: orders n={o['n']}, invalid {o['invalid']}, same side {_pct(o['same_side'])}, mean "
                     f"price error {_pct(o['mean_rel_price_error'])} of the signal")
        lines += marketstats.format_lines(name, section.get("uncertainty", {}).get("policies", {}).get(name, {}))
    lines += marketstats.format_section(section.get("uncertainty", {}))
    lines += [f"  not scored: {reason}" for reason in section["not_scored"]]
    return "\n".join(lines)


KINDS: dict[str, Kind] = {
    "declare": Kind(RULES, lambda message: message, "declarations"),
    "done-speculating": Kind(RULES, lambda message: message, "snipes"),
    "post-order": Kind(RULES, lambda message: message, "orders"),
    "cancel-order": Kind(TEXT, lambda message: message, "cancels", unasked="a market cancel is counted, not scored"),
}


class _Rules:
    """lib.games.protocols.RuleDecisions on market examples: the rules `part` makes per game."""

    def __init__(self, part: Any, info: dict[str, Any], samples: dict[str, Any] | None = None) -> None:
        self.decide, self._info, self._samples = part.decide, info, samples or {}

    def info(self) -> dict[str, Any]:
        return self._info

    def save(self, out: Any) -> list[str]:
        return []  # what handler.py plays of the market is its section of the samples file (samples())

    def summary(self, out: Any) -> str | None:
        return None

    def samples(self) -> dict[str, Any]:
        return self._samples


MARKET_CSV_COLUMNS = ["policy", "game", "round", "seat", "person", "role", "action", "condition", "lot", "side",
                      "value_0", "value_1", "signal_0", "signal_1", "recorded_answer", "policy_answer", "valid",
                      "invalid_reason", "recorded_ratio", "policy_ratio", "abs_error", "agree"]


class MarketSection:
    """lib.games.protocols.ScoredSection of the market examples: the report's "market"."""

    def __init__(self, section: dict[str, Any], examples: Sequence[Any] = (),
                 decisions: Mapping[str, Sequence[Any]] | None = None) -> None:
        self.report = {"market": section}
        self.examples, self.decisions = list(examples), dict(decisions or {})

    def table(self) -> str:
        return market_table(self.report["market"])

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        """One row per policy and comparable choice of a scored market decision (a declaration per condition, a
        snipe choice per condition and lot, an order's price), the recorded player's and the policy's ratios side by
        side with the per-choice score, flat, as lib.games.market.fidelity compares them; invalid answers say why."""
        from lib.games.market import fidelity as marketstats

        made = [market_example(e) for e in self.examples]
        rows = []
        for name, decided in self.decisions.items():
            answers = {id(m.view): d.action for m, d in zip(made, decided, strict=True)}
            for kind, items in marketstats.items(self.examples, made, answers).items():
                for item in items:
                    i, condition, lot = item.key
                    e, m, d = self.examples[i], made[i], decided[i]
                    values, signals = m.state.get("values") or [None, None], m.state.get("signals") or [None, None]
                    score = None if item.policy is None else (
                        float(item.policy == item.recorded) if kind == marketstats.SNIPES
                        else abs(item.policy - item.recorded))
                    rows.append([name, e.game, m.round, m.seat, item.person, ROLE_NAMES.get(m.role, m.role), kind,
                                 condition, None if lot < 0 else lot, item.side or None, values[0], values[1],
                                 signals[0] if len(signals) > 0 else None, signals[1] if len(signals) > 1 else None,
                                 m.messages[2]["content"], json.dumps(d.action) if d.action is not None else None,
                                 int(d.action is not None), None if d.action is not None else (d.error or ""),
                                 item.recorded, item.policy,
                                 score if kind != marketstats.SNIPES else None,
                                 score if kind == marketstats.SNIPES else None])
        return MARKET_CSV_COLUMNS, rows

    def draw(self, path: Any, title: str) -> None:
        raise NotImplementedError("the market games have no picture")


class MarketScores:
    """lib.games.protocols.ScoreRules for Harberger and futarchy: one section for both (see the module docstring)."""

    noun = "market decisions"
    kinds = KINDS
    models = ("llm",)
    answer_nll = False  # the market scores have no NLL column: its calls would be paid for and never shown
    has_picture = False
    output_files: tuple[str, ...] = ()

    def rule_decisions(self, policy: str, training: Any, evaluated_games: Sequence[str]) -> _Rules | None:
        from lib.games.market import fitted as marketfitted
        from lib.games.market.policy import MarketBaseline

        if policy == "baseline":
            return _Rules(marketfitted.MarketEvalPart(lambda game: MarketBaseline(seed=0)), {})
        if policy == "fitted":
            part, info = marketfitted.fitted_rules(training.examples)
            return _Rules(part, {"market": info})
        if policy == "empirical":
            part, info, overall = marketfitted.empirical_rules(training.examples)
            # what handler.py --policy empirical plays: the market games' section of the one samples file
            return _Rules(part, {"market": info}, {marketfitted.SECTION: marketfitted.section(overall)})
        return None

    def answer_schema(self, example: Any) -> tuple[str, None]:
        return DECISION_KINDS[example.action], None  # a market decision's schema is its kind's, as at play time

    def chat_client(self, **options: Any) -> Any:
        from lib.agents.llm import LLMPolicy
        from lib.games import game_for
        from lib.games.market.rules import HARBERGER

        # One client for both market games: their prompts, schema and checks are one (lib.games.market.answers).
        return LLMPolicy(game=game_for(HARBERGER), **options)

    def parse_answer(self, answer: Any, example: Any) -> dict[str, Any]:
        from lib.games.market.actions import parse_market_answer

        return parse_market_answer(answer, example.view(), DECISION_KINDS[example.action])

    def score(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Any]], policies: Sequence[str],
              training: Sequence[Any] | None) -> MarketSection:
        return MarketSection(market_section(policies, examples, decisions), examples,
                             {name: decisions[name] for name in policies if name in decisions})


SCORES = MarketScores()
