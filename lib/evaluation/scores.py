"""How human-like a policy is: its decisions scored against the humans' on the same examples. Pure functions.

Every action type has a kind that says how it is scored (its game's ScoreRules.kinds, lib.games.protocols):

- a choice (a vote): agreement (the share of examples where the policy chose what the human chose) and Cohen's
  kappa (agreement beyond what the two marginal distributions give by chance); reference: always the human
  majority class of the evaluated examples;
- an amount (a compensation request or offer): mean and median absolute error, bias (mean of policy minus human)
  and Spearman's rank correlation (ties get average ranks); reference: always the median human amount of the
  evaluated examples;
- text (chat, say): counted, not scored, and no policy is asked about it;
- rules: asked, and scored by the game's own section (lib.games.protocols.ScoredSection), not here.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

CHOICE, AMOUNT, TEXT = "choice", "amount", "text"
RULES = "rules"  # scored by the game's own section (lib.games.protocols.ScoredSection), not by the statistics here
INVALID = object()  # an invalid choice: a category no human answer falls in


@dataclass(frozen=True)
class Kind:
    how: str  # CHOICE, AMOUNT, TEXT or RULES
    value: Callable[[dict[str, Any]], Any]  # the scored value of a valid wire message
    label: str  # for tables and pictures
    unasked: str = ""  # TEXT: why no policy is asked, e.g. "chat is counted, not scored"


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


def score(examples: Sequence[Any], decisions: Sequence[Decision], kinds: Mapping[str, Kind]
          ) -> dict[str, dict[str, Any]]:
    """Per action type: n, invalid and the kind's statistics; `examples` have .action and .human (sidecar)."""
    if len(examples) != len(decisions):
        raise ValueError("one decision per example is needed")
    by_action: dict[str, list[tuple[Any, Decision]]] = {}
    for example, decision in zip(examples, decisions, strict=True):
        by_action.setdefault(example.action, []).append((example, decision))
    out: dict[str, dict[str, Any]] = {}
    for action in sorted(by_action, key=action_order(kinds)):
        pairs = by_action[action]
        kind = kinds[action]
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


def references(examples: Sequence[Any], kinds: Mapping[str, Kind]) -> dict[str, dict[str, Any]]:
    """What a constant answer scores: the humans' majority vote, the humans' median amount (both from the evaluated
    examples themselves, so they are the best constants in hindsight: a policy must beat them to say anything)."""
    by_action: dict[str, list[Any]] = {}
    for example in examples:
        by_action.setdefault(example.action, []).append(kinds[example.action].value(example.human))
    out: dict[str, dict[str, Any]] = {}
    for action in sorted(by_action, key=action_order(kinds)):
        human, kind = by_action[action], kinds[action]
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


def action_order(kinds: Mapping[str, Kind]) -> Callable[[str], tuple[int, str]]:
    """A sort key: action types in the order `kinds` lists them, others after them by name."""
    order = list(kinds)
    return lambda action: (order.index(action) if action in order else len(order), action)


# ---------------------------------------------------------------------------------------------------------------
# The table on stdout


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}"


def format_table(scores: dict[str, dict[str, dict[str, Any]]], refs: dict[str, dict[str, Any]],
                 kinds: Mapping[str, Kind]) -> str:
    """Per action type, one row per policy and one for the reference."""
    actions = sorted({a for s in scores.values() for a in s} | set(refs), key=action_order(kinds))
    width = max([len(name) for name in scores] + [len("constant median (hindsight reference)")]) + 2
    lines = []
    for action in actions:
        kind = kinds[action]
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


def invalid_reasons(decisions: Mapping[str, Sequence[Decision]]) -> dict[str, dict[str, int]]:
    """Per policy with invalid answers, their reasons, most frequent first."""
    out = {}
    for name, ds in decisions.items():
        counted: dict[str, int] = {}
        for d in ds:
            if d.action is None:
                why = (d.error or "no reason given").splitlines()[0][:160]
                counted[why] = counted.get(why, 0) + 1
        if counted:
            out[name] = dict(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


T = TypeVar("T")


def leave_one_game_out(evaluated_games: Iterable[str], training_games: Iterable[str],
                       build: Callable[[frozenset[str]], T]) -> dict[str, T]:
    """Per evaluated game, what `build(left_out)` makes from every training game but itself (leave one game out),
    each distinct left-out set built once: a policy is never scored on a game it was fitted on."""
    training = set(training_games)
    made: dict[frozenset[str], T] = {}
    out: dict[str, T] = {}
    for game in evaluated_games:
        leave = frozenset({game} & training)
        if leave not in made:
            made[leave] = build(leave)
        out[game] = made[leave]
    return out
