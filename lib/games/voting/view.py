"""What one player knows about a voting game, built by folding the server's frames one by one.

The agent feeds it live frames and its own sent actions; the dataset builder feeds it frames replayed from a log's
`server-log`, or reconstructed from the client messages of an older log. Prompts are built from this view only, so
training prompts and play-time prompts come from the same code and cannot drift apart. Nothing here reads files.

The view keeps references to the frames' data instead of copies: frames are never changed after they are applied
(the agent parses a fresh object per frame, the dataset builder replays a parsed log it does not change), and deep
copies were a sixth of the dataset builder's time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lib.games.common.view import SEAT_EVENT_HANDLERS  # the events every IBEX game's view folds alike
from lib.games.voting.rules import CHAT_PHASES, DEVELOPER_SEAT, seat_role, seat_tag
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER


@dataclass
class RoundRecord:
    """One round as this player saw it."""

    round: int
    values: list[int] | None = None  # own [value with No Project, value with Project]
    values_source: str | None = None  # "server" (assign-role/status), or where the dataset builder found them
    requests: dict[int, Any] = field(default_factory=dict)  # developer only: seat -> that owner's request
    my_request: Any = None  # owner: own last request (ack or sent)
    offer: Any = None  # owners: the offer made; developer: own last offer
    my_vote: Any = None  # owner: own last decision
    chat: list[dict[str, Any]] = field(default_factory=list)  # {"phase","sender","to","text"}, sent and received
    outcome: dict[str, Any] | None = None  # final-profit data: condition, tally, value, compensation
    profit: int | None = None  # round-summary profit
    # lib.games.voting.prompts' renderings of this record, reused while what they were made from is unchanged (by
    # identity: the
    # view replaces what it stores and only ever appends to `chat`). Not part of the record's value.
    rendered: Any = field(default=None, init=False, compare=False, repr=False)
    chat_rendered: Any = field(default=None, init=False, compare=False, repr=False)


@dataclass
class PlayerView:
    """The game as seen by one seat. `apply` folds server frames, `apply_sent` own actions."""

    game_id: int | None = None
    number: int | None = None
    role: int | None = None
    tag: str | None = None
    round: int = 0
    phase: int = 0
    deadline_ms: int | None = None  # end of the current phase's timer, server clock (epoch ms)
    boundaries: dict[str, Any] | None = None
    players: list[dict[str, Any]] = field(default_factory=list)
    rounds: dict[int, RoundRecord] = field(default_factory=dict)
    round_count: int | None = None  # known when the caller has the game parameters
    practice_round: bool | None = None
    ready_acked: bool = False  # a ready-received arrived in the current phase 0
    game_over: bool = False
    reward: dict[str, Any] | None = None
    server_action: dict[str, Any] | None = None  # last action-required the server itself sent (its data)
    errors: list[str] = field(default_factory=list)  # error frames received, newest last
    _tags: Any = field(default=None, init=False, compare=False, repr=False)  # (players list, number -> tag)
    system_rendered: Any = field(default=None, init=False, compare=False, repr=False)  # prompts' system prompt
    earlier_shown: Any = field(default=None, init=False, compare=False, repr=False)  # prompts' earlier rounds

    @property
    def current(self) -> RoundRecord:
        return self.record(self.round)

    def record(self, round_number: int) -> RoundRecord:
        if round_number not in self.rounds:
            self.rounds[round_number] = RoundRecord(round_number)
        return self.rounds[round_number]

    def _set_seat(self, number: Any, role: Any, tag: Any) -> None:
        if isinstance(number, int) and not isinstance(number, bool):
            self.number = number
            self.role = role if role in (ROLE_DEVELOPER, ROLE_OWNER) else seat_role(number)
            self.tag = tag if isinstance(tag, str) and tag else seat_tag(number)

    def _set_values(self, prop: Any) -> None:
        v = prop.get("v") if isinstance(prop, dict) else None
        if isinstance(v, list) and len(v) >= 2 and all(isinstance(x, int | float) for x in v[:2]):
            self.current.values = [int(v[0]), int(v[1])]
            self.current.values_source = "server"

    def apply(self, frame: Any) -> None:
        """Fold one frame the server sent (any shape; unknown or malformed frames change nothing)."""
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "error" or "error" in frame and kind is None:
            message = frame.get("message", frame.get("error"))
            self.errors.append(str(message))
            return
        if kind != "event":
            return
        handler = _HANDLERS.get(frame.get("eventType"))
        if handler is not None:
            data = frame.get("data")
            handler(self, data if isinstance(data, dict) else {})

    def apply_sent(self, message: dict[str, Any]) -> None:
        """Record an action this player sent (the server echoes no chat and acks votes without content)."""
        kind = message.get("type")
        rec = self.current
        if kind == "compensation-request":
            rec.my_request = message.get("compensationRequests")
        elif kind == "compensation-offer" and self.role == ROLE_DEVELOPER:
            rec.offer = message.get("compensationOffers")
        elif kind == "compensation-decision":
            rec.my_vote = message.get("compensationDecisions")
        elif kind == "chat-with-players" and self.phase in CHAT_PHASES:
            rec.chat.append(
                {"phase": self.phase, "sender": self.number, "to": list(message.get("to") or []),
                 "text": message.get("text")}
            )

    def owner_numbers(self) -> list[int]:
        """Seats of the owners, from players-known when it arrived, else the real server's fixed layout."""
        known = [p.get("number") for p in self.players if p.get("role") == ROLE_OWNER]
        return [n for n in known if isinstance(n, int)] or [n for n in range(1, 7) if n != DEVELOPER_SEAT]

    def tag_of(self, number: Any) -> str:
        """The tag players-known gave this seat, else the real server's tag for it (prompts ask for it often)."""
        cached = self._tags
        if cached is None or cached[0] is not self.players:
            tags: dict[Any, str] = {}
            for p in self.players:
                n, tag = p.get("number"), p.get("tag")
                if isinstance(tag, str) and (n is None or isinstance(n, int | float | str)):
                    tags.setdefault(n, tag)
            cached = self._tags = (self.players, tags)
        try:
            tag = cached[1].get(number)
        except TypeError:  # an unhashable "number" (a list): compare with each player's, as == does
            tag = next((p["tag"] for p in self.players if p.get("number") == number and isinstance(p.get("tag"), str)),
                       None)
        if tag is not None:
            return tag
        try:
            return seat_tag(int(number))
        except (TypeError, ValueError):
            return f"player {number}"


def apply_to_all(views: Iterable[PlayerView], frame: Any) -> None:
    """view.apply(frame) for every view, with the frame read once (the dataset builder replays broadcasts to six
    views, hundreds of times per game)."""
    handler = _HANDLERS.get(frame.get("eventType")) if isinstance(frame, dict) and frame.get("type") == "event" \
        else None
    data = frame.get("data") if handler is not None else None
    if handler is None or not isinstance(data, dict):  # anything unusual: the general path
        for view in views:
            view.apply(frame)
        return
    for view in views:
        handler(view, data)


def _on_status(view: PlayerView, data: dict[str, Any]) -> None:
    joined = data.get("joined")
    if isinstance(joined, dict):
        view._set_seat(joined.get("number"), joined.get("role"), joined.get("tag"))
        if view.current.values is None:
            view._set_values(joined.get("property"))


def _on_assign_role(view: PlayerView, data: dict[str, Any]) -> None:
    view._set_seat(data.get("number"), data.get("role"), data.get("tag"))
    view._set_values(data.get("property"))
    if isinstance(data.get("boundaries"), dict):
        view.boundaries = data["boundaries"]


def _on_players_known(view: PlayerView, data: dict[str, Any]) -> None:
    players = data.get("players")
    if isinstance(players, list):
        view.players = [p for p in players if isinstance(p, dict)]


def _on_phase_transition(view: PlayerView, data: dict[str, Any]) -> None:
    round_number, phase = data.get("round"), data.get("phase")
    if isinstance(round_number, int) and isinstance(phase, int):
        if round_number != view.round:
            old = view.current
            view.round = round_number
            new = view.record(round_number)
            if view.phase == 0 and phase >= 1 and new.values is None:
                # A client that joined after the round's phase-0 broadcast (e.g. round 1 without a practice
                # round) gets assign-role while it still believes it is in round 0: those values are this round's.
                new.values, new.values_source = old.values, old.values_source
                old.values = old.values_source = None
            if old == RoundRecord(old.round):
                del view.rounds[old.round]  # a round this player never saw anything of (joined later)
        view.phase = phase
        if phase == 0:
            view.ready_acked = False
            view.deadline_ms = None
        view.server_action = None


def _on_set_timer(view: PlayerView, data: dict[str, Any]) -> None:
    end = data.get("end")
    if isinstance(end, int | float) and not isinstance(end, bool):
        view.deadline_ms = int(end)


def _on_reset_timer(view: PlayerView, data: dict[str, Any]) -> None:
    view.deadline_ms = None


def _on_requests(view: PlayerView, data: dict[str, Any]) -> None:
    items = data.get("compensationRequests")
    if isinstance(items, list):
        view.current.requests = {
            item["number"]: item.get("compensationRequests")
            for item in items
            if isinstance(item, dict) and isinstance(item.get("number"), int) and item["number"] != view.number
        }


def _on_offer_made(view: PlayerView, data: dict[str, Any]) -> None:
    view.current.offer = data.get("compensationOffers")


def _on_message(view: PlayerView, data: dict[str, Any]) -> None:
    view.current.chat.append(
        {"phase": view.phase, "sender": data.get("sender"), "to": data.get("to"),
         "text": data.get("text")}
    )


def _on_final_profit(view: PlayerView, data: dict[str, Any]) -> None:
    view.current.outcome = {k: data.get(k) for k in ("condition", "tally", "value", "compensation")}


def _on_round_summary(view: PlayerView, data: dict[str, Any]) -> None:
    round_number = data.get("round")
    rec = view.record(round_number) if isinstance(round_number, int) else view.current
    if rec.outcome is None:
        rec.outcome = {k: data.get(k) for k in ("condition", "tally", "value", "compensation")}
    profit = data.get("profit")
    if isinstance(profit, int | float) and not isinstance(profit, bool):
        rec.profit = int(profit)


def _on_request_ack(view: PlayerView, data: dict[str, Any]) -> None:
    view.current.my_request = data.get("compensationRequests")


def _on_offer_ack(view: PlayerView, data: dict[str, Any]) -> None:
    if view.role == ROLE_DEVELOPER:
        view.current.offer = data.get("compensationOffers")


def _on_instruction(view: PlayerView, data: dict[str, Any]) -> None:
    # The 2024 branch nested the action-required event inside an `instruction` event.
    nested = data.get("data") if data.get("eventType") == "action-required" else data.get("action-required")
    if isinstance(nested, dict):
        view.server_action = nested


_HANDLERS = {
    **SEAT_EVENT_HANDLERS,
    "status": _on_status,
    "assign-role": _on_assign_role,
    "players-known": _on_players_known,
    "phase-transition": _on_phase_transition,
    "set-timer": _on_set_timer,
    "reset-timer": _on_reset_timer,
    "compensation-requests-received": _on_requests,
    "compensation-offer-made": _on_offer_made,
    "message-received": _on_message,
    "final-profit": _on_final_profit,
    "round-summary": _on_round_summary,
    "compensation-request-received": _on_request_ack,
    "compensation-offer-received": _on_offer_ack,
    "instruction": _on_instruction,
}
# What each event type does to a view, by eventType: handler(view, data) with data an object. The dataset builder
# folds a log's server-log records with these directly, without building frames.
EVENT_HANDLERS: Mapping[str, Callable[[PlayerView, dict[str, Any]], None]] = MappingProxyType(_HANDLERS)
