"""The market engine (lib/market.py) against the real IBEX server: recorded games replayed, and crafted books."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lib.market import Market, listed_conditions_rule, winning_condition_rule

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "market_replay.json").read_text())
ROUNDS = [(game_type, rnd) for game_type in ("harberger", "futarchy") for rnd in FIXTURE[game_type]["rounds"]]


def market_of(game_type: str, rnd: dict) -> Market:
    wallets = {int(seat): copy.deepcopy(w) for seat, w in rnd["wallets"].items()}
    rule = winning_condition_rule(rnd["conditions"][0]) if game_type == "harberger" else listed_conditions_rule([0, 1])
    return Market(wallets, rule)


def as_json(value) -> str:
    return json.dumps(value)  # exact text: 8689 and 8689.0 differ on the wire


@pytest.mark.parametrize(("game_type", "rnd"), ROUNDS, ids=[f"{g}-round{r['round']}" for g, r in ROUNDS])
def test_recorded_market_replays_exactly(game_type: str, rnd: dict) -> None:
    """Every order and cancel of a recorded market, re-sent in the server's order, gives the same events to the
    same recipients in the same order, and every seat the same frames (errors included) as it received."""
    market = market_of(game_type, rnd)
    sent: list[tuple[int | None, dict]] = []
    for seat, message in rnd["messages"]:
        sent += market.handle(seat, copy.deepcopy(message))
    events = [["all" if to is None else to, f["eventType"], f["data"]] for to, f in sent if f["type"] == "event"]
    assert [as_json(e) for e in events] == [as_json(e) for e in rnd["server-log"]]
    for seat, expected in rnd["received"].items():
        expected = [{"type": "event", "eventType": rnd["server-log"][x][1], "data": rnd["server-log"][x][2]}
                    if isinstance(x, int) else x for x in expected]
        got = [f for to, f in sent if to is None or to == int(seat)]
        assert [as_json(f) for f in got] == [as_json(f) for f in expected], f"seat {seat}"


def test_replays_cover_trades_refusals_and_cancels() -> None:
    """The recorded games exercise what the replay claims to check."""
    kinds = {e[1] for _, rnd in ROUNDS for e in rnd["server-log"]}
    assert {"add-order", "delete-order", "asset-movement", "contract-fulfilled", "order-refused"} <= kinds
    trades = sum(1 for _, rnd in ROUNDS for e in rnd["server-log"] if e[1] == "contract-fulfilled")
    assert trades >= 90
    errors = [f["message"] for _, rnd in ROUNDS for frames in rnd["received"].values() for f in frames
              if isinstance(f, dict)]
    assert any(m.startswith("Order not found.") for m in errors)
    assert any("wrong condition" in m for m in errors) and any("condition not understood" in m for m in errors)
