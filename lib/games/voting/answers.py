"""lib.games.protocols.AnswerRules for the voting game: the training set's prompts, the answer's json_schema and its
strict reading (lib.games.voting.prompts, lib.games.voting.actions)."""

from __future__ import annotations

from typing import Any

from lib.games.voting.actions import answer_schema, parse_answer
from lib.games.voting.prompts import build_messages
from lib.games.voting.view import PlayerView


class VotingAnswers:
    """Requests, offers, votes and chat as a chat model is asked for them."""

    def messages(self, view: PlayerView, action_required: dict[str, Any]) -> list[dict[str, str]]:
        return build_messages(view, action_required)

    def schema(self, view: PlayerView, wire_type: str, cap: int) -> dict[str, Any]:
        return answer_schema(wire_type, game_id=view.game_id, cap=cap, seat=view.number)

    def parse(self, answer: Any, view: PlayerView, wire_type: str, cap: int) -> dict[str, Any]:
        return parse_answer(answer, view, wire_type, cap=cap)


ANSWERS = VotingAnswers()
