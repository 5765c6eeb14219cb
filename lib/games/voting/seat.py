"""lib.games.protocols.SeatRules for the voting game: what an agent in one seat asks of it.

- Due: owners' requests in phase 3 and votes in phase 6, the developer's offer in phase 4, and chat in phases 2 and
  5 when the agent talks (lib.games.voting.actions.action_due); each once per phase.
- The server's own action-required is obeyed only for this seat's role and the current phase; one that arrives
  just before its phase begins is kept for it.
- Fallback: the baseline's request, offer or vote (lib.games.voting.policy); chat has none.
- Everything sent passes lib.games.voting.actions.validate_action against the decision's view: plain integers in
  range, right role, right phase.
- Resync: lib.games.voting.resync folds GET /games/status into the view. After a rejoin a request, offer or vote
  the server may not have is sent again (a repeat only replaces the first); a chat is, only when the snapshot says
  it did not arrive, since a second copy would reach every recipient.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lib.games.protocols import Obey, Policy, Resynced
from lib.games.voting.actions import (
    CHAT,
    SPECS,
    action_due,
    build_action_required,
    server_action_type,
    validate_action,
)
from lib.games.voting.policy import BaselinePolicy, amount_cap, fallback_action
from lib.games.voting.resync import apply_resync
from lib.games.voting.view import PlayerView
from lib.ibex.params import ROLE_NAMES, GameParams

# Acknowledgements of our own actions: the server has them.
ACKS = {"compensation-request-received": "compensation-request", "compensation-offer-received": "compensation-offer",
        "compensation-decision-received": "compensation-decision"}


def view_snapshot(view: PlayerView) -> PlayerView:
    """A copy of the view that later frames cannot change, for a decision that outlives the frame.

    The view replaces (never mutates) the values it stores, except chat lists and request dicts, which are copied
    here; this is much cheaper than a deepcopy, and it runs for every decision of every agent.
    """
    rounds = {number: dataclasses.replace(rec, chat=list(rec.chat), requests=dict(rec.requests))
              for number, rec in view.rounds.items()}
    return dataclasses.replace(view, rounds=rounds, players=list(view.players), errors=list(view.errors))


class VotingSeat:
    """One seat of the voting game. It takes no options: the voting agent's settings are lib.agents' own."""

    def configured(self, **options: Any) -> VotingSeat:
        if options:
            raise TypeError(f"the voting game takes no seat options (got {', '.join(sorted(options))})")
        return self

    def new_view(self, game_id: int, params: GameParams | None) -> PlayerView:
        view = PlayerView(game_id=game_id)
        if params is not None:
            view.round_count = params.round_count
            view.practice_round = params.practice_round
        return view

    def snapshot(self, view: PlayerView) -> PlayerView:
        return view_snapshot(view)

    def due(self, view: PlayerView, *, chat: bool) -> str | None:
        return action_due(view, chat=chat)

    def cadence(self, wire_type: str) -> None:
        return None  # every voting action is once per phase

    def version(self, view: PlayerView) -> int:
        return 0

    def phase_closing(self, view: PlayerView) -> bool:
        return False  # a phase ends with its phase-transition

    def server_action(self, view: PlayerView, data: dict[str, Any]) -> Obey:
        wire_type = server_action_type(data)
        spec = SPECS.get(wire_type) if wire_type else None
        if spec is None:
            return Obey(None, "unknown action type")
        why = None
        if spec.role is not None and spec.role != view.role:
            why = f"{wire_type} is not an action of role {view.role}"
        elif view.phase not in spec.phases:
            why = f"{wire_type} does not belong to phase {view.phase}"
        return Obey(wire_type, why, next_phase=view.phase + 1 in spec.phases)

    def acknowledged(self, frame: dict[str, Any]) -> str | None:
        kind = frame.get("eventType") if frame.get("type") == "event" else None
        return ACKS.get(kind) if isinstance(kind, str) else None

    def race(self, view: PlayerView, message: str) -> None:
        return None  # one answer per phase, checked before it goes out: the game cannot move under it

    def cap(self, view: PlayerView, params: GameParams | None) -> int:
        return amount_cap(view, params)

    def action_required(self, view: PlayerView, wire_type: str, *, cap: int | None,
                        timer_seconds: float | None) -> dict[str, Any]:
        return build_action_required(view, wire_type, cap=cap or 0, timer_seconds=timer_seconds)

    def check_answer(self, answer: dict[str, Any], view: PlayerView, wire_type: str,
                     cap: int | None) -> dict[str, Any]:
        return answer  # checked once, just before it is sent (validate)

    def validate(self, message: dict[str, Any], view: PlayerView, snapshot: PlayerView, wire_type: str,
                 cap: int | None) -> dict[str, Any]:
        return validate_action(message, snapshot, wire_type, cap=cap)

    def fallback(self, view: PlayerView, snapshot: PlayerView, wire_type: str, cap: int | None,
                 repeats: int) -> tuple[dict[str, Any] | None, str | None]:
        message = fallback_action(snapshot, wire_type, cap or 0)
        return message, "chat has no fallback: nothing sent" if message is None and wire_type == CHAT else None

    def baseline_policy(self, seed: int = 0) -> Policy:
        return BaselinePolicy(seed=seed)

    def seat_lookup(self, view: PlayerView) -> bool:
        return False  # assign-role names the seat

    def learn_seat(self, view: PlayerView, game_data: dict[str, Any]) -> bool:
        return False

    def resync(self, view: PlayerView, game_data: dict[str, Any]) -> Resynced:
        sync = apply_resync(view, game_data)
        return Resynced(set(sync.acted), {"round": sync.round, "phase": sync.phase, "deadline_ms": sync.deadline_ms,
                                          "acted": sorted(sync.acted), "ignored_result": sync.ignored_result,
                                          "chat_added": sync.chat_added, "frames": sync.frames})

    def resend(self, view: PlayerView, wire_type: str, *, acted: set[str], acknowledged: bool, delivered: bool,
               snapshot: bool) -> tuple[bool, dict[str, Any] | None]:
        if wire_type in acted or acknowledged:
            return False, None
        if wire_type == CHAT and not snapshot and delivered:
            return False, {"event": "chat not re-sent: no snapshot says whether it arrived", "round": view.round,
                           "phase": view.phase}
        return True, {"event": "re-sending an answer the server may not have", "wire_type": wire_type}

    def decision_fields(self, view: PlayerView, wire_type: str, action: dict[str, Any] | None) -> dict[str, Any]:
        return {"role": ROLE_NAMES.get(view.role) if view.role is not None else None, "action_type": wire_type,
                "private_values": view.current.values}


SEAT = VotingSeat()
