"""The market games' decisions: which is due, their action-required messages, strict validation, and schemas.

Three decisions (docs/protocol.md section 9), each through the same action-required contract as
voting (lib/games/voting/actions.py):

- `SubmitDeclaration` (owners and the developer, phases 2 and 7):
  `{"gameId":G,"type":"declare","declaration":[X0,X1,0]}`;
- `SubmitSnipes` (speculators, phases 3 and 8): `{"gameId":G,"type":"done-speculating","snipe":[L0,L1,[]]}`;
- `TradeInMarket` (everyone, phase 6, asked again as the market moves): a `post-order`, a `cancel-order`, or
  `{"gameId":G,"type":"wait","order":null}` (nothing is sent).

The real server checks almost nothing here (docs/protocol.md section 14): it stores negative, fractional and string
declarations (strings corrupt the winner), adds up repeated snipes, trades negative and fractional quantities, keeps
a 1e9 ask, and one apostrophe in a stored field freezes the game. So an agent's answer (`strict=True`) must be:
plain non-negative integers; a declaration within the role's maximum (twice its `high`, the server's own refusal
limit) and only one per phase; lots that exist, each at most once, only under conditions whose snipes count, and
one `done-speculating` per phase; orders of quantity exactly 1 (as the web UI sends) at a limit price (`now`
false: a limit at or through the best opposite price trades at once, at the resting price, and bounds what it
costs), under an open condition, at most the highest final share price the declarations allow under that
condition, a bid within the uncommitted balance, an ask within the uncommitted shares; cancels of own resting
orders only, once each; never `complete-current-phase`; nothing outside its phase. `strict=False` (the dataset builder,
which keeps human choices as made) checks only the shape, the role and the phase.
"""

from __future__ import annotations

import json
from typing import Any

from lib.games.contract import answer_json, deadline_fields, is_int, whole_number
from lib.games.market.prompts import OWN_SHOWN
from lib.games.market.rules import FUTARCHY, ROLE_KEYS
from lib.games.market.view import DECLARATION_PHASES, MARKET_PHASE, SPECULATION_PHASES, MarketView
from lib.games.protocols import ActionError
from lib.ibex.params import CONDITIONS, ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER, ROLE_SPECULATOR
from lib.util.text import printable

DECLARE, SPECULATE, TRADE = "declare", "done-speculating", "trade"
POST, CANCEL, WAIT = "post-order", "cancel-order", "wait"
ACTION_TYPES = {DECLARE: "SubmitDeclaration", SPECULATE: "SubmitSnipes", TRADE: "TradeInMarket"}
BY_ACTION_TYPE = {v: k for k, v in ACTION_TYPES.items()}
WIRE_TYPES = {DECLARE: (DECLARE,), SPECULATE: (SPECULATE,), TRADE: (POST, CANCEL, WAIT)}
CONDITION_NAMES = {c["id"]: c["name"] for c in CONDITIONS}
_VERBS = {DECLARE: "submit your declaration", SPECULATE: "submit your snipes",
          TRADE: "trade (the market closes)"}


def _short(x: Any) -> str:
    return json.dumps(x)[:60]


def market_action_due(view: MarketView) -> str | None:
    """The decision this player owes now: a declaration, snipes or trading; None when nothing is owed."""
    if view.game_over or view.role is None or view.closing:
        return None
    rec = view.current
    if view.phase in DECLARATION_PHASES and view.role in (ROLE_DEVELOPER, ROLE_OWNER):
        return None if view.phase in rec.my_declaration else DECLARE
    if view.phase in SPECULATION_PHASES and view.role == ROLE_SPECULATOR:
        return None if view.phase in rec.my_snipes else SPECULATE
    if view.phase == MARKET_PHASE and view.market_conditions():
        return TRADE
    return None


# ----- limits that follow from the game's public parameters


def declaration_max(view: MarketView, condition: int, role: int | None = None) -> int | None:
    """Twice the role's `high` under a condition: the largest declaration the server stores
    (docs/protocol.md section 9)."""
    key = ROLE_KEYS.get(role if role is not None else view.role or 0)
    bounds = (view.boundaries or {}).get(key, {}) if key else {}
    high = bounds.get(CONDITIONS[condition]["key"], {}).get("high") if isinstance(bounds, dict) else None
    return int(high) * 2 if is_int(high) or isinstance(high, float) else None


def price_cap(view: MarketView, condition: int) -> int:
    """The highest final share price any declarations can make under `condition`: every lot declared at its
    role's maximum under that condition, taxed at the final rate, over 100 shares (lib.games.market.rules.final_price:
    the final price is the winning condition's second declarations x tax_rate_final / 100 / 100, and a share
    bought under a condition pays only if that condition wins). No share is worth more, so no order there needs
    more. Per condition: the maxima differ (with the UI defaults 23,100 under No Project, 29,700 under Project)."""
    landholders = [p.get("role") for p in view.players if p.get("role") in (ROLE_DEVELOPER, ROLE_OWNER)]
    landholders = landholders or [ROLE_OWNER, ROLE_DEVELOPER] + [ROLE_OWNER] * 4
    rate = view.tax_rate_final if is_int(view.tax_rate_final) else 33
    maxima = [declaration_max(view, condition, role) for role in landholders]
    if any(m is None for m in maxima):
        return 100000  # the ranges are not known yet: a bound far above any UI default's
    return sum(maxima) * rate // 10000  # type: ignore[arg-type]


def snipe_conditions(view: MarketView) -> list[int]:
    """Conditions whose snipes count now: both in futarchy's phase 3, else the winning condition (Harberger's is
    known from phase 3 on; futarchy's from the end of phase 6)."""
    if view.game_type == FUTARCHY and view.phase == 3:
        return [0, 1]
    winning = view.current.winning
    return [winning] if winning in (0, 1) else []


# ----- the action-required message


def _me(view: MarketView) -> str:
    # the tag comes from the server's frames or the log as sent: a lone surrogate there would reach the prompt
    return (f"You are {printable(str(view.tag or 'a player'))} (player {view.number}), "
            f"{ROLE_NAMES.get(view.role or 0, 'player')}.")


def _instructions(view: MarketView, kind: str) -> str:
    if kind == DECLARE:
        which = "first" if view.phase == 2 else "second"
        tax = view.tax_rate_initial if view.phase == 2 else view.tax_rate_final
        after = ("The first declarations decide the winning condition (the higher total wins)."
                 if view.game_type != FUTARCHY and view.phase == 2 else
                 "Only the declaration under the winning condition matters now." if view.phase == 7 else
                 "The market of phase 6 will decide the winning condition.")
        return (f"You are now entering the {which} declaration phase. {_me(view)} Declare the value of your lot "
                f"under each condition. You pay {tax}% tax on your declaration under the winning condition; a "
                "speculator who snipes your lot at a declaration below its true value takes half the difference "
                f"from you. Only your first declaration in this phase counts. {after}")
    if kind == SPECULATE:
        conds = " and ".join(CONDITION_NAMES[c] for c in snipe_conditions(view)) or "the winning condition"
        return (f"You are now entering the {'first' if view.phase == 3 else 'second'} speculation phase. "
                f"{_me(view)} Choose which lots, if any, to snipe under {conds}. Sniping lot L pays you "
                "(true value - declared value) / (2 x number of snipes on L) under the winning condition: a loss "
                "if the owner declared more than the lot is worth. You send this once; an empty choice is allowed.")
    conds = ", ".join(f"{c} ({CONDITION_NAMES[c]})" for c in view.market_conditions())
    futarchy = (" The condition whose market ends with the higher median price (last seven trades) wins."
                if view.game_type == FUTARCHY else "")
    return (f"The market (phase 6) is open. {_me(view)} Shares pay the final share price at the end of the "
            f"round: the second declarations under the winning condition x {view.tax_rate_final}% / 100. Open "
            f"books, by condition: {conds}.{futarchy} You may post one order (a bid to buy or an ask to sell one "
            "share at a limit price; it trades at once at the resting order's price if it crosses the book, "
            "else it rests), cancel one of your resting orders, or wait. You are asked again when the book or "
            "your wallet changes.")


def _format(view: MarketView, kind: str) -> str:
    gid = view.game_id if view.game_id is not None else 0
    if kind == DECLARE:
        return f'{{"gameId":{gid},"type":"declare","declaration":[X0,X1,0]}}'
    if kind == SPECULATE:
        return f'{{"gameId":{gid},"type":"done-speculating","snipe":[L0,L1,[]]}}'
    return (f'{{"gameId":{gid},"type":"post-order","order":{{"price":P,"quantity":1,"condition":C,"type":"bid",'
            f'"now":false}}}} or {{"gameId":{gid},"type":"cancel-order","order":{{"id":N,"condition":C}}}} or '
            f'{{"gameId":{gid},"type":"wait","order":null}}')


def _additional_info(view: MarketView, kind: str) -> str:
    if kind == DECLARE:
        limits = ", ".join(f"X{c} ({CONDITION_NAMES[c]}) 0 to {declaration_max(view, c)}" for c in (0, 1))
        return (f"X0 and X1 are whole numbers of money units without quotes, separators or decimals: {limits}. "
                "The third element stays 0. Reply with the JSON object only.")
    if kind == SPECULATE:
        counted = snipe_conditions(view)
        lots = view.lot_ids()
        where = " and ".join(f"L{c}" for c in counted) or "none"
        return (f"L0 and L1 are lists of lot ids ({', '.join(map(str, lots))}), each id at most once, for No Project "
                f"and Project; only {where} may hold lots now, the other list stays []. Reply with the JSON object "
                "only.")
    parts = []
    for c in view.market_conditions():
        money, shares = view.uncommitted(c)
        parts.append(f"condition {c}: up to {int(money)} money for bids, {shares} shares for asks")
    caps = ", ".join(f"0 to {price_cap(view, c)} under condition {c}" for c in view.market_conditions())
    return (f"P is a whole number of money units ({caps}: no share can be worth more); quantity is always 1; C "
            f"is an open condition; type is bid or ask; N is the id of one of your resting orders. Still free: "
            f"{'; '.join(parts)}. Reply with the JSON object only.")


def build_market_action_required(view: MarketView, kind: str, *, deadline_ms: int | None = None,
                                 timer_seconds: float | None = None) -> dict[str, Any]:
    """The action-required message for a market decision now (same shape as voting's)."""
    deadline, by = deadline_fields(_VERBS[kind], deadline_ms if deadline_ms is not None else view.deadline_ms,
                                   timer_seconds)
    return {"type": "event", "eventType": "action-required",
            "data": {"actionType": ACTION_TYPES[kind], "instructions": _instructions(view, kind),
                     "deadline": deadline, "format": _format(view, kind), "actionRequiredBy": by,
                     "additionalInfo": _additional_info(view, kind)}}


# ----- validation


def _exact_fields(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ActionError(f"unexpected field(s) {', '.join(map(str, extra))} in {where}; use exactly the format given")


def _whole(x: Any, what: str) -> int:
    whole_number(x, what, shown=60)
    if x < 0:
        raise ActionError(f"{what} must not be negative, got {x}")
    return x


def _declaration(view: MarketView, message: dict[str, Any], strict: bool) -> dict[str, Any]:
    if view.role not in (ROLE_DEVELOPER, ROLE_OWNER):
        raise ActionError(f"only owners and the developer declare; you are a {ROLE_NAMES.get(view.role or 0)}")
    if view.phase not in DECLARATION_PHASES:
        raise ActionError(f'"declare" belongs to phases 2 and 7, the game is in phase {view.phase}')
    _exact_fields(message, {"gameId", "type", "declaration"}, "the answer")
    d = message.get("declaration")
    if not isinstance(d, list) or len(d) not in (2, 3):
        raise ActionError('"declaration" must be a list [X0, X1, 0]')
    if not strict:
        return {"gameId": view.game_id, "type": DECLARE, "declaration": d}
    if view.phase in view.current.my_declaration:
        raise ActionError("you have already declared in this phase; only the first declaration counts")
    if len(d) == 3 and d[2] not in (0, None):
        raise ActionError('the third element of "declaration" must be 0 (an unused condition)')
    out = []
    for c in (0, 1):
        x = _whole(d[c], f"X{c} ({CONDITION_NAMES[c]})")
        maximum = declaration_max(view, c)
        if maximum is None:
            raise ActionError("the value ranges are not known yet; cannot check the declaration")
        if x > maximum:
            raise ActionError(f"X{c} ({CONDITION_NAMES[c]}) must be at most {maximum}, got {x}")
        out.append(x)
    return {"gameId": view.game_id, "type": DECLARE, "declaration": out + [0]}


def _speculation(view: MarketView, message: dict[str, Any], strict: bool) -> dict[str, Any]:
    if view.role != ROLE_SPECULATOR:
        raise ActionError(f"only speculators snipe; you are the {ROLE_NAMES.get(view.role or 0)}")
    if view.phase not in SPECULATION_PHASES:
        raise ActionError(f'"done-speculating" belongs to phases 3 and 8, the game is in phase {view.phase}')
    _exact_fields(message, {"gameId", "type", "snipe"}, "the answer")
    snipe = message.get("snipe")
    if not isinstance(snipe, list) or not 2 <= len(snipe) <= 3 or not all(isinstance(x, list) for x in snipe):
        raise ActionError('"snipe" must be a list of lists of lot ids: [L0, L1, []]')
    if not strict:
        return {"gameId": view.game_id, "type": SPECULATE, "snipe": snipe}
    if view.phase in view.current.my_snipes:
        raise ActionError("you have already sent your snipes in this phase; a second message would count again")
    counted, lots = snipe_conditions(view), view.lot_ids()
    out: list[list[int]] = [[], [], []]
    for c, chosen in enumerate(snipe):
        if chosen and c not in counted:
            name = CONDITION_NAMES.get(c, f"condition {c}")
            raise ActionError(f"snipes under {name} do not count in this phase; leave list {c} empty")
        for lot in chosen:
            _whole(lot, "a lot id")
            if lot not in lots:
                raise ActionError(f"there is no lot {lot}; the lots are {', '.join(map(str, lots))}")
        if len(set(chosen)) != len(chosen):
            raise ActionError(f"list {c} names a lot twice; each lot at most once")
        out[c] = list(chosen)
    return {"gameId": view.game_id, "type": SPECULATE, "snipe": out}


def _post(view: MarketView, message: dict[str, Any], strict: bool) -> dict[str, Any]:
    order = message.get("order")
    if not isinstance(order, dict):
        raise ActionError('"order" must be an object {"price","quantity","condition","type","now"}')
    if not strict:
        return {"gameId": view.game_id, "type": POST, "order": order}
    _exact_fields(order, {"price", "quantity", "condition", "type", "now"}, '"order"')
    side = order.get("type")
    if side not in ("bid", "ask"):
        raise ActionError(f'the order\'s "type" must be "bid" or "ask", got {_short(side)}')
    if order.get("quantity") != 1 or not is_int(order.get("quantity")):
        raise ActionError(f'"quantity" must be 1, got {_short(order.get("quantity"))}')
    condition = order.get("condition")
    open_books = view.market_conditions()
    if not is_int(condition) or condition not in open_books:
        raise ActionError(f'"condition" must be one of the open books {open_books}, got {_short(condition)}')
    if order.get("now", False) is not False:
        raise ActionError('"now" must be false: send a limit price (one at or through the best opposite price '
                          "trades at once)")
    price = _whole(order.get("price"), "the price")
    cap = price_cap(view, condition)
    if price > cap:
        raise ActionError(f"the price must be at most {cap} under condition {condition} (no share can be worth "
                          f"more), got {price}")
    money, shares = view.uncommitted(condition)
    if side == "bid" and price > money:
        raise ActionError(f"a bid of {price} exceeds your uncommitted balance {int(money)} under condition "
                          f"{condition}; bid less or cancel a resting bid")
    if side == "ask" and shares < 1:
        raise ActionError(f"you have no uncommitted shares under condition {condition}; cancel a resting ask "
                          "or wait")
    return {"gameId": view.game_id, "type": POST,
            "order": {"price": price, "quantity": 1, "condition": condition, "type": side, "now": False}}


def _cancel(view: MarketView, message: dict[str, Any], strict: bool) -> dict[str, Any]:
    order = message.get("order")
    if not isinstance(order, dict):
        raise ActionError('"order" must be an object {"id","condition"}')
    if not strict:
        return {"gameId": view.game_id, "type": CANCEL, "order": order}
    _exact_fields(order, {"id", "condition"}, '"order"')
    condition, order_id = order.get("condition"), order.get("id")
    if not is_int(condition) or condition not in view.market_conditions():
        raise ActionError(f'"condition" must be one of the open books {view.market_conditions()}')
    mine = [o.get("id") for o in view.my_orders(condition)]
    if not is_int(order_id) or order_id not in mine:
        raise ActionError(f"you have no resting order {_short(order_id)} under condition {condition}; "
                          f"{_yours(mine)}")
    if view.being_cancelled(order_id):
        raise ActionError(f"your cancel of order {order_id} is already on its way; wait for its delete-order")
    return {"gameId": view.game_id, "type": CANCEL, "order": {"id": order_id, "condition": condition}}


def _yours(ids: list[Any]) -> str:
    """The player's own order ids for a refused cancel, bounded as the prompt bounds own orders: the answer is fed
    back to the model, and a seat may have thousands resting."""
    if len(ids) <= OWN_SHOWN:
        return f"yours: {ids or 'none'}"
    return f"yours: the newest {OWN_SHOWN} of {len(ids)}, {ids[-OWN_SHOWN:]}, and {len(ids) - OWN_SHOWN} older"


def validate_market_action(message: Any, view: MarketView, kind: str, *, strict: bool = True) -> dict[str, Any]:
    """The exact wire message for a decision of `kind` (for a trader's "wait", `{"gameId","type":"wait"}`, which
    is never sent), or ActionError with a reason a model can act on. `gameId` is always this game's."""
    if not isinstance(message, dict):
        raise ActionError("the answer must be one JSON object")
    sent = message.get("type")
    if sent == "complete-current-phase":
        raise ActionError('"complete-current-phase" is never sent (it would end a phase for everyone)')
    if sent not in WIRE_TYPES[kind]:
        allowed = " or ".join(f'"{t}"' for t in WIRE_TYPES[kind])
        raise ActionError(f'"type" must be {allowed} in this phase, got {_short(sent)}')
    if strict and view.closing:
        raise ActionError(f"phase {view.phase} has ended (its timer is over); nothing more can be sent for it")
    if kind == DECLARE:
        return _declaration(view, message, strict)
    if kind == SPECULATE:
        return _speculation(view, message, strict)
    if view.phase != MARKET_PHASE:
        raise ActionError(f"orders belong to the market (phase 6), the game is in phase {view.phase}")
    _exact_fields(message, {"gameId", "type", "order"}, "the answer")
    if sent == WAIT:
        if message.get("order") is not None:
            raise ActionError('a "wait" has "order": null')
        return {"gameId": view.game_id, "type": WAIT}
    return _post(view, message, strict) if sent == POST else _cancel(view, message, strict)


def parse_market_answer(text: Any, view: MarketView, kind: str, *, strict: bool = True) -> dict[str, Any]:
    """A model's raw answer text to the wire message (see validate_market_action); a code fence is tolerated."""
    return validate_market_action(answer_json(text), view, kind, strict=strict)


def market_answer_schema(view: MarketView, kind: str) -> dict[str, Any]:
    """A JSON schema for structured output within OpenAI's strict-mode subset: `gameId` and `type` fixed, the
    declaration two amounts within the role's maxima and a 0, snipes three lists of existing lot ids, an order's
    quantity 1, `now` false, its condition an open book, its price 0 to that condition's price cap (one order
    object per open book). What the subset cannot say (the uncommitted balance and shares, lots named twice,
    which order object goes with which type, the own resting order ids) validate_market_action checks, and the
    model is asked again."""
    game: dict[str, Any] = {"type": "integer"} if view.game_id is None else {"type": "integer", "enum": [view.game_id]}
    props: dict[str, Any] = {"gameId": game, "type": {"type": "string", "enum": list(WIRE_TYPES[kind])}}
    if kind == DECLARE:
        amounts = [{"type": "integer", "minimum": 0, "maximum": declaration_max(view, c) or 0} for c in (0, 1)]
        props["declaration"] = {"type": "array", "items": {"anyOf": amounts + [{"type": "integer", "enum": [0]}]},
                                "minItems": 3, "maxItems": 3}
    elif kind == SPECULATE:
        lots = {"type": "array", "items": {"type": "integer", "enum": view.lot_ids() or [0]},
                "maxItems": max(1, len(view.lot_ids()))}
        props["snipe"] = {"type": "array", "items": lots, "minItems": 3, "maxItems": 3}
    else:
        conditions = view.market_conditions() or [0]
        # One order object per open condition: each condition has its own price cap.
        posts = [{"type": "object", "additionalProperties": False,
                  "required": ["price", "quantity", "condition", "type", "now"],
                  "properties": {"price": {"type": "integer", "minimum": 0, "maximum": price_cap(view, c)},
                                 "quantity": {"type": "integer", "enum": [1]},
                                 "condition": {"type": "integer", "enum": [c]},
                                 "type": {"type": "string", "enum": ["bid", "ask"]},
                                 "now": {"type": "boolean", "enum": [False]}}} for c in conditions]
        cancel = {"type": "object", "additionalProperties": False, "required": ["id", "condition"],
                  "properties": {"id": {"type": "integer", "minimum": 1},
                                 "condition": {"type": "integer", "enum": conditions}}}
        props["order"] = {"anyOf": [*posts, cancel, {"type": "null"}]}
    return {"name": ACTION_TYPES[kind], "strict": True,
            "schema": {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}}
