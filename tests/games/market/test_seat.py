"""lib.games.market.seat: what the one agent (lib.agents.agent) asks a market game about its seat."""

from __future__ import annotations

import pytest

from lib.agents.agent import Agent
from lib.agents.transcript import Transcript
from lib.games import game_for
from lib.games.market.actions import CANCEL, DECLARE, SPECULATE, TRADE, WAIT
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.games.market.seat import MIN_TRADE_SECONDS, MarketSeat
from lib.games.market.view import MarketView
from lib.games.protocols import NoLongerValid
from lib.ibex.params import ROLE_OWNER, ROLE_SPECULATOR


def speculator(phase: int = 6) -> MarketView:
    return MarketView(game_id=5, game_type="futarchy", number=7, role=ROLE_SPECULATOR, phase=phase, round=1)


def test_trading_is_repeated_at_the_options_cadence_and_declarations_once_per_phase():
    seat = game_for("harberger").seat.configured(trade_interval=0.5, trade_seconds=3.0)
    trading = seat.cadence(TRADE)
    assert (trading.interval, trading.seconds, trading.min_seconds) == (0.5, 3.0, MIN_TRADE_SECONDS)
    assert seat.cadence(DECLARE) is None and seat.cadence(SPECULATE) is None
    assert game_for("harberger").seat.configured().cadence(TRADE).interval == 5.0  # the defaults


def test_the_game_type_option_overrides_the_games_own_and_none_is_learnt_later():
    assert game_for("futarchy").seat.configured().new_view(3, None).game_type == "futarchy"
    assert game_for("futarchy").seat.configured(game_type=None).new_view(3, None).game_type is None


def test_an_option_the_market_games_do_not_take_is_refused_by_the_agent(tmp_path):
    with Transcript(tmp_path / "t.jsonl") as transcript, pytest.raises(TypeError, match="chat_rate"):
        Agent("ws://127.0.0.1:1", 5, "r" * 24, MarketBaselinePolicy(), transcript, game=game_for("harberger"),
              chat_rate=2)


def test_a_wait_sends_nothing_and_a_cancel_the_book_has_overtaken_is_no_longer_valid():
    seat = MarketSeat("futarchy")
    view = speculator()
    assert seat.validate({"type": WAIT}, view, view, TRADE, None) is None
    with pytest.raises(NoLongerValid, match="order"):
        seat.validate({"gameId": 5, "type": CANCEL, "order": {"id": 99, "condition": 0}}, view, view, TRADE, None)


def test_the_server_s_action_required_is_never_obeyed():
    obey = MarketSeat("harberger").server_action(speculator(), {"actionType": "TradeInMarket"})
    assert obey.wire_type is None and obey.refusal is None and "market game" in obey.note


def test_after_a_rejoin_only_an_unacknowledged_declaration_is_sent_again():
    seat = MarketSeat("harberger")
    owner = MarketView(game_id=5, game_type="harberger", number=2, role=ROLE_OWNER, phase=2, round=1)
    again, note = seat.resend(owner, DECLARE, acted=set(), acknowledged=False, delivered=True, snapshot=True)
    assert again and note["event"] == "re-sending a declaration the server did not acknowledge"
    assert seat.resend(owner, DECLARE, acted={DECLARE}, acknowledged=False, delivered=True, snapshot=True) == \
        (False, None)
    owner.current.declaration_acked.add(2)
    assert seat.resend(owner, DECLARE, acted=set(), acknowledged=False, delivered=True, snapshot=False) == (False, None)
    assert seat.resend(speculator(3), SPECULATE, acted=set(), acknowledged=False, delivered=True,
                       snapshot=False) == (False, None)  # a second done-speculating would count twice


def test_the_decisions_table_names_declarations_snipes_and_the_trade_sent():
    seat = MarketSeat("futarchy")
    view = speculator()
    assert seat.decision_fields(view, TRADE, {"type": CANCEL})["action_type"] == CANCEL
    assert seat.decision_fields(view, TRADE, None)["action_type"] == TRADE
    assert seat.decision_fields(view, SPECULATE, None)["action_type"] == "done-speculating"
    fields = seat.decision_fields(view, DECLARE, None)
    assert fields["action_type"] == "declare" and fields["role"] == "speculator"
    assert fields["private_values"] == {"values": None, "signals": None}


def test_the_seat_is_looked_up_only_while_unknown_and_learnt_once():
    seat = MarketSeat("harberger")
    view = speculator()
    view.number = None
    view.players = [{"number": 9, "tag": "S4"}]
    assert seat.seat_lookup(view)
    assert seat.learn_seat(view, {"player": {"number": 9}}) and (view.number, view.tag) == (9, "S4")
    assert not seat.seat_lookup(view) and not seat.learn_seat(view, {"player": {"number": 3}})


def test_the_baseline_policy_is_the_seeded_market_baseline():
    policy = MarketSeat("harberger").baseline_policy(seed=4)
    assert isinstance(policy, MarketBaselinePolicy) and policy.baseline == MarketBaseline(seed=4)
