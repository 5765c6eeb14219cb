"""The local IBEX server's rules for the voting game (lib.games.protocols.ServerRules): which parameters an
in-process game starts with, which create-for-llm games the local server cannot play, and the game it runs
(lib/games/voting/server.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.voting.rules import CONDITIONS, LAST_PHASE, GameParams, parameters_from_dict
from lib.games.voting.server import PHASE_HANDLERS, Game
from lib.ibex import js
from lib.ibex.sessions import SessionsTable

# The seats the local game lays out: (developers.count, owners.count, speculators.count).
SEAT_COUNTS = (1, 5, 0)
# Parameters the local game computes with as whole numbers (rounds, sessions, value ranges and fixed values).
WHOLE = ("round_count", "session_number", *(
    f"{who}_{cond['parameter']}_{edge}" for who in ("owner", "developer") for cond in CONDITIONS
    for edge in ("low", "fixed", "high")))


class VotingServerRules:
    """lib.games.protocols.ServerRules for the voting game: six seats, the real server's defaults."""

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        return parameters_from_dict(flat)

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        seats = tuple(values.get(f"{who}_count") for who in ("developers", "owners", "speculators"))
        if seats != SEAT_COUNTS:
            return ("the local server plays one developer and five owners (developers.count 1, owners.count 5, "
                    "speculators.count 0)")
        for key in WHOLE:
            value = values.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                return (f"parameter {key!r} is {js.to_string(value) if value is not None else 'missing'} on the "
                        "server: the local server plays only games where it is a whole number")
        return None

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> Game:
        return Game(game_id, params, sessions, **options)

    def idle_phases(self, params: GameParams) -> frozenset[int]:
        # Every phase without a handler (presentation, results) ends only by its timer.
        return frozenset(range(LAST_PHASE + 1)) - set(PHASE_HANDLERS)
