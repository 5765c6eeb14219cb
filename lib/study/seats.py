"""Which seats a game type has and which seat groups they form (per-game knowledge, kept out of the study code)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.voting.rules import SEATS, seat_role
from lib.ibex.params import ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER, ROLE_SPECULATOR

GROUPS = {"developer": ROLE_DEVELOPER, "owners": ROLE_OWNER, "speculators": ROLE_SPECULATOR}


def seat_roles(game_type: str, params: Mapping[str, Any] | None = None) -> dict[int, int]:
    """seat number -> role for a game of `game_type` with flat parameters `params` (counts of a market game)."""
    if game_type == "voting":
        return {n: seat_role(n) for n in range(1, SEATS + 1)}
    from lib.games.market.rules import seat_layout

    params = params or {}
    layout = seat_layout(int(params.get("owners_count", 5)), int(params.get("speculators_count", 6)))
    return {s.number: s.role for s in layout}


def groups_of(game_type: str, params: Mapping[str, Any] | None = None) -> dict[str, list[int]]:
    """Seat group name -> its seats, only the groups this game has."""
    roles = seat_roles(game_type, params)
    groups = {name: [n for n, r in roles.items() if r == role] for name, role in GROUPS.items()}
    return {name: seats for name, seats in groups.items() if seats}


def role_name(role: int) -> str:
    return ROLE_NAMES[role]
