"""The model policy for the market games: lib.agents.llm.LLMPolicy (retries, structured output, deadlines, the
transcript's model-call records) with the market games' prompts, schemas and strict answer checks."""

from __future__ import annotations

from typing import Any

from lib.agents.llm import LLMPolicy
from lib.games.market.actions import market_answer_schema, parse_market_answer
from lib.games.market.prompts import build_market_messages


class MarketLLMPolicy(LLMPolicy):
    """Asks a chat model for declarations, snipes and trades; an answer the checks refuse is fed back and asked
    again, as in voting. A trader's "wait" is a valid answer (`{"type": "wait"}`, nothing is sent)."""

    def messages(self, view: Any, action_required: dict[str, Any]) -> list[dict[str, str]]:
        return build_market_messages(view, action_required)

    def schema(self, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        return market_answer_schema(view, wire_type)

    def parse(self, answer: Any, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        return parse_market_answer(answer, view, wire_type)
