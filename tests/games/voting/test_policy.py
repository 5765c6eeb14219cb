"""The baseline policy, the fallback actions and the transcript writer, on views built from real-shaped frames."""

from __future__ import annotations

import asyncio
import json

import pytest

from lib.agents.transcript import REDACTED, Transcript, read_transcript
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST, ActionError, validate_action
from lib.games.voting.policy import BaselinePolicy, amount_cap, baseline_action, fallback_action
from lib.games.voting.view import PlayerView
from lib.ibex.params import parameters_from_dict
from tests.helpers.frames import BOUNDARIES, event, phase_start, round_start

T0 = 1795624173543
CAP = parameters_from_dict().amount_cap()


def view_in_phase(seat: int, values: list[int], phase: int, *extra_at: tuple[int, dict]) -> PlayerView:
    """A seat's view after the frames of round 1 up to the start of `phase`; extra events go in before a phase."""
    view = PlayerView(game_id=7)
    for frame in round_start(1, seat, values, T0):
        view.apply(frame)
    extras = dict(extra_at)
    for p in range(2, phase + 1):
        more = [extras[p]] if p in extras else []
        for frame in phase_start(1, p, T0 + p * 1000, *more):
            view.apply(frame)
    return view


def requests_event(*amounts: object) -> dict:
    seats = (1, 3, 4, 5, 6)
    return event("compensation-requests-received", {"compensationRequests": [
        {"number": seat, "compensationRequests": amount} for seat, amount in zip(seats, amounts, strict=True)
    ]})


def offer_event(amount: object) -> dict:
    return event("compensation-offer-made", {"compensationOffers": [None, amount]})


def test_owner_requests_its_loss_plus_ten_percent_rounded_up_to_a_thousand():
    view = view_in_phase(3, [468000, 164000], 3)
    message = baseline_action(view, REQUEST, CAP)
    assert message == {"gameId": 7, "type": REQUEST, "compensationRequests": [None, 335000]}  # 304000 x 1.1


def test_owner_that_gains_from_the_project_requests_nothing():
    view = view_in_phase(4, [300000, 340000], 3)
    assert baseline_action(view, REQUEST, CAP)["compensationRequests"] == [None, 0]


def test_developer_offers_the_median_request_while_the_project_still_pays():
    view = view_in_phase(2, [206000, 1938000], 4, (4, requests_event(
        [None, 380000], [None, 120000], [0, 0], [None, 250000], [None, 300000])))
    # valid requests 380000, 120000, 0, 250000, 300000: lower median 250000; 5 x 250000 < 1732000
    assert baseline_action(view, OFFER, CAP)["compensationOffers"] == [None, 250000]


def test_developer_offer_is_bounded_so_five_offers_stay_below_its_gain():
    view = view_in_phase(2, [206000, 1138000], 4, (4, requests_event(
        [None, 480000], [None, 400000], [None, 350000], [None, 600000], [None, 500000])))
    offer = baseline_action(view, OFFER, CAP)["compensationOffers"][1]
    assert offer == 186000  # (932000 - 1) // 5 = 186399, rounded down to a thousand
    assert 5 * offer < 1138000 - 206000


def test_developer_ignores_requests_that_are_not_plain_amounts_in_range():
    view = view_in_phase(2, [206000, 1938000], 4, (4, requests_event(
        [None, "a lot"], [None, -5], [None, 10**15], 5, [None, 90000])))
    assert baseline_action(view, OFFER, CAP)["compensationOffers"] == [None, 90000]


def test_developer_without_requests_offers_half_of_what_it_could_afford():
    view = view_in_phase(2, [206000, 1206000], 4)
    assert baseline_action(view, OFFER, CAP)["compensationOffers"] == [None, 99000]  # 199999 // 2, rounded down


def test_developer_offers_nothing_when_the_project_does_not_pay():
    view = view_in_phase(2, [500000, 450000], 4, (4, requests_event(*[[None, 1000]] * 5)))
    assert baseline_action(view, OFFER, CAP)["compensationOffers"] == [None, 0]


@pytest.mark.parametrize(("offer", "vote"), [(304000, 1), (303999, 0), (None, 0), ("lots", 0)])
def test_owner_votes_for_the_project_exactly_when_value_plus_offer_covers_its_no_project_value(offer, vote):
    view = view_in_phase(5, [468000, 164000], 6, (5, offer_event(offer)))
    assert baseline_action(view, DECISION, CAP)["compensationDecisions"] == [vote]


def test_chat_is_a_short_factual_message_to_everyone_else_and_the_seed_is_reproducible():
    view = view_in_phase(3, [468000, 164000], 5, (5, offer_event(310000)))
    first = baseline_action(view, CHAT, CAP, seed=3)
    again = baseline_action(view, CHAT, CAP, seed=3)
    assert first == again
    assert first["to"] == [1, 2, 4, 5, 6]
    assert "310000" in first["text"] and "Project" in first["text"]
    texts = {baseline_action(view, CHAT, CAP, seed=s)["text"] for s in range(20)}
    assert len(texts) == 2  # the seed picks between two phrasings


def test_fallback_is_the_baseline_action_except_for_chat_which_sends_nothing():
    view = view_in_phase(3, [468000, 164000], 3)
    assert fallback_action(view, REQUEST, CAP) == baseline_action(view, REQUEST, CAP)
    chat_view = view_in_phase(3, [468000, 164000], 2)
    assert fallback_action(chat_view, CHAT, CAP) is None


def test_baseline_never_acts_for_another_role_or_phase():
    owner = view_in_phase(3, [468000, 164000], 4)
    with pytest.raises(ActionError):
        baseline_action(owner, OFFER, CAP)
    with pytest.raises(ActionError):
        baseline_action(owner, REQUEST, CAP)  # phase 3 is over


def test_every_baseline_action_passes_the_wire_checks_with_extreme_values():
    for values in ([600000, 150000], [350000, 350000], [200000, 2750000], [500000, 500000]):
        for seat, phase, wire_type in ((3, 3, REQUEST), (2, 4, OFFER), (3, 6, DECISION), (5, 2, CHAT)):
            view = view_in_phase(seat, values, phase, (5, offer_event(CAP)))
            message = baseline_action(view, wire_type, CAP)
            assert validate_action(message, view, wire_type, cap=CAP) == message


def test_baseline_policy_decides_through_the_policy_interface():
    view = view_in_phase(3, [468000, 164000], 3)
    policy = BaselinePolicy()
    message = asyncio.run(policy.decide(view, REQUEST, cap=CAP, action_required={}, deadline=0.0, transcript=None))
    assert message == baseline_action(view, REQUEST, CAP)


def test_amount_cap_comes_from_parameters_else_from_the_boundaries_the_player_saw():
    params = parameters_from_dict({"owner_no_project_high": 3000000})
    view = view_in_phase(3, [468000, 164000], 3)
    assert amount_cap(view, params) == 3000000
    highs = [b["high"] for role in BOUNDARIES.values() for b in role.values()]
    assert amount_cap(view, None) == max(highs)
    assert amount_cap(PlayerView(), None) == CAP  # nothing known yet: the server's defaults


def test_transcript_lines_are_flushed_json_and_never_hold_registered_secrets(tmp_path):
    key = "sk-proj-Secret123456789"
    recovery = "made-up-recovery-code-" * 3
    path = tmp_path / "logs" / "agent1.jsonl"
    transcript = Transcript(path, secrets=[key])
    transcript.add_secret(recovery)
    transcript.write("send", msg={"gameId": 1, "type": "join", "recovery": recovery})
    # Read while still open: each line is on disk as soon as it is written.
    assert read_transcript(path)[0]["msg"]["recovery"] == REDACTED
    transcript.write("model-call", error=f"401 Incorrect API key provided: {key}", other="sk-abcdefghijklmnop")
    transcript.close()
    transcript.write("late", note="ignored after close")
    text = path.read_text(encoding="utf-8")
    assert key not in text and recovery not in text and "sk-abcdefghijklmnop" not in text
    records = read_transcript(path)
    assert [r["kind"] for r in records] == ["send", "model-call"]
    assert all(isinstance(r["ts_ms"], int) for r in records)
    assert json.loads(text.splitlines()[1])["error"] == f"401 Incorrect API key provided: {REDACTED}"


def test_a_batched_transcript_writes_within_its_delay_and_everything_on_close(tmp_path):
    path = tmp_path / "agent.jsonl"
    late_secret = "recovery-known-only-later-0123456789"

    async def scenario():
        transcript = Transcript(path, flush_delay=0.05)
        transcript.write("recv", msg={"n": 1, "echo": late_secret})
        before = path.read_text()
        transcript.add_secret(late_secret)  # registered before the batch is written: still scrubbed
        await asyncio.sleep(0.2)
        after_delay = [r["msg"] for r in read_transcript(path)]
        transcript.write("send", msg={"n": 2})
        transcript.close()
        return before, after_delay

    before, after_delay = asyncio.run(scenario())

    assert before == ""
    assert after_delay == [{"n": 1, "echo": REDACTED}]
    records = read_transcript(path)
    assert [r["kind"] for r in records] == ["recv", "send"]
    assert records[0]["ts_ms"] <= records[1]["ts_ms"]
    assert late_secret not in path.read_text()


def test_a_batched_transcript_outside_an_event_loop_writes_at_once(tmp_path):
    path = tmp_path / "agent.jsonl"
    with Transcript(path, flush_delay=0.05) as transcript:
        transcript.write("meta", note="no loop running")
        assert read_transcript(path)[0]["note"] == "no loop running"
