"""lib.games.protocols.SeatRules for the ultimatum game: what an agent in one seat asks of it.

Due: the proposer's offer in phase 2, the responder's answer in phase 3 once it was shown an offer; each once per
phase, never repeated. The server sends no action-required of its own. Fallback: the baseline's action. Resync: the
status snapshot says the round, the phase and what the server already has of this seat.
"""

from __future__ import annotations

import copy
from typing import Any

from lib.games.protocols import Obey, Policy, Resynced
from lib.ibex.params import GameParams
from tests.games.ultimatum import actions
from tests.games.ultimatum.actions import OFFER, RESPONSE
from tests.games.ultimatum.policy import Baseline, baseline_action
from tests.games.ultimatum.rules import LAST_PHASE, RESPONSE_PHASE, ROLE_NAMES, ROLE_PROPOSER, ROLE_RESPONDER, pie
from tests.games.ultimatum.view import UltimatumView

ACKS = {"offer-received": OFFER, "response-received": RESPONSE}


class UltimatumSeat:
    """One seat of the ultimatum game; it takes no options."""

    def configured(self, **options: Any) -> UltimatumSeat:
        if options:
            raise TypeError(f"the ultimatum game takes no seat options (got {', '.join(sorted(options))})")
        return self

    def new_view(self, game_id: int, params: GameParams | None) -> UltimatumView:
        view = UltimatumView(game_id=game_id)
        if params is not None:
            view.round_count = params.round_count
        return view

    def snapshot(self, view: UltimatumView) -> UltimatumView:
        return copy.deepcopy(view)  # two seats, a few rounds: a deep copy is cheap

    def due(self, view: UltimatumView, *, chat: bool) -> str | None:
        return actions.due(view)

    def cadence(self, wire_type: str) -> None:
        return None

    def version(self, view: UltimatumView) -> int:
        return 0

    def phase_closing(self, view: UltimatumView) -> bool:
        return False

    def server_action(self, view: UltimatumView, data: dict[str, Any]) -> Obey:
        return Obey(None, "the ultimatum game's server sends no action-required")

    def acknowledged(self, frame: dict[str, Any]) -> str | None:
        kind = frame.get("eventType") if frame.get("type") == "event" else None
        return ACKS.get(kind) if isinstance(kind, str) else None

    def race(self, view: UltimatumView, message: str) -> None:
        return None  # one answer per phase: the game cannot move under it, so every error frame is a refusal

    def cap(self, view: UltimatumView, params: GameParams | None) -> int:
        return view.pie if view.pie is not None else pie(params) if params is not None else 0

    def action_required(self, view: UltimatumView, wire_type: str, *, cap: int | None,
                        timer_seconds: float | None) -> dict[str, Any]:
        return actions.action_required(view, wire_type, cap=cap or 0, timer_seconds=timer_seconds)

    def check_answer(self, answer: dict[str, Any], view: UltimatumView, wire_type: str,
                     cap: int | None) -> dict[str, Any]:
        return actions.check(answer, view, wire_type, cap)

    def validate(self, message: dict[str, Any], view: UltimatumView, snapshot: UltimatumView, wire_type: str,
                 cap: int | None) -> dict[str, Any]:
        return actions.check(message, snapshot, wire_type, cap)

    def fallback(self, view: UltimatumView, snapshot: UltimatumView, wire_type: str, cap: int | None,
                 repeats: int) -> tuple[dict[str, Any] | None, str | None]:
        return baseline_action(snapshot, wire_type, cap or 0), None

    def baseline_policy(self, seed: int = 0) -> Policy:
        return Baseline(seed=seed)

    def seat_lookup(self, view: UltimatumView) -> bool:
        return False  # assign-role names the seat

    def learn_seat(self, view: UltimatumView, game_data: dict[str, Any]) -> bool:
        return False

    def resync(self, view: UltimatumView, game_data: dict[str, Any]) -> Resynced:
        game, player = game_data.get("game") or {}, game_data.get("player") or {}
        round_number, phase = game.get("round"), game.get("phase")
        if isinstance(round_number, int) and isinstance(phase, int):
            view.round, view.phase = round_number, phase
        view.set_seat(player.get("number"))
        if isinstance(game.get("pie"), int):
            view.pie = game["pie"]
        if isinstance(game.get("offer"), int):
            view.current.offer = game["offer"]
        if isinstance(game.get("accepted"), bool):
            view.current.accepted = game["accepted"]
        view.game_over = view.game_over or game.get("over") is True
        acted = set()
        if view.role == ROLE_PROPOSER and view.current.offer is not None and view.phase >= 2:
            acted.add(OFFER)
        if view.role == ROLE_RESPONDER and view.current.accepted is not None and view.phase >= RESPONSE_PHASE:
            acted.add(RESPONSE)
        return Resynced(acted, {"round": view.round, "phase": view.phase, "acted": sorted(acted),
                                "last_phase": view.phase == LAST_PHASE})

    def resend(self, view: UltimatumView, wire_type: str, *, acted: set[str], acknowledged: bool, delivered: bool,
               snapshot: bool) -> tuple[bool, dict[str, Any] | None]:
        if wire_type in acted or acknowledged:
            return False, None
        return True, {"event": "re-sending an answer the server may not have", "wire_type": wire_type}

    def decision_fields(self, view: UltimatumView, wire_type: str, action: dict[str, Any] | None) -> dict[str, Any]:
        return {"role": ROLE_NAMES.get(view.role) if view.role is not None else None, "action_type": wire_type,
                "private_values": None}


SEAT = UltimatumSeat()
