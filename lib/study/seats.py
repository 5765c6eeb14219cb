"""Which seats a study's game has and which seat groups they form, as its game's rules say (lib.games)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games import game_for
from lib.ibex.params import ROLE_NAMES, GameParams


def seat_roles(game_type: str, params: Mapping[str, Any] | None = None) -> dict[int, int]:
    """seat number -> role for a game of `game_type` with flat parameters `params` (a market game's counts)."""
    return game_for(game_type).rules.seat_roles(GameParams(dict(params or {})))


def groups_of(game_type: str, params: Mapping[str, Any] | None = None) -> dict[str, list[int]]:
    """Seat group name -> its seats, only the groups this game has, named as the game names them."""
    groups = game_for(game_type).rules.seat_groups(GameParams(dict(params or {})))
    return {name: list(seats) for name, seats in groups.items()}


def role_name(role: int) -> str:
    return ROLE_NAMES[role]
