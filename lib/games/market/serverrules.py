"""The local IBEX server's rules for Harberger and futarchy (lib.games.protocols.ServerRules): which parameters an
in-process game starts with (the web UI's), which create-for-llm games the local server cannot play, and the game
it runs (lib/games/market/server.py, which also checks the sessions table for values and signals)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.market.server import IDLE_PHASES, TIMER_ONLY_PHASES, MarketGame, market_parameters
from lib.games.voting.rules import GameParams, parameters_from_dict
from lib.ibex.sessions import SessionsTable


class MarketServerRules:
    """lib.games.protocols.ServerRules for one market game (`game_type`: harberger or futarchy)."""

    def __init__(self, game_type: str) -> None:
        self.game_type = game_type

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        return parameters_from_dict(market_parameters({"game_type": self.game_type, **(flat or {})}))

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        # The real server seats owners.count owners (the developer in seat 2) and speculators.count speculators;
        # developers.count only enters the player count create-for-llm checks first.
        owners, speculators = values.get("owners_count"), values.get("speculators_count")
        if not (isinstance(owners, int) and owners >= 1 and isinstance(speculators, int) and speculators >= 0):
            return "the local server plays market games with owners.count at least 1 and speculators.count at least 0"
        if strict:
            # The real server starts such a game, and it stalls for good at the first phase without a timer.
            stalled = [n for n in TIMER_ONLY_PHASES if not _positive(values.get(f"timer_phase_{n}"))]
            if stalled:
                return (f"--strict: timers.phase_{stalled[0]} must be a positive number of seconds (phases "
                        f"{', '.join(map(str, TIMER_ONLY_PHASES))} end only by their timer; without one the game "
                        "stalls for good)")
        return None

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> MarketGame:
        return MarketGame(game_id, params, sessions, **options)

    def idle_phases(self, params: GameParams) -> frozenset[int]:
        return frozenset(IDLE_PHASES)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
