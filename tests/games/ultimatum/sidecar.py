"""An ultimatum example's line in the state sidecar (lib.dataset.sidecar): the seat's view when its prompt was
built, whole (a few numbers per round), so that the view, and with it the prompt, can be rebuilt exactly.

A line is {"game", "game_type", "seat", "action", "view"}: no "cap" field, as a game need not have one; the
largest offer is the pie, which the view holds, and the data part's `cap` reads it there
(lib.dataset.sidecar.Example.cap asks the game's data part).
"""

from __future__ import annotations

import json
from typing import Any

from lib.dataset.sidecar import OPT_INT, Example, check_fields, mapping
from tests.games.ultimatum.actions import action_required, check
from tests.games.ultimatum.policy import baseline_action
from tests.games.ultimatum.prompts import messages
from tests.games.ultimatum.rules import NAME
from tests.games.ultimatum.view import RoundRecord, UltimatumView

# What each field of a line must be (lib.dataset.sidecar.check_fields).
LINE: dict[str, Any] = {
    "game": (str,), "game_type": (str,), "seat": (int,), "action": (str,),
    "view": {"game_id": OPT_INT, "number": OPT_INT, "pie": OPT_INT, "round": (int,), "phase": (int,),
             "round_count": OPT_INT, "deadline_ms": OPT_INT,
             "rounds": mapping({"offer": OPT_INT, "accepted": (bool, type(None)), "payoff": OPT_INT},
                               int_keys=True)}}


def view_state(view: UltimatumView) -> dict[str, Any]:
    return {"game_id": view.game_id, "number": view.number, "pie": view.pie, "round": view.round,
            "phase": view.phase, "round_count": view.round_count, "deadline_ms": view.deadline_ms,
            "rounds": {str(n): {"offer": r.offer, "accepted": r.accepted, "payoff": r.payoff}
                       for n, r in sorted(view.rounds.items())}}


def view_from_state(state: dict[str, Any]) -> UltimatumView:
    view = UltimatumView(game_id=state.get("game_id"), pie=state.get("pie"), round=state["round"],
                         phase=state["phase"], round_count=state.get("round_count"),
                         deadline_ms=state.get("deadline_ms"))
    view.set_seat(state.get("number"))
    view.rounds = {int(n): RoundRecord(**r) for n, r in (state.get("rounds") or {}).items()}
    return view


def example_state(game: str, seat: int, action: str, view: UltimatumView) -> dict[str, Any]:
    return {"game": game, "game_type": NAME, "seat": seat, "action": action, "view": view_state(view)}


def cap(state: dict[str, Any]) -> int:
    """The seat's cap at play time (UltimatumSeat.cap: the pie its view holds), from the line's view."""
    from tests.games.ultimatum.seat import SEAT

    return SEAT.cap(view_from_state(state["view"]), None)


def check_state(state: dict[str, Any], where: str) -> None:
    check_fields(where, state, LINE)


def human_answer(answer: str, state: dict[str, Any]) -> dict[str, Any]:
    return check(json.loads(answer), view_from_state(state["view"]), state["action"], cap(state))


def probe(example: Example) -> None:
    """Rebuild the prompt and ask the baseline, as the evaluation will."""
    view = example.view()
    messages(view, action_required(view, example.action, cap=example.cap, timer_seconds=None))
    baseline_action(view, example.action, example.cap)
