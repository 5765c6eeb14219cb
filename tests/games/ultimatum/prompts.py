"""The chat messages a model is asked with, from the seat's view and the action-required: one function for play
time (lib.agents.llm via answers.py) and for the training examples (examples.py), so the two are the same text."""

from __future__ import annotations

import json
from typing import Any

from tests.games.ultimatum.view import UltimatumView


def system_prompt(view: UltimatumView) -> str:
    return (f"You play an ultimatum game as the {view.role_name} ({view.tag}, seat {view.number}). Each round the "
            f"proposer offers the responder a share of a pie of {view.pie}; if the responder accepts, the responder "
            "gets the offer and the proposer the rest, otherwise both get nothing. Answer with the JSON message only.")


def user_prompt(view: UltimatumView, action_required: dict[str, Any]) -> str:
    lines = [f"Round {view.round}" + (f" of {view.round_count}" if view.round_count else "") + "."]
    for number in sorted(n for n in view.rounds if n < view.round):
        rec = view.rounds[number]
        said = {True: "accepted", False: "rejected", None: "no answer"}[rec.accepted]
        lines.append(f"Round {number}: offer {rec.offer if rec.offer is not None else 'none'}, {said}, your payoff "
                     f"{rec.payoff if rec.payoff is not None else 'unknown'}.")
    lines.append("Action required:")
    lines.append(json.dumps(action_required, indent=2, ensure_ascii=False))
    return "\n".join(lines)


def messages(view: UltimatumView, action_required: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt(view)},
            {"role": "user", "content": user_prompt(view, action_required)}]
