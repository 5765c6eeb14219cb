"""What one seat knows of an ultimatum game, folded from the server's frames one by one.

The agent folds live frames, the dataset builder (examples.py) the same frames replayed from the log's
`server-log`; prompts are built from this view only, so that a training prompt and a play-time prompt are the same
text. The seat's own sent messages change nothing here (`apply_sent`): what it did comes back as the server's
acknowledgement, which the log holds too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.games.ultimatum.rules import ROLE_NAMES, seat_role, seat_tag


@dataclass
class RoundRecord:
    """One round as this seat saw it."""

    offer: int | None = None  # the proposal: the proposer's acknowledged offer, or the one the responder was shown
    accepted: bool | None = None  # the response: acknowledged to the responder, announced to both with the result
    payoff: int | None = None  # this seat's payoff, from round-result


@dataclass
class UltimatumView:
    """The game as seen by one seat; `apply` folds a server frame."""

    game_id: int | None = None
    number: int | None = None
    role: int | None = None
    tag: str | None = None
    pie: int | None = None
    round: int = 0
    phase: int = 0
    deadline_ms: int | None = None  # end of the current phase's timer (server clock, epoch ms)
    round_count: int | None = None
    rounds: dict[int, RoundRecord] = field(default_factory=dict)
    ready_acked: bool = False
    game_over: bool = False
    reward: dict[str, Any] | None = None
    server_action: dict[str, Any] | None = None  # this game's server never sends an action-required
    errors: list[str] = field(default_factory=list)  # error frames received, newest last

    @property
    def current(self) -> RoundRecord:
        return self.rounds.setdefault(self.round, RoundRecord())

    @property
    def role_name(self) -> str | None:
        return ROLE_NAMES.get(self.role) if self.role is not None else None

    def apply(self, frame: Any) -> None:
        """Fold one frame (any shape: what is not understood changes nothing)."""
        if not isinstance(frame, dict):
            return
        if frame.get("type") == "error":
            self.errors.append(str(frame.get("message")))
            return
        if frame.get("type") != "event" or not isinstance(frame.get("data"), dict):
            return
        handler = _HANDLERS.get(frame.get("eventType"))
        if handler is not None:
            handler(self, frame["data"])

    def apply_sent(self, message: dict[str, Any]) -> None:
        """Nothing: the server's acknowledgement says what it has (and the log replays it)."""

    def set_seat(self, number: Any) -> None:
        if isinstance(number, int) and not isinstance(number, bool) and number in (1, 2):
            self.number, self.role, self.tag = number, seat_role(number), seat_tag(number)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _on_phase_transition(view: UltimatumView, data: dict[str, Any]) -> None:
    number, phase = _whole(data.get("round")), _whole(data.get("phase"))
    if number is None or phase is None:
        return
    view.round, view.phase = number, phase
    if phase == 0:
        view.ready_acked = False
        view.deadline_ms = None


def _on_set_timer(view: UltimatumView, data: dict[str, Any]) -> None:
    end = data.get("end")
    if isinstance(end, int | float) and not isinstance(end, bool):
        view.deadline_ms = int(end)


def _on_reset_timer(view: UltimatumView, data: dict[str, Any]) -> None:
    view.deadline_ms = None


def _on_ready(view: UltimatumView, data: dict[str, Any]) -> None:
    view.ready_acked = True


def _on_assign_role(view: UltimatumView, data: dict[str, Any]) -> None:
    view.set_seat(data.get("number"))
    view.pie = _whole(data.get("pie"))


def _on_offer(view: UltimatumView, data: dict[str, Any]) -> None:
    view.current.offer = _whole(data.get("offer"))


def _on_response(view: UltimatumView, data: dict[str, Any]) -> None:
    accept = data.get("accept")
    view.current.accepted = accept if isinstance(accept, bool) else None


def _on_round_result(view: UltimatumView, data: dict[str, Any]) -> None:
    rec = view.current
    rec.offer = _whole(data.get("offer"))
    accepted = data.get("accepted")
    rec.accepted = accepted if isinstance(accepted, bool) else None
    rec.payoff = _whole(data.get("payoff"))


def _on_reward(view: UltimatumView, data: dict[str, Any]) -> None:
    view.reward = data


def _on_game_over(view: UltimatumView, data: dict[str, Any]) -> None:
    view.game_over = True


_HANDLERS = {
    "phase-transition": _on_phase_transition, "set-timer": _on_set_timer, "reset-timer": _on_reset_timer,
    "ready-received": _on_ready, "assign-role": _on_assign_role, "offer-received": _on_offer,
    "offer-made": _on_offer, "response-received": _on_response, "round-result": _on_round_result,
    "reward": _on_reward, "game-over": _on_game_over,
}
