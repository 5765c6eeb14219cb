"""The indexed order book (lib/games/market/book.py `Book`) against the algorithm it replaced, and its cost per order.

The reference below is the engine's matching as it was before issue #20 (and as the real server's phase-6 code
runs it): each order filters the whole book for the seat's own orders and sorts the others' orders. It was
checked frame by frame against recorded real-server games, so the indexed book must give the very same frames
on any stream of orders, the JavaScript quirks included (NaN prices, float sums in book order, string ids).
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest

from lib.games.market import book as market_module
from lib.games.market.book import (
    Market,
    Order,
    listed_conditions_rule,
    winning_condition_rule,
)
from tests.helpers.reference_book import ReferenceMarket

SEATS = (1, 2, 3, 4, 5, 6)


def make_wallets(rng: random.Random, rich: bool) -> dict[int, list[dict]]:
    def wallet() -> dict:
        balance = rng.choice([10 ** 9, 10 ** 6]) if rich else rng.choice([300, 1000, 2500.5, 4000])
        return {"balance": balance, "shares": rng.choice([10 ** 6, 40] if rich else [3, 8, 20]),
                "cashForSniping": 250000}
    return {s: [wallet() for _ in range(3)] for s in SEATS}


PRICE_STYLES = {
    # integers and integral floats: the bid sum's exact path
    "whole": lambda r: r.choice([r.randint(1, 60), float(r.randint(1, 60))]),
    # binary and decimal fractions: the exact path for .5/.25, the book-order running sum for .1
    "fractions": lambda r: r.choice([r.randint(1, 60) + r.choice([0.5, 0.25, 0.75]),
                                     round(r.uniform(1, 60), 1), round(r.uniform(1, 60), 2), r.randint(1, 60)]),
    # what only the permissive server lets through: text, NaN, Infinity, -0, huge ints, missing, negative
    "junk": lambda r: r.choice([r.randint(1, 60), round(r.uniform(1, 60), 1), "abc", "12.5x", "Infinity", -0.0,
                                2 ** 60 + r.randint(0, 3), None, -5, 0, str(r.randint(1, 60))]),
}


def random_stream(rng: random.Random, style: str, count: int, conditions: list[int]) -> list[tuple[int, dict]]:
    price_of = PRICE_STYLES[style]
    junk = style == "junk"
    stream = []
    posted = 0
    for _ in range(count):
        seat = rng.choice(SEATS)
        condition: Any = rng.choice(conditions)
        if junk and rng.random() < 0.03:
            condition = rng.choice([7, "0", "x", None])
        if rng.random() < 0.25:
            wanted: Any = rng.randint(1, posted + 3)
            if junk and rng.random() < 0.2:
                wanted = rng.choice([str(wanted), float(wanted), math.nan, None, True])
            order = {"id": wanted, "condition": condition}
            stream.append((seat, {"gameId": 3, "type": "cancel-order", "order": order}))
            continue
        posted += 1
        order: dict[str, Any] = {"type": rng.choice(["bid", "ask"]), "price": price_of(rng), "condition": condition,
                                 "quantity": rng.choice([1, 1, 2, 3, 5]), "now": rng.random() < 0.1}
        if junk:
            if rng.random() < 0.05:
                order["type"] = rng.choice(["buy", None])
            if rng.random() < 0.1:
                order["quantity"] = rng.choice([0, -1, 1.5, "2", None])
            if rng.random() < 0.05:
                del order["quantity"]
            if rng.random() < 0.05:
                order["now"] = rng.choice(["yes", 1, None])
        stream.append((seat, {"gameId": 3, "type": "post-order", "order": order}))
    return stream


def wire(outs: Any) -> str:
    return json.dumps(outs)  # exact text: 8689 and 8689.0, key order and recipients all count


CASES = [(style, seed, rich) for style in PRICE_STYLES for seed in (1, 2) for rich in (True, False)]
CASE_IDS = [f"{style}-{seed}-{'rich' if rich else 'tight'}" for style, seed, rich in CASES]


@pytest.mark.parametrize(("style", "seed", "rich"), CASES, ids=CASE_IDS)
def test_the_indexed_book_answers_every_order_as_the_scanning_book(style: str, seed: int, rich: bool) -> None:
    """Thousands of seeded orders and cancels: the same frames, wallets and resting orders after each one."""
    rng = random.Random(f"{style}-{seed}-{rich}")
    harberger = seed == 1
    rule_of = (lambda: winning_condition_rule(0)) if harberger else (lambda: listed_conditions_rule([0, 1]))
    wallets = make_wallets(rng, rich)
    new, old = Market(copy.deepcopy(wallets), rule_of()), ReferenceMarket(copy.deepcopy(wallets), rule_of())
    stream = random_stream(rng, style, 2500, [0] if harberger else [0, 1])
    kinds: set[str] = set()
    for step, (seat, message) in enumerate(stream):
        got, want = new.handle(seat, copy.deepcopy(message)), old.handle(seat, copy.deepcopy(message))
        assert wire(got) == wire(want), f"step {step}: {message}"
        kinds.update(f.get("eventType", f["type"]) for _, f in got)
        if step % 50 == 0 or step == len(stream) - 1:
            assert wire(new.wallets) == wire(old.wallets), f"step {step}"  # as text: NaN balances occur
            for condition in old.rule.conditions:
                assert json.dumps(new.resting(condition)) == json.dumps(old.resting(condition)), f"step {step}"
                assert len(new.books[condition]) == len(old.ref[condition])
    assert {"add-order", "delete-order", "contract-fulfilled", "order-refused"} <= kinds


def test_the_bid_sum_keeps_the_servers_float_rounding_after_cancels() -> None:
    """The server sums a seat's bid prices in book order: after 0.1, 0.2, 0.3 and a cancel of 0.1 that is
    0.2 + 0.3 = 0.5, where a running total less the cancelled price would say 0.5000000000000001."""
    assert (0.1 + 0.2 + 0.3) - 0.1 != 0.2 + 0.3
    wallets = {1: [{"balance": 0.7, "shares": 0, "cashForSniping": 0} for _ in range(3)]}
    new, old = Market(copy.deepcopy(wallets), winning_condition_rule(0)), \
        ReferenceMarket(copy.deepcopy(wallets), winning_condition_rule(0))
    steps = [("post", 0.1), ("post", 0.2), ("post", 0.3), ("cancel", 1), ("post", 0.25), ("post", 0.1),
             ("cancel", 3), ("post", 0.3), ("post", 0.15)]
    refusals = []
    for what, value in steps:
        message = ({"gameId": 1, "type": "post-order",
                    "order": {"type": "bid", "price": value, "quantity": 1, "condition": 0}} if what == "post"
                   else {"gameId": 1, "type": "cancel-order", "order": {"id": value, "condition": 0}})
        got, want = new.handle(1, copy.deepcopy(message)), old.handle(1, copy.deepcopy(message))
        assert wire(got) == wire(want)
        refusals += [f["data"]["parameters"] for _, f in got if f.get("eventType") == "order-refused"]
    assert refusals[0][0] == 0.5 and new.books[0].committed(1) == old_sum(old)


def old_sum(market: ReferenceMarket) -> Any:
    total: Any = 0
    for order in market.ref[0]:
        total += order.price
    return total


# ----- the work an order costs, counted (never timed)


class Counter:
    reads = 0


class CountedPrice(float):
    """A price that counts every comparison and arithmetic step made on it."""

    def _tick(self) -> None:
        Counter.reads += 1

    def __lt__(self, other: object) -> bool:
        self._tick()
        return float(self) < other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        self._tick()
        return float(self) > other  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        self._tick()
        return float(self) <= other  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        self._tick()
        return float(self) >= other  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        self._tick()
        return float(self) == other

    __hash__ = float.__hash__

    def __neg__(self) -> CountedPrice:
        self._tick()
        return CountedPrice(-float(self))

    def __sub__(self, other: Any) -> float:
        self._tick()
        return float(self) - other

    def __rsub__(self, other: Any) -> float:
        self._tick()
        return other - float(self)

    def __add__(self, other: Any) -> float:
        self._tick()
        return float(self) + other

    __radd__ = __add__


class CountedOrder(Order):
    """An order that counts every read of its fields: a scan of the book reads them all."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("sender", "type", "price", "id", "quantity"):
            Counter.reads += 1
        return object.__getattribute__(self, name)


def work_per_order(monkeypatch: pytest.MonkeyPatch, resting: int, probe: int = 200, cents: float = 0.0) -> float:
    """Counted steps per order of a seat that already has `resting` bids in the book, while it posts more bids,
    a second seat sells into them and a third cancels its own: the flood of issue #20. `cents` added to every
    price makes the bid sum inexact in floats (0.1), so that each fill leaves the seat's sum to recompute."""
    monkeypatch.setattr(market_module, "Order", CountedOrder)
    wallets = {s: [{"balance": 10 ** 12, "shares": 10 ** 9, "cashForSniping": 0} for _ in range(3)] for s in (1, 2, 3)}
    m = Market(wallets, winning_condition_rule(0))

    def post(seat: int, kind: str, price: int) -> None:
        m.handle(seat, {"gameId": 1, "type": "post-order",
                        "order": {"type": kind, "price": CountedPrice(price + cents), "quantity": 1, "condition": 0}})

    rng = random.Random(resting)
    for _ in range(resting):
        post(1, "bid", rng.randint(1, 1000))
    for _ in range(resting // 4):
        post(3, "ask", rng.randint(2000, 3000))  # never crossed: the other side of the book grows too
    Counter.reads = 0
    for _ in range(probe):
        post(1, "bid", rng.randint(1, 1000))
        post(2, "ask", 1)  # takes seat 1's best bid
        post(3, "ask", rng.randint(2000, 3000))
        m.handle(3, {"gameId": 1, "type": "cancel-order", "order": {"id": m.next_id[0] - 1, "condition": 0}})
    return Counter.reads / (4 * probe)


@pytest.mark.parametrize("cents", [0.0, 0.1], ids=["whole-prices", "decimal-prices"])
def test_an_order_costs_logarithmic_work_in_the_size_of_the_book(monkeypatch: pytest.MonkeyPatch,
                                                                 cents: float) -> None:
    """Doubling the book twice (1000 -> 4000 resting bids of one seat) must not double the work per order: the
    old book read every order at every order (linear), a sort n log n. Decimal prices too, whose float sum
    cannot be kept by subtraction: a bid that fits with room to spare is let through without re-summing."""
    small, large = work_per_order(monkeypatch, 1000, cents=cents), work_per_order(monkeypatch, 4000, cents=cents)
    assert large <= small * 1.5 + 5, (small, large)
    assert small < 150  # a few heap levels, not a pass over a thousand orders


def test_the_reference_book_fails_the_work_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe measures what it claims: the scanning book's work grows with the book."""
    monkeypatch.setitem(globals(), "Market", ReferenceMarket)
    small, large = work_per_order(monkeypatch, 64, probe=20), work_per_order(monkeypatch, 256, probe=20)
    assert large > small * 3


def test_an_emptied_book_holds_no_index_or_heap_entries() -> None:
    """Memory follows the live orders: when the flood is cancelled or filled, nothing of it stays behind."""
    wallets = {s: [{"balance": 10 ** 9, "shares": 10 ** 6, "cashForSniping": 0} for _ in range(3)] for s in (1, 2)}
    m = Market(wallets, winning_condition_rule(0))
    for price in range(1, 2001):
        m.handle(1, {"gameId": 1, "type": "post-order",
                     "order": {"type": "bid", "price": price % 97 + 0.1, "quantity": 1, "condition": 0}})
    book = m.books[0]
    for order_id in range(1, 1901):  # cancel most: the heap is rebuilt, not left full of dead entries
        m.handle(1, {"gameId": 1, "type": "cancel-order", "order": {"id": order_id, "condition": 0}})
    assert len(book._heaps["bid"][1]) <= 2 * 100 + 16
    m.handle(2, {"gameId": 1, "type": "post-order", "order": {"type": "ask", "price": 0, "quantity": 100,
                                                              "condition": 0}})
    assert len(book) == 0 and book.orders == {}
    assert book._index == {"ask": {}, "bid": {}} and book._heaps == {"ask": {}, "bid": {}}
    assert book._committed == {} and book.committed(1) == 0
