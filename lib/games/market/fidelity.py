"""Intervals, paired differences, sign tests and distributions for the market scores of `finetune.py --evaluate`
(lib.games.market.scores), on lib.evaluation.fidelity and lib.evaluation.stats.

The decisions are scored the way lib.games.market.scores scores them, one item per comparable choice, each with its
person (a seat in a game) and game:

- declarations: declaration over the true value, per condition; the error |policy - recorded| of those ratios is
  score_market's `mean_rel_error` (only valid answers have a ratio);
- snipes: every (counted condition, lot) choice, 1 sniped or 0 not; agreement is score_market's `agreement` (an
  invalid answer is a disagreement, so every choice counts);
- orders: price over the seat's signal of the order's condition, where the recorded player posted a priced order
  and the policy posted on the same side; the error is score_market's `mean_rel_price_error`.

Each policy's mean error (agreement for snipes) gets a 95 % bootstrap interval over persons and over games; the
ratios are compared as distributions (Wasserstein-1, Kolmogorov-Smirnov D, the share within 10 %). Every two policies,
and each policy and the out-of-sample reference (the median ratio, or the majority choice, of the other games'
recorded players on the same side), are compared on the same decisions (both with a comparable answer), with
intervals and the sign test over persons, as lib.games.voting.fidelity does for votes and amounts. The comparison is
with the recorded players, whoever they were (see lib.games.market.scores.MARKET_WARNING).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lib.evaluation import fidelity, stats
from lib.games.market.actions import DECLARE, SPECULATE, TRADE, snipe_conditions, validate_market_action
from lib.games.protocols import ActionError

RATIOS = ("declare", "post-order")
SNIPES = "done-speculating"
LABELS = {"declare": "declarations / value", SNIPES: "snipe choices", "post-order": "order prices / signal"}
MEASURES = {"declare": "absolute error", SNIPES: "agreement", "post-order": "absolute error"}
REFERENCE = "out of sample: median ratio / majority of the other games"
KIND = {"declare": DECLARE, SNIPES: SPECULATE, "post-order": TRADE}


@dataclass(frozen=True)
class Item:
    """One comparable choice: `recorded` the recorded player's ratio (or 0/1 snipe), `policy` the policy's, None
    when it gave no comparable answer (invalid, or an order on the other side)."""

    key: tuple[int, int, int]  # (example index, condition, lot; -1 when not a snipe)
    person: str
    game: str
    side: str  # orders: bid or ask; "" otherwise
    recorded: float
    policy: float | None


def _valid(answer: Any, view: Any, kind: str) -> dict[str, Any] | None:
    try:
        return validate_market_action(answer, view, kind)
    except (ActionError, ValueError, TypeError):
        return None  # invalid: counted by lib.games.market.scores


def items(examples: Sequence[Any], made: Sequence[Any], answers: dict[int, Any]) -> dict[str, list[Item]]:
    """Per decision type, an item per comparable choice; `answers` holds the policy's raw answer per made example's
    view (id), as the policy gave it."""
    out: dict[str, list[Item]] = {k: [] for k in KIND}
    for i, (e, m) in enumerate(zip(examples, made, strict=True)):
        if m.view is None or m.action_type not in out or id(m.view) not in answers:
            continue
        answer = _valid(answers[id(m.view)], m.view, KIND[m.action_type])
        recorded = json.loads(m.messages[2]["content"])
        person = f"{e.game}/{m.seat}"
        if m.action_type == "declare":
            values, d_h = m.state.get("values"), recorded.get("declaration") or []
            if values is None:
                continue
            for c in (0, 1):
                h = d_h[c] if len(d_h) > c else None
                if values[c] and isinstance(h, int | float):
                    mine = None if answer is None else answer["declaration"][c] / values[c]
                    out["declare"].append(Item((i, c, -1), person, e.game, "", h / values[c], mine))
        elif m.action_type == SNIPES:
            chosen_h = recorded.get("snipe") or []
            for c in snipe_conditions(m.view):
                sniped = chosen_h[c] if len(chosen_h) > c and isinstance(chosen_h[c], list) else []
                for lot in m.view.lot_ids():
                    mine = None if answer is None else float(lot in answer["snipe"][c])
                    out[SNIPES].append(Item((i, c, lot), person, e.game, "", float(lot in sniped), mine))
        else:
            o_h, signals = recorded.get("order") or {}, m.state.get("signals")
            c = o_h.get("condition")
            s = signals[c] if isinstance(signals, list) and c in (0, 1) else None
            if (not isinstance(s, int | float) or not s or not isinstance(o_h.get("price"), int | float)
                    or o_h.get("now") or o_h.get("type") not in ("bid", "ask")):
                continue
            mine = None
            if answer is not None and answer.get("type") == "post-order" and answer["order"]["type"] == o_h["type"]:
                mine = answer["order"]["price"] / s  # as lib.games.market.scores: the same side, over the same signal
            out["post-order"].append(Item((i, c, -1), person, e.game, o_h["type"], o_h["price"] / s, mine))
    return out


def reference(per_kind: dict[str, list[Item]]) -> dict[str, list[Item]]:
    """The out-of-sample reference's items: for each choice, the median recorded ratio (orders: of the same side) or
    the majority recorded snipe choice (a tie: no snipe) of the OTHER games, as a policy would have to take it; None
    when no other game has one."""
    out = {}
    for kind, its in per_kind.items():
        learned: dict[tuple[str, str], float | None] = {}
        for game, side in {(it.game, it.side) for it in its}:
            others = [o.recorded for o in its if o.game != game and o.side == side]
            if not others:
                learned[game, side] = None
            elif kind == SNIPES:
                learned[game, side] = float(2 * sum(others) > len(others))
            else:
                learned[game, side] = statistics.median(others)
        out[kind] = [replace(it, policy=learned[it.game, it.side]) for it in its]
    return out


def _score(kind: str) -> Callable[[Item], float]:
    if kind == SNIPES:
        return lambda it: float(it.policy == it.recorded)
    return lambda it: abs(it.policy - it.recorded)


def summarize(kind: str, its: list[Item], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """Ratios: the mean error with intervals over persons and games, distances between the ratios, the share within
    10 %; snipes: agreement with its intervals and each side's snipe rate."""
    score = _score(kind)
    if kind == SNIPES:
        agreements = [score(it) for it in its]
        answered = [it.policy for it in its if it.policy is not None]
        return {"n": len(its), "persons": len({x.person for x in its}), "games": len({x.game for x in its}),
                "agreement": fidelity.intervals(agreements, [x.person for x in its], [x.game for x in its],
                                                stats.mean, seed),
                "recorded_snipe_rate": stats.mean([it.recorded for it in its]),
                "policy_snipe_rate": stats.mean(answered)}
    valid = [it for it in its if it.policy is not None]
    errors = [score(it) for it in valid]
    recorded, policy = [it.recorded for it in valid], [it.policy for it in valid]
    d, p_value = stats.ks_2samp(policy, recorded)
    return {"n": len(valid), "persons": len({x.person for x in valid}), "games": len({x.game for x in valid}),
            "mean_rel_error": fidelity.intervals(errors, [x.person for x in valid], [x.game for x in valid],
                                                 stats.mean, seed),
            "within_10pct": stats.share_within(policy, recorded),
            "wasserstein_ratio": stats.wasserstein1(policy, recorded), "ks_d_ratio": d, "ks_p_ratio_approx": p_value}


def paired(kind: str, a: list[Item], b: list[Item], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """a minus b on the choices both answered comparably: the absolute error of the ratio (negative: a is closer) or
    snipe agreement (every choice; an invalid answer disagrees; positive: a agrees more)."""
    theirs = {it.key: it for it in b}
    pairs = [(x, theirs[x.key]) for x in a if x.key in theirs
             and (kind == SNIPES or (x.policy is not None and theirs[x.key].policy is not None))]
    score = _score(kind)
    return fidelity.paired([score(x) for x, _ in pairs], [score(y) for _, y in pairs], [x.person for x, _ in pairs],
                           [x.game for x, _ in pairs], MEASURES[kind], seed)


def analyse(examples: Sequence[Any], made: Sequence[Any], answers: dict[str, dict[int, Any]],
            seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """The market's "uncertainty" section, keyed as voting's: clusters, notes, policies, references, differences;
    `answers` holds per policy its raw answer per made example's view (id)."""
    per_policy = {name: items(examples, made, ans) for name, ans in answers.items()}
    section = fidelity.section(len({e.game for e in examples}), seed)
    if not per_policy:
        return section
    refs = {REFERENCE: reference(next(iter(per_policy.values())))}
    for kind in KIND:
        longest = max((its[kind] for its in per_policy.values()), key=len)
        if longest:
            section["clusters"][kind] = {"n": len(longest), "persons": len({x.person for x in longest}),
                                         "games": len({x.game for x in longest})}
    for target, group in (("policies", per_policy), ("references", refs)):
        for name, per_kind in group.items():
            section[target][name] = {k: summarize(k, its, seed) for k, its in per_kind.items() if its}
    everyone = {**per_policy, **refs}
    for a, b in fidelity.comparisons(list(per_policy), list(refs)):
        for kind in KIND:
            if everyone[a][kind] and everyone[b][kind]:
                section["differences"].append({"a": a, "b": b, "action": kind,
                                               **paired(kind, everyone[a][kind], everyone[b][kind], seed)})
    return section


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_lines(name: str, per_kind: dict[str, Any]) -> list[str]:
    """A policy's (or the reference's) lines: each decision type's mean error or agreement with its intervals."""
    lines = []
    for kind, label in LABELS.items():
        s = per_kind.get(kind)
        if not s or not s["n"]:
            continue
        entry = s["agreement" if kind == SNIPES else "mean_rel_error"]
        i, g = entry["persons"], entry["games"]
        ci = "[-]" if i["low"] is None else f"[{_pct(i['low'])}, {_pct(i['high'])}]"
        gi = "-" if g["low"] is None else f"[{_pct(g['low'])}, {_pct(g['high'])}]"
        head = f"  {name}: {label} (n={s['n']}, {s['persons']} persons, {s['games']} games): "
        if kind == SNIPES:
            lines.append(f"{head}agreement {_pct(i['estimate'])} {ci} over persons, {gi} over games; snipe rate "
                         f"recorded players {_pct(s['recorded_snipe_rate'])} / answers {_pct(s['policy_snipe_rate'])}")
            continue
        within = "-" if s["within_10pct"] is None else f"{100 * s['within_10pct']:.0f}%"
        lines.append(f"{head}mean error {_pct(i['estimate'])} {ci} over persons, {gi} over games; within 10% {within}; "
                     f"W1 {_ratio(s['wasserstein_ratio'])}, KS D {_ratio(s['ks_d_ratio'])} against the recorded "
                     "players")
    return lines


def format_section(section: dict[str, Any]) -> list[str]:
    """The reference's lines and the paired differences, below the policies' lines."""
    lines = []
    for name, per_kind in section.get("references", {}).items():
        lines += format_lines(name, per_kind)
    if section.get("differences"):
        lines.append("  " + fidelity.differences_header("the recorded players"))
        lines += ["  " + fidelity.difference_line(d, LABELS[d["action"]], _pct) for d in section["differences"]]
    return lines
