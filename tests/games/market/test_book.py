"""The order book (lib/games/market/book.py) against the real IBEX server: recorded games replayed, crafted books."""

from __future__ import annotations

import copy
import json
import math

import pytest

from lib.games.market.book import Market, listed_conditions_rule, winning_condition_rule
from tests.helpers.paths import FIXTURES

# market_replay: the two games recorded for the protocol notes; market_probes: games whose markets probe partial
# fills, settlement failures and malformed orders (tests/fixtures/record_market_probes.py)
GAMES = {name: game for fixture in ("market_replay.json", "market_probes.json")
         for name, game in json.loads((FIXTURES / fixture).read_text())["games"].items()}
ROUNDS = [(game["game_type"], f"{name}-round{rnd['round']}", rnd) for name, game in GAMES.items()
          for rnd in game["rounds"]]


def market_of(game_type: str, rnd: dict) -> Market:
    wallets = {int(seat): copy.deepcopy(w) for seat, w in rnd["wallets"].items()}
    rule = winning_condition_rule(rnd["conditions"][0]) if game_type == "harberger" else listed_conditions_rule([0, 1])
    return Market(wallets, rule)


def as_json(value) -> str:
    return json.dumps(value)  # exact text: 8689 and 8689.0 differ on the wire


@pytest.mark.parametrize(("game_type", "name", "rnd"), ROUNDS, ids=[name for _, name, _ in ROUNDS])
def test_recorded_market_replays_exactly(game_type: str, name: str, rnd: dict) -> None:
    """Every order and cancel of a recorded market, re-sent in the server's order, gives the same events to the
    same recipients in the same order, and every seat the same frames (errors included) as it received."""
    market = market_of(game_type, rnd)
    sent: list[tuple[int | None, dict]] = []
    for seat, message in rnd["messages"]:
        sent += market.handle(seat, copy.deepcopy(message))
    events = [["all" if to is None else to, f["eventType"], f["data"]] for to, f in sent if f["type"] == "event"]
    assert [as_json(e) for e in events] == [as_json(e) for e in rnd["server-log"]]
    for seat, expected in rnd["received"].items():
        expected = [{"type": "event", "eventType": rnd["server-log"][x][1], "data": rnd["server-log"][x][2]}
                    if isinstance(x, int) else x for x in expected]
        got = [f for to, f in sent if to is None or to == int(seat)]
        assert [as_json(f) for f in got] == [as_json(f) for f in expected], f"seat {seat}"


def test_replays_cover_trades_refusals_and_cancels() -> None:
    """The recorded games exercise what the replay claims to check."""
    kinds = {e[1] for _, _, rnd in ROUNDS for e in rnd["server-log"]}
    assert {"add-order", "delete-order", "asset-movement", "contract-fulfilled", "order-refused"} <= kinds
    trades = sum(1 for _, _, rnd in ROUNDS for e in rnd["server-log"] if e[1] == "contract-fulfilled")
    assert trades >= 90
    errors = [f["message"] for _, _, rnd in ROUNDS for frames in rnd["received"].values() for f in frames
              if isinstance(f, dict)]
    assert any(m.startswith("Order not found.") for m in errors)
    assert any("wrong condition" in m for m in errors) and any("condition not understood" in m for m in errors)


# ----- crafted books: each case follows the server's code path (harberger/phases/6.js) step by step


def wallets(**seats: tuple[float, float]) -> dict[int, list[dict]]:
    """seat -> (balance, shares), the same under every condition, as the server's per-condition wallets."""
    return {int(s[1:]): [{"balance": b, "shares": n, "cashForSniping": 250000} for _ in range(3)]
            for s, (b, n) in seats.items()}


def harberger(**seats: tuple[float, float]) -> Market:
    return Market(wallets(**seats), winning_condition_rule(0))


def post(market: Market, seat: int, kind: str, price, quantity=1, condition=0, now=False) -> list:
    order = {"price": price, "quantity": quantity, "condition": condition, "type": kind, "now": now}
    return market.handle(seat, {"gameId": 12, "type": "post-order", "order": order})


def cancel(market: Market, seat: int, order_id, condition=0) -> list:
    order = {"id": order_id, "condition": condition}
    return market.handle(seat, {"gameId": 12, "type": "cancel-order", "order": order})


def seen(outs: list) -> list:
    """(recipient, event type or 'error', data or message) per frame."""
    return [(to, f["eventType"], f["data"]) if f["type"] == "event" else (to, f["type"], f["message"])
            for to, f in outs]


def test_best_price_first_earlier_order_on_ties_and_trade_at_the_resting_price() -> None:
    m = harberger(s1=(60000, 6), s3=(60000, 6), s4=(60000, 6), s7=(50000, 5))
    post(m, 1, "ask", 105)
    post(m, 3, "ask", 100)
    post(m, 4, "ask", 100)
    assert seen(post(m, 7, "bid", 110)) == [
        (3, "asset-movement", {"condition": 0, "movement": {"type": "sale", "quantity": 1, "price": 100, "total": 100},
                               "balance": 60100, "shares": 5}),
        (7, "asset-movement", {"condition": 0, "movement": {"type": "purchase", "quantity": 1, "price": 100,
                                                            "total": 100}, "balance": 49900, "shares": 6}),
        (None, "contract-fulfilled", {"from": 3, "to": 7, "price": 100, "condition": 0, "median": 100}),
        (None, "delete-order", {"order": {"id": 2, "type": "ask", "condition": 0}}),
    ]
    # an ask meets the highest bid, at the bid's price
    post(m, 7, "bid", 90)
    post(m, 7, "bid", 95)
    trade = seen(post(m, 1, "ask", 80))
    assert trade[2] == (None, "contract-fulfilled", {"from": 1, "to": 7, "price": 95, "condition": 0, "median": 97.5})
    assert m.wallets[1][0] == {"balance": 60095, "shares": 5, "cashForSniping": 250000}


def test_a_limit_that_does_not_cross_rests_and_own_orders_never_match() -> None:
    m = harberger(s1=(60000, 6), s7=(50000, 5))
    assert seen(post(m, 1, "ask", 100)) == [
        (None, "add-order", {"order": {"id": 1, "sender": 1, "price": 100, "quantity": 1, "type": "ask",
                                       "condition": 0}})]
    assert seen(post(m, 7, "bid", 99))[0][1] == "add-order"
    assert seen(post(m, 1, "bid", 200)) == [
        (None, "add-order", {"order": {"id": 3, "sender": 1, "price": 200, "quantity": 1, "type": "bid",
                                       "condition": 0}})]
    assert [o["id"] for o in m.resting(0)] == [1, 2, 3]


def test_only_resting_orders_take_ids() -> None:
    m = harberger(s1=(60000, 6), s7=(50000, 5), s8=(50000, 5))
    post(m, 1, "ask", 100)  # id 1
    post(m, 7, "bid", 100)  # filled on arrival: no id
    post(m, 8, "bid", 1, now=True)  # market order, refused (empty side): no id
    post(m, 8, "bid", -1)  # refused: no id
    assert seen(post(m, 8, "bid", 50))[0][2]["order"]["id"] == 2
    assert seen(cancel(m, 8, 2)) == [(None, "delete-order", {"order": {"id": 2, "type": "bid", "condition": 0}})]
    assert seen(post(m, 8, "bid", 50))[0][2]["order"]["id"] == 3  # a cancelled id is not reused


def test_partial_fills_update_the_resting_order_and_rest_the_remainder() -> None:
    m = harberger(s1=(60000, 6), s7=(50000, 5))
    post(m, 7, "bid", 100, quantity=3)
    out = seen(post(m, 1, "ask", 90))
    assert out[-1] == (None, "update-order", {"order": {"id": 1, "type": "bid", "quantity": 2, "condition": 0}})
    out = seen(post(m, 1, "ask", 90, quantity=5))
    assert [o[1] for o in out] == ["asset-movement", "asset-movement", "contract-fulfilled", "delete-order",
                                   "add-order"]
    assert out[0][2]["movement"] == {"type": "sale", "quantity": 2, "price": 100, "total": 200}
    assert out[-1][2]["order"] == {"id": 2, "sender": 1, "price": 90, "quantity": 3, "type": "ask", "condition": 0}


def test_market_orders_take_the_best_prices_and_never_rest() -> None:
    m = harberger(s1=(60000, 6), s3=(60000, 6), s7=(50000, 5))
    assert seen(post(m, 7, "bid", 0, now=True)) == [
        (7, "order-refused", {"message": "Could not fulfill your order: no matching offers available"})]
    post(m, 1, "ask", 300)
    post(m, 3, "ask", 200)
    post(m, 7, "ask", 1)  # the buyer's own ask is not a counterpart
    out = seen(post(m, 7, "bid", 0, quantity=3, now=True))
    assert [o[2]["price"] for o in out if o[1] == "contract-fulfilled"] == [200, 300]
    assert out[-1] == (7, "order-refused", {"message": "Could not fulfill your order: undefined",
                                            "placeholder": "could-not-find-asks"})
    assert [o["sender"] for o in m.resting(0)] == [7]
    post(m, 7, "bid", 5)
    assert seen(post(m, 1, "ask", 10**9, quantity=2, now=True))[-1] == (
        1, "order-refused", {"message": "Could not fulfill your order: undefined",
                             "placeholder": "could-not-find-bids"})


def test_every_refusal_in_the_servers_words() -> None:
    m = harberger(s1=(60000, 2), s7=(1000, 5))
    order = {"gameId": 12, "type": "post-order"}
    assert seen(m.handle(7, order)) == [(7, "error", "Game 12: the order is null")]
    assert seen(post(m, 7, "bid", 5, condition=1)) == [
        (7, "error", "Game 12: wrong condition: 1. Should be the winning condition: 0")]
    assert seen(post(m, 7, "bid", None)) == [
        (7, "order-refused", {"message": "Order price was not filled.", "placeholder": "order-price-missing"})]
    assert seen(post(m, 7, "bid", -5)) == [
        (7, "order-refused", {"message": "Order prices must be non negative. Your price: -5",
                              "placeholder": "order-price-negative", "parameters": [-5]})]
    post(m, 1, "ask", 500)
    post(m, 1, "ask", 600)
    assert seen(post(m, 1, "ask", 700)) == [(1, "order-refused", {
        "message": "You have already committed all your shares 2 in other asks.\n"
                   "                                 You can cancel them if you want to publish new ones",
        "placeholder": "no-shares-available", "parameters": [2]})]
    post(m, 7, "bid", 400)
    assert seen(post(m, 7, "bid", 601)) == [(7, "order-refused", {
        "message": "You have already committed much of your balance (400) in other bids,\n"
                   "                                 The remainder 600 is not enough to bid 601. \n"
                   "                                 You may cancel previous bids to free some of your balance.",
        "placeholder": "no-balance-available", "parameters": [400, 600, 601]})]
    assert seen(post(m, 7, "sell", 5)) == [(7, "order-refused", {
        "message": "Could not fulfill your order: Did not understand the order type: sell. Must be bid|ask"})]
    assert seen(cancel(m, 7, 999)) == [(7, "error", "Order not found. 999")]
    assert seen(cancel(m, 7, 1)) == [(7, "error", "You cannot delete this order because you did not create it")]
    assert seen(cancel(m, 7, 3, condition=2)) == [
        (7, "error", "Game 12: wrong condition: 2. Should be the winning condition: 0")]
    assert len(m.resting(0)) == 3 and m.wallets[7][0]["balance"] == 1000


def test_futarchy_runs_two_books_with_their_own_ids_and_wallets() -> None:
    m = Market(wallets(s1=(60000, 6), s7=(50000, 5)), listed_conditions_rule([0, 1]))
    assert seen(post(m, 1, "ask", 100, condition=1))[0][2]["order"]["id"] == 1
    assert seen(post(m, 1, "ask", 100, condition=0))[0][2]["order"]["id"] == 1
    post(m, 7, "bid", 100, condition=1)
    assert m.wallets[7][1]["shares"] == 6 and m.wallets[7][0]["shares"] == 5
    assert m.median(1) == 100 and m.median(0) is None
    assert m.movement_list(1) == [{"from": 1, "to": 7, "price": 100, "condition": 1, "median": 100}]
    assert seen(post(m, 7, "bid", 5, condition=2)) == [(7, "error", "Game 12: condition not understood: 2")]
    assert seen(post(m, 7, "bid", 5, condition="0")) == [(7, "error", "Game 12: condition not understood: 0")]


def test_the_median_is_of_the_last_seven_trade_prices() -> None:
    m = harberger(s1=(10**6, 100), s7=(10**6, 100))
    medians = []
    for price in (100, 102, 50, 300, 104, 106, 108, 110, 1):
        post(m, 1, "ask", price)
        medians.append(seen(post(m, 7, "bid", price))[2][2]["median"])
    # the eighth trade drops the first price (100): median of 50,102,104,106,108,110,300; the ninth drops 102
    assert medians == [100, 101, 100, 101, 102, 103, 104, 106, 106]
    assert json.dumps(medians[1]) == "101"


def test_settlement_failures_stop_the_order_and_keep_earlier_trades() -> None:
    m = harberger(s1=(60000, 6), s3=(60000, 1), s7=(100, 5), s8=(50000, 5))
    post(m, 7, "bid", 60)  # rests: 100 - 60 >= 0 committed
    post(m, 1, "ask", 80)  # does not cross, rests
    post(m, 7, "bid", 0, now=True)  # a market order's price 0 passes the balance check; it pays 80
    assert m.wallets[7][0]["balance"] == 20
    out = seen(post(m, 3, "ask", 50))  # meets seat 7's bid at 60, which it can no longer pay
    assert out == [(3, "order-refused", {"message": "Could not fulfill your order: Player 7 (to), does not have the "
                                                    "funds to complete the operation: 20 < 60"})]
    assert [o["sender"] for o in m.resting(0)] == [7]  # the unpayable bid stays, the ask does not rest
    post(m, 8, "bid", 90)
    out = seen(post(m, 3, "ask", 10, quantity=2))  # quantity is never checked against shares: 1 share, 2 asked
    assert [o[1] for o in out] == ["asset-movement", "asset-movement", "contract-fulfilled", "delete-order",
                                   "order-refused"]
    assert out[-1][2] == {"message": "Could not fulfill your order: Player 3 (from), does not have the shares to "
                                     "complete the operation: 0 < 1"}
    assert m.wallets[3][0] == {"balance": 60090, "shares": 0, "cashForSniping": 250000}


def test_quantities_are_not_checked_as_on_the_real_server() -> None:
    """Observed on the real server (game 9 and 10): a negative ask makes the asker buy, a half share trades."""
    m = harberger(s1=(60000, 6), s7=(50000, 5))
    post(m, 7, "bid", 6280)
    out = seen(post(m, 1, "ask", 100, quantity=-1))
    assert out[0] == (1, "asset-movement", {"condition": 0, "movement": {"type": "sale", "quantity": -1,
                                                                         "price": 6280, "total": -6280},
                                            "balance": 53720, "shares": 7})
    assert out[-1] == (None, "update-order", {"order": {"id": 1, "type": "bid", "quantity": 2, "condition": 0}})
    m = harberger(s1=(60000, 6), s7=(40000, 6))
    post(m, 1, "ask", 169)
    out = seen(post(m, 7, "bid", 169, quantity=0.5))
    assert out[1][2]["balance"] == 39915.5 and out[1][2]["shares"] == 6.5


def test_text_prices_are_parsed_in_place_and_nan_buys_at_any_price() -> None:
    m = harberger(s1=(60000, 6), s3=(60000, 6), s7=(50000, 5))
    post(m, 1, "ask", 6641)
    message = {"gameId": 12, "type": "post-order",
               "order": {"price": "abc", "quantity": 1, "condition": 0, "type": "bid", "now": False}}
    out = seen(m.handle(7, message))
    assert out[2] == (None, "contract-fulfilled", {"from": 1, "to": 7, "price": 6641, "condition": 0, "median": 6641})
    assert math.isnan(message["order"]["price"])  # the real server's log shows it as null
    message = {"gameId": 12, "type": "post-order",
               "order": {"price": "250.5 coins", "quantity": 1, "condition": "0", "type": "ask", "now": False}}
    assert seen(m.handle(3, message)) == [(None, "add-order", {"order": {
        "id": 2, "sender": 3, "price": 250.5, "quantity": 1, "type": "ask", "condition": "0"}})]
    assert message["order"]["price"] == 250.5


def test_frames_on_which_the_server_throws_get_no_answer_and_change_nothing() -> None:
    m = harberger(s1=(60000, 6), s7=(50000, 5))
    post(m, 1, "ask", 100)
    assert m.handle(7, {"gameId": 12, "type": "cancel-order"}) == []
    assert post(m, 7, "buy", 100, now=True) == []  # `counterparts.length` of undefined
    assert seen(post(m, 7, "bid", 100, condition=True)) == [
        (7, "error", "Game 12: wrong condition: true. Should be the winning condition: 0")]
    assert post(m, 7, "bid", 100, condition=" 0") == []
    assert len(m.resting(0)) == 1 and m.wallets[7][0]["balance"] == 50000
    project = Market(wallets(s7=(50000, 5)), winning_condition_rule(1))
    assert post(project, 7, "bid", 100, condition=True) == []  # `true != 1` is false, then books[true] throws
    assert project.resting(1) == []


STATUS = [(name, rnd) for _, name, rnd in ROUNDS if "status" in rnd]


@pytest.mark.parametrize(("name", "rnd"), STATUS, ids=[name for name, _ in STATUS])
def test_the_status_view_of_the_books_is_the_servers(name: str, rnd: dict) -> None:
    """What `GET /games/status` showed of the books and trades once a probe game's market frames were in."""
    market = market_of(GAMES[name.rsplit("-round", 1)[0]]["game_type"], rnd)
    for seat, message in rnd["messages"]:
        market.handle(seat, copy.deepcopy(message))
    assert as_json(market.status_view()) == as_json(rnd["status"])
