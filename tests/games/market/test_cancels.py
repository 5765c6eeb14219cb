"""#20: fallbacks cancelled the same order twice, and decisions started too close to the market's end.

A trading decision timed out near the end and its fallback sent `cancel-order N`; the next decision fell back at
once and cancelled N again (cancels in flight were not tracked): the server answered "Order not found. N". The
tests drive the view and the agent's decision logic with explicit states (a deadline far away or nearly here, a
fake socket that records what is sent), never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from lib.agents.agent import Agent, AgentSettings
from lib.agents.decisions import DecisionLog
from lib.agents.transcript import Transcript, read_transcript
from lib.games import game_for
from lib.games.market.actions import CANCEL, TRADE, validate_market_action
from lib.games.market.policy import zic_trade
from lib.games.market.seat import MIN_TRADE_SECONDS
from lib.games.market.view import MarketView
from lib.games.protocols import ActionError
from tests.helpers.market_views import market_view, order


def with_resting_bid(view: MarketView, order_id: int = 3) -> MarketView:
    """Seat 7 under Harberger's condition 0 with one resting bid and no shares: the baseline's only move is to
    cancel that bid."""
    view.current.wallets[0] = {"balance": 50000, "shares": 0}
    view.apply({"type": "event", "eventType": "add-order", "data": {"order": {
        "id": order_id, "sender": 7, "price": 8000, "quantity": 1, "type": "bid", "condition": 0}}})
    return view


def test_a_cancel_in_flight_is_tracked_refused_again_and_left_alone_by_the_baseline():
    view = with_resting_bid(market_view())
    cancel = {"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}}
    assert zic_trade(view, random.Random(0)) == cancel
    view.apply_sent(cancel)
    assert view.being_cancelled(3)
    with pytest.raises(ActionError, match="cancel of order 3 is already on its way"):
        validate_market_action(cancel, view, TRADE)
    assert {zic_trade(view, random.Random(i))["type"] for i in range(50)} == {"wait"}
    assert view.uncommitted(0) == (42000, 0)  # the bid still binds its money: it may trade before the cancel lands
    view.apply({"type": "event", "eventType": "delete-order", "data": {"order": {"id": 3, "type": "bid",
                                                                                 "condition": 0}}})
    assert not view.being_cancelled(3) and view.my_orders(0) == []


def test_an_order_not_found_answers_the_cancel_not_an_order_in_flight():
    view = with_resting_bid(market_view())
    view.apply_sent({"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}})
    view.apply_sent(order(1000))  # a post in flight at the same time
    view.apply({"type": "error", "message": "Order not found. 3"})
    assert not view.being_cancelled(3)
    assert len(view.current.pending) == 1  # the post is still on its way and still binds its money


class SilentModel:
    """A model policy that never has an answer in time (every decision falls back)."""

    name = "llm"
    model = "m"

    def __init__(self) -> None:
        self.asked = 0

    async def decide(self, view: Any, wire_type: str, **kwargs: Any) -> None:
        self.asked += 1
        return None


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


def trading_agent(tmp_path: Path, seconds_left: float) -> tuple[Agent, RecordingSocket, DecisionLog]:
    """A market agent in the middle of phase 6, its market ending `seconds_left` from now (set-timer end, no
    parameters: the only estimate), without a safety margin."""
    log = DecisionLog(tmp_path / "decisions.csv")
    agent = Agent("ws://127.0.0.1:1", 5, "recovery-code-0123456789", SilentModel(),
                  Transcript(tmp_path / "agent.jsonl"), game=game_for("harberger"),
                  settings=AgentSettings(safety_margin=0.0), decision_log=log)
    agent.view = with_resting_bid(market_view())
    agent.view.deadline_ms = int(time.time() * 1000 + seconds_left * 1000)
    socket = RecordingSocket()
    agent._ws = socket  # type: ignore[assignment]
    return agent, socket, log


def test_a_second_fallback_never_cancels_what_the_first_one_is_cancelling(tmp_path):
    agent, socket, log = trading_agent(tmp_path, seconds_left=600)

    async def two_decisions() -> None:
        await agent._decide((1, 6, "trade#1"), TRADE, None)
        await agent._decide((1, 6, "trade#2"), TRADE, None)  # no delete-order came in between

    asyncio.run(two_decisions())
    agent.transcript.close()
    log.close()
    assert socket.sent == [{"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}}]
    assert [(d.made_by, d.action_type, d.sent) for d in log.rows] == [("fallback", CANCEL, True),
                                                                      ("fallback", "wait", False)]


def test_no_trading_decision_starts_too_close_to_the_markets_end(tmp_path):
    agent, socket, log = trading_agent(tmp_path, seconds_left=MIN_TRADE_SECONDS / 2)
    asyncio.run(agent._decide_again(1, 6, TRADE, 0.0))
    agent.transcript.close()
    log.close()
    assert agent.policy.asked == 0 and agent.fallbacks == 0 and log.rows == [] and socket.sent == []
    assert log.reasons == {}  # nothing counted as a timeout
    notes = [r for r in read_transcript(agent.transcript.path) if r.get("kind") == "meta"]
    assert notes and notes[-1]["event"] == "no trading decision started: the market is about to close"


def test_a_trading_decision_with_time_left_is_started(tmp_path):
    agent, socket, log = trading_agent(tmp_path, seconds_left=600)
    asyncio.run(agent._decide_again(1, 6, TRADE, 0.0))
    agent.transcript.close()
    log.close()
    assert agent.policy.asked == 1 and len(log.rows) == 1


def test_the_minimum_leaves_a_model_call_room():
    from lib.agents.llm import MIN_CALL_SECONDS

    assert MIN_TRADE_SECONDS >= MIN_CALL_SECONDS


def test_an_order_not_found_for_a_cancel_in_flight_is_a_race_and_any_other_error_a_refusal(tmp_path):
    """The market's seat part says which error frames answer a race no client can avoid (SeatRules.race): "Order not
    found. N" for an order this seat is cancelling. The agent counts those apart from refusals and names the race
    in the transcript; the same text for an order it never cancelled, or any other error, is a refusal."""
    agent, _socket, log = trading_agent(tmp_path, seconds_left=600)
    agent.view.apply_sent({"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}})

    async def frames() -> None:  # each frame may start a trading decision: a loop to start it on, then stopped
        agent._on_text(json.dumps({"type": "error", "message": "Order not found. 3"}))
        assert not agent.view.being_cancelled(3)  # the view still folds the answer
        agent._on_text(json.dumps({"type": "error", "message": "Order not found. 3"}))  # not in flight any more
        agent._on_text(json.dumps({"type": "error", "message": "Game 5: order price must be a number (--strict)"}))
        await agent._stop_tasks()

    asyncio.run(frames())
    agent.transcript.close()
    log.close()
    assert agent.races == {"a cancel crossed its order's fill or removal": 1} and agent.refusals == 2
    errors = [r for r in read_transcript(agent.transcript.path) if r["kind"] == "server-error"]
    assert [(r["message"], r.get("race")) for r in errors] == [
        ("Order not found. 3", "a cancel crossed its order's fill or removal"), ("Order not found. 3", None),
        ("Game 5: order price must be a number (--strict)", None)]


def test_an_order_not_found_after_the_order_s_delete_order_is_still_the_race():
    """The fill's delete-order may reach the seat before the server reads its cancel: the cancel is no longer in
    flight in the view, yet the server's later "Order not found. N" answers it (seen in a strict futarchy game)."""
    view = with_resting_bid(market_view())
    view.apply_sent({"gameId": 5, "type": CANCEL, "order": {"id": 3, "condition": 0}})
    view.apply({"type": "event", "eventType": "delete-order", "data": {"order": {"id": 3, "type": "bid",
                                                                                 "condition": 0}}})
    assert not view.being_cancelled(3)
    seat = game_for("harberger").seat
    assert seat.race(view, "Order not found. 3") is not None
    view.apply({"type": "error", "message": "Order not found. 3"})
    assert seat.race(view, "Order not found. 3") is None  # answered: a second one would be a refusal
    assert seat.race(view, "Order not found. 4") is None  # never cancelled
