"""One agent plays one seat of a Harberger or futarchy game: lib.agents.agent.Agent's connection, join, ready (with the
re-sends the round-start race needs, docs/protocol.md section 15), reconnection and transcript, with the market
games' view, decisions and checks.

- Declarations (owners and the developer, phases 2 and 7) and snipes (speculators, phases 3 and 8): one decision
  per phase, decided when the phase begins, as voting's actions are.
- Trading (everyone, phase 6): the policy is asked when the market opens and again whenever the books or the
  agent's wallet change (an order added, filled, cancelled or refused, a trade), at most once per
  `trade_interval` seconds and never with more than one trading decision in flight. Each decision has at most
  `trade_seconds` (and never past the market's end minus the safety margin); a policy that has no valid answer
  by then gets the baseline's decision for that moment. No decision starts with less than `min_trade_seconds`
  left before the market's end minus the safety margin: no model call fits (lib.agents.llm makes none below 0.2 s), so
  it could only end in a fallback counted as a timeout though the model was never asked. An answer is checked
  again against the book as it is when it goes out (an order it cancels may have traded meanwhile): one no longer
  valid is dropped, not sent.
- Fallback: the baseline's decision (lib/games/market/policy.py), for declarations and snipes as for trades. Cancels in
  flight are tracked as orders in flight are (the view's `cancelling`): neither a fallback nor a model's answer
  cancels an order whose cancel is already on its way.
- Nothing the real server fails to check goes out (lib/games/market/actions.py, strict), and no answer is sent after its
  phase ended. After a reconnection, only a declaration the server did not acknowledge is sent again: a second
  `done-speculating` would count twice (docs/protocol.md section 14) and an order may already be in the book.

The seat: the market games' `assign-role` names none. Owners and the developer read it from their lot
(`property.owner`); speculators get it from GET /games/status after joining when the agent has the REST client,
else from their first trade (the view infers it).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from typing import Any

from lib.agents import decisions
from lib.agents.agent import Agent, Key
from lib.games.market.actions import (
    DECLARE,
    SPECULATE,
    TRADE,
    WAIT,
    build_market_action_required,
    market_action_due,
    validate_market_action,
)
from lib.games.market.policy import MarketBaseline
from lib.games.market.view import MARKET_PHASE, MarketView, apply_status
from lib.games.voting.actions import ActionError
from lib.ibex.api import GameNotFound, IbexApiError

# Below this much time before the market's end (minus the safety margin) no trading decision starts: lib.agents.llm
# makes
# no model call with less than its MIN_CALL_SECONDS (0.2 s) left (tests check this is not below it).
MIN_TRADE_SECONDS = 0.25


class BaselineMarketPolicy:
    """The baseline as an agent's policy (the rules play by choice: decisions are recorded as `baseline`)."""

    def __init__(self, baseline: MarketBaseline | None = None) -> None:
        self.baseline = baseline or MarketBaseline()
        self.name = "baseline"
        self.count = 0

    async def decide(self, view: MarketView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Any) -> dict[str, Any] | None:
        self.count += 1
        return self.baseline.decide(view, wire_type, self.count)


class MarketAgent(Agent):
    """One seat of a market game. `game_type` comes from the game's parameters (None: learnt from the events)."""

    def __init__(self, *args: Any, game_type: str | None = None, baseline: MarketBaseline | None = None,
                 trade_interval: float = 5.0, trade_seconds: float = 20.0,
                 min_trade_seconds: float = MIN_TRADE_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view = MarketView(game_id=self.game_id, game_type=game_type)  # type: ignore[assignment]
        if self.params is not None:
            self.view.round_count = self.params.round_count
            self.view.practice_round = self.params.practice_round
        self.baseline = baseline or MarketBaseline()
        self.trade_interval = trade_interval
        self.trade_seconds = trade_seconds
        self.min_trade_seconds = min_trade_seconds
        self._trade_seen = -1  # the version the last trading decision started from
        self._trade_count = 0
        self._trade_started = 0.0
        self._trade_task: asyncio.Task[None] | None = None
        self._seat_lookup: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ frames in

    def _on_text(self, text: str) -> None:
        super()._on_text(text)
        view = self.view
        if view.number is None and self._join_confirmed and self.api is not None and self._seat_lookup is None:
            self._seat_lookup = self._spawn(self._find_seat())

    async def _find_seat(self) -> None:
        try:
            status = await self.api.status(self.game_id, self.recovery)  # type: ignore[union-attr]
        except IbexApiError as exc:
            self.transcript.write("meta", event="seat lookup failed", error=str(exc))
            return
        player = (status.game_data or {}).get("player") or {}
        number = player.get("number")
        if self.view.number is None and isinstance(number, int):
            self.view.number = number
            me = next((p for p in self.view.players if p.get("number") == number), None)
            if me is not None:
                self.view.tag = me.get("tag")
            self.transcript.write("meta", event="seat known", number=number)
            self._consider()

    def _on_server_action(self, data: dict[str, Any], deferred: bool = False) -> None:
        # The real server sends no action-required in these games; the agent decides from the phase itself.
        self.transcript.write("meta", event="server action-required ignored (market game)",
                              actionType=data.get("actionType"))

    async def _resync(self, connection: int) -> None:
        """After a rejoin: the status snapshot (wallets, books, trades, declarations, what this seat has done in
        the phase) replaces what the missed frames would have told; then what is still owed is decided."""
        acted: set[str] = set()
        if self.api is not None:
            for attempt in range(1, self.settings.resync_attempts + 1):
                try:
                    status = await self.api.status(self.game_id, self.recovery)
                except GameNotFound as exc:
                    self._game_gone(f"game {self.game_id} is gone from the server ({exc.message})")
                    return
                except IbexApiError as exc:
                    self.transcript.write("meta", event="resync failed", error=str(exc))
                    break
                if connection != self._connection or self.view.game_over:
                    return
                game = (status.game_data or {}).get("game") or {}
                at = (game.get("round"), game.get("phase"))
                if status.found and all(isinstance(x, int) for x in at) and at >= (self.view.round, self.view.phase):
                    before = (self.view.round, self.view.phase)
                    acted = apply_status(self.view, status.game_data)  # type: ignore[arg-type]
                    self.transcript.write("resync", round=at[0], phase=at[1], acted=sorted(acted),
                                          orders=sum(len(b) for b in self.view.current.books.values()))
                    if (self.view.round, self.view.phase) != before:
                        self._set_timer_at = None
                        self._on_new_phase()
                    for wire_type in acted:
                        self._handled.add((self.view.round, self.view.phase, wire_type))
                    break
                await asyncio.sleep(0.05 * attempt)
        self._after_rejoin(acted=acted)

    def _after_rejoin(self, acted: set[str], snapshot: bool = False) -> None:
        view = self.view
        if view.phase == 0 and not view.ready_acked and (self._ready_task is None or self._ready_task.done()):
            self._start_ready(delay=0.0)
        for key, message in list(self._chosen.items()):
            if key[:2] != (view.round, view.phase) or key in self._decisions:
                continue
            # Only the first declaration counts: a repeat is harmless, a missing one is not.
            if key[2] == DECLARE and DECLARE not in acted and view.phase not in view.current.declaration_acked:
                self.transcript.write("meta", event="re-sending a declaration the server did not acknowledge")
                self._spawn(self._send(message, source="re-sent after rejoin"))
        self._consider()

    # ------------------------------------------------------------------ what to decide

    def _consider(self) -> None:
        view = self.view
        kind = market_action_due(view)  # type: ignore[arg-type]
        if kind is None:
            return
        if kind != TRADE:
            key = (view.round, view.phase, kind)
            if key not in self._handled and key not in self._decisions:
                self._start_decision(key, kind, server_data=None)
            return
        if self._trade_task is not None and not self._trade_task.done():
            return  # one trading decision at a time; it looks again when it ends
        if self._trade_seen == view.market_version:
            return  # nothing changed since the last decision
        delay = max(0.0, self._trade_started + self.trade_interval - time.monotonic())
        self._trade_task = self._spawn(self._trade(view.round, delay))

    async def _trade(self, round_number: int, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        view = self.view
        if view.round != round_number or view.phase != MARKET_PHASE or view.game_over or view.closing:
            return
        left = self._deadline()[0] - self.settings.safety_margin - time.monotonic()
        if left < self.min_trade_seconds:
            # The market is about to close: no new decision (and so no fallback) starts now.
            self.transcript.write("meta", event="no trading decision started: the market is about to close",
                                  round=view.round, seconds_left=round(left, 3), minimum=self.min_trade_seconds)
            return
        self._trade_seen = view.market_version
        self._trade_started = time.monotonic()
        self._trade_count += 1
        key = (view.round, view.phase, f"{TRADE}#{self._trade_count}")
        self._handled.add(key)
        try:
            await self._decide(key, TRADE, None)
        finally:
            self._trade_task = None
            self._consider()

    # ------------------------------------------------------------------ deciding

    async def _decide(self, key: Key, wire_type: str, server_data: dict[str, Any] | None) -> None:
        snapshot: MarketView = copy.deepcopy(self.view)  # type: ignore[arg-type]
        phase_end, how = self._deadline()
        act_by = phase_end - self.settings.safety_margin
        if wire_type == TRADE:
            act_by = min(act_by, time.monotonic() + self.trade_seconds)
        timer = self.params.timer(snapshot.phase) if self.params is not None else None
        action_required = build_market_action_required(snapshot, wire_type, timer_seconds=timer)
        self.transcript.write("decide", wire_type=wire_type, round=key[0], phase=key[1],
                              seconds_left=round(phase_end - time.monotonic(), 3), deadline_from=how,
                              act_within=round(act_by - time.monotonic(), 3))
        trace, started, model = self._open_decision(key, snapshot, wire_type, act_by)
        message, reason, why = None, None, None
        budget = act_by - time.monotonic()
        try:
            if budget > 0:
                async with asyncio.timeout(budget):
                    answer = await self.policy.decide(snapshot, wire_type, cap=0, action_required=action_required,
                                                      deadline=act_by, transcript=self.transcript)
                if answer is not None:
                    message = validate_market_action(answer, snapshot, wire_type)
                else:
                    reason, why = "no valid answer", trace.why_no_answer()
            else:
                reason, why = "no time left before the safety margin", decisions.TIMEOUT
        except TimeoutError:
            reason, why = "deadline minus safety margin reached", decisions.TIMEOUT
        except ActionError as exc:  # a rule policy's answer the checks refuse: a bug, never sent
            reason, why = f"invalid answer: {exc}", decisions.INVALID
        except asyncio.CancelledError:
            self._record(key, snapshot, wire_type, None, decisions.NONE, started, trace, model,
                         detail=f"no answer sent: {trace.cancel_reason or 'cancelled'}")
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            why = decisions.MODEL_ERROR if trace.attempts else decisions.POLICY_ERROR
        source = self.policy.name
        detail = None
        if message is not None:
            made_by, detail = self._answered_by(trace)
        else:
            self.fallbacks += 1
            made_by, source = decisions.FALLBACK, "fallback"
            detail = f"{reason}; {trace.summary()}" if trace.attempts else reason
            try:
                message = validate_market_action(self.baseline.decide(self.view, wire_type, self._trade_count),
                                                 self.view, wire_type)  # type: ignore[arg-type]
            except (ActionError, ValueError) as exc:
                message, detail = None, f"{detail}; no fallback possible: {exc}"
            self.transcript.write("fallback", wire_type=wire_type, round=key[0], phase=key[1], reason=reason,
                                  fallback_reason=why, action=message)
            if message is None:
                self._record(key, snapshot, wire_type, None, made_by, started, trace, model, why=why, detail=detail)
                return
        await self._deliver(key, snapshot, wire_type, message, source=source, made_by=made_by, detail=detail,
                            record=functools.partial(self._record, key, snapshot, wire_type, made_by=made_by,
                                                     started=started, trace=trace, model=model, why=why))

    def _stale_reason(self, key: Key) -> str | None:
        if self.view.closing and self.view.phase == key[1]:
            return f"stale: phase {key[1]} has ended"  # the market is closing: no order goes out now
        return super()._stale_reason(key)

    def _check_to_send(self, key: Key, snapshot: Any, wire_type: str, message: dict[str, Any],
                       detail: str | None) -> tuple[dict[str, Any] | None, str | None]:
        if message["type"] == WAIT:
            return None, detail  # recorded, nothing to send
        try:  # the book moved while the policy thought: check against it as it is now
            return validate_market_action(message, self.view, wire_type), None  # type: ignore[arg-type]
        except ActionError as exc:
            self.dropped += 1
            self.transcript.write("dropped", wire_type=wire_type, round=key[0], phase=key[1], action=message,
                                  reason=f"no longer valid: {exc}")
            return None, f"no longer valid when it was to be sent: {exc}"

    def _action_type(self, wire_type: str, action: dict[str, Any] | None) -> str:
        action_type = {DECLARE: "declare", SPECULATE: "done-speculating"}.get(wire_type)
        if action_type is None:
            action_type = action.get("type") if action else TRADE
        return action_type

    def _private_values(self, view: Any) -> Any:
        rec = view.current
        return {"values": rec.values, "signals": rec.signals[:2] if isinstance(rec.signals, list) else None}
