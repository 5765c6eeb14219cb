"""The market games' baseline (lib.games.market.policy): valid at every recorded decision point, and the rules
it plays by."""

from __future__ import annotations

import random

import pytest

from lib.games.market.actions import (
    DECLARE,
    POST,
    SPECULATE,
    TRADE,
    market_action_due,
    validate_market_action,
)
from lib.games.market.policy import MarketBaseline, baseline_declaration, baseline_snipes, zic_trade
from lib.ibex.params import ROLE_OWNER
from tests.helpers.market_views import GAMES, market_view, recorded_games, replay


@pytest.fixture(scope="module")
def recorded() -> dict:
    return recorded_games()


# ----- the baseline policy


@pytest.mark.parametrize("name", GAMES)
def test_the_baseline_answers_validly_at_every_recorded_decision_point(recorded, name):
    """Declarations, snipes and trades the baseline would have sent at every moment of the recorded games pass
    the strict validator, and its orders never trade at a loss against the signal."""
    game = recorded[name]
    policy = MarketBaseline(seed=1)
    counts = {DECLARE: 0, SPECULATE: 0, "post": 0, "cancel": 0}

    def decide(view, frame, note=None):
        kind = market_action_due(view)
        if kind is None:
            return
        answer = policy.decide(view, kind, count=sum(counts.values()))
        out = validate_market_action(answer, view, kind)
        if kind == TRADE and out["type"] != "wait":
            signal = view.current.signals[out["order"]["condition"]] if out["type"] == POST else None
            if out["type"] == POST:
                side, price = out["order"]["type"], out["order"]["price"]
                assert price <= signal if side == "bid" else price >= signal
                counts["post"] += 1
            else:
                counts["cancel"] += 1
        elif kind != TRADE:
            counts[kind] += 1
    for seat in game["seats"]:
        replay(game, seat, on_recv=decide, on_send=decide)
    assert counts[DECLARE] > 0 and counts[SPECULATE] > 0 and counts["post"] > 100 and counts["cancel"] > 0


def test_baseline_declares_the_true_value_rounded_down():
    view = market_view(role=ROLE_OWNER, number=3, phase=2)
    view.current.values = [468500, 164999]
    assert baseline_declaration(view)["declaration"] == [468000, 164000, 0]
    view.current.values = [5000000, 0]  # beyond the server's maximum: clipped to it
    assert baseline_declaration(view)["declaration"] == [1200000, 0, 0]


def test_baseline_snipes_only_declarations_below_the_sure_value_by_the_margin():
    view = market_view(phase=3, winning=0)
    # Owners' sure value under No Project is their low, 350000; lot 4 declared 300000 (more than 5% below).
    assert baseline_snipes(view)["snipe"] == [[4], [], []]
    view.current.declarations[3][3]["d"][0] = 340000  # within 5% of 350000: no sure gain worth the margin
    assert baseline_snipes(view)["snipe"] == [[], [], []]
    assert baseline_snipes(view, margin=0.0)["snipe"] == [[4], [], []]


def test_zic_trader_stays_within_its_signal_and_its_wallet():
    view = market_view("futarchy")
    view.current.wallets[1] = {"balance": 3000, "shares": 0}
    seen = set()
    for i in range(300):
        out = zic_trade(view, random.Random(i))
        validate_market_action(out, view, TRADE)
        o = out["order"]
        s = view.current.signals[o["condition"]]
        if o["type"] == "bid":
            assert min(0.8 * s - 1, view.uncommitted(o["condition"])[0]) <= o["price"] <= s
        else:
            assert s <= o["price"] <= 1.2 * s + 1
            assert o["condition"] == 0  # no shares under condition 1
        seen.add((o["condition"], o["type"]))
    assert seen == {(0, "bid"), (0, "ask"), (1, "bid")}
    # A resting order on the chosen side is cancelled before a new one is posted.
    for side in ("bid", "ask"):
        view.apply({"type": "event", "eventType": "add-order", "data": {"order": {
            "id": 1 if side == "bid" else 2, "sender": 7, "price": 8000 if side == "bid" else 9500,
            "quantity": 1, "type": side, "condition": 0}}})
    kinds = {zic_trade(view, random.Random(i))["type"] for i in range(100)}
    assert kinds == {"post-order", "cancel-order"}
    view.current.signals = None
    assert zic_trade(view, random.Random(0))["type"] == "wait"


def test_baseline_trading_is_reproducible_from_its_seed():
    view = market_view()
    a = [MarketBaseline(seed=3).decide(view, TRADE, count=i) for i in range(20)]
    b = [MarketBaseline(seed=3).decide(view, TRADE, count=i) for i in range(20)]
    c = [MarketBaseline(seed=4).decide(view, TRADE, count=i) for i in range(20)]
    assert a == b and a != c
