"""What one player knows about a Harberger or futarchy game, folded from the server's frames one by one.

The market games' counterpart of lib/games/voting/view.py (docs/protocol.md sections 10 and 11): seat and
role,
the own lot's private values, the wallets (one per condition), the private and public price signals, the published
declarations, the winning condition, the snipes made and suffered, the order books of phase 6 as the broadcasts
build them, the trades and their medians, and each round's summary. An agent feeds it live frames and its own sent
actions (`apply_sent`); the dataset builder feeds it a seat's replayed frames. Prompts, validation and the baseline
policy read only this view, so what a model is trained on and played with cannot drift apart. Nothing here reads
files.

Own orders in flight: a `post-order` has no acknowledgement. It ends as an `add-order` with this seat as sender (it
rests), an `asset-movement` to this seat (it traded on arrival), an `order-refused` or an error frame. Until then
it is `pending` and counts against the uncommitted balance or shares, so that a second order sent before the first
one's answer cannot overspend (the real server checks only resting orders, docs/protocol.md section 11).

Own cancels in flight: a `cancel-order` ends as the order's `delete-order` (cancelled, or filled meanwhile) or an
error frame (`Order not found. N`: it had traded or gone already). Until then its id is in `cancelling`: the order
still binds its money or share (it may yet trade), but nobody cancels it again (the server would answer
"Order not found. N", #20).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lib.games.common.view import SEAT_EVENT_HANDLERS  # the events every IBEX game's view folds alike
from lib.games.market.rules import FUTARCHY, HARBERGER
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER, ROLE_SPECULATOR

CONDITION_IDS = (0, 1)  # No Project, Project; the third slot (project B) is never used
DECLARATION_PHASES = (2, 7)
SPECULATION_PHASES = (3, 8)
MARKET_PHASE = 6
MARKET_EVENTS = frozenset({"add-order", "delete-order", "update-order", "asset-movement", "contract-fulfilled",
                           "order-refused", "value-signals", "winning-condition", "phase-transition"})


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@dataclass
class MarketRound:
    """One round of a market game as this player saw it."""

    round: int
    values: list[int] | None = None  # own lot's true value [No Project, Project] (landholders)
    lot: int | None = None  # own lot id (landholders)
    start_wallets: list[dict[str, Any]] | None = None  # per condition {balance, shares}, as assign-role gave them
    wallets: list[dict[str, Any]] | None = None  # per condition, after the trades so far
    signals: list[Any] | None = None  # private price signals S[c] (phase 5)
    public_signal: list[Any] | None = None
    declarations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # phase 3/8 -> published lots
    my_declaration: dict[int, list[Any]] = field(default_factory=dict)  # phase 2/7 -> own declaration (sent)
    declaration_acked: set[int] = field(default_factory=set)  # phases whose declaration-received arrived
    my_snipes: dict[int, list[list[Any]]] = field(default_factory=dict)  # phase 3/8 -> lots per condition (sent)
    speculation_acked: set[int] = field(default_factory=set)
    winning: int | None = None
    snipes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "first"/"second" -> first-snipes data
    books: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # condition -> id -> resting order
    trades: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # condition -> contract-fulfilled data
    movements: list[dict[str, Any]] = field(default_factory=list)  # own asset-movement data, in order
    pending: list[dict[str, Any]] = field(default_factory=list)  # own post-order orders not answered yet
    cancelling: list[int] = field(default_factory=list)  # ids of own orders whose cancel-order is not answered yet
    refusals: list[dict[str, Any]] = field(default_factory=list)  # order-refused data
    final_price: Any = None
    summary: dict[str, Any] | None = None  # round-summary data
    # What a bounded copy (lib.games.market.prompts.bounded_view) left out, per condition: counts of the orders
    # with a price ("bids", "asks", and of them the own "my_bids", "my_asks"), the earlier trades
    # ("trades"), the money of those own bids ("my_money") and the own asks of any price ("my_shares"); the prompt
    # counts them and committed() adds them up, so the copy says what the whole view says.
    hidden: dict[int, dict[str, Any]] = field(default_factory=dict)


class BookIndex:
    """One condition's resting orders of the current round kept ranked as they come and go, so that the best few
    per side, the own ones, and the counts and money of the rest are read without walking the whole book (a
    prompt built at every order of a seat that left thousands resting would be quadratic). It serves the book
    dict it was built from (`book`, by identity) while the view folds frames into that dict; `MarketView.index`
    builds it again whenever it finds the book replaced, resized behind its back, or the seat learned."""

    def __init__(self, book: dict[int, dict[str, Any]], me: Any) -> None:
        self.book, self.me = book, me
        self.ranked: dict[str, list[tuple[Any, int]]] = {"bid": [], "ask": []}  # priced orders, best first
        self.own_ranked: dict[str, list[tuple[Any, int]]] = {"bid": [], "ask": []}
        self.own: dict[str, dict[int, None]] = {"bid": {}, "ask": {}}  # own orders of any price, oldest first
        self.own_money: float = 0  # the prices of the own priced bids
        self.seq: dict[int, tuple[int, str | None, Any]] = {}  # id -> (arrival number, side, rank key or None)
        self._next = 0
        for order in book.values():
            self.put(order)

    def put(self, order: dict[str, Any]) -> None:
        number = order["id"]
        arrival = self.drop(number)
        if arrival is None:
            arrival, self._next = self._next, self._next + 1
        side = order.get("type") if order.get("type") in ("bid", "ask") else None
        price, key = order.get("price"), None
        if side is not None and _number(price):
            key = (-price if side == "bid" else price, number)
            bisect.insort(self.ranked[side], key)
        if side is not None and order.get("sender") == self.me:
            self.own[side][number] = None
            if key is not None:
                bisect.insort(self.own_ranked[side], key)
                if side == "bid":
                    self.own_money += price
        self.seq[number] = (arrival, side, key)

    def drop(self, number: Any) -> int | None:
        """Forget an order; its arrival number (None if it was not there)."""
        known = self.seq.pop(number, None)
        if known is None:
            return None
        arrival, side, key = known
        if side is not None and key is not None:
            ranked = self.ranked[side]
            del ranked[bisect.bisect_left(ranked, key)]
        if side is not None and number in self.own[side]:
            del self.own[side][number]
            if key is not None:
                own = self.own_ranked[side]
                del own[bisect.bisect_left(own, key)]
                if side == "bid":
                    self.own_money -= -key[0]
        return arrival


@dataclass
class MarketView:
    """A market game as seen by one seat. `apply` folds server frames, `apply_sent` own actions."""

    game_id: int | None = None
    game_type: str | None = None  # harberger | futarchy; from the caller (parameters) or the events
    number: int | None = None
    role: int | None = None
    tag: str | None = None
    round: int = 0
    phase: int = 0
    deadline_ms: int | None = None
    boundaries: dict[str, Any] | None = None
    tax_rate_initial: Any = None
    tax_rate_final: Any = None
    players: list[dict[str, Any]] = field(default_factory=list)
    rounds: dict[int, MarketRound] = field(default_factory=dict)
    round_count: int | None = None
    practice_round: bool | None = None
    ready_acked: bool = False
    game_over: bool = False
    reward: dict[str, Any] | None = None
    server_action: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The current phase is ending: its timer was reset, or the next phase's timer set (both come before the next
    # phase-transition, with the old phase's exit events in between). Nothing may be sent for it any more.
    closing: bool = False
    market_version: int = 0  # bumped by every frame that may change the books, the wallets or the signals
    _movement: Any = field(default=None, compare=False, repr=False)  # (condition, side) of the last own trade
    _indexes: dict[int, BookIndex] = field(default_factory=dict, compare=False, repr=False)
    # Own orders that went (traded, or were removed) while this seat's cancel of them was on its way: the server
    # answers that cancel later with "Order not found. N", a race no client can avoid (cancel_race). Not part of
    # what the seat knows of the game: no prompt, check or sidecar line reads it.
    _overtaken: list[Any] = field(default_factory=list, compare=False, repr=False)

    @property
    def current(self) -> MarketRound:
        return self.record(self.round)

    def record(self, round_number: int) -> MarketRound:
        if round_number not in self.rounds:
            self.rounds[round_number] = MarketRound(round_number)
        return self.rounds[round_number]

    # ----- what the view can answer

    def market_conditions(self) -> list[int]:
        """The books open in phase 6: both in futarchy, the winning condition's in Harberger."""
        if self.game_type == FUTARCHY:
            return list(CONDITION_IDS)
        winning = self.current.winning
        return [winning] if winning in CONDITION_IDS else []

    def lot_ids(self) -> list[int]:
        """Ids of the lots that exist: from the published declarations, else from the landholders' seats."""
        rec = self.current
        for phase in (8, 3):
            lots = [d.get("id") for d in rec.declarations.get(phase, []) if isinstance(d, dict)]
            if lots:
                return [x for x in lots if isinstance(x, int)]
        # Lot ids go to landholders in seat order (marketgames.seat_layout).
        landholders = [p.get("number") for p in self.players if p.get("role") in (ROLE_DEVELOPER, ROLE_OWNER)]
        return list(range(1, len([n for n in landholders if isinstance(n, int)]) + 1))

    def index(self, condition: int) -> BookIndex:
        """The ranked index of a condition's book in the current round (see BookIndex)."""
        book = self.current.books.get(condition)
        if book is None:
            return BookIndex({}, self.number)
        index = self._indexes.get(condition)
        if index is None or index.book is not book or index.me != self.number or len(index.seq) != len(book):
            index = self._indexes[condition] = BookIndex(book, self.number)
        return index

    def wallet(self, condition: int) -> dict[str, Any] | None:
        wallets = self.current.wallets
        if isinstance(wallets, list) and 0 <= condition < len(wallets) and isinstance(wallets[condition], dict):
            return wallets[condition]
        return None

    def my_orders(self, condition: int) -> list[dict[str, Any]]:
        """Own resting orders in a condition's book, oldest first."""
        return [o for o in self.current.books.get(condition, {}).values() if o.get("sender") == self.number]

    def committed(self, condition: int) -> tuple[float, int]:
        """(money promised to own resting and pending bids, shares promised to own resting and pending asks)."""
        left_out = self.current.hidden.get(condition, {})
        money, shares = float(left_out.get("my_money", 0)), int(left_out.get("my_shares", 0))
        orders = self.my_orders(condition) + [o for o in self.current.pending if o.get("condition") == condition]
        for order in orders:
            if order.get("type") == "bid" and _number(order.get("price")):
                money += order["price"]
            elif order.get("type") == "ask":
                shares += 1
        return money, shares

    def uncommitted(self, condition: int) -> tuple[float, int]:
        """(balance, shares) still free for new bids and asks in a condition (0, 0 when the wallet is unknown)."""
        wallet = self.wallet(condition)
        if wallet is None or not _number(wallet.get("balance")) or not _number(wallet.get("shares")):
            return 0, 0
        money, shares = self.committed(condition)
        return wallet["balance"] - money, int(wallet["shares"]) - shares

    def best(self, condition: int, side: str, *, others_only: bool = True) -> dict[str, Any] | None:
        """The best resting bid (highest) or ask (lowest) in a book, of the other players by default (own orders
        never match); ties go to the earlier order, as in the server's stable sort."""
        orders = [o for o in self.current.books.get(condition, {}).values()
                  if o.get("type") == side and _number(o.get("price"))
                  and not (others_only and o.get("sender") == self.number)]
        if not orders:
            return None
        if side == "bid":
            return max(orders, key=lambda o: (o["price"], -o.get("id", 0)))
        return min(orders, key=lambda o: (o["price"], o.get("id", 0)))

    def last_median(self, condition: int) -> Any:
        trades = self.current.trades.get(condition) or []
        return trades[-1].get("median") if trades else None

    # ----- folding

    def apply(self, frame: Any) -> None:
        """Fold one frame the server sent (any shape; unknown or malformed frames change nothing)."""
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "error" or "error" in frame and kind is None:
            text = str(frame.get("message", frame.get("error")))
            self.errors.append(text)
            if self.phase == MARKET_PHASE and _cancel_answered(self.current, text, self._overtaken):
                return  # the answer to a cancel, not to an order in flight
            if self.phase == MARKET_PHASE and self.current.pending:
                self.current.pending.pop(0)  # e.g. "wrong condition": that order is not in the book
            return
        if kind == "warning":
            self.warnings.append(str(frame.get("message")))
            return
        if kind != "event":
            return
        kind = frame.get("eventType")
        handler = _HANDLERS.get(kind)
        if handler is not None:
            data = frame.get("data")
            handler(self, data if isinstance(data, dict) else {})
            if kind in MARKET_EVENTS:
                self.market_version += 1

    def apply_sent(self, message: dict[str, Any]) -> None:
        """Record an action this player sent (declarations and snipes are acknowledged without content, and an
        order only by what follows it)."""
        kind = message.get("type")
        rec = self.current
        if kind == "declare" and self.phase in DECLARATION_PHASES and self.role in (ROLE_DEVELOPER, ROLE_OWNER):
            rec.my_declaration.setdefault(self.phase, message.get("declaration"))  # only the first one counts
        elif kind == "done-speculating" and self.phase in SPECULATION_PHASES and self.role == ROLE_SPECULATOR:
            snipe = message.get("snipe")
            if isinstance(snipe, list):
                mine = rec.my_snipes.setdefault(self.phase, [[], [], []])
                for c, lots in enumerate(snipe[:3]):
                    if isinstance(lots, list):
                        mine[c] = mine[c] + list(lots)  # a second message adds up on the server
        elif kind == "post-order" and self.phase == MARKET_PHASE:
            order = message.get("order")
            if isinstance(order, dict):
                rec.pending.append({k: order.get(k) for k in ("type", "price", "condition", "now")})
        elif kind == "cancel-order" and self.phase == MARKET_PHASE:
            order = message.get("order")
            order_id = order.get("id") if isinstance(order, dict) else None
            if _number(order_id) and order_id not in rec.cancelling:
                rec.cancelling.append(order_id)

    def being_cancelled(self, order_id: Any) -> bool:
        """Whether this seat's cancel of the order is on its way (sent, not answered yet)."""
        return order_id in self.current.cancelling

    def cancel_race(self, text: str) -> bool:
        """Whether an error frame's text, before it is folded, answers a cancel of this seat with "Order not found.
        N" because the order traded or went first: the cancel is still on its way, or the order's delete-order
        overtook it (a race, not a refused cancel)."""
        found = _NOT_FOUND.match(text)
        return found is not None and any(str(order_id) == found.group(1)
                                         for order_id in (*self.current.cancelling, *self._overtaken))


_NOT_FOUND = re.compile(r"^Order not found\. (\S+)")
_NOT_MINE = "You cannot delete this order"


def _cancel_answered(rec: MarketRound, text: str, overtaken: list[Any]) -> bool:
    """An error frame that answers one of our cancels (market.py's two cancel errors) takes it off `cancelling`
    (or off `overtaken`, when the order's delete-order came first)."""
    found = _NOT_FOUND.match(text)
    if found is not None:
        for order_id in overtaken:
            if str(order_id) == found.group(1):
                overtaken.remove(order_id)
                break
        for order_id in rec.cancelling:
            if str(order_id) == found.group(1):
                rec.cancelling.remove(order_id)
                break
        return True
    if text.startswith(_NOT_MINE):
        if rec.cancelling:
            rec.cancelling.pop(0)
        return True
    return False


def _on_status(view: MarketView, data: dict[str, Any]) -> None:
    joined = data.get("joined")
    if isinstance(joined, dict) and isinstance(joined.get("number"), int):
        view.number = joined["number"]
        view.role = joined.get("role") if joined.get("role") in (1, 2, 3) else view.role
        view.tag = joined.get("tag") if isinstance(joined.get("tag"), str) else view.tag


def _on_assign_role(view: MarketView, data: dict[str, Any]) -> None:
    rec = view.current
    if data.get("role") in (ROLE_SPECULATOR, ROLE_DEVELOPER, ROLE_OWNER):
        view.role = data["role"]
    wallets = data.get("wallet")
    if isinstance(wallets, list):
        kept = [{"balance": w.get("balance"), "shares": w.get("shares")} for w in wallets if isinstance(w, dict)]
        rec.start_wallets = [dict(w) for w in kept]
        rec.wallets = kept
    prop = data.get("property")
    if isinstance(prop, dict):
        v = prop.get("v")
        if isinstance(v, list) and len(v) >= 2 and all(_number(x) for x in v[:2]):
            rec.values = [int(v[0]), int(v[1])]
        if isinstance(prop.get("id"), int):
            rec.lot = prop["id"]
        if isinstance(prop.get("owner"), int) and view.number is None:
            view.number = prop["owner"]
    if isinstance(data.get("boundaries"), dict):
        view.boundaries = data["boundaries"]
    view.tax_rate_initial = data.get("initialTaxRate", view.tax_rate_initial)
    view.tax_rate_final = data.get("finalTaxRate", view.tax_rate_final)


def _on_players_known(view: MarketView, data: dict[str, Any]) -> None:
    players = data.get("players")
    if isinstance(players, list):
        view.players = [p for p in players if isinstance(p, dict)]
        me = next((p for p in view.players if p.get("number") == view.number), None)
        if me is not None:  # assign-role names no seat: the tag comes from here
            view.tag = me.get("tag") if isinstance(me.get("tag"), str) else view.tag
            view.role = me.get("role") if me.get("role") in (1, 2, 3) else view.role


def _on_phase_transition(view: MarketView, data: dict[str, Any]) -> None:
    round_number, phase = data.get("round"), data.get("phase")
    if not (isinstance(round_number, int) and isinstance(phase, int)):
        return
    if round_number != view.round:
        old = view.current
        view.round = round_number
        new = view.record(round_number)
        if view.phase == 0 and phase >= 1 and new.values is None and new.wallets is None:
            # Joined after this round's phase-0 broadcast: assign-role came while the view still was in the old round.
            for name in ("values", "lot", "start_wallets", "wallets"):
                setattr(new, name, getattr(old, name))
                setattr(old, name, None)
        if old == MarketRound(old.round):
            del view.rounds[old.round]
    view.phase = phase
    view.closing = False
    if phase == 0:
        view.ready_acked = False
        view.deadline_ms = None
    if phase == MARKET_PHASE:
        view.current.books = {}
        view.current.pending = []
        view.current.cancelling = []
        view._overtaken = []
        view.current.hidden = {}
    view.server_action = None


def _on_set_timer(view: MarketView, data: dict[str, Any]) -> None:
    if _number(data.get("end")):
        view.deadline_ms = int(data["end"])
    view.closing = True  # the timer of the phase to come: this one is over


def _on_reset_timer(view: MarketView, data: dict[str, Any]) -> None:
    view.deadline_ms = None
    view.closing = True


def _on_declarations(view: MarketView, data: dict[str, Any]) -> None:
    lots = data.get("declarations")
    if not isinstance(lots, list):
        return
    rec = view.current
    phase = 8 if view.phase >= 7 or 3 in rec.declarations else 3
    rec.declarations[phase] = [d for d in lots if isinstance(d, dict)]
    if data.get("winningCondition") in CONDITION_IDS:
        rec.winning = data["winningCondition"]
        if view.game_type is None and phase == 3:
            view.game_type = HARBERGER
    elif phase == 3 and view.game_type is None:
        view.game_type = FUTARCHY  # futarchy publishes the first declarations before any winner is known


def _on_value_signals(view: MarketView, data: dict[str, Any]) -> None:
    rec = view.current
    if isinstance(data.get("signals"), list):
        rec.signals = data["signals"]
    if isinstance(data.get("publicSignal"), list):
        rec.public_signal = data["publicSignal"]
    if data.get("condition") in CONDITION_IDS:
        rec.winning = data["condition"]


def _on_winning_condition(view: MarketView, data: dict[str, Any]) -> None:
    if data.get("winningCondition") in CONDITION_IDS:
        view.current.winning = data["winningCondition"]
        if view.game_type is None:
            view.game_type = FUTARCHY


def _on_add_order(view: MarketView, data: dict[str, Any]) -> None:
    order = data.get("order")
    if not isinstance(order, dict) or not isinstance(order.get("id"), int) or order.get("condition") not in (0, 1, 2):
        return
    rec = view.current
    book = rec.books.setdefault(order["condition"], {})
    book[order["id"]] = order
    _index_put(view, book, order)
    if order.get("sender") == view.number:
        _settle_pending(rec, order.get("condition"), order.get("type"), resting=True)


def _index_put(view: MarketView, book: dict[int, dict[str, Any]], order: dict[str, Any]) -> None:
    index = view._indexes.get(order.get("condition"))
    if index is not None and index.book is book:
        index.put(order)


def _settle_pending(rec: MarketRound, condition: Any, side: Any, resting: bool = False) -> None:
    for i, pending in enumerate(rec.pending):
        same = pending.get("condition") == condition and pending.get("type") == side
        if same and not (resting and pending.get("now")):  # a market order never rests
            del rec.pending[i]
            return


def _on_delete_order(view: MarketView, data: dict[str, Any]) -> None:
    order = data.get("order")
    if not isinstance(order, dict):
        return
    book = view.current.books.get(order.get("condition"), {})
    gone = book.pop(order.get("id"), None) if isinstance(order.get("id"), int) else None
    if order.get("id") in view.current.cancelling:
        view.current.cancelling.remove(order.get("id"))  # cancelled, or filled before the cancel arrived
        view._overtaken.append(order["id"])  # if filled, the server will still answer the cancel: not found
    index = view._indexes.get(order.get("condition"))
    if gone is not None and index is not None and index.book is book:
        index.drop(order["id"])
    _after_fill(view, gone)


def _on_update_order(view: MarketView, data: dict[str, Any]) -> None:
    order = data.get("order")
    if not isinstance(order, dict):
        return
    resting = view.current.books.get(order.get("condition"), {}).get(order.get("id"))
    if resting is not None:
        resting = dict(resting, quantity=order.get("quantity"))
        view.current.books[order["condition"]][order["id"]] = resting
        _index_put(view, view.current.books[order["condition"]], resting)
    _after_fill(view, resting)


def _after_fill(view: MarketView, resting: dict[str, Any] | None) -> None:
    """After an own trade, the resting order it filled is named: someone else's means the trade was our incoming
    order (no longer pending); our own means someone hit our resting order (the pending one is still out)."""
    movement, view._movement = view._movement, None
    if movement is None or resting is None or resting.get("sender") == view.number:
        return
    _settle_pending(view.current, movement[0], movement[1])


def _on_asset_movement(view: MarketView, data: dict[str, Any]) -> None:
    rec = view.current
    condition = data.get("condition")
    wallet = view.wallet(condition) if isinstance(condition, int) else None
    if wallet is not None:
        if _number(data.get("balance")):
            wallet["balance"] = data["balance"]
        if _number(data.get("shares")):
            wallet["shares"] = data["shares"]
    movement = data.get("movement") if isinstance(data.get("movement"), dict) else {}
    rec.movements.append(data)
    side = {"purchase": "bid", "sale": "ask"}.get(movement.get("type"))
    view._movement = (condition, side) if side else None


def _on_contract_fulfilled(view: MarketView, data: dict[str, Any]) -> None:
    if view.number is None and view._movement is not None:
        # Our own trade (asset-movement comes to the two parties only, just before this broadcast): a speculator
        # learns its seat, which no market event names.
        number = data.get("to") if view._movement[1] == "bid" else data.get("from")
        if isinstance(number, int):
            view.number = number
            me = next((p for p in view.players if p.get("number") == number), None)
            if me is not None and isinstance(me.get("tag"), str):
                view.tag = me["tag"]
    if data.get("condition") in (0, 1, 2):
        view.current.trades.setdefault(data["condition"], []).append(data)


def _on_order_refused(view: MarketView, data: dict[str, Any]) -> None:
    rec = view.current
    rec.refusals.append(data)
    if rec.pending:
        rec.pending.pop(0)


def _on_snipes(key: str) -> Callable[[MarketView, dict[str, Any]], None]:
    def fold(view: MarketView, data: dict[str, Any]) -> None:
        if isinstance(data.get("snipes"), list):
            view.current.snipes[key] = data["snipes"]
    return fold


def _on_final_price(view: MarketView, data: dict[str, Any]) -> None:
    view.current.final_price = data.get("price")
    if data.get("winningCondition") in CONDITION_IDS:
        view.current.winning = data["winningCondition"]


def _on_round_summary(view: MarketView, data: dict[str, Any]) -> None:
    rec = view.record(data["round"]) if isinstance(data.get("round"), int) else view.current
    rec.summary = data


def _on_declaration_ack(view: MarketView, data: dict[str, Any]) -> None:
    view.current.declaration_acked.add(view.phase)


def _on_declaration_above_max(view: MarketView, data: dict[str, Any]) -> None:
    view.current.my_declaration.pop(view.phase, None)  # refused and not stored: the player may declare again


def _on_speculation_ack(view: MarketView, data: dict[str, Any]) -> None:
    view.current.speculation_acked.add(view.phase)


_HANDLERS: dict[str, Callable[[MarketView, dict[str, Any]], None]] = {
    **SEAT_EVENT_HANDLERS,
    "status": _on_status,
    "assign-role": _on_assign_role,
    "players-known": _on_players_known,
    "phase-transition": _on_phase_transition,
    "set-timer": _on_set_timer,
    "reset-timer": _on_reset_timer,
    "declarations-published": _on_declarations,
    "value-signals": _on_value_signals,
    "winning-condition": _on_winning_condition,
    "add-order": _on_add_order,
    "delete-order": _on_delete_order,
    "update-order": _on_update_order,
    "asset-movement": _on_asset_movement,
    "contract-fulfilled": _on_contract_fulfilled,
    "order-refused": _on_order_refused,
    "first-snipes": _on_snipes("first"),
    "second-snipes": _on_snipes("second"),
    "final-price": _on_final_price,
    "round-summary": _on_round_summary,
    "declaration-received": _on_declaration_ack,
    "declaration-above-max": _on_declaration_above_max,
    "speculation-received": _on_speculation_ack,
}
EVENT_HANDLERS: Mapping[str, Callable[[MarketView, dict[str, Any]], None]] = MappingProxyType(_HANDLERS)


def apply_status(view: MarketView, game_data: dict[str, Any]) -> set[str]:
    """Fold a GET /games/status snapshot (`gameData`: the real server's getRecoveryData for the market games) into
    the view after a rejoin, where frames were missed: seat, round and phase, wallets, values, signals, published
    declarations, the winning condition, and in phase 6 the books and trades as the server has them now (the
    snapshot replaces what the view had: nothing that happened meanwhile is guessed). Returns what the server says
    this seat has done in the current phase ("declare", "done-speculating")."""
    game = game_data.get("game") if isinstance(game_data.get("game"), dict) else {}
    player = game_data.get("player") if isinstance(game_data.get("player"), dict) else {}
    if isinstance(player.get("number"), int):
        view.number = player["number"]
    if player.get("role") in (ROLE_SPECULATOR, ROLE_DEVELOPER, ROLE_OWNER):
        view.role = player["role"]
    if isinstance(player.get("tag"), str):
        view.tag = player["tag"]
    if isinstance(game.get("players"), list) and not view.players:
        view.players = [p for p in game["players"] if isinstance(p, dict)]
    round_number, phase = game.get("round"), game.get("phase")
    if isinstance(round_number, int) and isinstance(phase, int) and (round_number, phase) != (view.round, view.phase):
        _on_phase_transition(view, {"round": round_number, "phase": phase})
    rec = view.current
    if isinstance(game.get("boundaries"), dict):
        view.boundaries = game["boundaries"]
    wallets = player.get("wallet")
    if isinstance(wallets, list) and all(isinstance(w, dict) for w in wallets):
        rec.wallets = [{"balance": w.get("balance"), "shares": w.get("shares")} for w in wallets]
    prop = player.get("property")
    if isinstance(prop, dict):
        v = prop.get("v")
        if isinstance(v, list) and len(v) >= 2 and all(_number(x) for x in v[:2]):
            rec.values = [int(v[0]), int(v[1])]
        if isinstance(prop.get("id"), int):
            rec.lot = prop["id"]
    if isinstance(player.get("signals"), list):
        rec.signals = player["signals"]
    if isinstance(game.get("publicSignal"), list):
        rec.public_signal = game["publicSignal"]
    if game.get("winningCondition") in CONDITION_IDS:
        rec.winning = game["winningCondition"]
    if isinstance(game.get("declarations"), list) and 3 not in rec.declarations:
        rec.declarations[3] = [d for d in game["declarations"] if isinstance(d, dict)]
    acted: set[str] = set()
    if view.phase in DECLARATION_PHASES and player.get("hasToDeclare") is False:
        acted.add("declare")
        rec.my_declaration.setdefault(view.phase, (prop or {}).get("d"))
    if view.phase in SPECULATION_PHASES and player.get("doneSpeculating") is True:
        acted.add("done-speculating")
        rec.my_snipes.setdefault(view.phase, [[], [], []])  # done; which lots the snapshot does not say
    if view.phase == MARKET_PHASE:
        orders, movements = game.get("orders"), game.get("movementList")
        if isinstance(orders, list):
            rec.books = {c: {o["id"]: o for o in (orders[c] if isinstance(orders[c], list) else [])
                             if isinstance(o, dict) and isinstance(o.get("id"), int)}
                         for c in range(len(orders))}
        if isinstance(movements, list):
            rec.trades = {c: [m for m in movements[c] if isinstance(m, dict)]
                          for c in range(len(movements)) if isinstance(movements[c], list) and movements[c]}
        rec.pending = []  # whatever reached the server is in the book now; the rest never will
        rec.cancelling = []  # an order still in the snapshot's book was not cancelled
    view.market_version += 1
    return acted
