"""The prompts of the market games: the rules and the player's role (system), then what the player knows now and
the action-required message (user). Agents and, later, the dataset builder call `build_market_messages`, so that a
model is trained on the prompts it is played with.

Only what this player saw goes in: its own lot's values (never another player's), its wallets, its private and the
public signals, the published declarations, the books and trades of the market, its snipes, and earlier rounds'
summaries. The order book is cut to the best BOOK_DEPTH orders per side plus all of the player's own, and the
trades to the last TRADES_SHOWN per condition, so that a prompt stays bounded however busy the market.
"""

from __future__ import annotations

import json
from typing import Any

from lib.games.market.rules import FUTARCHY
from lib.games.market.view import MarketRound, MarketView
from lib.games.voting.rules import CONDITIONS, ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER, ROLE_SPECULATOR

CONDITION_NAMES = {c["id"]: c["name"] for c in CONDITIONS}
BOOK_DEPTH = 5
TRADES_SHOWN = 10
EARLIER_ROUNDS_SHOWN = 5


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


def _ranges(view: MarketView) -> str:
    parts = []
    for key in ("owner", "developer"):
        per = (view.boundaries or {}).get(key)
        if isinstance(per, dict):
            ranges = []
            for c in CONDITIONS:
                bounds = per.get(c["key"], {})
                ranges.append(f"{CONDITION_NAMES[c['id']]} {bounds.get('low')}-{bounds.get('high')}")
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
        f"{rounds}{_ranges(view)} You are {view.tag or 'a player'} (player {view.number}), the {role}. {role_text}"
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
    return tag if isinstance(tag, str) else f"player {number}"


def _market(view: MarketView, rec: MarketRound) -> list[str]:
    lines = []
    if rec.signals is not None:
        lines.append(f"Your private signal of the final share price: {_pair(rec.signals)}. Public signal: "
                     f"{_pair(rec.public_signal)}.")
    if view.phase != 6 and not rec.trades:
        return lines
    for c in view.market_conditions() or sorted(rec.trades):
        book = [o for o in rec.books.get(c, {}).values()
                if isinstance(o.get("price"), int | float) and not isinstance(o.get("price"), bool)]
        bids = sorted((o for o in book if o.get("type") == "bid"), key=lambda o: (-o["price"], o["id"]))
        asks = sorted((o for o in book if o.get("type") == "ask"), key=lambda o: (o["price"], o["id"]))

        def show(orders: list[dict[str, Any]]) -> str:
            shown = [o for i, o in enumerate(orders) if i < BOOK_DEPTH or o.get("sender") == view.number]
            text = ", ".join(_num(o["price"]) + (f" (yours, id {o['id']})" if o.get("sender") == view.number else "")
                             for o in shown)
            more = len(orders) - len(shown)
            return (text or "none") + (f" and {more} more" if more > 0 else "")

        trades = rec.trades.get(c, [])
        recent = ", ".join(_num(t.get("price")) for t in trades[-TRADES_SHOWN:])
        median = f"; median of the last seven: {_num(trades[-1].get('median'))}" if trades else ""
        lines.append(f"Market {c} ({CONDITION_NAMES[c]}): bids {show(bids)}; asks {show(asks)}; "
                     f"{len(trades)} trades{': ' + recent if recent else ''}{median}.")
    mine = [m for m in rec.movements[-TRADES_SHOWN:]]
    if mine:
        lines.append("Your trades: " + "; ".join(
            f"{m.get('movement', {}).get('type')} at {_num(m.get('movement', {}).get('price'))} "
            f"(condition {m.get('condition')})" for m in mine) + ".")
    return lines


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
        parts = ["Earlier rounds:"] + parts + [""]
    rec = view.current
    parts += _round_header(view, rec) + _declarations(view, rec) + _market(view, rec)
    parts += ["", "Action required:", json.dumps(action_required, ensure_ascii=False)]
    return "\n".join(parts)


def build_market_messages(view: MarketView, action_required: dict[str, Any]) -> list[dict[str, str]]:
    """[system, user] chat messages for a market decision."""
    return [{"role": "system", "content": market_system_prompt(view)},
            {"role": "user", "content": market_user_prompt(view, action_required)}]
