"""The prompts of the market games: the rules and the player's role (system), then what the player knows now and
the action-required message (user). Agents and, later, the dataset builder call `build_market_messages`, so that a
model is trained on the prompts it is played with.

Only what this player saw goes in: its own lot's values (never another player's), its wallets, its private and the
public signals, the published declarations, the books and trades of the market, its snipes, and earlier rounds'
summaries. The order book is cut to the best BOOK_DEPTH orders per side plus the player's own best OWN_SHOWN
beyond those (with a count of the rest, and of how many of them are the player's), and the trades to the last
TRADES_SHOWN per condition, so that a prompt stays bounded however busy the market or however many orders the
player left resting.

`bounded_view` copies a view down to what its prompt shows (plus what the baseline and the checks read): the
dataset builder makes each example from that copy and writes it to the sidecar, so neither grows with the book,
and the prompt it gives is the play-time prompt of the whole view, character for character.
"""

from __future__ import annotations

import bisect
import copy
import json
from typing import Any

from lib.games.market.rules import FUTARCHY
from lib.games.market.view import MarketRound, MarketView
from lib.ibex.params import CONDITIONS, ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER, ROLE_SPECULATOR
from lib.util.text import printable

CONDITION_NAMES = {c["id"]: c["name"] for c in CONDITIONS}
BOOK_DEPTH = 5
OWN_SHOWN = 5  # own resting orders listed per side beyond the best BOOK_DEPTH
TRADES_SHOWN = 10
EARLIER_ROUNDS_SHOWN = 5
EARLIER_ROUNDS = "Earlier rounds:"  # the first line of a user prompt that lists earlier rounds


def _pair(values: Any) -> str:
    if not isinstance(values, list) or len(values) < 2:
        return "unknown"
    return f"{CONDITION_NAMES[0]} {_num(values[0])}, {CONDITION_NAMES[1]} {_num(values[1])}"


def _num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, float):
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return json.dumps(x)


def _bound(x: Any) -> str:
    """A range's end as the prompt shows it: a number, else "unknown" (whatever else a log holds there, a string
    with a lone surrogate included, is no value a player could use, and must not reach the prompt's text)."""
    return _num(x) if isinstance(x, int | float) and not isinstance(x, bool) else "unknown"


def _ranges(view: MarketView) -> str:
    parts = []
    for key in ("owner", "developer"):
        per = (view.boundaries or {}).get(key)
        if isinstance(per, dict):
            ranges = []
            for c in CONDITIONS:
                bounds = per.get(c["key"], {})
                bounds = bounds if isinstance(bounds, dict) else {}
                ranges.append(f"{CONDITION_NAMES[c['id']]} {_bound(bounds.get('low'))}-{_bound(bounds.get('high'))}")
            parts.append(f"{key}s' lots {'; '.join(ranges)}")
    return " Lot values are drawn anew every round: " + "; ".join(parts) + "." if parts else ""


def market_system_prompt(view: MarketView) -> str:
    """The game's rules and this player's role."""
    futarchy = view.game_type == FUTARCHY
    name = "futarchy" if futarchy else "Harberger"
    role = ROLE_NAMES.get(view.role or 0, "player")
    rounds = ""
    if view.round_count is not None:
        practice = " after a practice round (round 0) that does not count" if view.practice_round else ""
        rounds = f" The game has {view.round_count} paid rounds{practice}; one of them is paid out."
    decides = ("Two markets run in phase 6, one per condition; the condition whose market ends with the higher "
               "median price of its last seven trades becomes the winning condition (no trades at all: Project). "
               "Trades in the losing condition's market are void."
               if futarchy else
               "The first declarations decide the winning condition: the condition with the higher total declared "
               "value wins (a tie goes to Project). One market runs in phase 6, under the winning condition.")
    role_text = {
        ROLE_OWNER: "You own one lot (one of five owners).",
        ROLE_DEVELOPER: "You are the developer and own one large lot.",
        ROLE_SPECULATOR: "You are one of six speculators: you own no lot, you may snipe lots and trade shares.",
    }.get(view.role or 0, "")
    return (
        f"You are a participant in an economic experiment, the IBEX {name} game. Twelve players: five owners and "
        "a developer, each owning a lot, and six speculators. Two conditions: No Project (0) and Project (1); each "
        "lot has a private value under each, known only to its owner. In every round: owners and the developer "
        "declare their lot's value under both conditions (phase 2) and pay tax on the declaration under the "
        f"winning condition ({view.tax_rate_initial}% now, {view.tax_rate_final}% on the second declaration). "
        "Speculators may snipe a lot at its declared value: each sniper of lot L receives (true value - declared "
        "value) / (2 x snipes on L) and the owner pays it. "
        f"{decides} In the market everyone may buy and sell shares (one per order) with money; at the end of the "
        f"round each share pays the final price, the sum of the second declarations under the winning condition "
        f"x {view.tax_rate_final}% / 100. Before the market each player receives a private signal of that price "
        "per condition and the public signal (first declarations x the final rate / 100). Then owners declare "
        "again (phase 7) and speculators may snipe again (phase 8). A round's profit: your lot's value under the "
        "winning condition (landholders) minus taxes, plus snipe gains or minus snipe losses, plus your money and "
        "shares x the final price after the market. Wallets are reset every round."
        f"{rounds}{_ranges(view)} You are {printable(view.tag or 'a player')} (player {view.number}), the {role}. "
        f"{role_text}"
    )


def _round_header(view: MarketView, rec: MarketRound) -> list[str]:
    lines = [f"Round {rec.round}{' (practice)' if rec.round == 0 and view.practice_round else ''}, "
             f"phase {view.phase}."]
    if rec.values is not None:
        lines.append(f"Your lot (id {rec.lot}) is worth to you: {_pair(rec.values)}.")
    if rec.wallets:
        conds = view.market_conditions() if view.phase >= 6 and view.market_conditions() else [0, 1]
        lines.append("Your wallet: " + "; ".join(
            f"{CONDITION_NAMES[c]}: money {_num(rec.wallets[c].get('balance'))}, shares "
            f"{_num(rec.wallets[c].get('shares'))}" for c in conds if c < len(rec.wallets)) + ".")
    for phase, label in ((2, "first"), (7, "second")):
        if phase in rec.my_declaration:
            lines.append(f"Your {label} declaration: {_pair(rec.my_declaration[phase])}.")
    if rec.winning in (0, 1):
        lines.append(f"Winning condition: {rec.winning} ({CONDITION_NAMES[rec.winning]}).")
    return lines


def _declarations(view: MarketView, rec: MarketRound) -> list[str]:
    lines = []
    for phase, label in ((3, "First"), (8, "Second")):
        lots = rec.declarations.get(phase)
        if lots:
            rows = [f"lot {d.get('id')} ({view_tag(view, d.get('number'))}): {_pair(d.get('d'))}" for d in lots]
            lines.append(f"{label} declarations: " + "; ".join(rows) + ".")
    for phase in (3, 8):
        if phase in rec.my_snipes:
            chosen = rec.my_snipes[phase]
            text = "; ".join(f"{CONDITION_NAMES[c]}: lots {chosen[c] or 'none'}" for c in (0, 1))
            lines.append(f"Your snipes in phase {phase}: {text}.")
    for key in ("first", "second"):
        for s in rec.snipes.get(key, []):
            player, target = s.get("player", {}), s.get("target", {})
            owner = view_tag(view, target.get("number"))
            lot = "your lot" if owner == "you" else f"{owner}'s lot"
            lines.append(f"{key.capitalize()} snipe: {view_tag(view, player.get('number'))} sniped {lot}, "
                         f"profit {_num(s.get('profit'))} per sniper.")
    return lines


def view_tag(view: MarketView, number: Any) -> str:
    if number == view.number:
        return "you"
    tag = next((p.get("tag") for p in view.players if p.get("number") == number), None)
    # a tag is the server's text as sent: a lone surrogate in it must not reach the prompt
    return printable(tag) if isinstance(tag, str) else f"player {number}"


def _market(view: MarketView, rec: MarketRound) -> list[str]:
    lines = []
    if rec.signals is not None:
        lines.append(f"Your private signal of the final share price: {_pair(rec.signals)}. Public signal: "
                     f"{_pair(rec.public_signal)}.")
    if view.phase != 6 and not rec.trades:
        return lines
    for c in view.market_conditions() or sorted(rec.trades):
        hidden = rec.hidden.get(c, {})
        book = [o for o in rec.books.get(c, {}).values() if _priced(o)]
        bids = sorted((o for o in book if o.get("type") == "bid"), key=_BEST["bid"])
        asks = sorted((o for o in book if o.get("type") == "ask"), key=_BEST["ask"])
        trades = rec.trades.get(c, [])
        recent = ", ".join(_num(t.get("price")) for t in trades[-TRADES_SHOWN:])
        median = f"; median of the last seven: {_num(trades[-1].get('median'))}" if trades else ""
        lines.append(f"Market {c} ({CONDITION_NAMES[c]}): bids {_side(bids, 'bid', view.number, hidden)}; "
                     f"asks {_side(asks, 'ask', view.number, hidden)}; "
                     f"{len(trades) + hidden.get('trades', 0)} trades{': ' + recent if recent else ''}{median}.")
    mine = [m for m in rec.movements[-TRADES_SHOWN:]]
    if mine:
        lines.append("Your trades: " + "; ".join(
            f"{m.get('movement', {}).get('type')} at {_num(m.get('movement', {}).get('price'))} "
            f"(condition {m.get('condition')})" for m in mine) + ".")
    return lines


def _priced(order: dict[str, Any]) -> bool:
    return isinstance(order.get("price"), int | float) and not isinstance(order.get("price"), bool)


_BEST = {"bid": lambda o: (-o["price"], o["id"]), "ask": lambda o: (o["price"], o["id"])}


def _side(orders: list[dict[str, Any]], side: str, me: Any, hidden: dict[str, Any]) -> str:
    """One side of a book as the prompt shows it: the listed orders, then how many more and how many of them are
    the player's (counting what a bounded copy left out)."""
    shown = _shown(orders, me)
    text = ", ".join(_num(o["price"]) + (f" (yours, id {o['id']})" if o.get("sender") == me else "") for o in shown)
    more = len(orders) - len(shown) + hidden.get(side + "s", 0)
    mine = sum(1 for o in orders if o.get("sender") == me) - sum(1 for o in shown if o.get("sender") == me) \
        + hidden.get("my_" + side + "s", 0)
    yours = f" ({mine} of them yours)" if mine > 0 else ""
    return (text or "none") + (f" and {more} more{yours}" if more > 0 else "")


def _shown(ranked: list[dict[str, Any]], me: Any) -> list[dict[str, Any]]:
    """Of one side's orders, best first: the ones the prompt lists (the best BOOK_DEPTH, then own ones up to
    OWN_SHOWN more)."""
    own = [o for o in ranked[BOOK_DEPTH:] if o.get("sender") == me][:OWN_SHOWN]
    return ranked[:BOOK_DEPTH] + own


def _wallets(wallets: Any) -> Any:
    return [dict(w) if isinstance(w, dict) else w for w in wallets] if isinstance(wallets, list) else wallets


def bounded_view(view: MarketView) -> MarketView:
    """A copy of `view` that holds, of its current round's books, only what the prompt lists plus each side's
    oldest own order (the baseline cancels that one), and of its trades, own trades and refusals only the last
    TRADES_SHOWN; what it leaves out is counted in MarketRound.hidden, so the copy gives the same prompt, the same
    uncommitted money and shares, and the same baseline decision. Earlier rounds keep only their summaries (all
    the prompt shows of them). Its size does not grow with the book's."""
    rec = view.current
    small = copy.copy(view)
    # Shallow copies where the view replaces a value whole when a frame changes it (players, boundaries, values,
    # signals, summaries, published declarations, orders), and copies of what it changes in place (wallets, the
    # lists it appends to): a deep copy of every example's view cost more than the rest of the build.
    small.rounds = {n: MarketRound(n, summary=r.summary) for n, r in view.rounds.items()
                    if n < view.round and r.summary is not None}
    small.errors, small.warnings = view.errors[-TRADES_SHOWN:], view.warnings[-TRADES_SHOWN:]
    small._indexes = {}
    left_out, kept_books = {c: dict(h) for c, h in rec.hidden.items()}, {}
    for c, orders in rec.books.items():
        index = view.index(c)
        hidden = left_out.setdefault(c, {})
        keep: dict[int, int] = {}  # id -> arrival number
        for side in ("bid", "ask"):
            ranked, own = index.ranked[side], index.own_ranked[side]
            # The same orders _shown picks from the whole ranked side: the best BOOK_DEPTH, then own ones.
            top = ranked[:BOOK_DEPTH]
            start = bisect.bisect_right(own, top[-1]) if top else 0
            shown = top + own[start:start + OWN_SHOWN] if len(ranked) > BOOK_DEPTH else top
            oldest = next(iter(index.own[side]), None)
            ids = [k[1] for k in shown] + ([oldest] if oldest is not None else [])
            keep.update((i, index.seq[i][0]) for i in ids)
            kept_own = [k for k in shown if k[1] in index.own[side]]
            kept_own_priced = len(kept_own) + (1 if oldest is not None and index.seq[oldest][2] is not None
                                               and index.seq[oldest][2] not in shown else 0)
            for name, count in ((side + "s", len(ranked) - len(shown) - (kept_own_priced - len(kept_own))),
                                ("my_" + side + "s", len(own) - kept_own_priced)):
                if count:
                    hidden[name] = hidden.get(name, 0) + count
            kept_mine = [i for i in set(ids) if i in index.own[side]]
            if side == "bid":
                kept_money = sum(-index.seq[i][2][0] for i in kept_mine if index.seq[i][2] is not None)
                if index.own_money - kept_money:
                    hidden["my_money"] = hidden.get("my_money", 0) + index.own_money - kept_money
            elif len(index.own["ask"]) > len(kept_mine):
                hidden["my_shares"] = hidden.get("my_shares", 0) + len(index.own["ask"]) - len(kept_mine)
        kept_books[c] = {i: dict(orders[i]) for i in sorted(keep, key=keep.__getitem__)}
    for c, made in rec.trades.items():
        if len(made) > TRADES_SHOWN:
            left_out.setdefault(c, {})["trades"] = left_out.get(c, {}).get("trades", 0) + len(made) - TRADES_SHOWN
    kept = MarketRound(
        rec.round, values=rec.values, lot=rec.lot, start_wallets=_wallets(rec.start_wallets),
        wallets=_wallets(rec.wallets), signals=rec.signals, public_signal=rec.public_signal,
        declarations=dict(rec.declarations), my_declaration=dict(rec.my_declaration),
        declaration_acked=set(rec.declaration_acked), my_snipes={p: list(v) for p, v in rec.my_snipes.items()},
        speculation_acked=set(rec.speculation_acked), winning=rec.winning, snipes=dict(rec.snipes), books=kept_books,
        trades={c: made[-TRADES_SHOWN:] for c, made in rec.trades.items()},
        movements=rec.movements[-TRADES_SHOWN:], pending=[dict(o) for o in rec.pending],
        refusals=rec.refusals[-TRADES_SHOWN:], final_price=rec.final_price, summary=rec.summary,
        hidden={c: h for c, h in left_out.items() if h})
    small.rounds[view.round] = kept
    return small


def _earlier(view: MarketView) -> list[str]:
    lines = []
    done = [r for n, r in sorted(view.rounds.items()) if n < view.round and r.summary is not None]
    for rec in done[-EARLIER_ROUNDS_SHOWN:]:
        s = rec.summary or {}
        market = s.get("market") if isinstance(s.get("market"), dict) else {}
        lines.append(f"Round {rec.round}: winning condition {s.get('condition')}, final price "
                     f"{_num(market.get('price'))}, your money {_num(market.get('balance'))} and shares "
                     f"{_num(market.get('shares'))} after the market.")
    return lines


def market_user_prompt(view: MarketView, action_required: dict[str, Any]) -> str:
    parts = _earlier(view)
    if parts:
        parts = [EARLIER_ROUNDS] + parts + [""]
    rec = view.current
    parts += _round_header(view, rec) + _declarations(view, rec) + _market(view, rec)
    parts += ["", "Action required:", json.dumps(action_required, ensure_ascii=False)]
    return "\n".join(parts)


def without_earlier_rounds(user: str) -> str:
    """A user prompt (market_user_prompt's text) without its earlier rounds: the header that opens it and the lines
    up to the blank line after them. Read from the text, as lib.games.voting.prompts.without_earlier_rounds is, so that
    an example's prompt and the play-time prompt give the same result (lib.games.market.variants, no-history)."""
    lines = user.split("\n")
    if lines[0] != EARLIER_ROUNDS or "" not in lines:
        return user
    return "\n".join(lines[lines.index("") + 1:])


def build_market_messages(view: MarketView, action_required: dict[str, Any]) -> list[dict[str, str]]:
    """[system, user] chat messages for a market decision."""
    return [{"role": "system", "content": market_system_prompt(view)},
            {"role": "user", "content": market_user_prompt(view, action_required)}]
