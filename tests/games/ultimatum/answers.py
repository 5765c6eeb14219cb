"""lib.games.protocols.AnswerRules for the ultimatum game: the prompts (prompts.py), the answer's json_schema and
its strict reading (actions.py)."""

from __future__ import annotations

from typing import Any

from tests.games.ultimatum import actions, prompts
from tests.games.ultimatum.view import UltimatumView


class UltimatumAnswers:
    def messages(self, view: UltimatumView, action_required: dict[str, Any]) -> list[dict[str, str]]:
        return prompts.messages(view, action_required)

    def schema(self, view: UltimatumView, wire_type: str, cap: int) -> dict[str, Any]:
        return actions.schema(view, wire_type, cap)

    def parse(self, answer: Any, view: UltimatumView, wire_type: str, cap: int) -> dict[str, Any]:
        return actions.parse(answer, view, wire_type, cap)


ANSWERS = UltimatumAnswers()
