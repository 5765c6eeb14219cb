"""Market-game views for tests: the two recorded real-server games (tests/fixtures/market_seats.json.gz: per seat,
the frames received and sent in game 12 (Harberger) and 13 (futarchy), practice round + 2 rounds, with the
recorder's notes on its deliberate bad-input probes) replayed seat by seat, and a hand-made view of a seat."""

from __future__ import annotations

import gzip
import json
from typing import Any

from lib.games.market.view import MarketView
from lib.ibex.params import ROLE_SPECULATOR
from tests.helpers.paths import FIXTURES

FIXTURE = FIXTURES / "market_seats.json.gz"
GAMES = ("harberger-12", "futarchy-13")


def recorded_games() -> dict[str, Any]:
    """The recorded games by name (GAMES); a module-scoped fixture should hold it: it is large."""
    with gzip.open(FIXTURE, "rt") as f:
        return json.load(f)["games"]


def new_view(game: dict, seat: str) -> MarketView:
    return MarketView(game_id=game["game_id"], game_type=game["game_type"], number=int(seat))


def replay(game: dict, seat: str, on_send=None, on_recv=None) -> MarketView:
    """Fold one seat's frames in order; callbacks see the view before a frame is applied."""
    view = new_view(game, seat)
    for entry in game["seats"][seat]:
        if entry[0] == "r":
            if on_recv:
                on_recv(view, entry[1])
            view.apply(entry[1])
        else:
            if on_send:
                on_send(view, entry[1], entry[2])
            view.apply_sent(entry[1])
    return view


def market_view(game_type="harberger", role=ROLE_SPECULATOR, number=7, phase=6, winning=0) -> MarketView:
    view = MarketView(game_id=5, game_type=game_type, number=number, role=role, phase=phase, round=1,
                      tax_rate_initial=1, tax_rate_final=33,
                      boundaries={"developer": {"noProject": {"low": 200000, "high": 500000},
                                                "projectA": {"low": 500000, "high": 2750000}},
                                  "owner": {"noProject": {"low": 350000, "high": 600000},
                                            "projectA": {"low": 150000, "high": 350000}}})
    view.players = [{"number": n, "role": 3 if n == 1 or 3 <= n <= 6 else 2 if n == 2 else 1, "tag": f"P{n}"}
                    for n in range(1, 13)]
    rec = view.current
    rec.wallets = [{"balance": 50000, "shares": 5} for _ in range(3)]
    rec.winning = None if game_type == "futarchy" else winning
    rec.signals = [9000, 7000, 0]
    rec.declarations[3] = [{"id": n, "number": n, "role": 2 if n == 2 else 3,
                            "d": [300000 if n == 4 else 400000, 200000, 0]} for n in range(1, 7)]
    return view


def order(price=9000, side="bid", condition=0, **extra):
    return {"gameId": 99, "type": "post-order",
            "order": {"price": price, "quantity": 1, "condition": condition, "type": side, "now": False, **extra}}
