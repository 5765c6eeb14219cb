"""Harberger and futarchy as the registry sees them (lib.games.protocols): two games on one folder's parts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.market import outcomes
from lib.games.market.answers import ANSWERS
from lib.games.market.data import DATA
from lib.games.market.play import UI_TIMERS, MarketPlay, typed_parameters, ui_parameters
from lib.games.market.rules import FUTARCHY, HARBERGER, seat_layout
from lib.games.market.scores import SCORES
from lib.games.market.seat import MarketSeat
from lib.games.market.serverrules import MarketServerRules
from lib.games.market.variants import PROMPTS
from lib.games.protocols import GameDefinition, groups_from_roles
from lib.ibex.params import SEAT_GROUPS, GameParams

LAST_PHASE = 9


class MarketRules:
    """lib.games.protocols.GameRules for a market game: owners, one developer and speculators, phases 1-9."""

    last_phase = LAST_PHASE

    def __init__(self, game_type: str) -> None:
        self.game_type = game_type

    def default_parameters(self) -> dict[str, Any]:
        return {key: value for key, value in ui_parameters(self.game_type).items() if value is not None}

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        return typed_parameters({**self.default_parameters(), **dict(flat or {}), "game_type": self.game_type})

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        overrides: dict[str, Any] = {"game_type": self.game_type, "round_count": rounds, "practice_round": practice}
        for phase, seconds in enumerate(UI_TIMERS):
            if seconds is not None:
                overrides[f"timer_phase_{phase}"] = max(0.05, round(seconds * timer_scale, 3))
        return overrides

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        values = params.values if params is not None else self.default_parameters()
        layout = seat_layout(int(values.get("owners_count", 5)), int(values.get("speculators_count", 6)))
        return {seat.number: seat.role for seat in layout}

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        return groups_from_roles(self.seat_roles(params), SEAT_GROUPS)

    def timeout(self, params: GameParams) -> float:
        per_round = sum(params.timer(phase) or 0 for phase in range(1, LAST_PHASE + 1))
        return 2 * per_round * len(params.rounds()) + 30


HARBERGER = GameDefinition(name=HARBERGER, title="Harberger", rules=MarketRules(HARBERGER),
                           server=MarketServerRules(HARBERGER), seat=MarketSeat(HARBERGER), answers=ANSWERS,
                           play=MarketPlay(HARBERGER), data=DATA, scores=SCORES, outcomes=outcomes,
                           prompts=PROMPTS)
FUTARCHY = GameDefinition(name=FUTARCHY, title="futarchy", rules=MarketRules(FUTARCHY),
                          server=MarketServerRules(FUTARCHY), seat=MarketSeat(FUTARCHY), answers=ANSWERS,
                          play=MarketPlay(FUTARCHY), data=DATA, scores=SCORES, outcomes=outcomes,
                          prompts=PROMPTS)
