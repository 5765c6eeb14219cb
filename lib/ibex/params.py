"""What every IBEX game shares: the roles, the two conditions, and the game parameters the server stores.

The real server creates every game type from one parameter table (`createGame`), stores it as rows of
{key, type, value} strings in the game's log, and names seats' roles and the conditions the same way in every game.
Parameters are typed here once — from a log's rows (`parse_parameters`) or from flat overrides of the server's
recorded defaults (`parameters_from_dict`) — and checked against bounds far beyond any real session, whatever the
game: a log or a --params file beyond them is a mistake or an attack (docs/protocol.md sections 1, 5 and 7).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLE_SPECULATOR, ROLE_DEVELOPER, ROLE_OWNER = 1, 2, 3
ROLE_NAMES = {ROLE_SPECULATOR: "speculator", ROLE_DEVELOPER: "developer", ROLE_OWNER: "owner"}
# The seat groups of the IBEX games (a study's arms, handler.py --seat-policy): group name -> the role of its seats.
SEAT_GROUPS = {"developer": ROLE_DEVELOPER, "owners": ROLE_OWNER, "speculators": ROLE_SPECULATOR}

NO_PROJECT, PROJECT = 0, 1
CONDITIONS: tuple[dict[str, Any], ...] = (
    {"name": "No Project", "id": NO_PROJECT, "parameter": "no_project", "key": "noProject"},
    {"name": "Project", "id": PROJECT, "parameter": "project_a", "key": "projectA"},
)

# The parameters the real server (master of 2025-10-30) records for a voting game, in its own order and types.
# Values are strings in logs; parse_parameters gives them their types.
DEFAULT_PARAMETERS: tuple[tuple[str, str, str], ...] = (
    ("show_up_fee", "number", "5"),
    ("timer_phase_7", "number", "15"),
    ("timer_phase_6", "number", "60"),
    ("timer_phase_5", "number", "120"),
    ("timer_phase_4", "number", "120"),
    ("timer_phase_3", "number", "120"),
    ("timer_phase_2", "number", "180"),
    ("timer_phase_1", "number", "15"),
    ("seconds_for_deliberation", "number", "30"),
    ("owners_reward_scale_factor", "number", "20000"),
    ("owners_base_points", "number", "0"),
    ("owner_project_b_high", "number", "200000"),
    ("owner_project_b_fixed", "number", "150000"),
    ("owner_project_b_low", "number", "100000"),
    ("owner_project_a_high", "number", "350000"),
    ("owner_project_a_fixed", "number", "275000"),
    ("owner_project_a_low", "number", "150000"),
    ("owner_no_project_high", "number", "600000"),
    ("owner_no_project_fixed", "number", "425000"),
    ("owner_no_project_low", "number", "350000"),
    ("owner_shares", "number", "6"),
    ("owner_balance", "number", "60000"),
    ("owners_count", "number", "5"),
    ("developers_reward_scale_factor", "number", "50000"),
    ("developers_base_points", "number", "500000"),
    ("developer_project_b_high", "number", "2000000"),
    ("developer_project_b_fixed", "number", "1750000"),
    ("developer_project_b_low", "number", "1500000"),
    ("developer_project_a_high", "number", "2750000"),
    ("developer_project_a_fixed", "number", "1150000"),
    ("developer_project_a_low", "number", "500000"),
    ("developer_no_project_high", "number", "500000"),
    ("developer_no_project_fixed", "number", "350000"),
    ("developer_no_project_low", "number", "200000"),
    ("developer_shares", "number", "30"),
    ("developer_balance", "number", "300000"),
    ("developers_count", "number", "1"),
    ("speculators_reward_scale_factor", "number", "1"),
    ("speculators_base_points", "number", "0"),
    ("cash_for_snipers", "number", "250000"),
    ("max_lot_purchases", "number", "3"),
    ("speculator_shares", "number", "5"),
    ("speculator_balance", "number", "50000"),
    ("speculators_count", "number", "0"),
    ("agents_only", "boolean", "false"),
    ("generate_signals", "boolean", "false"),
    ("signal_high", "float", "1.05"),
    ("signal_low", "float", "0.95"),
    ("tax_rate_final", "number", "33"),
    ("tax_rate_initial", "number", "1"),
    ("minutes_for_sniping", "number", "2"),
    ("minutes_for_trading", "number", "10"),
    ("practice_round", "boolean", "true"),
    ("round_count", "number", "5"),
    ("session_number", "number", "1"),
    ("game_type", "string", "voting"),
)
_DEFAULT_TYPES = {key: kind for key, kind, _ in DEFAULT_PARAMETERS}

ParamValue = bool | int | float | str


# Bounds on parameters, far beyond any real session (5 paid rounds, phases of 15 to 180 s, values in millions): a
# log or a --params file beyond them is a mistake or an attack, and would make prompts and replays grow without end.
MAX_ROUND_COUNT = 1_000
MAX_TIMER_SECONDS = 86_400
MAX_VALUE = 10**12


class ParamError(ValueError):
    """A game parameter that is missing, mistyped or out of range; the message names it."""


def _typed(key: str, kind: str, value: Any, where: str) -> ParamValue:
    # Logs store every value as a string; create-for-llm callers send JSON numbers and booleans.
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ParamError(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    if kind in ("number", "float"):
        if isinstance(value, bool):
            raise ParamError(f"{where}: parameter {key!r} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where}: parameter {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ParamError(f"{where}: parameter {key!r} must be finite, got {value!r}")
        if kind == "number" and number == int(number):
            return int(number)
        return number
    if not isinstance(value, str):
        raise ParamError(f"{where}: parameter {key!r} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class GameParams:
    """Typed game parameters. `values` holds every parameter the log or caller gave, typed."""

    values: Mapping[str, ParamValue]

    def get(self, key: str, default: ParamValue | None = None) -> ParamValue | None:
        return self.values.get(key, default)

    def _int(self, key: str) -> int:
        value = self.values.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ParamError(f"parameter {key!r} is missing or not a number")
        return int(value)

    @property
    def game_type(self) -> str:
        return str(self.values.get("game_type", "voting"))

    @property
    def round_count(self) -> int:
        return self._int("round_count")

    @property
    def practice_round(self) -> bool:
        return bool(self.values.get("practice_round", False))

    @property
    def session_number(self) -> int | None:
        value = self.values.get("session_number")
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def agents_only(self) -> bool:
        return bool(self.values.get("agents_only", False))

    def rounds(self) -> list[int]:
        """Round numbers in play order: 0 is the practice round when there is one."""
        first = 0 if self.practice_round else 1
        return list(range(first, self.round_count + 1))

    def timer(self, phase: int) -> float | None:
        """Seconds the phase lasts at most, or None for phases without a timer (phase 0)."""
        if phase == 0:
            return None
        value = self.values.get(f"timer_phase_{phase}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def value_range(self, role: int, condition: int) -> tuple[int, int]:
        """(low, high) of a role's private value under a condition, as the server draws them."""
        who = "developer" if role == ROLE_DEVELOPER else "owner"
        cond = CONDITIONS[condition]["parameter"]
        return self._int(f"{who}_{cond}_low"), self._int(f"{who}_{cond}_high")

    def boundaries(self) -> dict[str, dict[str, dict[str, int]]]:
        """The `boundaries` object of assign-role."""
        result: dict[str, dict[str, dict[str, int]]] = {}
        for role, name in ((ROLE_DEVELOPER, "developer"), (ROLE_OWNER, "owner")):
            result[name] = {}
            for cond in CONDITIONS:
                low, high = self.value_range(role, cond["id"])
                result[name][cond["key"]] = {"low": low, "high": high}
        return result

    def amount_cap(self) -> int:
        """Sanity cap for any request or offer: the largest value any lot can take in this game.

        No owner can lose more than this, and no developer can gain more, so a larger amount is a typo or a
        runaway model. The real server accepts even 1e15 (docs/protocol.md section 4); our agents must not send it.
        """
        highs = [self.value_range(role, cond["id"])[1] for role in (ROLE_DEVELOPER, ROLE_OWNER) for cond in CONDITIONS]
        return max(highs)

    def to_list(self) -> list[dict[str, str]]:
        """The `parameters` array of a recorded log: every value as a string, as the server writes it."""
        items = []
        for key, value in self.values.items():
            kind = _DEFAULT_TYPES.get(key) or (
                "boolean" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "string"
            )
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            items.append({"key": key, "type": kind, "value": text})
        return items


def parse_parameters(items: Any, where: str = "parameters") -> GameParams:
    """Typed parameters from a log's `parameters` array ([{"key","type","value"}, ...])."""
    if not isinstance(items, list):
        raise ParamError(f"{where}: expected a list of {{key, type, value}} objects, got {type(items).__name__}")
    values: dict[str, ParamValue] = {}
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise ParamError(f"{here}: expected an object with string 'key' and a 'value', got {item!r}"[:300])
        key = item["key"]
        kind = item.get("type") or _DEFAULT_TYPES.get(key, "string")
        values[key] = _typed(key, str(kind), item["value"], here)
    params = GameParams(values)
    _validate(params, where)
    return params


def parameters_from_dict(overrides: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
    """Defaults of the real server with `overrides` (JSON numbers, booleans or strings) applied and typed."""
    values: dict[str, ParamValue] = {key: _typed(key, kind, raw, "defaults") for key, kind, raw in DEFAULT_PARAMETERS}
    for key, raw in (overrides or {}).items():
        kind = _DEFAULT_TYPES.get(key)
        if kind is None:
            kind = "boolean" if isinstance(raw, bool) else "number" if isinstance(raw, int | float) else "string"
        values[key] = _typed(key, kind, raw, where)
    params = GameParams(values)
    _validate(params, where)
    return params


def _validate(params: GameParams, where: str) -> None:
    if "round_count" in params.values and not 1 <= params.round_count <= MAX_ROUND_COUNT:
        raise ParamError(f"{where}: parameter 'round_count' must be from 1 to {MAX_ROUND_COUNT:,}, got "
                         f"{_shown(params.values['round_count'])}")
    for key in params.values:
        timer = _TIMER.fullmatch(key)
        if timer is None or timer.group(1) == "0":  # phase 0 waits for the players: no timer of its own
            continue
        seconds = params.timer(int(timer.group(1)))
        if seconds is None or seconds <= 0:
            # 0 is not "no limit": the real server runs such a phase without a timer, and a phase that only its
            # timer ends then never ends.
            raise ParamError(f"{where}: parameter '{key}' must be a positive number of seconds"
                             + (" (the server runs a phase without a timer when it reads 0)" if seconds == 0 else ""))
        if seconds > MAX_TIMER_SECONDS:
            raise ParamError(f"{where}: parameter '{key}' must be at most {MAX_TIMER_SECONDS:,} "
                             f"seconds, got {_shown(params.values[key])}")
    for who in ("developer", "owner"):
        for cond in CONDITIONS:
            for end in ("low", "high"):
                key = f"{who}_{cond['parameter']}_{end}"
                value = params.values.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_VALUE:
                    raise ParamError(f"{where}: parameter {key!r} must be at most {MAX_VALUE:,} in size, got "
                                     f"{_shown(value)}")


_TIMER = re.compile(r"timer_phase_(\d+)")


def _shown(value: Any) -> str:
    """A parameter's value for an error line: a number of 10,000 digits is not printed whole."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."

