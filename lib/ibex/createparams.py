"""The `gameParameters` of create-for-llm, and the parameter rows the real IBEX server stores from them.

The real server's `gameService.createGame` (master of 2025-10-30) reads the nested object its web UI sends
(`tax_rate: {initial, final}`, `owners: {count, ..., profit: {no_project: {low, fixed, high}}}`, `timers:
{phase_0..phase_9}`, ...) and stores one `{key, type, value}` row per parameter, every value as text. Its game logs
list those rows newest first, which is the flat form the rest of this project types
(lib.games.voting.rules.parse_parameters).

- `nested_payload`: typed flat parameters -> the nested object to send (handler.py --create, the tests).
- `stored_rows`: a nested object -> the rows the real server stores, with its JavaScript semantics: a missing
  object throws V8's TypeError, a number that is null, undefined or "" is skipped, everything else is stored as
  JavaScript writes it in a template string (undefined as "undefined"). The local server stores games this way.

Both read one table, CREATE_ROWS, written from createGame's source and checked against rows recorded from the real
server (tests/fixtures/create_for_llm/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.ibex import js

# (key, type, where createGame reads it) for the voting, harberger and futarchy games, in createGame's order.
_PROFITS = tuple(
    (cond, edge) for cond in ("no_project", "project_a", "project_b") for edge in ("low", "fixed", "high")
)
CREATE_ROWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("game_type", "string", ("game_type",)),
    ("session_number", "number", ("session_number",)),
    ("round_count", "number", ("round_count",)),
    ("practice_round", "boolean", ("practice",)),
    ("minutes_for_trading", "number", ("minutes_for_trading",)),
    ("minutes_for_sniping", "number", ("minutes_for_sniping",)),
    ("tax_rate_initial", "number", ("tax_rate", "initial")),
    ("tax_rate_final", "number", ("tax_rate", "final")),
    ("signal_low", "float", ("signal", "low")),
    ("signal_high", "float", ("signal", "high")),
    ("generate_signals", "boolean", ("signal", "generate")),
    ("agents_only", "boolean", ("agents_only",)),
    ("speculators_count", "number", ("speculators", "count")),
    ("speculator_balance", "number", ("speculators", "balance")),
    ("speculator_shares", "number", ("speculators", "shares")),
    ("max_lot_purchases", "number", ("speculators", "max_lot_purchases")),
    ("cash_for_snipers", "number", ("speculators", "cash_for_snipers")),
    ("speculators_base_points", "number", ("speculators", "base_points")),
    ("speculators_reward_scale_factor", "number", ("speculators", "reward_scale_factor")),
    ("developers_count", "number", ("developers", "count")),
    ("developer_balance", "number", ("developers", "balance")),
    ("developer_shares", "number", ("developers", "shares")),
    *((f"developer_{cond}_{edge}", "number", ("developers", "profit", cond, edge)) for cond, edge in _PROFITS),
    ("developers_base_points", "number", ("developers", "base_points")),
    ("developers_reward_scale_factor", "number", ("developers", "reward_scale_factor")),
    ("owners_count", "number", ("owners", "count")),
    ("owner_balance", "number", ("owners", "balance")),
    ("owner_shares", "number", ("owners", "shares")),
    *((f"owner_{cond}_{edge}", "number", ("owners", "profit", cond, edge)) for cond, edge in _PROFITS),
    ("owners_base_points", "number", ("owners", "base_points")),
    ("owners_reward_scale_factor", "number", ("owners", "reward_scale_factor")),
    ("seconds_for_deliberation", "number", ("seconds_for_deliberation",)),
    *((f"timer_phase_{n}", "number", ("timers", f"phase_{n}")) for n in range(10)),
    ("show_up_fee", "number", ("show_up_fee",)),
)
ROW_TYPES = {key: kind for key, kind, _path in CREATE_ROWS}
# Rows a finished game's log adds after the parameters (GameRecorder): not parameters anyone sets.
LOG_ONLY_KEYS = ("simulation_parent_id", "simulation_reward_round")


def nested_payload(values: Mapping[str, Any], title: str | None = None) -> dict[str, Any]:
    """The nested `gameParameters` that make the real server store `values` (typed, flat, keys of CREATE_ROWS).

    A key it does not hold is left out (the server then stores nothing for a number, "undefined" otherwise).
    `title` is the games row's title (the web UI sends one; without it the server stores "undefined").
    """
    unknown = sorted(set(values) - set(ROW_TYPES))
    if unknown:
        raise KeyError(f"not parameters create-for-llm sets: {', '.join(unknown)}")
    payload: dict[str, Any] = {} if title is None else {"title": title}
    for key, _kind, path in CREATE_ROWS:
        node = payload
        for name in path[:-1]:
            node = node.setdefault(name, {})
        if key in values:
            node[path[-1]] = values[key]
    return payload


def _read(game_parameters: Any, path: tuple[str, ...]) -> Any:
    value = game_parameters
    for name in path:
        value = js.prop(value, name)
    return value


def stored_rows(game_parameters: Any) -> list[dict[str, str]]:
    """The rows createGame stores for a voting, harberger or futarchy game, in its insertion order.

    Raises js.JSTypeError with V8's message where createGame throws (`gameParameters.tax_rate.initial` of a flat
    object: "Cannot read properties of undefined (reading 'initial')"). The database's own checks (an apostrophe,
    a value over 256 characters) are the caller's.
    """
    values = [(key, kind, _read(game_parameters, path)) for key, kind, path in CREATE_ROWS]  # all read, then stored
    rows = []
    for key, kind, value in values:
        if kind == "number" and (js.is_nullish(value) or value == ""):
            continue
        rows.append({"key": key, "type": kind, "value": js.to_string(value)})
    return rows
