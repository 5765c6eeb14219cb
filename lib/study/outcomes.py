"""The game-neutral shape of a study's outcome tables, and the registry of games that fill them.

Every game type adds its own columns (`ROUND_COLUMNS`, `SEAT_COLUMNS` of its outcomes module) to the common ones;
a table holds the union, so a voting study's CSV and a futarchy study's CSV have the same header and concatenate,
and a column that does not apply to a game is empty. Each outcomes module also has `tables_from_log(data, source)`
giving (rounds, seat_rounds) row dicts from a decoded recorded log, and `REPORT`, the description of its outcomes
that the report (lib.study.report) reads, so the report never asks which game it is looking at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

RATE, AMOUNT = "rate", "amount"  # Outcome.kind: a 0/1 per observation, or a number whose distribution matters


@dataclass(frozen=True)
class Outcome:
    """One game-level outcome: the column of `table` (rounds or seat_rounds) that holds it, one observation per
    paid round (and per seat of `role` for seat_rounds)."""

    name: str  # names its figure file: letters, digits, '_'
    label: str
    table: str
    column: str
    kind: str = AMOUNT  # RATE: bars of the mean; AMOUNT: distribution plots and distances
    role: str | None = None  # seat_rounds only: the seats of this role


@dataclass(frozen=True)
class Relation:
    """A scatter plot of one column against another, per arm against the reference players."""

    name: str
    label: str
    table: str
    x: str
    y: str
    x_label: str
    y_label: str
    role: str | None = None


@dataclass(frozen=True)
class OutcomeReport:
    """What a game's report shows: who the recorded reference players are, its outcomes and its relations."""

    reference: str  # how the text names the recorded games' players ("the humans", "the recorded players")
    outcomes: tuple[Outcome, ...]
    relations: tuple[Relation, ...] = ()


class GameOutcomes(Protocol):
    """What a game's outcomes module offers the study code."""

    ROUND_COLUMNS: tuple[tuple[str, str], ...]  # its own columns of the rounds table
    SEAT_COLUMNS: tuple[tuple[str, str], ...]  # its own columns of the seat_rounds table
    REPORT: OutcomeReport  # the outcomes and plots its report shows

    def tables_from_log(self, data: dict[str, Any], source: str, sessions: Any = None
                        ) -> tuple[list[dict], list[dict]]: ...  # (rounds, seat_rounds) rows of a decoded log

# (name, SQL type); the keys that identify a row come first and are added by the store.
ROUND_COMMON = (
    ("round", "INTEGER"), ("practice", "INTEGER"),
    ("outcome", "INTEGER"),  # the winning condition: 0 no project, 1 project
    ("outcome_name", "TEXT"),
    ("efficient_outcome", "INTEGER"),  # the condition with the larger sum of landholders' values
    ("efficient", "INTEGER"),  # 1 when outcome == efficient_outcome
    ("total_value", "REAL"),  # sum of the landholders' values under the outcome
    ("total_surplus", "REAL"),  # total_value minus the same sum without the project (0 when it is not built)
    ("project_margin", "REAL"),  # the landholders' values with the project minus without it, whatever the outcome
    ("developer_share", "REAL"),  # the developer's gain over its no-project value / total_surplus
    ("owners_share", "REAL"),  # the owners' total gain over their no-project values / total_surplus
    ("values_source", "TEXT"),
)
SEAT_COMMON = (
    ("round", "INTEGER"), ("seat", "INTEGER"), ("role", "TEXT"), ("policy", "TEXT"),
    ("value_0", "REAL"), ("value_1", "REAL"),  # private values under no project / project
    ("signal_0", "REAL"), ("signal_1", "REAL"),  # private price signals (market games)
    ("profit", "REAL"),
)


def game_modules() -> dict[str, GameOutcomes]:
    """Game type -> its outcomes (the `outcomes` part of each registered game that has one, lib/games/<game>/
    outcomes.py), so that the store, the readers and the report name no game."""
    from lib.games import GAMES

    return {name: GAMES[name].outcomes for name in GAMES if getattr(GAMES[name], "outcomes", None) is not None}


def _union(common: tuple[tuple[str, str], ...], attribute: str) -> tuple[tuple[str, str], ...]:
    columns = list(common)
    seen = {name for name, _ in columns}
    for module in dict.fromkeys(game_modules().values()):
        for name, kind in getattr(module, attribute):
            if name not in seen:
                seen.add(name)
                columns.append((name, kind))
    return tuple(columns)


def round_columns() -> tuple[tuple[str, str], ...]:
    return _union(ROUND_COMMON, "ROUND_COLUMNS")


def seat_columns() -> tuple[tuple[str, str], ...]:
    return _union(SEAT_COMMON, "SEAT_COLUMNS")


def surplus_fields(values: dict[int, list[float]], outcome: int) -> dict[str, float | int]:
    """The common surplus columns from each landholder's [value without, value with project] (compensation
    transfers net to zero among the landholders, so the surplus is a matter of values alone)."""
    totals = [sum(v[c] for v in values.values()) for c in (0, 1)]
    efficient = 1 if totals[1] > totals[0] else 0
    return {"efficient_outcome": efficient, "efficient": int(outcome == efficient), "total_value": totals[outcome],
            "total_surplus": totals[outcome] - totals[0], "project_margin": totals[1] - totals[0]}


def report_description(game_type: str) -> OutcomeReport | None:
    """The outcomes a `game_type` game's report shows; None for a game without outcome tables."""
    module = game_modules().get(game_type)
    return None if module is None else module.REPORT


def shares(gains: dict[int, float], roles: dict[int, int], surplus: float) -> dict[str, float | None]:
    """developer_share and owners_share: each group's gain (profit minus its no-project value) over the surplus;
    empty unless the surplus is positive (a share of a loss, from an inefficient project, means nothing)."""
    from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER

    if surplus <= 0:
        return {"developer_share": None, "owners_share": None}
    developer = sum(g for s, g in gains.items() if roles.get(s) == ROLE_DEVELOPER)
    owners = sum(g for s, g in gains.items() if roles.get(s) == ROLE_OWNER)
    return {"developer_share": developer / surplus, "owners_share": owners / surplus}
