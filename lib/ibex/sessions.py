"""The server's private-values table (`sessions.json`): which values each seat had in each round.

Format (docs/protocol.md section 5): a list of sessions `{"id": N, "rounds": [{"values": [<per condition>], ...}]}`;
`values[c]` has `developer` and `owner[k]` in thousands, owner k being the k-th owner seat (seats 1,3,4,5,6).
`rounds[r]` belongs to game round r, the practice round being round 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.games.voting.rules import DEVELOPER_SEAT, OWNER_SEATS
from lib.ibex.params import CONDITIONS

THOUSAND = 1000


class SessionsError(ValueError):
    """A sessions table that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class SessionsTable:
    source: str
    sessions: dict[int, list[Any]]  # session id -> rounds

    def values(self, session: int, round_number: int, seat: int) -> list[int] | None:
        """[value without project, value with project] of `seat` in `round_number`, or None if not in the table."""
        rounds = self.sessions.get(session)
        if rounds is None or not 0 <= round_number < len(rounds):
            return None
        per_condition = rounds[round_number].get("values") if isinstance(rounds[round_number], dict) else None
        if not isinstance(per_condition, list) or len(per_condition) < len(CONDITIONS):
            return None
        result = []
        for cond in CONDITIONS:
            entry = per_condition[cond["id"]]
            if seat == DEVELOPER_SEAT:
                raw = entry.get("developer") if isinstance(entry, dict) else None
            else:
                owners = entry.get("owner") if isinstance(entry, dict) else None
                k = OWNER_SEATS.index(seat) if seat in OWNER_SEATS else -1
                raw = owners[k] if isinstance(owners, list) and 0 <= k < len(owners) else None
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                return None
            result.append(int(round(raw * THOUSAND)))
        return result


def parse_sessions(data: Any, source: str = "<sessions>") -> SessionsTable:
    if not isinstance(data, list):
        raise SessionsError(f"{source}: expected a JSON list of sessions, got {type(data).__name__}")
    sessions: dict[int, list[Any]] = {}
    for i, item in enumerate(data):
        if not (isinstance(item, dict) and isinstance(item.get("id"), int) and isinstance(item.get("rounds"), list)):
            raise SessionsError(f"{source}: sessions[{i}] must be an object with an integer 'id' and a 'rounds' list")
        sessions[item["id"]] = item["rounds"]
    return SessionsTable(source, sessions)


def load_sessions(path: str | Path) -> SessionsTable:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise SessionsError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SessionsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return parse_sessions(data, str(path))


def generate_sessions(params: Any, n_sessions: int, n_rounds: int, seed: int) -> list[dict[str, Any]]:
    """A table in the real format with values drawn uniformly (in thousands) from the game's value ranges.

    Used to make the project's own sample table and synthetic corpora; never a stand-in for a real session.
    """
    import random

    from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER

    rng = random.Random(seed)

    def draw(role: int, condition: int) -> int:
        low, high = params.value_range(role, condition)
        return rng.randint(low // THOUSAND, high // THOUSAND)

    table = []
    for session_id in range(1, n_sessions + 1):
        rounds = []
        for _ in range(n_rounds):
            values = [
                {
                    "developer": draw(ROLE_DEVELOPER, cond["id"]),
                    "owner": [draw(ROLE_OWNER, cond["id"]) for _ in OWNER_SEATS],
                }
                for cond in CONDITIONS
            ]
            rounds.append({"values": values})
        table.append({"id": session_id, "rounds": rounds})
    return table


def add_signals(table: list[dict[str, Any]], seed: int, speculators: int = 6, tax_rate_final: int = 33,
                low: float = 0.95, high: float = 1.05) -> list[dict[str, Any]]:
    """The table with each round's private price signals for Harberger and futarchy added, in the real format
    (`signals[c]` = {speculator: [...], developer, owner: [...]}), drawn as the real server generates them: 1 % of
    the round's sum of true values under c, times the final tax rate, times U(low, high) per player.

    Used to make the project's own sample table (jsonFiles/sessions.json); the values are left as they are."""
    import random

    rng = random.Random(seed)
    out = []
    for session in table:
        rounds = []
        for entry in session["rounds"]:
            signals = []
            for values in entry["values"]:
                total = (values["developer"] + sum(values["owner"])) * THOUSAND

                def draw(total: int = total) -> int:
                    return round(total * rng.uniform(low, high) * (tax_rate_final / 100) / 100)

                signals.append({"speculator": [draw() for _ in range(speculators)], "developer": draw(),
                                "owner": [draw() for _ in values["owner"]]})
            rounds.append({**entry, "signals": signals})
        out.append({**session, "rounds": rounds})
    return out
