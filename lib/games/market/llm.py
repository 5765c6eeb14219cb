"""A compatibility name for the callers not converted yet (lib.evaluation.policies, lib/games/market/play.py):
the model policy of every game is lib.agents.llm.LLMPolicy with `game=` the game (lib.games.game_for); delete this
module once nothing imports it."""

from __future__ import annotations

from typing import Any

from lib.agents.llm import LLMPolicy
from lib.games import game_for
from lib.games.market.rules import HARBERGER


def MarketLLMPolicy(**kwargs: Any) -> LLMPolicy:  # noqa: N802 (was a class)
    """LLMPolicy asked about the market games (their prompts, schema and checks are one for both)."""
    return LLMPolicy(game=game_for(HARBERGER), **kwargs)
