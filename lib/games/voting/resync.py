"""Catch a PlayerView up after a rejoin, from the `gameData` of GET /games/status (docs/protocol.md sections 2 and 4).

A disconnected player misses every frame sent meanwhile (no replay), so after rejoining the agent asks the REST
API where the game is. This module turns that snapshot into frames in the real server's own shapes (so the view
folds them like live ones and the transcript shows what was inferred) plus the few facts no frame carries (own
vote, chat, ready flag), and says which actions the server already has from this player in the current phase.

Traps handled here:
- `player.result` keeps the LAST FINISHED round's outcome until this round's results exist: before phase 7 it is
  the previous round's (game 5: round 1, phase 3 still showed round 0's result). It is used only in phase 7, when
  it carries this round's `tally`; otherwise it is reported as ignored and never folded.
- `game.messages` is the current chat phase's log in phases 2 and 5, but phase 2's in phases 3, 4, 6 and 7.
- Owners learn the developer's offer at the start of phase 5, so `compensationOffers` is not shown to them before.
- After round end the server clears the requests (nulls): a null list never overwrites what the view has.
- `round`/`phase` can be null for a few milliseconds while the server saves a new round: the caller asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST
from lib.games.voting.rules import CHAT_PHASES, LAST_PHASE
from lib.games.voting.view import PlayerView
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER

READY = "player-is-ready"


@dataclass
class Resync:
    """What a status snapshot said, after it was folded into the view."""

    round: int | None
    phase: int | None
    deadline_ms: int | None
    over: bool
    acted: set[str] = field(default_factory=set)  # wire types the server already has from us in this phase
    frames: list[dict[str, Any]] = field(default_factory=list)  # the synthetic frames folded, in order
    ignored_result: Any = None  # player.result, when it may be an earlier round's and was left out
    chat_added: int = 0  # chat messages the view did not have yet

    @property
    def known(self) -> bool:
        """False while the server is between rounds (round or phase null): ask again in a moment."""
        return self.round is not None and self.phase is not None


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "eventType": kind, "data": data}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _nonempty_amounts(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def resync_frames(game_data: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """(frames that bring a view to the snapshot's state, the player.result left out or None).

    Chat, own vote and the ready flag have no frame of their own: apply_resync sets them.
    """
    game, player = _dict(game_data.get("game")), _dict(game_data.get("player"))
    round_number, phase = _int(game.get("round")), _int(game.get("phase"))
    number, role = _int(player.get("number")), _int(player.get("role"))
    frames: list[dict[str, Any]] = []
    ignored = None
    if round_number is None or phase is None:
        if number is not None:
            frames.append(_event("status", {"joined": {"number": number, "role": role, "tag": player.get("tag")}}))
        return frames, player.get("result")

    frames.append(_event("phase-transition", {"round": round_number, "phase": phase}))
    timer = _int(game_data.get("timer"))
    if phase >= 1:
        frames.append(_event("set-timer", {"end": timer}) if timer is not None else _event("reset-timer", {}))
    if number is not None:
        if phase >= 1:
            # property.v holds this round's values from phase 1 on (assign-role sends the same object).
            seat: dict[str, Any] = {"role": role, "number": number, "tag": player.get("tag")}
            for key, value in (("property", player.get("property")), ("boundaries", game.get("boundaries")),
                               ("conditions", game.get("conditions"))):
                if isinstance(value, dict | list):
                    seat[key] = value
            frames.append(_event("assign-role", seat))
        else:
            frames.append(_event("status", {"joined": {"number": number, "role": role, "tag": player.get("tag")}}))
    players = [p for p in _list(game.get("players")) if isinstance(p, dict)]
    if players:
        frames.append(_event("players-known", {"players": players}))

    offers = game.get("compensationOffers")
    if role == ROLE_DEVELOPER:
        requests = [r for r in _list(game.get("compensationRequests")) if isinstance(r, dict)]
        if phase >= 4 and any(r.get("compensationRequests") is not None for r in requests):
            frames.append(_event("compensation-requests-received", {"compensationRequests": requests}))
        if phase >= 4 and player.get("compensationOfferReceived") is True and _nonempty_amounts(offers):
            frames.append(_event("compensation-offer-received", {"compensationOffers": offers}))
    elif role == ROLE_OWNER:
        own = player.get("compensationRequests")
        if phase >= 3 and own is not None:
            frames.append(_event("compensation-request-received", {"compensationRequests": own}))
        if phase >= 5 and _nonempty_amounts(offers):
            frames.append(_event("compensation-offer-made", {"compensationOffers": offers}))

    result = player.get("result")
    if phase == LAST_PHASE and isinstance(result, dict) and "tally" in result:
        frames.append(_event("final-profit", {k: result.get(k) for k in ("condition", "tally", "value",
                                                                            "compensation")}))
    elif result is not None:
        ignored = result
    for summary in _list(player.get("summaries")):
        if isinstance(summary, dict) and _int(summary.get("round")) is not None:
            frames.append(_event("round-summary", summary))
    if game.get("over") is True:
        if isinstance(game.get("reward"), dict):
            frames.append(_event("reward", game["reward"]))
        frames.append(_event("game-over", {}))
    return frames, ignored


def apply_resync(view: PlayerView, game_data: dict[str, Any]) -> Resync:
    """Fold a /games/status `gameData` into `view`; what it said, and what the server already has from us."""
    frames, ignored = resync_frames(game_data)
    for frame in frames:
        view.apply(frame)
    game, player = _dict(game_data.get("game")), _dict(game_data.get("player"))
    if _int(game.get("id")) is not None and view.game_id is None:
        view.game_id = game["id"]
    round_number, phase = _int(game.get("round")), _int(game.get("phase"))
    result = Resync(round=round_number, phase=phase, deadline_ms=view.deadline_ms if phase else None,
                    over=game.get("over") is True, frames=frames, ignored_result=ignored)
    if not result.known:
        return result

    if phase == 0 and player.get("ready") is True:
        view.ready_acked = True
        result.acted.add(READY)
    role = view.role
    if role == ROLE_OWNER and phase == 3 and player.get("compensationRequests") is not None:
        result.acted.add(REQUEST)
    if role == ROLE_DEVELOPER and phase == 4 and player.get("compensationOfferReceived") is True:
        result.acted.add(OFFER)
    decisions = player.get("compensationDecisions")
    if role == ROLE_OWNER and phase >= 6 and decisions is not None:
        view.current.my_vote = list(decisions) if isinstance(decisions, list) else decisions
        if phase == 6:
            result.acted.add(DECISION)

    result.chat_added = _merge_chat(view, game.get("messages"), phase)
    if phase in CHAT_PHASES and any(
        entry.get("phase") == phase and entry.get("sender") == view.number for entry in view.current.chat
    ):
        result.acted.add(CHAT)
    return result


def _merge_chat(view: PlayerView, messages: Any, phase: int) -> int:
    """Add the snapshot's chat messages the view lacks; the number added."""
    if not isinstance(messages, list) or phase < 2:
        return 0
    chat_phase = phase if phase in CHAT_PHASES else 2
    record = view.current
    seen = {_chat_key(entry) for entry in record.chat}
    added = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        entry = {"phase": chat_phase, "sender": message.get("sender"), "to": message.get("to"),
                 "text": message.get("text")}
        key = _chat_key(entry)
        if key in seen:
            continue
        seen.add(key)
        record.chat.append(entry)
        added += 1
    return added


def _chat_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    return entry.get("phase"), entry.get("sender"), repr(entry.get("to")), entry.get("text")
