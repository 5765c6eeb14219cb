"""Intervals and distributions for the market scores of `finetune.py --evaluate` (lib.games.market.scores), on
lib.evaluation.stats.

Declarations are compared as declaration over the true value (per condition), orders as price over the seat's
signal of the order's condition (where the recorded player posted a priced order and the policy posted on the same
side), the way lib.games.market.scores scores them: the relative error |policy - recorded| of those ratios is its
`mean_rel_error` / `mean_rel_price_error`. Here each gets a 95 % bootstrap interval over persons (a seat in a game)
and over games, and the policy's and the recorded players' ratios are compared as distributions (Wasserstein-1,
Kolmogorov-Smirnov D) with the share of answers within 10 % of the recorded player's. The comparison is with the
recorded players, whoever they were (see lib.games.market.scores.MARKET_WARNING).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lib.evaluation import stats
from lib.games.market.actions import DECLARE, TRADE, validate_market_action
from lib.games.voting.actions import ActionError


def ratio_pairs(examples: Sequence[Any], made: Sequence[Any], answers: dict[int, Any]
                ) -> dict[str, list[tuple[str, str, float, float]]]:
    """Per decision type, (person, game, recorded ratio, policy ratio) for every comparable decision; `answers`
    holds the policy's raw answer per made example's view (id), as the policy gave it."""
    out: dict[str, list[tuple[str, str, float, float]]] = {"declare": [], "post-order": []}
    for e, m in zip(examples, made, strict=True):
        if m.view is None or m.action_type not in out or id(m.view) not in answers:
            continue
        kind = DECLARE if m.action_type == "declare" else TRADE
        try:
            answer = validate_market_action(answers[id(m.view)], m.view, kind)
        except (ActionError, ValueError, TypeError):
            continue  # invalid: counted by lib.games.market.scores, no ratio to compare
        human = json.loads(m.messages[2]["content"])
        person = f"{e.game}/{m.seat}"
        if kind == DECLARE:
            values, d_h = m.state.get("values"), human.get("declaration") or []
            if values is None:
                continue
            for c in (0, 1):
                h = d_h[c] if len(d_h) > c else None
                if values[c] and isinstance(h, int | float):
                    out["declare"].append((person, e.game, h / values[c], answer["declaration"][c] / values[c]))
        else:
            o_h, signals = human.get("order") or {}, m.state.get("signals")
            c = o_h.get("condition")
            s = signals[c] if isinstance(signals, list) and c in (0, 1) else None
            if (not isinstance(s, int | float) or not s or not isinstance(o_h.get("price"), int | float)
                    or o_h.get("now") or answer.get("type") != "post-order"):
                continue
            o_p = answer["order"]
            if o_p["type"] == o_h.get("type"):  # as lib.games.market.scores: the same side, priced over the same signal
                out["post-order"].append((person, e.game, o_h["price"] / s, o_p["price"] / s))
    return out


def summarize(pairs: list[tuple[str, str, float, float]], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """Mean relative error with intervals over persons and games, distances between the ratios, share within 10 %."""
    errors = [abs(p - h) for _, _, h, p in pairs]
    recorded, policy = [h for _, _, h, _ in pairs], [p for _, _, _, p in pairs]
    d, p_value = stats.ks_2samp(policy, recorded)
    return {"n": len(pairs), "persons": len({x[0] for x in pairs}), "games": len({x[1] for x in pairs}),
            "mean_rel_error": {
                "persons": stats.cluster_bootstrap(errors, [x[0] for x in pairs], seed=seed).to_dict(),
                "games": stats.cluster_bootstrap(errors, [x[1] for x in pairs], seed=seed).to_dict()},
            "within_10pct": stats.share_within(policy, recorded),
            "wasserstein_ratio": stats.wasserstein1(policy, recorded), "ks_d_ratio": d, "ks_p_ratio_approx": p_value}


def format_lines(name: str, section: dict[str, Any]) -> list[str]:
    lines = []
    for kind, label in (("declare", "declarations / value"), ("post-order", "order prices / signal")):
        s = section.get(kind)
        if not s or not s["n"]:
            continue
        i, g = s["mean_rel_error"]["persons"], s["mean_rel_error"]["games"]
        ci = "[-]" if i["low"] is None else f"[{100 * i['low']:.1f}%, {100 * i['high']:.1f}%]"
        gi = "-" if g["low"] is None else f"[{100 * g['low']:.1f}%, {100 * g['high']:.1f}%]"
        within = "-" if s["within_10pct"] is None else f"{100 * s['within_10pct']:.0f}%"
        lines.append(f"  {name}: {label} (n={s['n']}, {s['persons']} persons, {s['games']} games): mean error "
                     f"{100 * i['estimate']:.1f}% {ci} over persons, {gi} over games; within 10% {within}; "
                     f"W1 {s['wasserstein_ratio']:.3f}, KS D {s['ks_d_ratio']:.3f} against the recorded players")
    return lines
