"""The player view, the action rules and the prompts, driven by frames in the real server's shapes."""

from __future__ import annotations

import json

import pytest

from lib.games.voting.actions import (
    CHAT,
    DECISION,
    OFFER,
    REQUEST,
    ActionError,
    action_due,
    answer_schema,
    build_action_required,
    parse_answer,
    server_action_type,
    validate_action,
)
from lib.games.voting.prompts import build_messages
from lib.games.voting.view import PlayerView, apply_to_all
from lib.ibex.params import parameters_from_dict
from tests.helpers.frames import PLAYERS, event, phase_start, round_start

CAP = parameters_from_dict().amount_cap()
T0 = 1795624173543


def owner_view_in_phase(phase: int, seat: int = 3) -> PlayerView:
    view = PlayerView(game_id=15, round_count=2, practice_round=True)
    for frame in round_start(0, seat, [468000, 164000], T0):
        view.apply(frame)
    for p in range(2, phase + 1):
        extra = []
        if p == 5:
            extra = [event("compensation-offer-made", {"compensationOffers": [None, 335000]})]
        for frame in phase_start(0, p, T0 + p * 10000, *extra):
            view.apply(frame)
    return view


def developer_view_in_phase_4() -> PlayerView:
    view = PlayerView(game_id=15)
    for frame in round_start(1, 2, [206000, 1138000], T0):
        view.apply(frame)
    requests = event("compensation-requests-received", {"compensationRequests": [
        {"number": 1, "compensationRequests": [None, 380000]},
        {"number": 2, "compensationRequests": None},
        {"number": 3, "compensationRequests": [None, 490000]},
        {"number": 4, "compensationRequests": [0, 0]},
    ]})
    for p in (2, 3):
        for frame in phase_start(1, p, T0 + p):
            view.apply(frame)
    for frame in phase_start(1, 4, T0 + 44000, requests):
        view.apply(frame)
    return view


def test_view_folds_a_round_start_into_seat_role_values_and_deadline():
    view = owner_view_in_phase(1, seat=3)
    assert (view.number, view.role, view.tag) == (3, 3, "Owner 2")
    assert view.current.values == [468000, 164000]
    assert view.phase == 1 and view.round == 0
    assert view.deadline_ms == T0
    assert [p["number"] for p in view.players] == [1, 2, 3, 4, 5, 6]


def test_reset_timer_clears_the_deadline_and_set_timer_sets_the_next_one():
    view = owner_view_in_phase(3)
    assert view.deadline_ms == T0 + 30000
    view.apply(event("reset-timer"))
    assert view.deadline_ms is None


def test_developer_sees_every_owner_request_but_not_its_own_slot():
    view = developer_view_in_phase_4()
    assert view.current.requests == {1: [None, 380000], 3: [None, 490000], 4: [0, 0]}


def test_values_received_before_a_missed_phase_zero_belong_to_the_new_round():
    # Without a practice round the first phase-0 broadcast (round 1) precedes every join.
    view = PlayerView(game_id=7)
    for frame in round_start(1, 1, [500000, 200000], T0):
        view.apply(frame)
    assert view.round == 1
    assert view.current.values == [500000, 200000]
    assert 0 not in view.rounds


def test_round_summary_and_final_profit_land_in_their_round():
    view = owner_view_in_phase(6)
    view.apply_sent({"gameId": 15, "type": DECISION, "compensationDecisions": [1]})
    view.apply(event("final-profit", {"condition": 1, "tally": 4, "value": 164000, "compensation": 335000}))
    view.apply(event("round-end", {"round": 0}))
    view.apply(event("round-summary", {"round": 0, "condition": 1, "value": 164000, "tally": 4,
                                       "compensation": 335000, "profit": 499000}))
    view.apply(event("phase-transition", {"round": 1, "phase": 0}))
    assert view.rounds[0].profit == 499000
    assert view.rounds[0].my_vote == [1]
    assert view.rounds[0].outcome["condition"] == 1
    assert view.round == 1 and view.phase == 0 and not view.ready_acked
    view.apply(event("ready-received"))
    assert view.ready_acked


def test_chat_is_recorded_with_its_phase_sent_and_received():
    view = owner_view_in_phase(2, seat=1)
    view.apply(event("message-received", {"sender": 2, "to": [1, 3, 4, 5, 6], "number": 0, "text": "hi", "time": 1}))
    view.apply_sent({"gameId": 15, "type": CHAT, "to": [2], "text": "how much?"})
    assert view.current.chat == [
        {"phase": 2, "sender": 2, "to": [1, 3, 4, 5, 6], "text": "hi"},
        {"phase": 2, "sender": 1, "to": [2], "text": "how much?"},
    ]


def test_error_frames_are_kept_and_change_nothing_else():
    view = owner_view_in_phase(3)
    view.apply({"error": "Game 99999 not found"})
    view.apply({"type": "error", "message": "Game 15: could not find an handler for make-me-rich"})
    view.apply("not a frame")
    assert view.errors == ["Game 99999 not found", "Game 15: could not find an handler for make-me-rich"]
    assert view.phase == 3


def test_a_frame_applied_to_all_views_at_once_changes_each_as_applying_it_to_each():
    frames = [*round_start(1, 1, [400000, 200000], T0), *phase_start(1, 2, T0 + 1),
              event("message-received", {"sender": 2, "to": [1, 3], "number": 0, "text": "hi", "time": 1}),
              event("reward", "not an object"), event("reward", {"amount": 3}), event("game-over"),
              {"error": "Game 99999 not found"}, {"type": "error", "message": "no handler"}, "not a frame",
              {"type": "notice", "message": "Phase 2 has begun."}, event("no-such-event", {"x": 1})]
    one_by_one = [PlayerView(game_id=15, number=seat) for seat in (1, 3, 4)]
    all_at_once = [PlayerView(game_id=15, number=seat) for seat in (1, 3, 4)]
    for frame in frames:
        for view in one_by_one:
            view.apply(frame)
        apply_to_all(all_at_once, frame)
    assert all_at_once == one_by_one
    assert one_by_one[0].errors == ["Game 99999 not found", "no handler"] and one_by_one[0].reward == {"amount": 3}


@pytest.mark.parametrize("phase,seat,chat,due", [
    (3, 1, False, REQUEST), (4, 1, False, None), (6, 3, False, DECISION), (2, 1, False, None), (2, 1, True, CHAT),
    (5, 4, True, CHAT), (7, 1, True, None), (1, 1, True, None),
])
def test_action_due_by_role_and_phase(phase, seat, chat, due):
    assert action_due(owner_view_in_phase(phase, seat), chat=chat) == due


def test_developer_owes_the_offer_in_phase_4_only():
    view = developer_view_in_phase_4()
    assert action_due(view) == OFFER
    view.apply(event("phase-transition", {"round": 1, "phase": 5}))
    assert action_due(view) is None


def test_action_required_message_has_the_contract_shape_and_real_deadline():
    view = owner_view_in_phase(3)
    msg = build_action_required(view, REQUEST, cap=CAP)
    assert msg["type"] == "event" and msg["eventType"] == "action-required"
    data = msg["data"]
    assert set(data) == {"actionType", "instructions", "deadline", "format", "actionRequiredBy", "additionalInfo"}
    assert data["actionType"] == "SubmitCompensationRequest"
    assert data["actionRequiredBy"] == "2026-11-25T16:30:03.543Z"
    assert data["deadline"] == (
        "You must submit your compensation request before the timer ends at 2026-11-25T16:30:03.543Z.")
    assert data["format"] == '{"gameId":15,"type":"compensation-request","compensationRequests":[null,X]}'
    assert str(CAP) in data["additionalInfo"]


def test_without_a_timestamp_the_deadline_states_the_phase_length():
    view = owner_view_in_phase(3)
    view.deadline_ms = None
    data = build_action_required(view, REQUEST, cap=CAP, timer_seconds=120)["data"]
    assert data["deadline"] == "You must submit your compensation request before the phase timer of 120 seconds ends."


def test_valid_answers_become_exact_wire_messages():
    owner = owner_view_in_phase(3)
    assert parse_answer('{"gameId":15,"type":"compensation-request","compensationRequests":[null,400000]}',
                        owner, REQUEST, cap=CAP) == {"gameId": 15, "type": REQUEST,
                                                     "compensationRequests": [None, 400000]}
    # a model copying another game's id must not send the action elsewhere; a fence is tolerated
    assert parse_answer('```json\n{"gameId":99,"type":"compensation-request","compensationRequests":[0,5]}\n```',
                        owner, REQUEST, cap=CAP)["gameId"] == 15
    dev = developer_view_in_phase_4()
    assert validate_action({"type": OFFER, "compensationOffers": [None, 335000]}, dev, OFFER, cap=CAP) == {
        "gameId": 15, "type": OFFER, "compensationOffers": [None, 335000]}
    voter = owner_view_in_phase(6)
    assert validate_action({"type": DECISION, "compensationDecisions": [0]}, voter, DECISION, cap=CAP)[
        "compensationDecisions"] == [0]


@pytest.mark.parametrize("answer,reason", [
    ('{"type":"compensation-request","compensationRequests":[null,-50000]}', "must not be negative"),
    ('{"type":"compensation-request","compensationRequests":[null,1000000000000000]}', "at most"),
    ('{"type":"compensation-request","compensationRequests":[null,"a lot"]}', "not the string"),
    ('{"type":"compensation-request","compensationRequests":[null,400000.5]}', "without decimals"),
    ('{"type":"compensation-request","compensationRequests":[null,400000.0]}', "without decimals"),
    ('{"type":"compensation-request","compensationRequests":[null,true]}', "whole number"),
    ('{"type":"compensation-request","compensationRequests":5}', "list of two"),
    ('{"type":"compensation-request"}', "list of two"),
    ('{"type":"compensation-request","compensationRequests":[100,200]}', "must be null"),
    ('{"type":"compensation-offer","compensationOffers":[null,1]}', "not your action"),
    ('{"type":"make-me-rich"}', '"type" must be'),
    ('{"type":"compensation-request","compensationRequests":[null,1],"note":"x"}', "unexpected field"),
    ("[1,2]", "one JSON object"),
    ("I request 400000", "not valid JSON"),
    ("", "empty"),
])
def test_owner_request_rejections_name_the_problem(answer, reason):
    with pytest.raises(ActionError, match=reason):
        parse_answer(answer, owner_view_in_phase(3), REQUEST, cap=CAP)


@pytest.mark.parametrize("vote", [[7], [0, 1], ["it's yes"], [], 1, [True], None])
def test_only_zero_or_one_votes_pass(vote):
    with pytest.raises(ActionError, match="compensationDecisions"):
        validate_action({"type": DECISION, "compensationDecisions": vote}, owner_view_in_phase(6), DECISION, cap=CAP)


def test_wrong_role_and_wrong_phase_are_rejected():
    dev = developer_view_in_phase_4()
    dev.phase = 3
    with pytest.raises(ActionError, match="only the owner"):
        validate_action({"type": REQUEST, "compensationRequests": [None, 12345]}, dev, REQUEST, cap=CAP)
    owner = owner_view_in_phase(5)
    with pytest.raises(ActionError, match="phase 3"):
        validate_action({"type": REQUEST, "compensationRequests": [None, 1]}, owner, REQUEST, cap=CAP)


@pytest.mark.parametrize("to,text,reason", [
    ([], "hi", "non-empty list"), ([3], "hi", "other than your own"), ([99], "hi", "1-6"), ([1, 1], "hi", "distinct"),
    (["1"], "hi", "1-6"), ([1], "  ", "non-empty string"), ([1], "x" * 501, "at most 500"),
    ([1], "caf\ud800", "lone surrogate"),
])
def test_chat_rules(to, text, reason):
    with pytest.raises(ActionError, match=reason):
        validate_action({"type": CHAT, "to": to, "text": text}, owner_view_in_phase(2, seat=3), CHAT, cap=CAP)


def test_human_mode_keeps_unusual_choices_but_not_malformed_ones():
    owner = owner_view_in_phase(3)
    assert validate_action({"type": REQUEST, "compensationRequests": [None, 10**15]}, owner, REQUEST,
                           cap=None)["compensationRequests"] == [None, 10**15]
    with pytest.raises(ActionError):
        validate_action({"type": REQUEST, "compensationRequests": [None, "a lot"]}, owner, REQUEST, cap=None)
    chatter = owner_view_in_phase(2)
    assert validate_action({"type": CHAT, "to": [1], "text": "x" * 900}, chatter, CHAT, cap=None)["text"] == "x" * 900
    with pytest.raises(ActionError, match="lone surrogate"):
        validate_action({"type": CHAT, "to": [1], "text": "\ud800"}, chatter, CHAT, cap=None)


def test_server_sent_action_required_is_understood_top_level_and_nested():
    view = owner_view_in_phase(3)
    data = {"actionType": "SubmitCompensationRequest", "instructions": "...", "deadline": "...",
            "format": "{'gameId':15,'type':'compensation-request','compensationRequests':[null,X]}",
            "actionRequiredBy": "t", "additionalInfo": ""}
    view.apply(event("action-required", data))
    assert server_action_type(view.server_action) == REQUEST
    view.server_action = None
    view.apply(event("instruction", {"type": "event", "eventType": "action-required", "data": data}))
    assert view.server_action == data
    assert server_action_type({"actionType": "Other", "format": "{'type':'compensation-decision'}"}) == DECISION
    assert server_action_type({"actionType": "Other"}) is None


def test_prompts_hold_role_values_history_and_the_message():
    view = owner_view_in_phase(6)
    view.apply_sent({"gameId": 15, "type": REQUEST, "compensationRequests": [None, 400000]})
    msg = build_action_required(view, DECISION, cap=CAP)
    system, user = build_messages(view, msg)
    assert system["role"] == "system" and user["role"] == "user"
    assert "You are Owner 2 (player 3), the owner." in system["content"]
    assert "The game has 2 paid rounds after a practice round" in system["content"]
    assert "owners' from No Project 350000-600000; Project 150000-350000" in system["content"]
    lines = user["content"].splitlines()
    assert lines[0] == "Game 15, round 0 of 2 (practice), phase 6 (vote)."
    assert lines[1] == "Your private values this round: 468000 if No Project, 164000 if Project."
    assert "Your request: 400000." in user["content"] and "Developer's offer: 335000." in user["content"]
    assert json.loads(lines[-1]) == msg


def test_developer_prompt_lists_requests_and_earlier_rounds():
    view = developer_view_in_phase_4()
    view.record(0).values = [351000, 2608000]
    view.rounds[0].offer = [None, 110000]
    view.rounds[0].outcome = {"condition": 1, "tally": 2, "value": 2608000, "compensation": -550000}
    view.rounds[0].profit = 2058000
    _, user = build_messages(view, build_action_required(view, OFFER, cap=CAP))
    assert "Requests received: Owner 1 380000, Owner 2 490000, Owner 3 0." in user["content"]
    assert ("Round 0 values 351000/2608000: Your offer: 110000. Outcome: Project won with 2 votes; your value "
            "2608000, compensation -550000, profit 2058000.") in user["content"]


def test_unknown_values_are_said_plainly():
    view = PlayerView(game_id=223, number=1, role=3, tag="Owner 1", round=1, phase=3)
    _, user = build_messages(view, build_action_required(view, REQUEST, cap=CAP, timer_seconds=120))
    assert "Your private values this round: unknown." in user["content"]


def test_answer_schema_is_strict_and_names_every_field():
    schema = answer_schema(OFFER)
    assert schema["strict"] is True
    assert schema["schema"]["required"] == ["gameId", "type", "compensationOffers"]
    assert schema["schema"]["additionalProperties"] is False


def test_a_round_never_seen_leaves_no_empty_history_line():
    view = PlayerView(game_id=7)
    view.apply(event("phase-transition", {"round": 1, "phase": 0}))
    for frame in round_start(1, 1, [500000, 200000], T0):
        view.apply(frame)
    assert list(view.rounds) == [1]
    _, user = build_messages(view, build_action_required(view, REQUEST, cap=CAP))
    assert "Earlier rounds" not in user["content"]


def test_unknown_outcome_values_are_said_plainly():
    view = developer_view_in_phase_4()
    view.record(0).outcome = {"condition": 0, "tally": 3, "value": None, "compensation": None}
    _, user = build_messages(view, build_action_required(view, OFFER, cap=CAP))
    assert "Outcome: No Project won with 3 votes; your value unknown, compensation unknown." in user["content"]


def test_a_lone_surrogate_in_received_chat_is_replaced_not_fatal():
    view = owner_view_in_phase(2, seat=1)
    view.apply(event("message-received", {"sender": 3, "to": [1], "number": 0, "text": "bad \ud800 text"}))
    _, user = build_messages(view, build_action_required(view, CHAT, cap=CAP))
    user["content"].encode("utf-8")  # would raise on a lone surrogate
    assert 'Owner 2 to Owner 1: "bad \ufffd text"' in user["content"]


def _fresh_copy(view: PlayerView) -> PlayerView:
    """The same state without lib.games.voting.prompts' kept renderings (they are not part of a view's value)."""
    from lib.games.voting.seat import view_snapshot

    copy = view_snapshot(view)
    assert all(rec.rendered is None and rec.chat_rendered is None for rec in copy.rounds.values())
    assert copy.system_rendered is None
    return copy


def test_kept_renderings_follow_every_later_change_of_a_round():
    view = owner_view_in_phase(6)
    view.apply_sent({"gameId": 15, "type": REQUEST, "compensationRequests": [None, 400000]})
    view.apply(event("final-profit", {"condition": 1, "tally": 3, "value": 164000, "compensation": 335000}))
    view.apply(event("phase-transition", {"round": 1, "phase": 0}))
    for frame in round_start(1, 3, [500000, 200000], T0 + 90000):
        view.apply(frame)
    for frame in phase_start(1, 2, T0 + 100000, event("message-received", {"sender": 1, "to": [3], "text": "hi"})):
        view.apply(frame)

    def prompt() -> list[dict[str, str]]:
        return build_messages(view, build_action_required(view, CHAT, cap=CAP))

    first = prompt()
    assert "Round 0 values 468000/164000: Your request: 400000." in first[1]["content"]
    assert first == build_messages(_fresh_copy(view), build_action_required(view, CHAT, cap=CAP))
    changes = [
        event("round-summary", {"round": 0, "profit": 499000}),  # the profit of round 0 arrives late
        event("players-known", {"players": [dict(p, tag=f"P{p['number']}") for p in PLAYERS]}),  # new tags
        event("message-received", {"sender": 4, "to": [1, 2, 3, 5, 6], "text": "more"}),
    ]
    for change in changes:
        before = prompt()
        view.apply(change)
        after = prompt()
        assert after != before, change["eventType"]
        assert after == build_messages(_fresh_copy(view), build_action_required(view, CHAT, cap=CAP))
    lines = after[1]["content"].splitlines()
    assert lines[3].endswith("profit 499000.")
    assert lines[4:7] == ["Chat this round:", '- phase 1, P1 to P3: "hi"', '- phase 2, P4 to everyone: "more"']


def test_a_value_replaced_in_a_finished_round_is_rendered_anew():
    view = developer_view_in_phase_4()
    view.record(0).offer = [None, 110000]
    msg = build_action_required(view, OFFER, cap=CAP)
    assert "Round 0: Your offer: 110000." in build_messages(view, msg)[1]["content"]
    view.record(0).offer = [None, 120000]  # replaced, as the view does it
    assert "Round 0: Your offer: 120000." in build_messages(view, msg)[1]["content"]
