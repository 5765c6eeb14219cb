"""The pre-#20 scanning order book, kept as the reference the indexed book (lib.games.market.book) must match."""

from __future__ import annotations

from functools import cmp_to_key
from typing import Any

from lib.games.market import book as market_module
from lib.games.market.book import (
    UNDEFINED,
    Market,
    Order,
    Out,
    _compare_prices,
    _num,
    _refusal_sender,
    error,
    event,
    is_number,
    js_str,
    js_truthy,
    parse_float,
)


class ReferenceMarket(Market):
    """The pre-#20 book: a plain list per condition, scanned and sorted at every order (kept verbatim)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ref: dict[int, list[Order]] = {c: [] for c in self.rule.conditions}

    def resting(self, condition: int) -> list[dict]:
        return [market_module.js_json(o.as_data()) for o in self.ref.get(condition, [])]

    def _post(self, seat: int, message: dict) -> list[Out]:
        order = message.get("order", UNDEFINED)
        if order is None or order is UNDEFINED:
            return [(seat, error(f"Game {js_str(message.get('gameId', UNDEFINED))}: the order is null"))]
        if not isinstance(order, dict):
            order = {}
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
            order["price"] = parse_float(order["price"])
        price = order["price"]
        if price < 0:
            return refused({"message": f"Order prices must be non negative. Your price: {js_str(price)}",
                            "placeholder": "order-price-negative", "parameters": [price]})
        kind = order.get("type", UNDEFINED)
        wallet = self.wallets[seat][key]
        own = [o for o in self.ref[key] if o.sender == seat]
        if kind == "ask":
            asks = sum(1 for o in own if o.type == "ask")
            if wallet["shares"] <= asks:
                return refused({
                    "message": f"You have already committed all your shares {js_str(wallet['shares'])} in other asks."
                               "\n                                 You can cancel them if you want to publish new ones",
                    "placeholder": "no-shares-available", "parameters": [wallet["shares"]]})
        elif kind == "bid":
            committed = 0
            for o in own:
                if o.type == "bid":
                    committed += o.price
            if wallet["balance"] - price < committed:
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
                return []
            other = "bid" if kind == "ask" else "ask"
            if not any(o.type == other and o.sender != seat for o in self.ref[key]):
                return refused({"message": "Could not fulfill your order: no matching offers available"})
        quantity = order.get("quantity", UNDEFINED)
        out: list[Out] = []
        failure, rest = self._fulfil(seat, kind, price, _num(quantity), js_truthy(now), key, raw_condition, out)
        if failure is not None:
            out.append((seat, event("order-refused", {"message": f"Could not fulfill your order: {failure}"})))
            return out
        if rest > 0:
            if not js_truthy(now):
                resting = market_module.Order(self.next_id[key], seat, price, rest, kind, raw_condition)
                self.next_id[key] += 1
                self.ref[key].append(resting)
                out.append((None, event("add-order", {"order": resting.as_data()})))
            else:
                placeholder = "could-not-find-bids" if kind == "ask" else "could-not-find-asks"
                out.append((seat, event("order-refused", {"message": "Could not fulfill your order: undefined",
                                                          "placeholder": placeholder})))
        return out

    def _fulfil(self, seat: int, kind: Any, price: Any, quantity: Any, now: bool, key: int, raw_condition: Any,
                out: list[Out]) -> tuple[str | None, Any]:
        if kind == "ask":
            others = [o for o in self.ref[key] if o.type == "bid" and o.sender != seat]
            others.sort(key=cmp_to_key(lambda a, b: _compare_prices(b, a, by_price=True)))
        elif kind == "bid":
            others = [o for o in self.ref[key] if o.type == "ask" and o.sender != seat]
            others.sort(key=cmp_to_key(lambda a, b: _compare_prices(a, b, by_price=True)))
        else:
            return f"Did not understand the order type: {js_str(kind)}. Must be bid|ask", UNDEFINED
        for resting in others:
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
            self.ref[key].remove(resting)
            out.append((None, event("delete-order", {"order": {"id": resting.id, "type": resting.type,
                                                              "condition": key}})))
            if resting.quantity == quantity:
                return None, 0
            quantity -= resting.quantity
        return None, quantity

    def _cancel(self, seat: int, message: dict) -> list[Out]:
        order = message.get("order", UNDEFINED)
        if order is None or order is UNDEFINED:
            return []
        if not isinstance(order, dict):
            order = {}
        raw_condition = order.get("condition", UNDEFINED)
        key = self.rule.key(raw_condition)
        if key is None:
            return [(seat, error(self.rule.message(message.get("gameId", UNDEFINED), raw_condition)))]
        if key is UNDEFINED:
            return []
        wanted = order.get("id", UNDEFINED)
        found = next((o for o in self.ref[key] if is_number(wanted) and o.id == wanted), None)
        if found is None:
            return [(seat, error(f"Order not found. {js_str(wanted)}"))]
        if found.sender != seat:
            return [(seat, error("You cannot delete this order because you did not create it"))]
        self.ref[key].remove(found)
        return [(None, event("delete-order", {"order": {"id": found.id, "type": found.type, "condition": key}}))]
