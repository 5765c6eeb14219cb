"""The baseline policy of the market games, which is also every market decision's fallback.

Deterministic given its seed, it reads only the player's view (lib/games/market/view.py), and each rule is one a
researcher can state in a sentence and defend:

- **Declarations** (owners and the developer, phases 2 and 7): the lot's true value under each condition, rounded
  down to a multiple of 1000, within the server's limits [0, 2 x high]. Why truthful: a declaration d below the
  value v saves (v - d) x tax rate in tax but loses (v - d) / 2 to the speculators if the lot is sniped, more than
  the saving at any tax rate below 50 % (the games use 1 % and 33 %); a declaration above v pays more tax and hands
  a sniper's loss to nobody's gain. It is the benchmark of the mechanism's intended, truthful play.
- **Snipes** (speculators, phases 3 and 8): a speculator does not know the owners' values, only their public
  ranges; the value it can count on is the role's `low` under that condition (every value is drawn at or above
  it). It snipes every lot whose declaration under a condition that counts is below that value by more than the
  margin (default 5 % of it), so that every snipe it makes pays at least the margin, whatever the true value.
- **Trading** (everyone, phase 6): a zero-intelligence-constrained trader (Gode and Sunder, 1993, "Allocative
  efficiency of markets with zero-intelligence traders", JPE 101(1)) whose valuation of a share under condition c
  is its private signal S[c] (phase 5): each time it is asked it picks an open condition and a side it can afford
  (a bid needs uncommitted money, an ask an uncommitted share), then a price uniformly at random, bids in
  [S x (1 - spread), S] and asks in [S, S x (1 + spread)] (default spread 20 %), rounded to whole money units. It
  therefore never trades at a loss against its signal: a bid trades at most at its limit <= S, an ask at least at
  its limit >= S (trades are at the resting order's price, which is at least as good). It keeps at most one
  resting order per condition and side: if one rests where it wants to post, it cancels that one first (the next
  decision posts anew), and leaves that side alone while the cancel is on its way (never cancels twice). Without
  a signal yet it waits.

Every answer still goes through lib.games.market.actions.validate_market_action before it is sent.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from lib.games.market.actions import (
    CANCEL,
    DECLARE,
    POST,
    SPECULATE,
    TRADE,
    WAIT,
    declaration_max,
    price_cap,
    snipe_conditions,
)
from lib.games.market.rules import ROLE_KEYS
from lib.games.market.view import MarketView
from lib.ibex.params import CONDITIONS, ROLE_SPECULATOR

ROUND_TO = 1000
DEFAULT_SNIPE_MARGIN = 0.05
DEFAULT_SPREAD = 0.20


def baseline_declaration(view: MarketView) -> dict[str, Any]:
    """The true values, rounded down to 1000, within [0, 2 x high]; the middle of the role's range when the
    values are not known (a player that joined after assign-role)."""
    values = view.current.values
    out = []
    for c in (0, 1):
        if values is not None:
            v = values[c]
        else:
            bounds = (view.boundaries or {}).get(ROLE_KEYS.get(view.role or 0, ""), {}).get(CONDITIONS[c]["key"], {})
            v = (bounds.get("low", 0) + bounds.get("high", 0)) // 2
        v = max(0, int(v) // ROUND_TO * ROUND_TO)
        maximum = declaration_max(view, c)
        out.append(min(v, maximum) if maximum is not None else v)
    return {"gameId": view.game_id, "type": DECLARE, "declaration": out + [0]}


def sure_value(view: MarketView, lot: dict[str, Any], condition: int) -> float | None:
    """The lowest value the lot's owner can have under a condition (its role's `low`): what a speculator can count
    on without knowing the owner's value."""
    key = ROLE_KEYS.get(lot.get("role"))
    bounds = (view.boundaries or {}).get(key or "", {}).get(CONDITIONS[condition]["key"], {})
    low = bounds.get("low") if isinstance(bounds, dict) else None
    return low if isinstance(low, int | float) and not isinstance(low, bool) else None


def baseline_snipes(view: MarketView, margin: float = DEFAULT_SNIPE_MARGIN) -> dict[str, Any]:
    """Snipe every lot declared more than `margin` below the value the speculator can count on, under each
    condition whose snipes count now."""
    rec = view.current
    published = rec.declarations.get(8 if view.phase == 8 else 3, [])
    lots = set(view.lot_ids())
    snipe: list[list[int]] = [[], [], []]
    for c in snipe_conditions(view):
        for lot in published:
            d = lot.get("d")
            value = sure_value(view, lot, c)
            declared = d[c] if isinstance(d, list) and len(d) > c else None
            if value is None or not isinstance(declared, int | float) or isinstance(declared, bool):
                continue
            if lot.get("id") in lots and lot.get("id") not in snipe[c] and declared < value * (1 - margin):
                snipe[c].append(lot["id"])
    return {"gameId": view.game_id, "type": SPECULATE, "snipe": snipe}


def zic_trade(view: MarketView, rng: random.Random, spread: float = DEFAULT_SPREAD) -> dict[str, Any]:
    """One decision of the zero-intelligence-constrained trader: a post, a cancel, or a wait."""
    signals = view.current.signals
    choices = []
    for c in view.market_conditions():
        s = signals[c] if isinstance(signals, list) and c < len(signals) else None
        if not isinstance(s, int | float) or isinstance(s, bool) or s <= 0:
            continue
        money, shares = view.uncommitted(c)
        mine = view.my_orders(c)
        for side in ("bid", "ask"):
            resting = [o for o in mine if o.get("type") == side]
            if any(view.being_cancelled(o.get("id")) for o in resting):
                continue  # its cancel is on its way: nothing to do on this side until it is answered
            if resting:
                choices.append((c, side, s, resting[0]))
            elif side == "bid" and money >= 1:
                choices.append((c, side, s, None))
            elif side == "ask" and shares >= 1:
                choices.append((c, side, s, None))
    if not choices:
        return {"gameId": view.game_id, "type": WAIT, "order": None}
    c, side, s, resting = rng.choice(choices)
    if resting is not None:
        return {"gameId": view.game_id, "type": CANCEL, "order": {"id": resting["id"], "condition": c}}
    money, _ = view.uncommitted(c)
    cap = price_cap(view, c)
    if side == "bid":
        low, high = s * (1 - spread), min(s, money, cap)
        price = int(min(high, max(0.0, rng.uniform(low, s))))  # rounded down: never above S
    else:
        price = -int(-rng.uniform(s, s * (1 + spread)) // 1)  # rounded up: never below S
        price = min(price, cap)
        if price < s:  # a signal above the price cap: no ask can avoid a loss against it
            return {"gameId": view.game_id, "type": WAIT, "order": None}
    return {"gameId": view.game_id, "type": POST,
            "order": {"price": price, "quantity": 1, "condition": c, "type": side, "now": False}}


def decision_rng(seed: int, view: MarketView, count: int) -> random.Random:
    """The trader's random draws for its `count`-th decision of a round: fixed by seed, seat and round, so a
    game replayed with the same seed and the same events makes the same choices."""
    key = f"{seed}:{view.game_id}:{view.number}:{view.round}:{view.phase}:{count}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


@dataclass
class MarketBaseline:
    """The baseline as a policy object: `decide(view, kind, count)` returns the answer message (not yet validated;
    a trader's wait is {"type": "wait"})."""

    seed: int = 0
    snipe_margin: float = DEFAULT_SNIPE_MARGIN
    spread: float = DEFAULT_SPREAD
    name: str = "baseline"

    def decide(self, view: MarketView, kind: str, count: int = 0) -> dict[str, Any]:
        if kind == DECLARE:
            return baseline_declaration(view)
        if kind == SPECULATE:
            if view.role != ROLE_SPECULATOR:
                raise ValueError("only speculators snipe")
            return baseline_snipes(view, self.snipe_margin)
        if kind == TRADE:
            return zic_trade(view, decision_rng(self.seed, view, count), self.spread)
        raise ValueError(f"unknown market decision {kind!r}")


class MarketBaselinePolicy:
    """The baseline as an agent's policy (the rules play by choice: decisions are recorded as `baseline`)."""

    def __init__(self, baseline: MarketBaseline | None = None) -> None:
        self.baseline = baseline or MarketBaseline()
        self.name = "baseline"
        self.count = 0

    async def decide(self, view: MarketView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Any) -> dict[str, Any] | None:
        self.count += 1
        return self.baseline.decide(view, wire_type, self.count)
