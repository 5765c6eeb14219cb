"""lib.games.protocols.SeatRules for the Harberger and futarchy games: what an agent in one seat asks of them.

- Declarations (owners and the developer, phases 2 and 7) and snipes (speculators, phases 3 and 8): one decision
  per phase, decided when the phase begins, as voting's actions are.
- Trading (everyone, phase 6) is due all phase long (lib.games.protocols.Cadence): the policy is asked when the
  market opens and again whenever the books or the seat's wallet change (an order added, filled, cancelled or
  refused, a trade: the view's `market_version`), at most once per `trade_interval` seconds, never with more than
  one trading decision in flight, each with at most `trade_seconds`. No decision starts with less than
  `min_trade_seconds` left before the market's end minus the safety margin: no model call fits (lib.agents.llm
  makes none below 0.2 s), so it could only end in a fallback counted as a timeout though the model was never
  asked.
- A policy's answer is checked strictly (lib.games.market.actions) against the decision's view, and again against
  the book as it is when it goes out (an order it cancels may have traded meanwhile): one no longer valid is
  dropped, not sent. A trader's wait sends nothing.
- Fallback: the baseline's decision (lib.games.market.policy), for declarations and snipes as for trades. Cancels
  in flight are tracked as orders in flight are (the view's `cancelling`): neither a fallback nor a model's answer
  cancels an order whose cancel is already on its way.
- The real server sends no action-required in these games: the seat decides from the phase itself.
- After a reconnection, only a declaration the server did not acknowledge is sent again: a second
  `done-speculating` would count twice (docs/protocol.md section 14) and an order may already be in the book.
- The seat: the market games' `assign-role` names none. Owners and the developer read it from their lot
  (`property.owner`); speculators get it from GET /games/status after joining when the agent has the REST client
  (their decisions wait for that answer, so every row of the decisions table names the seat, even when the first
  phase ends at once in the local server's fast mode), else from their first trade (the view infers it).
"""

from __future__ import annotations

import copy
from typing import Any

from lib.games.market.actions import (
    DECLARE,
    SPECULATE,
    TRADE,
    WAIT,
    build_market_action_required,
    market_action_due,
    validate_market_action,
)
from lib.games.market.policy import MarketBaseline, MarketBaselinePolicy
from lib.games.market.view import MarketView, apply_status
from lib.games.protocols import ActionError, Cadence, NoLongerValid, Obey, Policy, Resynced
from lib.ibex.params import ROLE_NAMES, GameParams

# Below this much time before the market's end (minus the safety margin) no trading decision starts: lib.agents.llm
# makes no model call with less than its MIN_CALL_SECONDS (0.2 s) left (tests check this is not below it).
MIN_TRADE_SECONDS = 0.25
_UNSET: Any = object()


class MarketSeat:
    """One seat of a market game. Options (lib.agents.agent.Agent's **game_options): `game_type` (None: learnt from
    the game's events; default this game's), `baseline` (the fallback's MarketBaseline), `trade_interval`,
    `trade_seconds`, `min_trade_seconds` (see the module docstring)."""

    def __init__(self, game_type: str | None, *, baseline: MarketBaseline | None = None, trade_interval: float = 5.0,
                 trade_seconds: float = 20.0, min_trade_seconds: float = MIN_TRADE_SECONDS) -> None:
        self.game_type = game_type
        self.baseline = baseline or MarketBaseline()
        self.trading = Cadence(interval=trade_interval, seconds=trade_seconds, min_seconds=min_trade_seconds,
                               too_late="no trading decision started: the market is about to close")

    def configured(self, *, game_type: str | None = _UNSET, baseline: MarketBaseline | None = None,
                   trade_interval: float = 5.0, trade_seconds: float = 20.0,
                   min_trade_seconds: float = MIN_TRADE_SECONDS) -> MarketSeat:
        return MarketSeat(self.game_type if game_type is _UNSET else game_type, baseline=baseline,
                          trade_interval=trade_interval, trade_seconds=trade_seconds,
                          min_trade_seconds=min_trade_seconds)

    def new_view(self, game_id: int, params: GameParams | None) -> MarketView:
        view = MarketView(game_id=game_id, game_type=self.game_type)
        if params is not None:
            view.round_count = params.round_count
            view.practice_round = params.practice_round
        return view

    def snapshot(self, view: MarketView) -> MarketView:
        return copy.deepcopy(view)

    def due(self, view: MarketView, *, chat: bool) -> str | None:
        return market_action_due(view)

    def cadence(self, wire_type: str) -> Cadence | None:
        return self.trading if wire_type == TRADE else None

    def version(self, view: MarketView) -> int:
        return view.market_version

    def phase_closing(self, view: MarketView) -> bool:
        return view.closing

    def server_action(self, view: MarketView, data: dict[str, Any]) -> Obey:
        return Obey(None, note="server action-required ignored (market game)")

    def acknowledged(self, frame: dict[str, Any]) -> str | None:
        return None  # a declaration's acknowledgement is the view's (declaration_acked)

    def race(self, view: MarketView, message: str) -> str | None:
        # A cancel sent while its order was resting can meet it filled or gone: the server then answers "Order not
        # found. N", which no client can avoid in a continuous market (#20). Only for an order whose cancel this
        # seat sent and the server had not answered (the fill's delete-order may come first): any other id is a
        # refusal.
        return "a cancel crossed its order's fill or removal" if view.cancel_race(message) else None

    def cap(self, view: MarketView, params: GameParams | None) -> None:
        return None  # every limit is the view's (lib.games.market.actions)

    def action_required(self, view: MarketView, wire_type: str, *, cap: int | None,
                        timer_seconds: float | None) -> dict[str, Any]:
        return build_market_action_required(view, wire_type, timer_seconds=timer_seconds)

    def check_answer(self, answer: dict[str, Any], view: MarketView, wire_type: str,
                     cap: int | None) -> dict[str, Any]:
        return validate_market_action(answer, view, wire_type)

    def validate(self, message: dict[str, Any], view: MarketView, snapshot: MarketView, wire_type: str,
                 cap: int | None) -> dict[str, Any] | None:
        if message["type"] == WAIT:
            return None
        try:  # the book moved while the policy thought: check against it as it is now
            return validate_market_action(message, view, wire_type)
        except ActionError as exc:
            raise NoLongerValid(str(exc)) from None

    def fallback(self, view: MarketView, snapshot: MarketView, wire_type: str, cap: int | None,
                 repeats: int) -> tuple[dict[str, Any] | None, str | None]:
        return validate_market_action(self.baseline.decide(view, wire_type, repeats), view, wire_type), None

    def baseline_policy(self, seed: int = 0) -> Policy:
        return MarketBaselinePolicy(MarketBaseline(seed=seed))

    def seat_lookup(self, view: MarketView) -> bool:
        return view.number is None

    def learn_seat(self, view: MarketView, game_data: dict[str, Any]) -> bool:
        player = game_data.get("player") or {}
        number = player.get("number")
        if view.number is not None or not isinstance(number, int):
            return False
        view.number = number
        me = next((p for p in view.players if p.get("number") == number), None)
        if me is not None:
            view.tag = me.get("tag")
        return True

    def resync(self, view: MarketView, game_data: dict[str, Any]) -> Resynced:
        game = game_data.get("game") or {}
        at = (game.get("round"), game.get("phase"))
        acted = apply_status(view, game_data)
        return Resynced(acted, {"round": at[0], "phase": at[1], "acted": sorted(acted),
                                "orders": sum(len(b) for b in view.current.books.values())})

    def resend(self, view: MarketView, wire_type: str, *, acted: set[str], acknowledged: bool, delivered: bool,
               snapshot: bool) -> tuple[bool, dict[str, Any] | None]:
        # Only the first declaration counts: a repeat is harmless, a missing one is not.
        if wire_type == DECLARE and DECLARE not in acted and view.phase not in view.current.declaration_acked:
            return True, {"event": "re-sending a declaration the server did not acknowledge"}
        return False, None

    def decision_fields(self, view: MarketView, wire_type: str, action: dict[str, Any] | None) -> dict[str, Any]:
        action_type = {DECLARE: "declare", SPECULATE: "done-speculating"}.get(wire_type)
        if action_type is None:
            action_type = action.get("type") if action else TRADE
        rec = view.current
        return {"role": ROLE_NAMES.get(view.role) if view.role is not None else None, "action_type": action_type,
                "private_values": {"values": rec.values,
                                   "signals": rec.signals[:2] if isinstance(rec.signals, list) else None}}
