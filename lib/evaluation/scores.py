"""How human-like a policy is: its decisions scored against the humans' on the same examples. Pure functions.

Every action type has a kind that says how it is scored (`KINDS`; a new game adds its action types there):

- a choice (a vote): agreement (the share of examples where the policy chose what the human chose) and Cohen's
  kappa (agreement beyond what the two marginal distributions give by chance); reference: always the human
  majority class of the evaluated examples;
- an amount (a compensation request or offer): mean and median absolute error, bias (mean of policy minus human)
  and Spearman's rank correlation (ties get average ranks); reference: always the median human amount of the
  evaluated examples;
- text (chat): counted, not scored.

Each score carries its `n`, the examples of that action type, and `invalid`, the examples where the policy gave no
valid action (a model's unparseable or out-of-range answer). An invalid choice counts as a disagreement (its own
category in kappa); an invalid amount is left out of the amount statistics, which then cover n - invalid examples.
A statistic that is undefined for the examples at hand (kappa when chance agreement is 1, Spearman when either side
is constant, anything over no example) is None, written as null.

Numbers a policy adds per example (`Decision.extra`, e.g. a model's negative log-likelihood "nll" of the human's
answer) are averaged per action type and reported beside the others under their own key.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST

CHOICE, AMOUNT, TEXT = "choice", "amount", "text"
INVALID = object()  # an invalid choice: a category no human answer falls in


@dataclass(frozen=True)
class Kind:
    how: str  # CHOICE, AMOUNT or TEXT
    value: Callable[[dict[str, Any]], Any]  # the scored value of a valid wire message
    label: str  # for tables and pictures


def _amount(field_name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda message: message[field_name][1]


KINDS: dict[str, Kind] = {
    REQUEST: Kind(AMOUNT, _amount("compensationRequests"), "compensation requests"),
    OFFER: Kind(AMOUNT, _amount("compensationOffers"), "compensation offers"),
    DECISION: Kind(CHOICE, lambda message: message["compensationDecisions"][0], "votes"),
    CHAT: Kind(TEXT, lambda message: message.get("text"), "chat messages"),
}


@dataclass
class Decision:
    """A policy's answer to one example: the validated wire message, or None with the reason."""

    action: dict[str, Any] | None
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)  # per-example numbers to average, e.g. {"nll": 1.7}


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def agreement(human: Sequence[Any], policy: Sequence[Any]) -> float | None:
    if not human:
        return None
    return sum(h == p for h, p in zip(human, policy, strict=True)) / len(human)


def cohen_kappa(human: Sequence[Any], policy: Sequence[Any]) -> float | None:
    """(p_o - p_e) / (1 - p_e), p_e from each side's own category shares; None when p_e is 1."""
    n = len(human)
    if n == 0:
        return None
    p_o = sum(h == p for h, p in zip(human, policy, strict=True)) / n
    hc, pc = Counter(human), Counter(policy)
    p_e = sum(hc[c] * pc.get(c, 0) for c in hc) / (n * n)
    if math.isclose(p_e, 1.0):
        return None
    return (p_o - p_e) / (1 - p_e)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the average of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's correlation of the ranks; None with fewer than two examples or a constant side."""
    if len(x) < 2:
        return None
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def choice_scores(human: Sequence[Any], policy: Sequence[Any]) -> dict[str, Any]:
    return {"agreement": agreement(human, policy), "kappa": cohen_kappa(human, policy)}


def amount_scores(human: Sequence[float], policy: Sequence[float]) -> dict[str, Any]:
    errors = [p - h for h, p in zip(human, policy, strict=True)]
    if not errors:
        return {"mae": None, "median_ae": None, "bias": None, "spearman": None}
    absolute = [abs(e) for e in errors]
    return {"mae": sum(absolute) / len(absolute), "median_ae": statistics.median(absolute),
            "bias": sum(errors) / len(errors), "spearman": spearman(policy, human)}


# ---------------------------------------------------------------------------------------------------------------
# Scores of one policy, and the references


def _mean_extras(decisions: Sequence[Decision]) -> dict[str, float]:
    keys = sorted({key for d in decisions for key in d.extra})
    out = {}
    for key in keys:
        values = [d.extra[key] for d in decisions if key in d.extra]
        out[key] = sum(values) / len(values)
    return out


def score(examples: Sequence[Any], decisions: Sequence[Decision]) -> dict[str, dict[str, Any]]:
    """Per action type: n, invalid and the kind's statistics; `examples` have .action and .human (sidecar)."""
    if len(examples) != len(decisions):
        raise ValueError("one decision per example is needed")
    by_action: dict[str, list[tuple[Any, Decision]]] = {}
    for example, decision in zip(examples, decisions, strict=True):
        by_action.setdefault(example.action, []).append((example, decision))
    out: dict[str, dict[str, Any]] = {}
    for action in sorted(by_action, key=_action_order):
        pairs = by_action[action]
        kind = KINDS[action]
        entry: dict[str, Any] = {"n": len(pairs)}
        if kind.how == TEXT:
            out[action] = entry
            continue
        entry["invalid"] = sum(d.action is None for _, d in pairs)
        if kind.how == CHOICE:
            human = [kind.value(e.human) for e, _ in pairs]
            policy = [kind.value(d.action) if d.action is not None else INVALID for _, d in pairs]
            entry.update(choice_scores(human, policy))
        else:
            valid = [(e, d) for e, d in pairs if d.action is not None]
            entry.update(amount_scores([kind.value(e.human) for e, _ in valid],
                                       [kind.value(d.action) for _, d in valid]))
        entry.update(_mean_extras([d for _, d in pairs]))
        out[action] = entry
    return out


def references(examples: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """What a constant answer scores: the humans' majority vote, the humans' median amount (both from the evaluated
    examples themselves, so they are the best constants in hindsight: a policy must beat them to say anything)."""
    by_action: dict[str, list[Any]] = {}
    for example in examples:
        by_action.setdefault(example.action, []).append(KINDS[example.action].value(example.human))
    out: dict[str, dict[str, Any]] = {}
    for action in sorted(by_action, key=_action_order):
        human, kind = by_action[action], KINDS[action]
        if kind.how == CHOICE:
            counts = Counter(human)
            majority = max(sorted(counts, key=str), key=lambda c: counts[c])
            out[action] = {"reference": "majority class", "value": majority, "n": len(human), "invalid": 0,
                           **choice_scores(human, [majority] * len(human))}
        elif kind.how == AMOUNT:
            median = statistics.median(human)
            out[action] = {"reference": "constant median", "value": median, "n": len(human), "invalid": 0,
                           **amount_scores(human, [median] * len(human))}
    return out


def _action_order(action: str) -> tuple[int, str]:
    order = list(KINDS)
    return (order.index(action) if action in order else len(order), action)


# ---------------------------------------------------------------------------------------------------------------
# The table on stdout


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}"


def format_table(scores: dict[str, dict[str, dict[str, Any]]], refs: dict[str, dict[str, Any]]) -> str:
    """Per action type, one row per policy and one for the reference."""
    actions = sorted({a for s in scores.values() for a in s} | set(refs), key=_action_order)
    width = max([len(name) for name in scores] + [len("constant median (hindsight reference)")]) + 2
    lines = []
    for action in actions:
        kind = KINDS[action]
        rows = [(name, s[action]) for name, s in scores.items() if action in s]
        n = rows[0][1]["n"] if rows else refs[action]["n"]
        if kind.how == TEXT:
            lines.append(f"{action} (n={n}): counted, not scored")
            continue
        extras = sorted({k for _, e in rows for k in e} - {"n", "invalid", "agreement", "kappa", "mae", "median_ae",
                                                            "bias", "spearman"})
        if kind.how == CHOICE:
            heads = ["invalid", "agreement", "kappa", *extras]
        else:
            heads = ["invalid", "MAE", "median AE", "bias", "Spearman", *extras]
        lines.append(f"{action} (n={n})".ljust(width + 2) + "".join(h.rjust(12) for h in heads))
        ref = refs.get(action)
        if ref is not None:
            rows.append((f"{ref['reference']} (hindsight reference)", ref))  # in-sample: no policy could know it
        for name, e in rows:
            if kind.how == CHOICE:
                agree = e["agreement"]
                agreed = "-" if agree is None else f"{round(agree * e['n'])}/{e['n']}"
                cells = [_number(e["invalid"]), agreed, _number(e["kappa"], 3)]
            else:
                cells = [_number(e["invalid"]), _number(e["mae"]), _number(e["median_ae"]), _number(e["bias"]),
                         _number(e["spearman"], 3)]
            cells += [_number(e.get(k), 3) for k in extras]
            lines.append(f"  {name}".ljust(width + 2) + "".join(c.rjust(12) for c in cells))
    return "\n".join(lines)
