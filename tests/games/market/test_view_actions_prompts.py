"""The market games' view, checks and prompts (lib.games.market.view, actions, prompts), against every frame the
twelve seats of two recorded real-server games saw (tests/helpers/market_views.py).

Each seat's frames are folded into a MarketView in order; what the view knows is checked against what the server
said later (round summaries, acknowledgements, refusals), and every action the scripted players sent is run
through the validator: it must be accepted, or refused for the reason the server refused it or docs/protocol.md section
14 says it
must be.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from lib.games.market.actions import (
    ACTION_TYPES,
    CANCEL,
    DECLARE,
    POST,
    SPECULATE,
    TRADE,
    build_market_action_required,
    declaration_max,
    market_action_due,
    market_answer_schema,
    parse_market_answer,
    price_cap,
    validate_market_action,
)
from lib.games.market.policy import zic_trade
from lib.games.market.prompts import build_market_messages
from lib.games.market.view import MarketView
from lib.games.protocols import ActionError
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER, ROLE_SPECULATOR
from tests.helpers.market_views import GAMES, market_view, new_view, order, recorded_games, replay

KIND_OF = {"declare": DECLARE, "done-speculating": SPECULATE, "post-order": TRADE, "cancel-order": TRADE,
           "complete-current-phase": TRADE}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return recorded_games()


# ----- the view


@pytest.mark.parametrize("name", GAMES)
def test_each_seat_knows_its_role_values_wallets_and_rounds(recorded, name):
    game = recorded[name]
    for seat in game["seats"]:
        view = replay(game, seat)
        n = int(seat)
        assert view.game_over and view.reward["number"] == n
        assert view.role == (ROLE_DEVELOPER if n == 2 else ROLE_OWNER if n <= 6 else ROLE_SPECULATOR)
        assert view.tag == {1: "Owner 1", 2: "Developer"}.get(n, f"Owner {n - 1}" if n <= 6 else f"Speculator {n - 6}")
        assert sorted(view.rounds) == [0, 1, 2]
        for rec in view.rounds.values():
            summary = rec.summary
            assert summary is not None and summary["condition"] == rec.winning
            # The wallet folded from asset-movements is the one the server settled the round with.
            w = rec.wallets[rec.winning]
            assert (w["balance"], w["shares"]) == (summary["market"]["balance"], summary["market"]["shares"])
            assert rec.pending == [], "every own order in flight was answered"
            assert rec.signals is not None and rec.final_price == summary["market"]["price"]
            if view.role == ROLE_SPECULATOR:
                assert rec.values is None and rec.lot is None
            else:
                assert rec.lot == n and summary["value"] == rec.values[rec.winning]
                published = {d["number"]: d["d"] for d in rec.declarations[3]}
                assert published[n][:2] == rec.my_declaration[2][:2]
                assert summary["firstDeclaration"] == rec.my_declaration[2][rec.winning]
                assert summary["secondDeclaration"] == rec.my_declaration[7][rec.winning]


@pytest.mark.parametrize("name", GAMES)
def test_all_seats_see_the_same_books_and_trades(recorded, name):
    game = recorded[name]
    views = {seat: replay(game, seat) for seat in game["seats"]}
    for r in (0, 1, 2):
        books = {json.dumps(v.rounds[r].books, sort_keys=True) for v in views.values()}
        trades = {json.dumps(v.rounds[r].trades, sort_keys=True) for v in views.values()}
        assert len(books) == 1 and len(trades) == 1
        # Shares only change hands: 90 in every market, whatever was traded.
        for c in views["1"].market_conditions() if r == 2 else [views["1"].rounds[r].winning]:
            assert sum(v.rounds[r].wallets[c]["shares"] for v in views.values()) == 90
    assert views["1"].game_type == name.split("-")[0]


def test_game_type_is_inferred_from_the_events(recorded):
    for name in GAMES:
        game = recorded[name]
        view = MarketView(number=7)
        for entry in game["seats"]["7"]:
            if entry[0] == "r":
                view.apply(entry[1])
        assert view.game_type == game["game_type"]


# ----- the validator against the recorded actions


# Why each deliberate probe must be refused (the recorder's note -> a phrase of the reason).
PROBE_REASONS = {
    "probe: second declaration in the same phase": "only the first declaration counts",
    "probe: owner sends done-speculating": "only speculators snipe",
    "probe: post-order in phase 7": "phase 6",
    "probe: declaration above 2x high": "must be at most 1200000",
    "probe: speculator sends declare": "only owners and the developer declare",
    "probe: price null": "must be a whole number, got null",
    "probe: negative price": "must not be negative",
    "probe: bid beyond balance": "must be at most",
    "probe: done-speculating in phase 2": "belongs to phases 3 and 8",
    "probe: snipe includes unknown lot 99": "there is no lot 99",
    "probe: order under another condition": "open books",
    "probe: unknown condition 7": "open books",
    "probe: post-order in phase 2": "phase 6",
    "probe: cancel an order of another player": "you have no resting order 1",
    "probe: cancel a non-existent order": "you have no resting order 999",
    "probe: huge ask price (accepted, sits in book)": "must be at most",
    "probe: order without type": '"type" must be "bid" or "ask"',
    "probe: post-order without order": '"order" must be an object',
    "probe: complete-current-phase (anyone) in phase 5": "never sent",
    # A 30000 ask is above any price the declarations allow under its condition (No Project's cap is 23100 here).
    "probe: ask #": "must be at most 23100 under condition 0",
}


@pytest.mark.parametrize("name", GAMES)
def test_recorded_actions_are_accepted_or_refused_for_the_right_reason(recorded, name):
    game = recorded[name]
    outcome: dict[str, int] = {}

    def check(view, message, note):
        kind = KIND_OF.get(message.get("type"))
        if kind is None:
            return
        try:
            out = validate_market_action(message, view, kind)
        except ActionError as exc:
            reason = str(exc)
            if note:
                expected = next(v for k, v in PROBE_REASONS.items() if note.startswith(k))
                assert expected in reason, (note, reason)
                outcome["probe refused"] = outcome.get("probe refused", 0) + 1
            elif message.get("order", {}).get("now") is True:
                assert '"now" must be false' in reason  # the scripts' market orders: agents send limit prices
                outcome["market order"] = outcome.get("market order", 0) + 1
            else:
                # The only other refusals: an ask beyond the uncommitted shares, which the server refused too.
                assert "no uncommitted shares" in reason, reason
                outcome["no shares"] = outcome.get("no shares", 0) + 1
            return
        assert not note or note.startswith("probe: ready"), (note, "a probe was accepted")
        assert out["gameId"] == game["game_id"] and out["type"] == message["type"]
        outcome["accepted"] = outcome.get("accepted", 0) + 1

    for seat in game["seats"]:
        replay(game, seat, on_send=check)
    assert outcome["probe refused"] == 27 and outcome["no shares"] == 1
    assert outcome["accepted"] > 100


def test_the_servers_own_refusals_are_refused_before_sending(recorded):
    """Every order the real server answered with order-refused (shares or balance committed, missing price) is
    refused here first, for the same reason. A refusal answers the oldest own order still in flight (the server
    handles one seat's frames in order), which the view's `pending` list names."""
    refused = 0
    for name in GAMES:
        game = recorded[name]
        for seat, frames in game["seats"].items():
            view = new_view(game, seat)
            sent_from: dict[int, tuple[MarketView, dict]] = {}
            for entry in frames:
                if entry[0] == "s":
                    before, waiting = copy.deepcopy(view), len(view.current.pending)
                    view.apply_sent(entry[1])
                    if len(view.current.pending) > waiting:
                        sent_from[id(view.current.pending[-1])] = (before, entry[1])
                    continue
                frame = entry[1]
                if frame.get("eventType") == "order-refused" and view.current.pending:
                    before, message = sent_from[id(view.current.pending[0])]
                    reason = frame["data"].get("placeholder") or (
                        "type" if "order type" in frame["data"]["message"] else "no match")
                    expected = {"no-shares-available": "no uncommitted shares",
                                "no-balance-available": "must be at most",
                                "order-price-missing": "got null",
                                "order-price-negative": "negative",
                                "type": '"type" must be "bid" or "ask"',
                                "no match": '"now" must be false'}[reason]  # a market order, nothing to meet
                    expected += "|must be at most 23100 under condition 0"  # the 30000 probes: above the cap
                    with pytest.raises(ActionError, match=expected):
                        validate_market_action(message, before, TRADE)
                    refused += 1
                view.apply(frame)
    assert refused >= 8


def test_an_ask_beyond_the_shares_is_refused_like_the_servers_seventh_ask(recorded):
    """Owner 1's eight asks with six shares, at a price the cap allows: the seventh and eighth are refused."""
    game = recorded["harberger-12"]
    verdicts = []

    def check(view, message, note):
        if note and note.startswith("probe: ask #"):
            message = dict(message, order=dict(message["order"], price=20000))
            try:
                validate_market_action(message, view, TRADE)
                verdicts.append("ok")
                view.apply_sent(message)  # the view counts it as in flight (replay applies the original again)
                view.current.pending.pop()
            except ActionError as exc:
                verdicts.append(str(exc))
    replay(game, "1", on_send=check)
    # One regular ask of the owner was still in flight when the probes went out: the fifth probe took its last
    # free share (the server, which counts resting asks only, refused the owner's next regular ask instead).
    assert verdicts[:5] == ["ok"] * 5 and len(verdicts) == 8
    assert all("no uncommitted shares" in v for v in verdicts[5:])


# ----- validation details docs/protocol.md section 14 asks for


@pytest.mark.parametrize("bad,reason", [
    ({"price": "9000"}, "not the string"),
    ({"price": "9'000"}, "not the string"),
    ({"price": 9000.5}, "without decimals"),
    ({"price": True}, "whole number"),
    ({"price": -1}, "negative"),
    ({"quantity": -1}, '"quantity" must be 1'),
    ({"quantity": 0.5}, '"quantity" must be 1'),
    ({"quantity": 2}, '"quantity" must be 1'),
    ({"quantity": True}, '"quantity" must be 1'),
    ({"condition": "0"}, "open books"),
    ({"condition": 1}, "open books"),
    ({"now": True}, '"now" must be false'),
    ({"type": "buy"}, '"bid" or "ask"'),
    ({"note": "x"}, "unexpected field"),
])
def test_orders_with_anything_but_plain_values_are_refused(bad, reason):
    message = order()
    message["order"].update(bad)
    with pytest.raises(ActionError, match=reason):
        validate_market_action(message, market_view(), TRADE)


def test_an_order_is_normalised_to_the_wire_format_of_this_game():
    out = validate_market_action(order(), market_view(), TRADE)
    assert out == {"gameId": 5, "type": "post-order",
                   "order": {"price": 9000, "quantity": 1, "condition": 0, "type": "bid", "now": False}}
    message = order()
    del message["order"]["now"]  # the UI always sends it; a model may leave it out
    assert validate_market_action(message, market_view(), TRADE)["order"]["now"] is False
    wait = validate_market_action({"type": "wait", "order": None}, market_view(), TRADE)
    assert wait == {"gameId": 5, "type": "wait"}  # never sent


def test_bids_count_resting_and_pending_bids_against_the_balance():
    view = market_view()
    view.apply({"type": "event", "eventType": "add-order", "data": {
        "order": {"id": 1, "sender": 7, "price": 30000, "quantity": 1, "type": "bid", "condition": 0}}})
    validate_market_action(order(20000), view, TRADE)
    with pytest.raises(ActionError, match="exceeds your uncommitted balance 20000"):
        validate_market_action(order(20001), view, TRADE)
    view.apply_sent(order(15000))  # in flight, not answered yet
    with pytest.raises(ActionError, match="uncommitted balance 5000"):
        validate_market_action(order(6000), view, TRADE)
    view.apply({"type": "event", "eventType": "order-refused", "data": {"message": "no"}})
    validate_market_action(order(20000), view, TRADE)
    # Someone else's bid does not bind this player's money.
    view.apply({"type": "event", "eventType": "add-order", "data": {
        "order": {"id": 2, "sender": 8, "price": 20000, "quantity": 1, "type": "bid", "condition": 0}}})
    assert view.uncommitted(0) == (20000, 5)


def test_an_own_order_filled_on_arrival_is_no_longer_pending_but_one_hit_while_resting_is():
    view = market_view()
    ev = lambda kind, data: view.apply({"type": "event", "eventType": kind, "data": data})  # noqa: E731
    ev("add-order", {"order": {"id": 1, "sender": 8, "price": 9000, "quantity": 1, "type": "ask", "condition": 0}})
    ev("add-order", {"order": {"id": 2, "sender": 7, "price": 8000, "quantity": 1, "type": "bid", "condition": 0}})
    view.apply_sent(order(9500))  # crosses seat 8's ask: trades at 9000
    ev("asset-movement", {"condition": 0, "movement": {"type": "purchase", "quantity": 1, "price": 9000,
                                                       "total": 9000}, "balance": 41000, "shares": 6})
    ev("contract-fulfilled", {"from": 8, "to": 7, "price": 9000, "condition": 0, "median": 9000})
    ev("delete-order", {"order": {"id": 1, "type": "ask", "condition": 0}})
    assert view.current.pending == [] and view.uncommitted(0) == (41000 - 8000, 6)
    view.apply_sent(order(100))  # rests, but its add-order has not come yet when seat 9 hits the resting bid
    ev("asset-movement", {"condition": 0, "movement": {"type": "purchase", "quantity": 1, "price": 8000,
                                                       "total": 8000}, "balance": 33000, "shares": 7})
    ev("delete-order", {"order": {"id": 2, "type": "bid", "condition": 0}})
    assert len(view.current.pending) == 1 and view.uncommitted(0) == (32900, 7)


def test_cancels_name_own_resting_orders_only():
    view = market_view()
    view.apply({"type": "event", "eventType": "add-order",
                "data": {"order": {"id": 3, "sender": 7, "price": 100, "quantity": 1, "type": "bid", "condition": 0}}})
    ok = validate_market_action({"type": CANCEL, "order": {"id": 3, "condition": 0}}, view, TRADE)
    assert ok == {"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}}
    for bad in ({"id": 4, "condition": 0}, {"id": "3", "condition": 0}, {"id": 3, "condition": 1},
                {"id": 3, "condition": 0, "price": 1}):
        with pytest.raises(ActionError):
            validate_market_action({"type": CANCEL, "order": bad}, view, TRADE)


def test_a_refused_cancel_lists_a_bounded_number_of_own_orders():
    """#20: the refusal is fed back to the model; with thousands of resting orders it named them all."""
    view = market_view()
    for i in range(1, 2001):
        view.apply({"type": "event", "eventType": "add-order", "data": {
            "order": {"id": i, "sender": 7, "price": 1, "quantity": 1, "type": "bid", "condition": 0}}})
    with pytest.raises(ActionError) as refused:
        validate_market_action({"type": CANCEL, "order": {"id": 5000, "condition": 0}}, view, TRADE)
    reason = str(refused.value)
    assert len(reason) < 200, reason
    assert "the newest 5 of 2000, [1996, 1997, 1998, 1999, 2000], and 1995 older" in reason
    few = market_view()
    few.apply({"type": "event", "eventType": "add-order", "data": {
        "order": {"id": 3, "sender": 7, "price": 1, "quantity": 1, "type": "bid", "condition": 0}}})
    with pytest.raises(ActionError, match=r"yours: \[3\]$"):
        validate_market_action({"type": CANCEL, "order": {"id": 4, "condition": 0}}, few, TRADE)
    with pytest.raises(ActionError, match="yours: none$"):
        validate_market_action({"type": CANCEL, "order": {"id": 4, "condition": 0}}, market_view(), TRADE)


@pytest.mark.parametrize("kind", [TRADE, SPECULATE])
def test_a_lone_surrogate_in_a_tag_never_reaches_the_prompt(kind):
    """#20: tags are the server's text as sent; the prompt (at play time and in the training set alike, both built
    by build_market_messages) must encode as UTF-8, for the OpenAI client and the dataset's files."""
    view = market_view(phase=6 if kind == TRADE else 3)
    view.tag = "Speculator \ud800"
    view.players[0]["tag"] = "Owner \udfff"
    view.current.declarations[3][0]["number"] = 1
    messages = build_market_messages(view, build_market_action_required(view, kind))
    text = json.dumps(messages, ensure_ascii=False)
    text.encode("utf-8")
    assert "You are Speculator \ufffd (player 7)" in messages[0]["content"]
    assert "You are Speculator \ufffd (player 7)" in messages[1]["content"]
    if kind == SPECULATE:
        assert "(Owner \ufffd)" in messages[1]["content"]


def test_declarations_within_the_roles_bounds_once_per_phase():
    view = market_view(role=ROLE_OWNER, number=3, phase=2)
    assert declaration_max(view, 0) == 1200000 and declaration_max(view, 1) == 700000
    ok = validate_market_action({"type": "declare", "declaration": [450000, 200000]}, view, DECLARE)
    assert ok == {"gameId": 5, "type": "declare", "declaration": [450000, 200000, 0]}
    for bad, reason in (([450000, "200000", 0], "string"), ([450000.5, 1, 0], "decimals"),
                        ([-1, 1, 0], "negative"), ([1200001, 1, 0], "at most 1200000"),
                        ([1, 700001, 0], "at most 700000"), ([1, 1, 5], "must be 0"), ([1], "list"),
                        ("450000", "list")):
        with pytest.raises(ActionError, match=reason):
            validate_market_action({"type": "declare", "declaration": bad}, view, DECLARE)
    view.apply_sent(ok)
    assert market_action_due(view) is None
    with pytest.raises(ActionError, match="only the first declaration counts"):
        validate_market_action(ok, view, DECLARE)
    # Refused above the maximum, the server stored nothing: the owner may declare again.
    view.apply({"type": "event", "eventType": "declaration-above-max",
                "data": {"condition": "No Project", "maximum": 1200000}})
    assert market_action_due(view) == DECLARE
    view.phase = 3  # the phase has ended: nothing more goes out
    with pytest.raises(ActionError, match="phases 2 and 7"):
        validate_market_action(ok, view, DECLARE)


def test_snipes_name_existing_lots_once_under_conditions_that_count_once_per_phase():
    view = market_view(phase=3, winning=1)  # Harberger: only the winning condition's list counts
    ok = validate_market_action({"type": SPECULATE, "snipe": [[], [4, 1]]}, view, SPECULATE)
    assert ok["snipe"] == [[], [4, 1], []]
    for bad, reason in (([[4], [], []], "do not count"), ([[], [4, 4], []], "twice"),
                        ([[], [7], []], "no lot 7"), ([[], ["4"], []], "string"), ([[], [4.0], []], "decimals"),
                        ([[4]], "list of lists"), ([[], 4, []], "list of lists")):
        with pytest.raises(ActionError, match=reason):
            validate_market_action({"type": SPECULATE, "snipe": bad}, view, SPECULATE)
    view.apply_sent(ok)
    with pytest.raises(ActionError, match="already sent"):
        validate_market_action(ok, view, SPECULATE)
    futarchy = market_view("futarchy", phase=3)
    both = validate_market_action({"type": SPECULATE, "snipe": [[1], [2], []]}, futarchy, SPECULATE)
    assert both["snipe"] == [[1], [2], []]


def test_strict_off_keeps_human_choices_but_checks_shape_role_and_phase():
    view = market_view(role=ROLE_OWNER, number=3, phase=2)
    odd = {"type": "declare", "declaration": [-100000, 123456.75, 0]}
    assert validate_market_action(odd, view, DECLARE, strict=False)["declaration"] == [-100000, 123456.75, 0]
    with pytest.raises(ActionError):
        validate_market_action({"type": "declare", "declaration": 5}, view, DECLARE, strict=False)
    with pytest.raises(ActionError):
        validate_market_action(odd, market_view(phase=2), DECLARE, strict=False)  # a speculator


def test_model_answers_are_parsed_with_a_fence_and_refused_when_not_json():
    view = market_view()
    assert parse_market_answer('```json\n{"type":"wait","order":null}\n```', view, TRADE)["type"] == "wait"
    with pytest.raises(ActionError, match="not valid JSON"):
        parse_market_answer("bid 9000", view, TRADE)
    with pytest.raises(ActionError, match="empty"):
        parse_market_answer("", view, TRADE)


# ----- action-required, schema, prompts


def _strict_subset(schema: dict) -> None:
    """OpenAI's strict mode: every object closed, every property required; recurse."""
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])
        for sub in schema["properties"].values():
            _strict_subset(sub)
    for sub in schema.get("anyOf", []):
        _strict_subset(sub)
    if "items" in schema:
        _strict_subset(schema["items"])


@pytest.mark.parametrize("kind,view", [(DECLARE, market_view(role=ROLE_OWNER, number=3, phase=2)),
                                       (SPECULATE, market_view(phase=8)),
                                       (TRADE, market_view("futarchy"))])
def test_action_required_and_schema(kind, view):
    view.deadline_ms = 1796008217110
    message = build_market_action_required(view, kind)
    data = message["data"]
    assert message["eventType"] == "action-required" and data["actionType"] == ACTION_TYPES[kind]
    assert data["actionRequiredBy"] == "2026-11-30T03:10:17.110Z"
    assert set(data) == {"actionType", "instructions", "deadline", "format", "actionRequiredBy", "additionalInfo"}
    schema = market_answer_schema(view, kind)
    assert schema["strict"] is True
    _strict_subset(schema["schema"])
    system, user = build_market_messages(view, message)
    assert system["role"] == "system" and "IBEX" in system["content"]
    assert user["content"].endswith(json.dumps(message, ensure_ascii=False))


def test_price_cap_follows_the_declaration_maxima_and_the_final_tax_per_condition():
    # The final price is the winning condition's declarations x 33% / 100 shares (lib.games.market.rules.final_price).
    # No Project: 5 owners x 1200000 + the developer's 1000000 = 7000000; Project: 5 x 700000 + 5500000 = 9000000.
    view = market_view("futarchy")
    assert (price_cap(view, 0), price_cap(view, 1)) == (23100, 29700)


def test_no_order_above_its_own_conditions_price_cap_is_validated_offered_or_made_by_the_baseline():
    """#20: twenty bids of 29,700 under No Project reached the real server, where no share can be worth more than
    23,100: the cap was the maximum over both conditions."""
    view = market_view("futarchy")
    view.current.wallets = [{"balance": 90000, "shares": 5} for _ in range(3)]
    validate_market_action(order(23100, condition=0), view, TRADE)
    with pytest.raises(ActionError, match="at most 23100 under condition 0"):
        validate_market_action(order(23101, condition=0), view, TRADE)
    with pytest.raises(ActionError, match="at most 29700 under condition 1"):
        validate_market_action(order(29701, condition=1), view, TRADE)
    validate_market_action(order(29700, condition=1), view, TRADE)
    posts = market_answer_schema(view, TRADE)["schema"]["properties"]["order"]["anyOf"][:2]
    assert {(p["properties"]["condition"]["enum"][0], p["properties"]["price"]["maximum"]) for p in posts} \
        == {(0, 23100), (1, 29700)}
    info = build_market_action_required(view, TRADE)["data"]["additionalInfo"]
    assert "0 to 23100 under condition 0" in info and "0 to 29700 under condition 1" in info
    view.current.signals = [40000, 40000, 0]  # signals above both caps: the baseline bids at most the cap
    for i in range(200):
        out = zic_trade(view, random.Random(i))
        if out["type"] == POST:
            assert out["order"]["price"] <= (23100, 29700)[out["order"]["condition"]], out
            validate_market_action(out, view, TRADE)


@pytest.mark.parametrize("name", GAMES)
def test_prompts_hold_only_what_that_seat_knew(recorded, name):
    game = recorded[name]
    views = {}

    def at_market(view, message, note):
        if message.get("type") == "post-order" and view.phase == 6 and view.number not in views:
            views[view.number] = copy.deepcopy(view)
    for seat in ("1", "7"):
        replay(game, seat, on_send=at_market)
    owner, speculator = views[1], views[7]
    text = build_market_messages(owner, build_market_action_required(owner, TRADE))[1]["content"]
    v = owner.current.values
    assert f"No Project {v[0]}, Project {v[1]}" in text
    assert f"Your private signal of the final share price: No Project {owner.current.signals[0]}" in text
    other = build_market_messages(speculator, build_market_action_required(speculator, TRADE))[1]["content"]
    assert str(v[0]) not in other and "is worth to you" not in other  # nobody else's private value
    assert "Market 0 (No Project): bids" in other


def test_nothing_is_due_or_sent_once_the_phase_timer_is_over(recorded):
    """Between the market's reset-timer and the next phase-transition (the exit events, the next phase's
    set-timer) the real server is no longer in the market: an order sent then met phase 7's handler on the real
    server ("could not find an handler for post-order"). The view marks the phase as closing."""
    game = recorded["harberger-12"]
    seen = []

    def check(view, frame):
        if view.phase == 6 and view.closing:
            seen.append(frame.get("eventType") or frame.get("type"))
            assert market_action_due(view) is None
            with pytest.raises(ActionError, match="has ended"):
                validate_market_action(order(view.current.signals[0] // 2), view, TRADE)
    opened = []
    replay(game, "7", on_recv=check, on_send=lambda view, message, note: opened.append(view.closing))
    assert "phase-transition" in seen  # the transition to phase 7 came while the view knew phase 6 was over
    assert opened and not any(opened)  # the recorded player sent everything while its phase was open
