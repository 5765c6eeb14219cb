"""The action-required message (docs/protocol.md section 6) and the rules an answer must obey before it is sent.

`action_due` says which action a player owes now; `build_action_required` turns the view into the message the model
sees (in training prompts and at play time alike); `validate_action` / `parse_answer` turn a model's answer into the
exact wire message, or raise ActionError with a reason that can be fed back to the model.

The real server checks almost nothing (docs/protocol.md section 4): it takes strings, floats, negative amounts,
1e15, votes [7] or [0,1], and actions from the wrong role, and one apostrophe in a stored field froze a game for
good. So everything that is not a plain, in-range integer in the right place, from the right role, in the right
phase, is rejected here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lib.games.contract import answer_json, deadline_fields, is_int, whole_number
from lib.games.protocols import ActionError as ActionError  # every game's checks raise the one the agent catches
from lib.games.voting.rules import CHAT_PHASES, PHASES, SEATS
from lib.games.voting.view import PlayerView
from lib.ibex.params import ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER

REQUEST, OFFER, DECISION, CHAT = (
    "compensation-request",
    "compensation-offer",
    "compensation-decision",
    "chat-with-players",
)
CHAT_MAX_CHARS = 500  # long enough for any message humans sent in the 2023 sessions; keeps prompts bounded


@dataclass(frozen=True)
class ActionSpec:
    wire_type: str
    action_type: str  # the actionType of the action-required message
    role: int | None  # None: any role
    phases: tuple[int, ...]
    field: str | None  # the amount/decision field of the wire message
    verb: str  # "submit your request" etc., for the deadline sentence


SPECS: dict[str, ActionSpec] = {
    REQUEST: ActionSpec(REQUEST, "SubmitCompensationRequest", ROLE_OWNER, (3,), "compensationRequests",
                        "submit your compensation request"),
    OFFER: ActionSpec(OFFER, "SubmitCompensationOffer", ROLE_DEVELOPER, (4,), "compensationOffers",
                      "submit your compensation offer"),
    DECISION: ActionSpec(DECISION, "SubmitCompensationDecision", ROLE_OWNER, (6,), "compensationDecisions",
                         "submit your vote"),
    CHAT: ActionSpec(CHAT, "SendChatMessage", None, CHAT_PHASES, None, "send your message"),
}
BY_ACTION_TYPE = {spec.action_type: spec for spec in SPECS.values()}


def action_due(view: PlayerView, *, chat: bool = False) -> str | None:
    """The wire type of the action this player owes in the current phase, or None.

    Chat is optional: it is due in phases 2 and 5 only when the caller lets the player talk.
    """
    if view.game_over or view.role is None:
        return None
    for spec in SPECS.values():
        if view.phase in spec.phases and (spec.role is None or spec.role == view.role):
            if spec.wire_type == CHAT and not chat:
                continue
            return spec.wire_type
    return None


def _instructions(view: PlayerView, spec: ActionSpec) -> str:
    me = f"You are {view.tag} (player {view.number}), the {ROLE_NAMES.get(view.role or 0, 'player')}."
    if spec.wire_type == REQUEST:
        return (f"You are now entering the Compensation Request Phase. {me} Tell the developer how much compensation "
                "you require to accept the Project. If the Project wins the vote, every owner receives the "
                "developer's offer, whatever they requested. Only the developer sees your request.")
    if spec.wire_type == OFFER:
        return (f"You are now entering the Compensation Offer Phase. {me} You have received the owners' "
                "compensation requests. Make one offer: if the Project wins the vote, you pay this amount to each "
                "of the five owners. The owners then vote.")
    if spec.wire_type == DECISION:
        return (f"You are now entering the Voting Phase. {me} Vote for the Project or for No Project, given the "
                "developer's offer. The condition with the most votes wins; a tie goes to the Project.")
    return (f"You are in a deliberation phase ({PHASES[view.phase]}). {me} You may send one chat message to "
            "some or all of the other players.")


def _format(view: PlayerView, spec: ActionSpec) -> str:
    gid = view.game_id if view.game_id is not None else 0
    if spec.wire_type == CHAT:
        others = [n for n in range(1, SEATS + 1) if n != view.number]
        return json.dumps({"gameId": gid, "type": CHAT, "to": others, "text": "..."}, separators=(",", ":"))
    if spec.wire_type == DECISION:
        return f'{{"gameId":{gid},"type":"{DECISION}","compensationDecisions":[D]}}'
    return f'{{"gameId":{gid},"type":"{spec.wire_type}","{spec.field}":[null,X]}}'


def _additional_info(view: PlayerView, spec: ActionSpec, cap: int) -> str:
    if spec.wire_type == CHAT:
        return (f'"to" lists the player numbers (1-{SEATS}, not your own) who receive the message; "text" is at most '
                f"{CHAT_MAX_CHARS} characters. Reply with the JSON object only.")
    if spec.wire_type == DECISION:
        return "D is 1 to vote for the Project or 0 to vote for No Project. Reply with the JSON object only."
    return (f"X is a whole number of money units from 0 to {cap}, written without quotes, separators or decimals; "
            "the first element stays null (no compensation is paid under No Project). "
            "Reply with the JSON object only.")


def build_action_required(view: PlayerView, wire_type: str, *, cap: int, timer_seconds: float | None = None,
                          deadline_ms: int | None = None) -> dict[str, Any]:
    """The action-required message for this player now.

    The deadline is the phase timer's end from set-timer (the view's deadline, or `deadline_ms`); when no
    timestamp is known (older logs), the phase's length from the parameters is stated instead.
    """
    spec = SPECS[wire_type]
    deadline, by = deadline_fields(spec.verb, deadline_ms if deadline_ms is not None else view.deadline_ms,
                                   timer_seconds)
    return {
        "type": "event",
        "eventType": "action-required",
        "data": {
            "actionType": spec.action_type,
            "instructions": _instructions(view, spec),
            "deadline": deadline,
            "format": _format(view, spec),
            "actionRequiredBy": by,
            "additionalInfo": _additional_info(view, spec, cap),
        },
    }


def server_action_type(data: Any) -> str | None:
    """The wire type a server-sent action-required asks for, from its actionType or its format."""
    if not isinstance(data, dict):
        return None
    spec = BY_ACTION_TYPE.get(data.get("actionType"))
    if spec is not None:
        return spec.wire_type
    fmt = data.get("format")
    if isinstance(fmt, str):
        for wire_type in SPECS:
            if wire_type in fmt:
                return wire_type
    return None


def _amounts(value: Any, field: str, cap: int | None) -> list[Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ActionError(f'"{field}" must be a list of two elements: [null, X]')
    first, amount = value
    if first not in (None, 0):
        raise ActionError(f'the first element of "{field}" must be null (nothing is paid under No Project)')
    whole_number(amount, f'X in "{field}"')
    if cap is None:
        return [None, amount]
    if amount < 0:
        raise ActionError(f'X in "{field}" must not be negative, got {amount}')
    if amount > cap:
        raise ActionError(f'X in "{field}" must be at most {cap}, got {amount}')
    return [None, amount]


def validate_action(message: Any, view: PlayerView, wire_type: str, *, cap: int | None) -> dict[str, Any]:
    """The exact wire message for `wire_type`, or ActionError if the real server should never see it.

    `gameId` is always set to the view's game: a model that copies another id must not send the action elsewhere.
    `cap=None` checks shape, role and phase only: the dataset builder keeps human choices as made (a request above
    the value range, a long chat message), while an agent's answer must also be in range.
    """
    spec = SPECS[wire_type]
    if not isinstance(message, dict):
        raise ActionError("the answer must be one JSON object")
    sent_type = message.get("type")
    if sent_type != wire_type:
        if sent_type in SPECS and SPECS[sent_type].role not in (None, view.role):
            raise ActionError(f'you are the {ROLE_NAMES.get(view.role or 0)}; "{sent_type}" is not your action; '
                              f'send "{wire_type}"')
        raise ActionError(f'"type" must be "{wire_type}" in this phase, got {json.dumps(sent_type)[:60]}')
    if spec.role is not None and view.role != spec.role:
        raise ActionError(f'only the {ROLE_NAMES[spec.role]} sends "{wire_type}"; you are the '
                          f"{ROLE_NAMES.get(view.role or 0, 'unknown role')}")
    if view.phase not in spec.phases:
        raise ActionError(f'"{wire_type}" belongs to phase {"/".join(map(str, spec.phases))}, '
                          f"the game is in phase {view.phase}")
    allowed = {"gameId", "type", spec.field} if spec.field else {"gameId", "type", "to", "text"}
    extra = sorted(set(message) - allowed)
    if extra:
        raise ActionError(f"unexpected field(s) {', '.join(extra)}; use exactly the format given")
    out: dict[str, Any] = {"gameId": view.game_id, "type": wire_type}
    if wire_type == CHAT:
        to, text = message.get("to"), message.get("text")
        if not isinstance(to, list) or not to:
            raise ActionError('"to" must be a non-empty list of player numbers')
        if not all(is_int(n) and 1 <= n <= SEATS and n != view.number for n in to) or len(set(to)) != len(to):
            raise ActionError(f'"to" may only hold distinct player numbers 1-{SEATS} other than your own '
                              f"({view.number})")
        if not isinstance(text, str) or not text.strip():
            raise ActionError('"text" must be a non-empty string')
        if cap is not None and len(text) > CHAT_MAX_CHARS:
            raise ActionError(f'"text" must be at most {CHAT_MAX_CHARS} characters, got {len(text)}')
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800") cannot be written or sent as UTF-8
                raise ActionError('"text" holds an invalid character (a lone surrogate)') from None
        out["to"], out["text"] = list(to), text
    elif wire_type == DECISION:
        vote = message.get("compensationDecisions")
        if not (isinstance(vote, list) and len(vote) == 1 and is_int(vote[0]) and vote[0] in (0, 1)):
            raise ActionError(f'"compensationDecisions" must be [1] (Project) or [0] (No Project), '
                              f"got {json.dumps(vote)[:40]}")
        out["compensationDecisions"] = [vote[0]]
    else:
        assert spec.field is not None
        out[spec.field] = _amounts(message.get(spec.field), spec.field, cap)
    return out


def parse_answer(text: Any, view: PlayerView, wire_type: str, *, cap: int | None) -> dict[str, Any]:
    """A model's raw answer text to the wire message (see validate_action). A code fence around it is tolerated."""
    return validate_action(answer_json(text), view, wire_type, cap=cap)


def answer_schema(wire_type: str, *, game_id: int | None = None, cap: int | None = None,
                  seat: int | None = None) -> dict[str, Any]:
    """A JSON schema for structured output, within OpenAI's strict-mode subset (the strictest endpoint we know).

    Given the game, the cap and the seat, it fixes what validate_action checks wherever the subset can say it:
    `gameId` and `type` are constants, the amount array has exactly two elements, each null or a whole number
    from 0 to the cap, the vote exactly one element 0 or 1, the recipients are other players' numbers (at least
    one, at most all of them), and the text is 1 to CHAT_MAX_CHARS characters holding something besides spaces.
    Two rules need keywords strict mode refuses (prefixItems, uniqueItems): which element of the amount array
    is which (the first null or 0, the second the amount: the schema lets each be null or an amount), and that no
    recipient is named twice. validate_action checks them, and an answer that breaks them is fed back and retried
    like any other invalid answer.
    """
    spec = SPECS[wire_type]
    game: dict[str, Any] = {"type": "integer"} if game_id is None else {"type": "integer", "enum": [game_id]}
    props: dict[str, Any] = {"gameId": game, "type": {"type": "string", "enum": [wire_type]}}
    if wire_type == CHAT:
        others = [n for n in range(1, SEATS + 1) if n != seat]
        props["to"] = {"type": "array", "items": {"type": "integer", "enum": others},
                       "minItems": 1, "maxItems": len(others)}
        props["text"] = {"type": "string", "minLength": 1, "maxLength": CHAT_MAX_CHARS, "pattern": r"\S"}
    elif wire_type == DECISION:
        props["compensationDecisions"] = {"type": "array", "items": {"type": "integer", "enum": [0, 1]},
                                          "minItems": 1, "maxItems": 1}
    else:
        amount: dict[str, Any] = {"type": "integer", "minimum": 0}
        if cap is not None:
            amount["maximum"] = cap
        props[spec.field] = {"type": "array", "items": {"anyOf": [{"type": "null"}, amount]},
                             "minItems": 2, "maxItems": 2}
    return {
        "name": wire_type.replace("-", "_"),
        "strict": True,
        "schema": {"type": "object", "properties": props, "required": list(props), "additionalProperties": False},
    }


