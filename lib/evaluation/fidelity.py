"""How a policy's decisions compare with the recorded ones, with honest uncertainty: the part every game shares.

A game's fidelity module (lib/games/<game>/fidelity.py) turns its examples into scored items, each with a person (a
seat in a game) and a game; this module puts lib.evaluation.stats to work on them the same way
for every game, so that the report's "uncertainty" keys and the table's lines read alike:

- `intervals`: a statistic's estimate with its bootstrap interval resampling persons and, second, games;
- `comparisons`: which pairs to compare: every two policies (the later minus the earlier: fitted - baseline), then
  each policy against each reference;
- `paired`: a minus b on the same decisions, with intervals over persons and games, the exact sign test on the
  persons' mean differences (ties dropped), and what the persons at hand could detect (80 % power, 5 % two-sided);
- `section`: the empty "uncertainty" section both games fill, with the few-games note;
- `differences_header`, `difference_line`: the table's lines for the paired differences.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from lib.evaluation import stats


def intervals(items: Sequence[Any], persons: Sequence[Hashable], games: Sequence[Hashable],
              statistic: Callable[[list[Any]], float | None], seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """The statistic of `items` with its interval resampling persons, and with its interval resampling games."""
    return {"persons": stats.cluster_bootstrap(items, persons, statistic, seed=seed).to_dict(),
            "games": stats.cluster_bootstrap(items, games, statistic, seed=seed).to_dict()}


def comparisons(policies: Sequence[str], references: Sequence[str]) -> list[tuple[str, str]]:
    """(a, b) pairs to compare: later policy minus earlier, then each policy minus each reference."""
    names = list(policies)
    pairs = [(b, a) for i, a in enumerate(names) for b in names[i + 1:]]
    return pairs + [(a, ref) for a in names for ref in references]


def paired(xs: Sequence[float], ys: Sequence[float], persons: Sequence[Hashable], games: Sequence[Hashable],
           measure: str, seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """xs minus ys, each pair one decision (scored the same way for both sides), as the report's "differences" entry
    (without the names a, b and the action type, which the caller adds)."""
    per_person = stats.cluster_means([x - y for x, y in zip(xs, ys, strict=True)], persons)
    spread = stats.sd(per_person)
    out = {"measure": measure, "n": len(xs),
           "persons": stats.paired_difference(xs, ys, persons, seed=seed).to_dict(),
           "games": stats.paired_difference(xs, ys, games, seed=seed).to_dict(),
           "sign_test_persons": stats.sign_test(xs, ys, persons).to_dict(),
           "sd_person_differences": spread,
           "min_detectable_difference": None if spread is None else stats.min_detectable_difference(
               spread, len(per_person))}
    estimate = out["persons"]["estimate"]
    out["persons_needed_for_this_difference"] = (None if spread is None or not estimate
                                                 else stats.clusters_needed(estimate, spread))
    return out


def section(games: int, seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """An empty "uncertainty" section over `games` games, with the note when they are too few for an interval."""
    out: dict[str, Any] = {"level": 0.95, "resamples": stats.DEFAULT_RESAMPLES, "seed": seed,
                           "clusters": {}, "notes": [], "policies": {}, "references": {}, "differences": []}
    note = stats.few_clusters_note(games)
    if note:
        out["notes"].append(note)
    return out


def differences_header(who: str) -> str:
    """The line above the paired differences; `who` is whom the decisions are compared with."""
    return ("Paired differences, a minus b on the same decisions (absolute error: negative = a closer to "
            f"{who}; agreement: positive = a agrees more); sign test over persons' mean differences, ties "
            "dropped; MDD: the smallest difference these persons detect with 80 % power")


def difference_line(d: dict[str, Any], label: str, fmt: Callable[[float | None], str]) -> str:
    """One paired difference of `paired` (with its a and b) as a table line; `label` names the decisions."""
    p, g, s = d["persons"], d["games"], d["sign_test_persons"]
    ci = "[-]" if p["low"] is None else f"[{fmt(p['low'])}, {fmt(p['high'])}]"
    gi = "-" if g["low"] is None else f"[{fmt(g['low'])}, {fmt(g['high'])}]"
    sign = ("-" if s["p_value"] is None
            else f"{s['positive']}+/{s['negative']}- ({s['ties']} ties), p={s['p_value']:.2f}")
    return (f"  {label}: {d['a']} - {d['b']} ({d['measure']}, n={d['n']}): "
            f"{fmt(p['estimate'])} {ci} over {p['clusters']} persons, {gi} over {g['clusters']} games; "
            f"sign test {sign}; MDD {fmt(d['min_detectable_difference'])}")
