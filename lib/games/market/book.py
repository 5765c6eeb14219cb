"""The IBEX market: a continuous double auction with one order book per condition, as the real server runs it.

Harberger and futarchy share this engine in their phase 6 (the real server's `harberger/phases/6.js` and
`futarchy/phases/6.js` differ only in which conditions are open and in one error text; see ConditionRule).
This module is pure: `Market.handle` takes a client frame and returns the frames the server sends, with their
recipients, in the server's order; the caller (a local server, a replay test) does the I/O.

What is reproduced, because a client can see it (the real server does it, so agents trained or tested here meet it):
- matching: an incoming ask meets the others' bids best price first, an incoming bid the others' asks; ties go to
  the earlier order; it trades while the resting price is at least as good as its limit, or at any price when
  `now` is truthy; every trade is at the **resting** order's price; own orders never match; the unfilled rest of
  a limit order rests with a fresh id (1, 2, ... per condition; filled, market and refused orders take none);
- the checks and refusals in the server's order and words, including what it fails to check: quantity is never
  validated (negative or fractional quantities trade as in JS), only resting asks are counted against shares,
  only resting bid prices against balance, a price that is not a number is parseFloat-ed (NaN: a market order);
- settlement: a trade whose seller lacks the shares or buyer the cash stops the incoming order with an
  `order-refused` and leaves earlier trades of that order and the offending resting order in place;
- the message is changed in place as the server does (a string price becomes its parsed number, NaN logs as null),
  so a record of the message after `handle` matches the real server's log.
How it is computed differs from the server where the result cannot: the server filters the whole book for the
seat's orders and sorts the others' orders at every order; `Book` keeps per-seat indexes and heaps instead, so an
order costs O(log n) and a flood from one seat cannot stall the local server (issue #20), with the same frames
(tests/games/market/test_book_index.py checks them against the scanning algorithm).
Not reproduced: a quantity that is not a JSON number (string, null, bool) is taken as missing (the real server's
JS coercions would turn wallets into strings); a frame on which the real server throws inside the handler (no
`order` in a cancel, an unknown order type with `now: true`, a condition key the book cannot index) gets no answer
and changes nothing, as there.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cmp_to_key
from typing import Any

from lib.ibex import js

UNDEFINED = js.MISSING  # JS `undefined`: a missing field
Out = tuple[int | None, dict]  # (recipient seat, None = every player; frame)
js_str = js.to_string  # how the server's template literals print a value
js_json = js.to_json_value  # what JSON.stringify sends: integral floats as ints, NaN as null, undefined dropped


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_truthy(value: Any) -> bool:
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, dict | list):
        return True
    return bool(value)


_FLOAT_PREFIX = re.compile(r"[+-]?(Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")


def parse_float(value: Any) -> float:
    """JavaScript's parseFloat: the longest numeric prefix of the value's text, else NaN."""
    if isinstance(value, bool) or value is None or value is UNDEFINED or isinstance(value, dict):
        return math.nan
    match = _FLOAT_PREFIX.match(js_str(value).lstrip())
    if not match:
        return math.nan
    text = match.group(0)
    return math.copysign(math.inf, -1 if text.startswith("-") else 1) if "Infinity" in text else float(text)


def _num(value: Any) -> float:
    """A quantity as the arithmetic sees it: a number, else NaN (JS `undefined` compares false and sums to NaN)."""
    return value if is_number(value) else math.nan


def event(kind: str, data: dict) -> dict:
    return {"type": "event", "eventType": kind, "data": js_json(data)}


def error(message: str) -> dict:
    return {"type": "error", "message": message}


class ConditionRule:
    """Which conditions a market takes orders for, and the server's words when a client names another one.

    Harberger opens only the winning condition and compares with JS `!=` (so the string "0" passes for 0);
    futarchy opens 0 and 1 and compares with `includes` (numbers only)."""

    def __init__(self, conditions: list[int], loose: bool, refusal: str):
        self.conditions, self.loose, self.refusal = conditions, loose, refusal

    def key(self, raw: Any) -> Any:
        """The book a raw condition addresses; None: refused with an error frame; UNDEFINED: the server throws."""
        for condition in self.conditions:
            if is_number(raw) and raw == condition:
                return condition
            if self.loose and isinstance(raw, str) and raw == str(condition):
                return condition  # JS indexes arrays by the string "0" as by 0
        if self.loose and _loose_equal(raw, self.conditions[0]):
            return UNDEFINED  # passes `!=`, then indexing the books with it throws inside the handler
        return None

    def message(self, game_id: Any, raw: Any) -> str:
        return self.refusal.format(game=js_str(game_id), condition=js_str(raw),
                                   winning=js_str(self.conditions[0]) if self.conditions else "undefined")


def _loose_equal(raw: Any, number: int) -> bool:
    if isinstance(raw, bool):
        return int(raw) == number
    if isinstance(raw, str):
        text = raw.strip()
        if text == "":
            return number == 0
        try:
            return float(text) == number
        except ValueError:
            return False
    return False


def winning_condition_rule(winning: int) -> ConditionRule:
    """Harberger: the market runs only under the condition the first declarations chose."""
    return ConditionRule([winning], True,
                         "Game {game}: wrong condition: {condition}. Should be the winning condition: {winning}")


def listed_conditions_rule(conditions: list[int]) -> ConditionRule:
    """Futarchy: one market per listed condition (0 No Project, 1 Project)."""
    return ConditionRule(list(conditions), False, "Game {game}: condition not understood: {condition}")


@dataclass
class Order:
    id: int
    sender: int
    price: Any
    quantity: Any
    type: str
    condition: Any  # as the client sent it (echoed in add-order)

    def as_data(self) -> dict:
        return {"id": self.id, "sender": self.sender, "price": self.price, "quantity": self.quantity,
                "type": self.type, "condition": self.condition}


@dataclass
class Trade:
    seller: int
    buyer: int
    quantity: Any
    price: Any


_EXACT = 2 ** 53  # every integer up to here is a double, so sums of prices on this grid are exact in any order


def _ordered_as_python(price: Any) -> bool:
    """Whether Python's ordering of this price agrees with the server's `a - b` sort comparator: NaN is not (the
    comparator calls it equal to everything, so where it lands depends on the sort algorithm's steps), nor is an int
    beyond 2**53 (`a - b` rounds it to a double before comparing)."""
    if isinstance(price, float):
        return not math.isnan(price)
    return -_EXACT <= price <= _EXACT


class _Committed:
    """One seat's resting bid prices summed as the server's loop sums them: `committed += o.price` in book order.

    That float sum depends on the order of the additions, so it cannot simply be decremented when a bid leaves
    the book. Where every partial sum is exact (integers, or binary fractions like .5, whose total stays under
    2**53 units of the finest one) the order does not matter and the exact total is the answer in O(1); NaN and
    Infinity decide the sum alone (prices are never negative, so no Infinity - Infinity). Otherwise (decimal
    fractions such as 0.1) the running sum stays right while bids are only appended, and is recomputed from the
    seat's own bids, once, after a removal."""

    __slots__ = ("nan", "inf", "floats", "exact", "denominators", "running", "stale")

    def __init__(self) -> None:
        self.nan = self.inf = self.floats = 0
        self.exact = Fraction(0)
        self.denominators: dict[int, int] = {}  # of the fractional prices: the finest one bounds exactness
        self.running: Any = 0  # JS `let committed = 0`, then each price added in book order
        self.stale = False

    def add(self, price: Any) -> None:
        self.running = self.running + price  # a new bid comes last in book order: the server adds it last too
        self._count(price, 1)

    def remove(self, price: Any) -> None:
        self._count(price, -1)
        self.stale = True

    def _count(self, price: Any, sign: int) -> None:
        if isinstance(price, float):
            self.floats += sign
            if math.isnan(price):
                self.nan += sign
                return
            if math.isinf(price):
                self.inf += sign
                return
            denominator = price.as_integer_ratio()[1]
            if denominator > 1:
                left = self.denominators.get(denominator, 0) + sign
                if left:
                    self.denominators[denominator] = left
                else:
                    del self.denominators[denominator]
        self.exact += Fraction(price) if sign > 0 else -Fraction(price)

    def value(self, bids: Iterable[Order]) -> Any:
        if self.nan:
            return math.nan
        if self.inf:
            return math.inf
        if not self.floats:
            return int(self.exact)  # JS numbers; Python keeps ints as ints, as the old sum of ints did
        if self.exact * max(self.denominators, default=1) < _EXACT:
            return float(self.exact)
        if self.stale:
            running: Any = 0
            for order in bids:  # only after a removal, and only where `clearly_below` could not decide
                running += order.price
            self.running, self.stale = running, False
        return self.running

    def clearly_below(self, limit: Any, count: int) -> bool:
        """Whether `limit < sum` is false for the server's float sum however its `count` additions rounded, so
        that a bid can be let through without recomputing a stale sum: a sum of k non-negative doubles in any
        order is within (k-1)u/(1-(k-1)u) of the exact one (Higham, recursive summation; u = 2**-53); 2k roundings
        are allowed for, as Python rounds an int to a double before adding it to a float."""
        if not self.stale or self.nan or self.inf or not is_number(limit) or not -2.0 ** 1000 < limit < 2.0 ** 1000:
            return False
        slack = Fraction(2 * count, 2 ** 53 - 2 * count) * self.exact
        return Fraction(limit) >= self.exact + slack


def _priority(order: Order) -> Any:
    """Heap key: asks cheapest first, bids dearest first; the order id breaks ties (earlier orders first)."""
    return order.price if order.type == "ask" else -order.price


class Book:
    """The resting orders of one condition, indexed so that each order costs O(log n) instead of the server's
    scans (every seat's orders filtered, then all the others' orders sorted, at each order).

    `orders` is the book as the server keeps it (ids grow, so id order is its append order). Each (type, seat)
    has its own index of orders (for its ask count and bid sum) and its own heap of (priority, id): the best order
    of the others is the best of the other seats' heap tops, so a seat's own orders are never stepped over, however
    many it has. Heaps delete lazily (an id no longer in the seat's index is dead) and are rebuilt when most of a
    heap is dead; a seat's structures go when its last order of a type goes, so an empty book holds nothing.
    Orders whose price Python cannot order as the server does (NaN, huge ints) stay out of the heaps; while one
    rests on a side, matching against that side falls back to the server's sort of the others' orders."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self._index: dict[str, dict[int, dict[int, Order]]] = {"ask": {}, "bid": {}}
        self._heaps: dict[str, dict[int, list[tuple[Any, int]]]] = {"ask": {}, "bid": {}}
        self._size = {"ask": 0, "bid": 0}
        self._unordered = {"ask": 0, "bid": 0}  # resting prices Python orders differently from the server's sort
        self._committed: dict[int, _Committed] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def count(self, kind: str, seat: int) -> int:
        """How many orders of this type the seat has resting."""
        return len(self._index[kind].get(seat, ()))

    def others_count(self, kind: str, seat: int) -> int:
        """How many orders of this type the other seats have resting."""
        return self._size[kind] - self.count(kind, seat)

    def committed(self, seat: int) -> Any:
        """The sum of the seat's resting bid prices, as the server computes it (int 0 without bids)."""
        state = self._committed.get(seat)
        return 0 if state is None else state.value(self._index["bid"][seat].values())

    def bid_fits(self, seat: int, room: Any) -> bool:
        """True when `room < committed(seat)` is certainly false, known without summing the seat's bids; False:
        ask `committed` (cheap except for decimal prices after a removal)."""
        state = self._committed.get(seat)
        return state is not None and state.clearly_below(room, self.count("bid", seat))

    def add(self, order: Order) -> None:
        kind, seat = order.type, order.sender
        self.orders[order.id] = order
        self._index[kind].setdefault(seat, {})[order.id] = order
        heap = self._heaps[kind].setdefault(seat, [])
        self._size[kind] += 1
        if _ordered_as_python(order.price):
            heapq.heappush(heap, (_priority(order), order.id))
        else:
            self._unordered[kind] += 1  # kept out of the heap: a NaN there would break its invariant for good
        if kind == "bid":
            self._committed.setdefault(seat, _Committed()).add(order.price)

    def remove(self, order: Order) -> None:
        kind, seat = order.type, order.sender
        del self.orders[order.id]
        index = self._index[kind][seat]
        del index[order.id]
        self._size[kind] -= 1
        if not _ordered_as_python(order.price):
            self._unordered[kind] -= 1
        if not index:  # the seat's last order of this type: release its structures
            del self._index[kind][seat]
            del self._heaps[kind][seat]
            if kind == "bid":
                del self._committed[seat]
            return
        if kind == "bid":
            self._committed[seat].remove(order.price)
        heap = self._heaps[kind][seat]
        if len(heap) > 2 * len(index) + 16:  # mostly dead entries: rebuild, so memory follows the live orders
            heap = [(_priority(o), i) for i, o in index.items() if _ordered_as_python(o.price)]
            heapq.heapify(heap)
            self._heaps[kind][seat] = heap

    def best_of_others(self, kind: str, seat: int) -> Iterator[Order]:
        """The other seats' orders of a type, best first, as the server's sorted copy lists them; the caller may
        change or remove the order it was given before it asks for the next one."""
        if self._unordered[kind]:
            # NaN or huge-int prices rest on this side: only the server's own sort reproduces their places
            yield from self._sorted_as_the_server(kind, seat)
            return
        while True:
            best: tuple[Any, int] | None = None
            for other, heap in self._heaps[kind].items():
                if other == seat:
                    continue
                index = self._index[kind][other]
                while heap[0][1] not in index:  # every live order is in its heap while no unordered one rests
                    heapq.heappop(heap)
                if best is None or heap[0] < best:
                    best, owner = heap[0], other
            if best is None:
                return
            yield self._index[kind][owner][best[1]]

    def _sorted_as_the_server(self, kind: str, seat: int) -> list[Order]:
        others = [o for o in self.orders.values() if o.type == kind and o.sender != seat]
        if kind == "bid":
            others.sort(key=cmp_to_key(lambda a, b: _compare_prices(b, a, by_price=True)))
        else:
            others.sort(key=cmp_to_key(lambda a, b: _compare_prices(a, b, by_price=True)))
        return others


@dataclass
class Market:
    """The books of one market phase. `wallets[seat][condition]` are the players' wallet dicts
    (`balance`, `shares`, ...), changed in place by trades, as the server changes its players' wallets."""

    wallets: dict[int, list[dict]]
    rule: ConditionRule
    books: dict[int, Book] = field(default_factory=dict)
    trades: dict[int, list[Trade]] = field(default_factory=dict)
    next_id: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for condition in self.rule.conditions:
            self.books.setdefault(condition, Book())
            self.trades.setdefault(condition, [])
            # id 0 goes to the server's "market-started" log row, so resting orders are numbered from 1
            self.next_id.setdefault(condition, 1)

    # ----- what a client sees

    def median(self, condition: int) -> Any:
        """Median of the last seven trade prices under the condition (None before the first trade)."""
        values = [t.price for t in self.trades.get(condition, [])[-7:]]  # not a copy of every trade
        if not values:
            return None
        values.sort(key=cmp_to_key(_compare_prices))
        half = len(values) // 2
        if len(values) % 2:
            return values[half]
        return (values[half - 1] + values[half]) / 2.0

    def resting(self, condition: int) -> list[dict]:
        """The resting orders under a condition, oldest first."""
        book = self.books.get(condition)
        return [js_json(o.as_data()) for o in book.orders.values()] if book is not None else []

    def movement_list(self, condition: int) -> list[dict]:
        """The trades under a condition, each with the condition's current median (as `GET /games/status` has it)."""
        median = self.median(condition)
        return [js_json({"from": t.seller, "to": t.buyer, "price": t.price, "condition": condition, "median": median})
                for t in self.trades.get(condition, [])]

    def status_view(self, slots: int = 3) -> dict:
        """`game.orders` and `game.movementList` of `GET /games/status` while the market runs: one list per
        condition slot (the server keeps three, the third never used)."""
        return {"orders": [self.resting(c) for c in range(slots)],
                "movementList": [self.movement_list(c) for c in range(slots)]}

    # ----- client frames

    def handle(self, seat: int, message: dict) -> list[Out]:
        """One `post-order` or `cancel-order` frame from a seat; the frames the server sends, in order."""
        if message.get("type") == "post-order":
            return self._post(seat, message)
        if message.get("type") == "cancel-order":
            return self._cancel(seat, message)
        raise ValueError(f"not a market message: {message.get('type')!r}")

    def _post(self, seat: int, message: dict) -> list[Out]:
        order = message.get("order", UNDEFINED)
        if order is None or order is UNDEFINED:
            return [(seat, error(f"Game {js_str(message.get('gameId', UNDEFINED))}: the order is null"))]
        if not isinstance(order, dict):
            order = {}  # JS reads every field of a non-object as undefined
        raw_condition = order.get("condition", UNDEFINED)
        key = self.rule.key(raw_condition)
        if key is None:
            return [(seat, error(self.rule.message(message.get("gameId", UNDEFINED), raw_condition)))]
        if key is UNDEFINED:
            return []
        refused = _refusal_sender(seat)
        if order.get("price") is None:
            return refused({"message": "Order price was not filled.", "placeholder": "order-price-missing"})
        if not is_number(order["price"]):
            order["price"] = parse_float(order["price"])  # in place, as the server: its log shows the parsed price
        price = order["price"]
        if price < 0:
            return refused({"message": f"Order prices must be non negative. Your price: {js_str(price)}",
                            "placeholder": "order-price-negative", "parameters": [price]})
        kind = order.get("type", UNDEFINED)
        wallet = self.wallets[seat][key]
        book = self.books[key]
        if kind == "ask":
            asks = book.count("ask", seat)
            if wallet["shares"] <= asks:
                return refused({
                    "message": f"You have already committed all your shares {js_str(wallet['shares'])} in other asks."
                               "\n                                 You can cancel them if you want to publish new ones",
                    "placeholder": "no-shares-available", "parameters": [wallet["shares"]]})
        elif kind == "bid":
            committed = None if book.bid_fits(seat, wallet["balance"] - price) else book.committed(seat)
            if committed is not None and wallet["balance"] - price < committed:
                remainder = wallet["balance"] - committed
                return refused({
                    "message": f"You have already committed much of your balance ({js_str(committed)}) in other bids,"
                               f"\n                                 The remainder {js_str(remainder)} is not enough to "
                               f"bid {js_str(price)}. \n                                 You may cancel previous bids "
                               "to free some of your balance.",
                    "placeholder": "no-balance-available", "parameters": [committed, remainder, price]})
        now = order.get("now", UNDEFINED)
        if now is True:
            if kind not in ("ask", "bid"):
                return []  # the server reads `.length` of undefined and throws
            if not book.others_count("bid" if kind == "ask" else "ask", seat):
                return refused({"message": "Could not fulfill your order: no matching offers available"})
        quantity = order.get("quantity", UNDEFINED)
        out: list[Out] = []
        failure, rest = self._fulfil(seat, kind, price, _num(quantity), js_truthy(now), key, raw_condition, out)
        if failure is not None:
            out.append((seat, event("order-refused", {"message": f"Could not fulfill your order: {failure}"})))
            return out
        if rest > 0:
            if not js_truthy(now):
                resting = Order(self.next_id[key], seat, price, rest, kind, raw_condition)
                self.next_id[key] += 1
                self.books[key].add(resting)
                out.append((None, event("add-order", {"order": resting.as_data()})))
            else:
                placeholder = "could-not-find-bids" if kind == "ask" else "could-not-find-asks"
                out.append((seat, event("order-refused", {"message": "Could not fulfill your order: undefined",
                                                          "placeholder": placeholder})))
        return out

    def _fulfil(self, seat: int, kind: Any, price: Any, quantity: Any, now: bool, key: int, raw_condition: Any,
                out: list[Out]) -> tuple[str | None, Any]:
        """Match an incoming order; (error text or None, unfilled quantity). Trades already made stay made."""
        if kind not in ("ask", "bid"):
            return f"Did not understand the order type: {js_str(kind)}. Must be bid|ask", UNDEFINED
        book = self.books[key]
        for resting in book.best_of_others("bid" if kind == "ask" else "ask", seat):
            worse = resting.price < price if kind == "ask" else resting.price > price
            if worse and not now:
                break
            seller, buyer = (seat, resting.sender) if kind == "ask" else (resting.sender, seat)
            if resting.quantity > quantity:
                failure = self._transfer(seller, buyer, quantity, resting.price, key, raw_condition, out)
                if failure is not None:
                    return failure, UNDEFINED
                resting.quantity -= quantity
                out.append((None, event("update-order", {"order": {
                    "id": resting.id, "type": resting.type, "quantity": resting.quantity, "condition": key}})))
                return None, 0
            traded = quantity if resting.quantity == quantity else resting.quantity
            failure = self._transfer(seller, buyer, traded, resting.price, key, raw_condition, out)
            if failure is not None:
                return failure, UNDEFINED
            book.remove(resting)
            out.append((None, event("delete-order", {"order": {"id": resting.id, "type": resting.type,
                                                              "condition": key}})))
            if resting.quantity == quantity:
                return None, 0
            quantity -= resting.quantity
        return None, quantity

    def _transfer(self, seller: int, buyer: int, quantity: Any, price: Any, key: int, raw_condition: Any,
                  out: list[Out]) -> str | None:
        sold, bought = self.wallets[seller][key], self.wallets[buyer][key]
        if sold["shares"] < quantity:
            return (f"Player {seller} (from), does not have the shares to complete the operation: "
                    f"{js_str(sold['shares'])} < {js_str(quantity)}")
        if bought["balance"] < quantity * price:
            return (f"Player {buyer} (to), does not have the funds to complete the operation: "
                    f"{js_str(bought['balance'])} < {js_str(quantity * price)}")
        total = quantity * price
        sold["shares"] -= quantity
        sold["balance"] += total
        out.append((seller, event("asset-movement", {
            "condition": raw_condition, "movement": {"type": "sale", "quantity": quantity, "price": price,
                                                     "total": total},
            "balance": sold["balance"], "shares": sold["shares"]})))
        bought["shares"] += quantity
        bought["balance"] -= total
        out.append((buyer, event("asset-movement", {
            "condition": raw_condition, "movement": {"type": "purchase", "quantity": quantity, "price": price,
                                                     "total": total},
            "balance": bought["balance"], "shares": bought["shares"]})))
        self.trades[key].append(Trade(seller, buyer, quantity, price))
        out.append((None, event("contract-fulfilled", {"from": seller, "to": buyer, "price": price,
                                                       "condition": raw_condition, "median": self.median(key)})))
        return None

    def _cancel(self, seat: int, message: dict) -> list[Out]:
        order = message.get("order", UNDEFINED)
        if order is None or order is UNDEFINED:
            return []  # the server reads `message.order.condition` and throws
        if not isinstance(order, dict):
            order = {}  # JS reads every field of a non-object as undefined
        raw_condition = order.get("condition", UNDEFINED)
        key = self.rule.key(raw_condition)
        if key is None:
            return [(seat, error(self.rule.message(message.get("gameId", UNDEFINED), raw_condition)))]
        if key is UNDEFINED:
            return []
        wanted = order.get("id", UNDEFINED)
        found = self.books[key].orders.get(wanted) if is_number(wanted) else None  # 3.0 finds id 3, as `==`
        if found is None:
            return [(seat, error(f"Order not found. {js_str(wanted)}"))]
        if found.sender != seat:
            return [(seat, error("You cannot delete this order because you did not create it"))]
        self.books[key].remove(found)
        return [(None, event("delete-order", {"order": {"id": found.id, "type": found.type, "condition": key}}))]


def _compare_prices(a: Any, b: Any, by_price: bool = False) -> int:
    """JS `a - b` as a sort comparator: NaN counts as equal (V8 and CPython both sort stably with TimSort)."""
    if by_price:
        a, b = a.price, b.price
    difference = a - b
    if isinstance(difference, float) and math.isnan(difference):
        return 0
    return -1 if difference < 0 else (1 if difference > 0 else 0)


def _refusal_sender(seat: int):
    return lambda data: [(seat, event("order-refused", data))]
