"""The ultimatum game's two actions: which is due, the action-required a policy is shown, the answer's schema, and
its strict check (the same check at play time, on the local server under --strict, and for a log's examples).

- make-offer: {"gameId", "type": "make-offer", "offer": whole number 0..pie}, the proposer's, in phase 2;
- respond-offer: {"gameId", "type": "respond-offer", "accept": true or false}, the responder's, in phase 3, once
  an offer was made.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from lib.games.protocols import ActionError
from tests.games.ultimatum.rules import PROPOSAL_PHASE, RESPONSE_PHASE, ROLE_PROPOSER, ROLE_RESPONDER
from tests.games.ultimatum.view import UltimatumView

OFFER, RESPONSE = "make-offer", "respond-offer"
ACTION_TYPES = {OFFER: "MakeOffer", RESPONSE: "RespondToOffer"}
PHASE_OF = {OFFER: PROPOSAL_PHASE, RESPONSE: RESPONSE_PHASE}
ROLE_OF = {OFFER: ROLE_PROPOSER, RESPONSE: ROLE_RESPONDER}
_WIRE_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def due(view: UltimatumView) -> str | None:
    """The decision this seat owes now, or None."""
    if view.game_over:
        return None
    if view.phase == PROPOSAL_PHASE and view.role == ROLE_PROPOSER:
        return OFFER
    if view.phase == RESPONSE_PHASE and view.role == ROLE_RESPONDER and view.current.offer is not None:
        return RESPONSE
    return None


def action_required(view: UltimatumView, wire_type: str, *, cap: int,
                    timer_seconds: float | None) -> dict[str, Any]:
    """The action-required message for `wire_type` now; its deadline is the set-timer's end when one came."""
    if view.deadline_ms is not None:
        deadline = datetime.fromtimestamp(view.deadline_ms / 1000, UTC).isoformat(timespec="milliseconds")
    else:
        deadline = f"{timer_seconds:g} seconds after the phase began" if timer_seconds else "none"
    if wire_type == OFFER:
        instructions = f"Offer the responder a share of the pie of {cap}: a whole number from 0 to {cap}."
        example = {"gameId": view.game_id, "type": OFFER, "offer": cap // 2}
    else:
        instructions = (f"The proposer offers you {view.current.offer} of {cap}. Accept (you get the offer, the "
                        "proposer the rest) or reject (both get nothing).")
        example = {"gameId": view.game_id, "type": RESPONSE, "accept": True}
    return {"type": "event", "eventType": "action-required",
            "data": {"actionType": ACTION_TYPES[wire_type], "instructions": instructions, "deadline": deadline,
                     "format": wire_json(example)}}


def schema(view: UltimatumView, wire_type: str, cap: int) -> dict[str, Any]:
    """A json_schema response format that fixes everything `check` checks."""
    props: dict[str, Any] = {"gameId": {"type": "integer", "enum": [view.game_id]},
                             "type": {"type": "string", "enum": [wire_type]}}
    if wire_type == OFFER:
        props["offer"] = {"type": "integer", "minimum": 0, "maximum": cap}
    else:
        props["accept"] = {"type": "boolean"}
    return {"type": "json_schema", "json_schema": {"name": wire_type.replace("-", "_"), "strict": True, "schema": {
        "type": "object", "properties": props, "required": list(props), "additionalProperties": False}}}


def check(message: Any, view: UltimatumView, wire_type: str, cap: int | None) -> dict[str, Any]:
    """The message as it may be sent; ActionError, in words a model can act on, otherwise."""
    if not isinstance(message, dict):
        raise ActionError(f"the answer must be a JSON object, got {type(message).__name__}")
    if wire_type not in ACTION_TYPES:
        raise ActionError(f"{wire_type!r} is not an action of the ultimatum game")
    if view.role != ROLE_OF[wire_type]:
        raise ActionError(f"{wire_type} is the {'proposer' if wire_type == OFFER else 'responder'}'s action")
    if message.get("type") != wire_type or message.get("gameId") != view.game_id:
        raise ActionError(f'"type" must be "{wire_type}" and "gameId" {view.game_id}')
    if wire_type == OFFER:
        offer, top = message.get("offer"), cap if cap is not None else view.pie
        if not isinstance(offer, int) or isinstance(offer, bool) or offer < 0 or (top is not None and offer > top):
            raise ActionError(f'"offer" must be a whole number from 0 to {top}, got {json.dumps(offer)}')
        extra = set(message) - {"gameId", "type", "offer"}
    else:
        if not isinstance(message.get("accept"), bool):
            raise ActionError(f'"accept" must be true or false, got {json.dumps(message.get("accept"))}')
        extra = set(message) - {"gameId", "type", "accept"}
    if extra:
        raise ActionError(f"unexpected field(s) {', '.join(sorted(extra))}")
    return dict(message)


def parse(text: Any, view: UltimatumView, wire_type: str, cap: int) -> dict[str, Any]:
    """A model's answer text (or an already decoded object) checked strictly."""
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except ValueError:
            raise ActionError("the answer is not valid JSON") from None
    return check(text, view, wire_type, cap)


def wire_json(message: dict[str, Any]) -> str:
    """The compact JSON text of a wire message, as the agent sends it and a training answer holds it."""
    return _WIRE_JSON.encode(message)
