"""The uncertainty, references and distributions of `finetune.py --evaluate` on voting examples (lib.evaluation.stats).

- **Intervals**: every score of lib.evaluation.scores (agreement, kappa, MAE, median AE, bias, Spearman) and the share
of
  amounts within 10 % of the human's, with a 95 % percentile bootstrap interval resampling whole persons (a seat in a
  game: the unit whose decisions are independent of other persons', more or less) and, as a second line, whole games.
  Quote the interval over persons; the one over games is the honest one for "another session", but with fewer than
  lib.evaluation.stats.MIN_CLUSTERS games it is not meaningful and the output says so.
- **Paired differences** between every two policies, and between each policy and each reference, on the same
  decisions (both answers valid): the mean difference of absolute errors (amounts) or of agreement (votes), with
  intervals over persons and games, an exact sign test on the persons' mean differences (ties dropped), and the
  smallest difference the persons at hand could detect (80 % power, 5 % two-sided; normal approximation).
- **Honest references** (out of sample): for each game, the humans' median amount, majority vote and "loss plus the
  median markup" (request minus loss, in money; offers: the developer's break-even plus the median of offer minus
  break-even) taken from the OTHER
  games (the training set's when there is one, else the evaluated set's), as a policy would have to. The in-sample
  constants of lib.evaluation.scores.references are kept, labelled hindsight.
- **Distributions**: amounts scaled by what they answer (requests over the owner's loss, offers over the developer's
  break-even, gain / 5): the Wasserstein-1 distance and the Kolmogorov-Smirnov D (its p-value assumes independent
  decisions, so it is optimistic here) between the policy's and the humans'. Votes: agreement on the contested
  decisions (the own-payoff rule and the human disagree, or the margin is within 10 % of the owner's no-Project value)
  apart from the rest.
- **Per-decision rows** (one per example and policy or reference) for the CSV: flat columns, no JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lib.evaluation import fidelity, stats
from lib.evaluation.scores import AMOUNT, CHOICE, INVALID, Decision, action_order, cohen_kappa, spearman
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.kinds import KINDS
from lib.games.voting.policy import current_offer
from lib.games.voting.rules import OWNER_SEATS
from lib.ibex.params import NO_PROJECT, PROJECT, ROLE_NAMES

LOO_PREFIX = "out of sample: "
NOT_APPLICABLE = "not this reference's action type"


@dataclass(frozen=True)
class Facts:
    """What one example says apart from any policy: its clusters, private values and the scale of its amounts."""

    game: str
    seat: int
    round: int
    role: str
    v_no: int | None
    v_project: int | None
    scale: float | None  # requests: the loss; offers: the developer's break-even; None where not positive
    margin: float | None  # votes: v_project + offer - v_noProject
    offer_seen: int | None
    contested_rule: int | None  # votes: the own-payoff rule's vote

    @property
    def person(self) -> str:
        return f"{self.game}/{self.seat}"


def facts(example: Any) -> Facts:
    view = example.view()
    values = view.current.values if isinstance(view.current.values, list) and len(view.current.values) >= 2 else None
    v_no, v_pr = (values[NO_PROJECT], values[PROJECT]) if values else (None, None)
    scale = margin = offer = rule = None
    if values and example.action == REQUEST and v_no - v_pr > 0:
        scale = v_no - v_pr
    if values and example.action == OFFER and v_pr - v_no > 0:
        scale = (v_pr - v_no) / len(OWNER_SEATS)  # the offer at which the Project stops paying for the developer
    if example.action == DECISION:
        offer = current_offer(view, example.cap)
        if values:
            margin = v_pr + offer - v_no
            rule = PROJECT if margin >= 0 else NO_PROJECT
    return Facts(example.game, example.state["seat"], view.round, ROLE_NAMES.get(view.role, str(view.role)), v_no,
                 v_pr, scale, margin, offer, rule)


def contested(example: Any, f: Facts) -> bool:
    """A vote where the own-payoff rule and the human disagree, or the margin is within 10 % of the value."""
    if f.margin is None:
        return False
    human = KINDS[DECISION].value(example.human)
    return human != f.contested_rule or abs(f.margin) <= stats.TOLERANCE * abs(f.v_no or 0)


# ---------------------------------------------------------------------------------------------------------------
# References as decisions, so that they are scored, compared and written exactly like the policies


def _wire(action: str, value: Any) -> dict[str, Any]:
    if action == REQUEST:
        return {"type": REQUEST, "compensationRequests": [None, value]}
    if action == OFFER:
        return {"type": OFFER, "compensationOffers": [None, value]}
    return {"type": DECISION, "compensationDecisions": [value]}


def loo_references(examples: Sequence[Any], pool: Sequence[Any]) -> dict[str, list[Decision]]:
    """Per out-of-sample reference, a decision per example taken from the pool's other games (None: no other game
    has the data; the decision is then invalid with that reason, and left out like an invalid answer)."""
    pool_facts = [(e, facts(e)) for e in pool if e.action in (REQUEST, OFFER, DECISION)]
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def learned(game: str, action: str) -> dict[str, Any]:
        key = (game, action)
        if key not in cache:
            others = [(e, f) for e, f in pool_facts if e.game != game and e.action == action]
            human = [KINDS[action].value(e.human) for e, _ in others]
            out: dict[str, Any] = {}
            if human and KINDS[action].how == CHOICE:
                counts = {c: human.count(c) for c in sorted(set(human), key=str)}
                out["majority"] = max(counts, key=lambda c: counts[c])
            elif human:
                out["median"] = statistics.median(human)
                markups = [KINDS[action].value(e.human) - f.scale for e, f in others if f.scale]
                if markups:
                    out["markup"] = statistics.median(markups)
            cache[key] = out
        return cache[key]

    labels = {"constant": LOO_PREFIX + "median / majority of the other games",
              "markup": LOO_PREFIX + "loss (break-even) + median markup of the other games"}
    refs: dict[str, list[Decision]] = {}
    for key, label in labels.items():
        decisions = []
        for e in examples:
            how = KINDS[e.action].how
            if how not in (CHOICE, AMOUNT) or (key == "markup" and how == CHOICE):
                decisions.append(Decision(None, NOT_APPLICABLE))
                continue
            got = learned(e.game, e.action)
            wanted = "markup" if key == "markup" else ("majority" if how == CHOICE else "median")
            if wanted not in got:
                decisions.append(Decision(None, "no other game has this action type"))
                continue
            if key == "markup":
                scale = facts(e).scale
                if not scale:
                    decisions.append(Decision(None, "no positive loss or break-even"))
                    continue
                value = round(scale + got["markup"])
            else:
                value = got[wanted]
            decisions.append(Decision(_wire(e.action, value)))
        refs[label] = decisions
    return refs


def hindsight_references(examples: Sequence[Any], refs: dict[str, dict[str, Any]]) -> dict[str, list[Decision]]:
    """lib.evaluation.scores.references' in-sample constants as decisions, so their differences can be computed too."""
    out: dict[str, list[Decision]] = {"hindsight: constant median / majority of the evaluated humans": []}
    for e in examples:
        ref = refs.get(e.action)
        out["hindsight: constant median / majority of the evaluated humans"].append(
            Decision(_wire(e.action, ref["value"])) if ref and "value" in ref else Decision(None, "not scored"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Per-decision values


@dataclass(frozen=True)
class Row:
    example: Any
    facts: Facts
    human: Any
    policy: Any  # the policy's value, INVALID when it gave no valid action
    error: str | None

    @property
    def valid(self) -> bool:
        return self.policy is not INVALID


def rows_for(examples: Sequence[Any], decisions: Sequence[Decision], all_facts: Sequence[Facts]) -> list[Row]:
    out = []
    for e, d, f in zip(examples, decisions, all_facts, strict=True):
        if KINDS[e.action].how not in (CHOICE, AMOUNT):
            continue
        value = KINDS[e.action].value(d.action) if d.action is not None else INVALID
        if d.error == NOT_APPLICABLE:
            continue
        out.append(Row(e, f, KINDS[e.action].value(e.human), value, d.error))
    return out


def _agree(r: Row) -> float:
    return float(r.policy == r.human)


def _abs_error(r: Row) -> float:
    return abs(r.policy - r.human)


def _within(r: Row) -> float:
    return float(abs(r.policy - r.human) <= stats.TOLERANCE * abs(r.human))


# statistics of a list of rows, for the bootstrap: name -> (function, which rows: all or the valid ones)
def _kappa(rows: list[Row]) -> float | None:
    return cohen_kappa([r.human for r in rows], [r.policy for r in rows])


def _mean_of(f: Callable[[Row], float]) -> Callable[[list[Row]], float | None]:
    return lambda rows: stats.mean([f(r) for r in rows])


def _median_ae(rows: list[Row]) -> float | None:
    return statistics.median([_abs_error(r) for r in rows]) if rows else None


def _spearman(rows: list[Row]) -> float | None:
    return spearman([r.policy for r in rows], [r.human for r in rows])


def _ratios(rows: list[Row]) -> tuple[list[float], list[float]]:
    scaled = [r for r in rows if r.facts.scale]
    return [r.policy / r.facts.scale for r in scaled], [r.human / r.facts.scale for r in scaled]


def _wasserstein(rows: list[Row]) -> float | None:
    return stats.wasserstein1(*_ratios(rows))


def _wasserstein_amount(rows: list[Row]) -> float | None:
    return stats.wasserstein1([r.policy for r in rows], [r.human for r in rows])


def _ks(rows: list[Row]) -> float | None:
    return stats.ks_2samp(*_ratios(rows))[0]


CHOICE_STATS: dict[str, Callable[[list[Row]], float | None]] = {"agreement": _mean_of(_agree), "kappa": _kappa}
AMOUNT_STATS: dict[str, Callable[[list[Row]], float | None]] = {
    "mae": _mean_of(_abs_error), "median_ae": _median_ae, "bias": _mean_of(lambda r: r.policy - r.human),
    "spearman": _spearman, "within_10pct": _mean_of(_within), "wasserstein_ratio": _wasserstein, "ks_d_ratio": _ks}


def _intervals(rows: list[Row], statistic: Callable[[list[Row]], float | None], seed: int) -> dict[str, Any]:
    return fidelity.intervals(rows, [r.facts.person for r in rows], [r.facts.game for r in rows], statistic, seed)


def summarize(rows: list[Row], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """Per statistic, its estimate and intervals over persons and over games (see the module docstring)."""
    if not rows:
        return {}
    how = KINDS[rows[0].example.action].how
    out: dict[str, Any] = {}
    if how == CHOICE:  # an invalid vote is a disagreement, as in lib.evaluation.scores
        for name, statistic in CHOICE_STATS.items():
            out[name] = _intervals(rows, statistic, seed)
        hard = [r for r in rows if contested(r.example, r.facts)]
        easy = [r for r in rows if not contested(r.example, r.facts)]
        out["agreement_contested"] = _intervals(hard, CHOICE_STATS["agreement"], seed)
        out["agreement_uncontested"] = _intervals(easy, CHOICE_STATS["agreement"], seed)
        return out
    valid = [r for r in rows if r.valid]
    for name, statistic in AMOUNT_STATS.items():
        out[name] = _intervals(valid, statistic, seed)
    policy_ratios, human_ratios = _ratios(valid)
    d, p = stats.ks_2samp(policy_ratios, human_ratios)
    out["ks_p_ratio_approx"] = p  # independent decisions assumed: optimistic for decisions clustered by person
    out["wasserstein_amount"] = _wasserstein_amount(valid)  # the same distances on the amounts themselves
    out["ks_d_amount"] = stats.ks_2samp([r.policy for r in valid], [r.human for r in valid])[0]
    out["ratio_quartiles"] = {"human": _quartiles(human_ratios), "policy": _quartiles(policy_ratios)}
    return out


def _quartiles(values: list[float]) -> list[float] | None:
    if not values:
        return None
    s = sorted(values)
    return [stats.percentile(s, q) for q in (0.25, 0.5, 0.75)]


def paired(a: list[Row], b: list[Row], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """a minus b on the examples both answered validly: absolute error (amounts; negative: a is closer) or agreement
    (votes; an invalid vote is a disagreement, so every vote counts; positive: a agrees more)."""
    how = KINDS[a[0].example.action].how if a else CHOICE
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if how == CHOICE or (x.valid and y.valid)]
    score = _agree if how == CHOICE else _abs_error
    xs, ys = [score(x) for x, _ in pairs], [score(y) for _, y in pairs]
    return fidelity.paired(xs, ys, [x.facts.person for x, _ in pairs], [x.facts.game for x, _ in pairs],
                           "agreement" if how == CHOICE else "absolute error", seed)


# ---------------------------------------------------------------------------------------------------------------
# Everything together


def analyse(examples: Sequence[Any], decisions: dict[str, list[Decision]], pool: Sequence[Any],
            hindsight: dict[str, dict[str, Any]], seed: int = stats.DEFAULT_SEED
            ) -> tuple[dict[str, Any], dict[str, list[Row]]]:
    """(the report's "uncertainty" section, per policy or reference the per-decision rows by action type)."""
    all_facts = [facts(e) for e in examples]
    refs = loo_references(examples, pool)
    everyone = {**decisions, **refs, **hindsight_references(examples, hindsight)}
    rows = {name: rows_for(examples, ds, all_facts) for name, ds in everyone.items()}
    actions = sorted({r.example.action for rs in rows.values() for r in rs}, key=action_order(KINDS))
    by_action = {name: {a: [r for r in rs if r.example.action == a] for a in actions} for name, rs in rows.items()}
    section = fidelity.section(len({f.game for f in all_facts}), seed)
    for action in actions:
        any_rows = max((rs[action] for rs in by_action.values()), key=len)
        persons = len({r.facts.person for r in any_rows})
        games = len({r.facts.game for r in any_rows})
        section["clusters"][action] = {"n": len(any_rows), "persons": persons, "games": games}
        if action == DECISION:
            section["clusters"][action]["contested"] = sum(contested(r.example, r.facts) for r in any_rows)
    for name, per_action in by_action.items():
        target = section["policies"] if name in decisions else section["references"]
        target[name] = {a: summarize(rs, seed) for a, rs in per_action.items() if rs}
    for a, b in fidelity.comparisons(list(decisions), [*refs, *hindsight_references(examples, hindsight)]):
        for action in actions:
            if by_action[a][action] and by_action[b][action]:
                section["differences"].append({"a": a, "b": b, "action": action,
                                               **paired(by_action[a][action], by_action[b][action], seed)})
    return section, rows


# ---------------------------------------------------------------------------------------------------------------
# The CSV

CSV_COLUMNS = ["policy", "game", "round", "seat", "person", "role", "action", "line", "v_noProject", "v_project",
               "loss", "break_even", "offer_seen", "vote_margin", "contested", "cap", "human", "policy_answer",
               "valid", "invalid_reason", "agree", "error", "abs_error", "within_10pct", "human_ratio",
               "policy_ratio"]


def csv_rows(rows: dict[str, list[Row]], extras: dict[str, list[Decision]], examples: Sequence[Any]
             ) -> tuple[list[str], list[list[Any]]]:
    """The CSV's columns and its rows, one per example and policy (or reference); the numbers a policy adds per
    example (nll) as columns."""
    extra_keys = sorted({k for ds in extras.values() for d in ds for k in d.extra})
    index = {id(e): i for i, e in enumerate(examples)}
    out = []
    for name, rs in rows.items():
        for r in rs:
            e, ft = r.example, r.facts
            amount = KINDS[e.action].how == AMOUNT
            ok = r.valid
            cells = [name, ft.game, ft.round, ft.seat, ft.person, ft.role, e.action, e.line, ft.v_no,
                     ft.v_project, ft.scale if e.action == REQUEST else None,
                     ft.scale if e.action == OFFER else None, ft.offer_seen, ft.margin,
                     int(contested(e, ft)) if e.action == DECISION else None, e.cap, r.human,
                     r.policy if ok else None, int(ok), None if ok else (r.error or "invalid"),
                     int(r.policy == r.human) if ok and not amount else (0 if not amount else None),
                     r.policy - r.human if ok and amount else None,
                     abs(r.policy - r.human) if ok and amount else None,
                     int(_within(r)) if ok and amount else None,
                     r.human / ft.scale if amount and ft.scale else None,
                     r.policy / ft.scale if ok and amount and ft.scale else None]
            decision = extras.get(name, [None] * len(examples))[index[id(e)]]
            cells += [decision.extra.get(k) if decision is not None else None for k in extra_keys]
            out.append(cells)
    return CSV_COLUMNS + extra_keys, out


# ---------------------------------------------------------------------------------------------------------------
# The table on stdout


def _fmt(value: float | None, how: str) -> str:
    if value is None:
        return "-"
    if how == "share":
        return f"{100 * value:.0f}%"
    if how == "ratio":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def _cell(entry: dict[str, Any] | None, level: str, how: str) -> str:
    if not entry:
        return "-"
    i = entry[level]
    if i["estimate"] is None:
        return "-"
    if i["low"] is None:
        return _fmt(i["estimate"], how) + (" [-]" if level == "persons" else "")
    inner = f"[{_fmt(i['low'], how)}, {_fmt(i['high'], how)}]"
    return inner if level == "games" else f"{_fmt(i['estimate'], how)} {inner}"


def _cells(texts: list[str]) -> str:
    return "".join((" " + t).rjust(26) for t in texts)


CHOICE_COLUMNS = [("agreement", "agreement", "share"), ("kappa", "kappa", "ratio"),
                  ("agreement_contested", "contested", "share"), ("agreement_uncontested", "uncontested", "share")]
AMOUNT_COLUMNS = [("mae", "MAE", "money"), ("median_ae", "median AE", "money"), ("bias", "bias", "money"),
                  ("spearman", "Spearman", "ratio"), ("within_10pct", "within 10%", "share"),
                  ("wasserstein_ratio", "W1 (ratio)", "ratio"), ("ks_d_ratio", "KS D (ratio)", "ratio")]
EXPLAINED = ("Each cell: the estimate [95 % interval resampling persons]; the line below: the interval resampling "
             "games. '-': undefined here (no valid answer, a constant side for kappa or Spearman, a single cluster "
             "for an interval). Ratios: requests over the owner's loss, offers over the developer's break-even. "
             "Contested votes: the own-payoff rule and the human disagree, or the margin is within 10 % of the value.")


def format_uncertainty(section: dict[str, Any], invalid: dict[str, dict[str, int]]) -> str:
    """Per action type, each policy and reference with its intervals, then the paired differences."""
    lines = [EXPLAINED, *section["notes"]]
    for action, clusters in section["clusters"].items():
        how = KINDS[action].how
        columns = CHOICE_COLUMNS if how == CHOICE else AMOUNT_COLUMNS
        extra = f", {clusters['contested']} contested" if "contested" in clusters else ""
        lines.append(f"{action} (n={clusters['n']}: {clusters['persons']} persons, {clusters['games']} games{extra})")
        width = max(len(n) for n in [*section["policies"], *section["references"]]) + 4
        lines.append(" " * width + "".join(head.rjust(26) for _, head, _ in columns))
        for name, per_action in [*section["policies"].items(), *section["references"].items()]:
            entry = per_action.get(action)
            if entry is None:
                continue
            bad = invalid.get(name, {}).get(action)
            label = f"  {name}" + (f" (invalid {bad})" if bad else "")
            lines.append(label.ljust(width) + _cells([_cell(entry.get(k), "persons", h) for k, _, h in columns]))
            games = [_cell(entry.get(k), "games", h) for k, _, h in columns]
            lines.append("    over games".ljust(width) + _cells(games))
    lines.append(fidelity.differences_header("the humans"))
    for d in section["differences"]:
        how = "share" if d["measure"] == "agreement" else "money"
        lines.append(fidelity.difference_line(d, d["action"], lambda v, how=how: _fmt(v, how)))
    return "\n".join(lines)
