"""How human-like a policy is on the market games' decisions, scored on the examples of lib/games/market/examples.py.

Each example holds the seat's view when it decided; the policy decides on that view (`decide(view, kind)`, its
answer checked as at play time, strict) and is compared with what the human sent. What is comparable is scored:

- declarations: the error of the policy's declaration against the human's, relative to the true value
  (|d_policy - d_human| / v, per condition, averaged; examples whose values are unknown are not scored), with
  each side's mean shading (v - d) / v;
- snipes: agreement on every (lot, condition whose snipes count) choice, with each side's snipe rate;
- orders: for each order the human posted, whether the policy also posts on the same side, and where both post,
  the price error relative to the human's signal (|p_policy - p_human| / S), with each side's mean markup
  (p - S) / S by side.

Not scored, and said so in the report: cancels (which order to cancel depends on a book the policy would itself
have changed), the timing and the number of orders (the log holds no human "waits"), and orders the server
refused (not examples). An answer the checks refuse counts as `invalid` and as a disagreement.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from lib.games.market.actions import DECLARE, SPECULATE, TRADE, snipe_conditions, validate_market_action
from lib.games.market.examples import MarketExample
from lib.games.voting.actions import ActionError

NOT_SCORED = ("cancel-order: which order to cancel depends on a book the policy would itself have changed",
              "the timing and number of orders: the log holds no human waits",
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
