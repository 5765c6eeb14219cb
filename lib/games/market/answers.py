"""lib.games.protocols.AnswerRules for the market games: their prompts, the answer's json_schema and its strict
reading (lib.games.market.prompts, lib.games.market.actions). A trader's "wait" is a valid answer
(`{"type": "wait"}`: nothing is sent)."""

from __future__ import annotations

from typing import Any

from lib.games.market.actions import market_answer_schema, parse_market_answer
from lib.games.market.prompts import build_market_messages
from lib.games.market.view import MarketView


class MarketAnswers:
    """Declarations, snipes and trades as a chat model is asked for them (the game type is the view's)."""

    def messages(self, view: MarketView, action_required: dict[str, Any]) -> list[dict[str, str]]:
        return build_market_messages(view, action_required)

    def schema(self, view: MarketView, wire_type: str, cap: int) -> dict[str, Any]:
        return market_answer_schema(view, wire_type)

    def parse(self, answer: Any, view: MarketView, wire_type: str, cap: int) -> dict[str, Any]:
        return parse_market_answer(answer, view, wire_type)


ANSWERS = MarketAnswers()
