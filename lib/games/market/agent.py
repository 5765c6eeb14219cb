"""Compatibility names for the callers not converted yet (lib/games/market/play.py, rewritten on branch `runmodes`):
there is no market agent any more. A market seat is lib.agents.agent.Agent with `game=` a market game
(lib.games.game_for), whose seat rules are lib.games.market.seat; delete this module once nothing imports it."""

from __future__ import annotations

from typing import Any

from lib.agents.agent import Agent
from lib.games import game_for
from lib.games.market.policy import MarketBaselinePolicy
from lib.games.market.rules import HARBERGER
from lib.games.market.seat import MIN_TRADE_SECONDS

BaselineMarketPolicy = MarketBaselinePolicy
__all__ = ["MIN_TRADE_SECONDS", "BaselineMarketPolicy", "MarketAgent"]


def MarketAgent(*args: Any, game_type: str | None = None, **kwargs: Any) -> Agent:  # noqa: N802 (was a class)
    """Agent(...) for a market game; `game_type` None: learnt from the game's events (both market games' seats
    play alike until then)."""
    return Agent(*args, game=game_for(game_type or HARBERGER), game_type=game_type, **kwargs)
