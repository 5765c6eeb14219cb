"""A voting example's line in the state sidecar (lib.dataset.sidecar): what a rule-based policy reads of the
player's PlayerView when the prompt was built, and the view rebuilt from it.

A line is {"game", "seat", "action", "cap", "view"}; "view" is the decision-relevant part of the view
(`view_state` / `view_from_state`: the current round only, no policy looks back).
"""

from __future__ import annotations

import json
from typing import Any

from lib.dataset.sidecar import OPT_DICT, OPT_INT, OPT_LIST, OPT_STR, Example, SetError, check_fields, mapping
from lib.games.voting.actions import ActionError, build_action_required, validate_action
from lib.games.voting.view import PlayerView, RoundRecord

_ROUND_FIELDS = ("values", "values_source", "my_request", "offer", "my_vote")

# What each field of a line must be (lib.dataset.sidecar.check_fields).
LINE: dict[str, Any] = {
    "game": (str,), "seat": (int,), "action": (str,), "cap": (int,),
    "view": {"number": OPT_INT, "role": OPT_INT, "tag": OPT_STR, "round": (int,), "phase": (int,),
             "round_count": OPT_INT, "practice_round": (bool, type(None)), "boundaries": OPT_DICT,
             "current": {"values": OPT_LIST, "values_source": OPT_STR, "requests": mapping(None, int_keys=True)}}}


def view_state(view: PlayerView) -> dict[str, Any]:
    """What a rule-based policy reads of the view, as JSON (the current round only: no policy looks back)."""
    rec = view.current
    current: dict[str, Any] = {name: getattr(rec, name) for name in _ROUND_FIELDS}
    current["requests"] = {str(seat): request for seat, request in rec.requests.items()}
    return {"game_id": view.game_id, "number": view.number, "role": view.role, "tag": view.tag,
            "round": view.round, "phase": view.phase, "round_count": view.round_count,
            "practice_round": view.practice_round, "boundaries": view.boundaries, "current": current}


def view_from_state(state: dict[str, Any]) -> PlayerView:
    """A PlayerView holding what view_state kept, for lib.games.voting.policy and lib.games.voting.actions to act on."""
    view = PlayerView(game_id=state.get("game_id"), number=state.get("number"), role=state.get("role"),
                      tag=state.get("tag"), round=state.get("round", 0), phase=state.get("phase", 0),
                      boundaries=state.get("boundaries"), round_count=state.get("round_count"),
                      practice_round=state.get("practice_round"))
    current = state.get("current") or {}
    rec = RoundRecord(view.round, **{name: current.get(name) for name in _ROUND_FIELDS})
    rec.requests = {int(seat): request for seat, request in (current.get("requests") or {}).items()}
    view.rounds[view.round] = rec
    return view


def example_state(game: str, seat: int, action: str, cap: int, view: PlayerView) -> dict[str, Any]:
    """One sidecar line's object (lib.games.voting.examples writes it when it builds the example's prompt)."""
    return {"game": game, "seat": seat, "action": action, "cap": cap, "view": view_state(view)}


def check_state(state: dict[str, Any], where: str) -> None:
    """SetError naming `where` and the field, for a line that is not one lib.games.voting.examples writes."""
    if not isinstance(state.get("cap"), int):
        raise SetError(f"{where}: not a state line written by constructDataset.py")
    check_fields(where, state, LINE)


def human_answer(answer: str, state: dict[str, Any]) -> dict[str, Any]:
    """The human's answer as a wire message, checked as the builder checked it (without the cap)."""
    return validate_action(json.loads(answer), view_from_state(state["view"]), state["action"], cap=None)


def probe(example: Example) -> None:
    """Rebuild the prompt and ask the baseline, as the evaluation will."""
    from lib.games.voting.policy import baseline_action
    from lib.games.voting.prompts import build_messages

    view = example.view()
    build_messages(view, build_action_required(view, example.action, cap=example.cap))
    try:
        baseline_action(view, example.action, example.cap)
    except ActionError:
        pass  # a decision the rules cannot make: the evaluation counts it as such
