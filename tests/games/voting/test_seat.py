"""lib.games.voting.seat: what the one agent (lib.agents.agent) asks the voting game about its seat."""

from __future__ import annotations

import pytest

from lib.games import game_for
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST
from lib.games.voting.seat import SEAT
from lib.games.voting.view import PlayerView
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER


def owner(phase: int) -> PlayerView:
    return PlayerView(game_id=4, number=2, role=ROLE_OWNER, phase=phase, round=1)


def test_the_voting_game_takes_no_seat_options():
    assert game_for("voting").seat.configured() is SEAT
    with pytest.raises(TypeError, match="trade_interval"):
        SEAT.configured(trade_interval=1.0)


def test_every_action_is_once_per_phase_and_chat_only_when_the_agent_talks():
    assert SEAT.due(owner(3), chat=False) == REQUEST and SEAT.cadence(REQUEST) is None
    assert SEAT.due(owner(2), chat=False) is None and SEAT.due(owner(2), chat=True) == CHAT
    assert not SEAT.phase_closing(owner(3))


def test_a_server_action_required_is_obeyed_for_this_role_and_phase_or_kept_for_the_next_phase():
    assert SEAT.server_action(owner(3), {"actionType": "SubmitCompensationRequest"}).refusal is None
    early = SEAT.server_action(owner(5), {"actionType": "SubmitCompensationDecision"})
    assert early.wire_type == DECISION and "phase 5" in early.refusal and early.next_phase
    wrong = SEAT.server_action(owner(4), {"actionType": "SubmitCompensationOffer"})
    assert wrong.wire_type == OFFER and f"role {ROLE_OWNER}" in wrong.refusal and not wrong.next_phase
    unknown = SEAT.server_action(owner(3), {"actionType": "Dance"})
    assert unknown.wire_type is None and unknown.refusal == "unknown action type"


def test_acknowledgements_name_the_action_the_server_has():
    assert SEAT.acknowledged({"type": "event", "eventType": "compensation-offer-received"}) == OFFER
    assert SEAT.acknowledged({"type": "event", "eventType": "phase-transition"}) is None
    assert SEAT.acknowledged({"type": "info", "message": "joined"}) is None


def test_after_a_rejoin_a_chat_is_not_repeated_without_a_snapshot_but_a_request_is():
    view = owner(2)
    again, note = SEAT.resend(view, CHAT, acted=set(), acknowledged=False, delivered=True, snapshot=False)
    assert not again and note == {"event": "chat not re-sent: no snapshot says whether it arrived", "round": 1,
                                  "phase": 2}
    assert SEAT.resend(view, CHAT, acted=set(), acknowledged=False, delivered=True, snapshot=True)[0]
    assert SEAT.resend(owner(3), REQUEST, acted=set(), acknowledged=False, delivered=True, snapshot=False)[0]
    assert SEAT.resend(owner(3), REQUEST, acted=set(), acknowledged=True, delivered=True, snapshot=False) == \
        (False, None)
    assert SEAT.resend(owner(3), REQUEST, acted={REQUEST}, acknowledged=False, delivered=True, snapshot=True) == \
        (False, None)


def test_chat_has_no_fallback_and_says_so():
    assert SEAT.fallback(owner(2), owner(2), CHAT, 0, 0) == (None, "chat has no fallback: nothing sent")


def test_the_decisions_table_records_the_role_the_wire_type_and_the_values():
    view = PlayerView(game_id=4, number=1, role=ROLE_DEVELOPER, phase=4, round=1)
    fields = SEAT.decision_fields(view, OFFER, None)
    assert fields == {"role": "developer", "action_type": OFFER, "private_values": view.current.values}
